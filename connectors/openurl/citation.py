"""From a context object to a citation (what a person would fill in a request form) and from
a citation to the canonical request's bibliographic data."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from connectors.core.model import Bibliographic, RequestFormat, ServiceType
from connectors.openurl.identifiers import Identifiers, isbn10, kind_of_uri
from connectors.openurl.kev import ContextObject, clean_text
from connectors.openurl.keys import FORMAT_GENRE, GENRES, IDENTIFIER_KEYS, SERIAL_GENRES

# Citation fields a person may fill in the form, in the form's order.
FIELDS = (
    "title",
    "atitle",
    "author",
    "volume",
    "issue",
    "pages",
    "date",
    "publisher",
    "place",
    "edition",
    "isbn",
    "issn",
    "doi",
    "pmid",
    "oclc",
)
IDENTIFIER_FIELDS = ("isbn", "issn", "doi", "pmid", "oclc", "lccn", "eissn")


@dataclass
class Citation:
    genre: str = ""
    title: str = ""  # the whole thing: the journal, the book
    atitle: str = ""  # the part: the article, the chapter
    author: str = ""
    volume: str = ""
    issue: str = ""
    part: str = ""
    pages: str = ""
    date: str = ""
    publisher: str = ""
    place: str = ""
    edition: str = ""
    series: str = ""
    isbn: str = ""
    issn: str = ""
    eissn: str = ""
    doi: str = ""
    pmid: str = ""
    oclc: str = ""
    lccn: str = ""
    rejected: list[str] = field(default_factory=list)

    @property
    def identified(self) -> bool:
        return any(getattr(self, name) for name in IDENTIFIER_FIELDS)

    @property
    def complete(self) -> bool:
        """Enough to look the item up: a title or an identifier."""
        return bool(self.title or self.atitle or self.identified)

    def kind(self) -> tuple[ServiceType, RequestFormat, str]:
        """Service type, request format and publication type from the genre."""
        genre = self.genre if self.genre in GENRES else "unknown"
        if genre in SERIAL_GENRES and self.atitle:
            genre = "article"
        return GENRES[genre]

    def as_dict(self) -> dict[str, object]:
        return {k: v for k, v in asdict(self).items() if v}


def _author(co: ContextObject) -> str:
    last, first = co.value("aulast"), co.value("aufirst") or co.value("auinit")
    if last:
        return f"{last}, {first.rstrip(',')}" if first else last
    return co.value("au") or co.value("aucorp")


def _pages(co: ContextObject) -> str:
    if co.value("pages"):
        return co.value("pages")
    start, end = co.value("spage"), co.value("epage")
    return f"{start}-{end}" if start and end else start


def citation(co: ContextObject) -> Citation:
    found = Identifiers()
    for uri in co.ids:
        kind = kind_of_uri(uri)
        if kind:
            found.add(kind, uri)
    for key, kind in IDENTIFIER_KEYS.items():
        for value in co.values(key):
            found.add(kind, value)
    genre = (co.value("genre") or FORMAT_GENRE.get(co.format, "")).lower()
    atitle = co.value("atitle")
    if not genre:
        genre = "article" if atitle else "unknown"
    # 1.0 journals name the journal jtitle (title is its older alias), books btitle; in 0.1
    # `title` is the journal or book.
    title = co.value("jtitle") or co.value("btitle") or co.value("title") or co.value("stitle")
    return Citation(
        genre=genre,
        title=title,
        atitle=atitle,
        author=_author(co),
        volume=co.value("volume"),
        issue=co.value("issue"),
        part=co.value("part"),
        pages=_pages(co),
        date=co.value("date") or co.value("year"),
        publisher=co.value("pub") or co.value("publisher"),
        place=co.value("place"),
        edition=co.value("edition"),
        series=co.value("series"),
        rejected=found.rejected,
        **{name: found.found.get(kind, "") for name, kind in _FOUND.items()},
    )


_FOUND = {
    "isbn": "isbn",
    "issn": "issn",
    "eissn": "eissn",
    "doi": "doi",
    "pmid": "pmid",
    "oclc": "oclc",
    "lccn": "lccn",
}


def from_form(values: dict[str, str]) -> Citation:
    """A citation a person typed: cleaned and with its identifiers checked."""
    found = Identifiers()
    for name in ("isbn", "issn", "doi", "pmid", "oclc"):
        found.add(name, values.get(name, ""))
    text = {name: clean_text(values.get(name, ""))[:2000] for name in FIELDS}
    return Citation(
        genre=clean_text(values.get("genre", "")).lower()[:40],
        rejected=found.rejected,
        **{k: v for k, v in text.items() if k not in _FOUND},
        **{name: found.found.get(kind, "") for name, kind in _FOUND.items() if name in FIELDS},
    )


def bibliographic(cite: Citation) -> Bibliographic:
    """ISO 18626 vocabulary: the whole is `title`/`author`, a part `title_of_component`/
    `author_of_component`."""
    part = bool(cite.atitle)
    _service, _format, publication_type = cite.kind()
    return Bibliographic(
        title=cite.title or None,
        author=None if part else (cite.author or None),
        title_of_component=cite.atitle or None,
        author_of_component=cite.author if part and cite.author else None,
        edition=cite.edition or None,
        pages_requested=cite.pages or None,
        place_of_publication=cite.place or None,
        publication_date=cite.date or None,
        publisher=cite.publisher or None,
        series_title_number=cite.series or None,
        volume=cite.volume or None,
        issue=cite.issue or None,
        part=cite.part or None,
        doi=cite.doi or None,
        bibliographic_level=publication_type,
        isbn=cite.isbn or None,
        issn=cite.issn or None,
        eissn=cite.eissn or None,
        oclc_number=cite.oclc or None,
        lccn=cite.lccn or None,
        pmid=cite.pmid or None,
    )


def openurl_extension(cite: Citation) -> dict[str, object]:
    """What the canonical model has no field for (PMID, LCCN, e-ISSN, the genre ...)."""
    extra: dict[str, object] = {
        key: getattr(cite, key) for key in ("genre", "pmid", "lccn", "eissn") if getattr(cite, key)
    }
    if cite.isbn and isbn10(cite.isbn):
        extra["isbn10"] = isbn10(cite.isbn)
    if cite.rejected:
        extra["rejected_identifiers"] = cite.rejected[:20]
    return extra
