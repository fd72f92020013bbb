"""OpenURL vocabulary as tables: entity prefixes, 0.1 keys, genres, version markers.

Z39.88-2004 (1.0) KEV keys are `<entity>_<admin>` (rft_id, rfr_id, svc_val_fmt) or
`<entity>.<metadata>` (rft.atitle, req.email); OpenURL 0.1 has bare metadata keys (`atitle`,
`issn`), `sid` for the source and `id` for identifiers. Real links mix both.
"""

from __future__ import annotations

from connectors.core.model import RequestFormat, ServiceType

# Entities of a 1.0 context object (FORMAT.md): referent, referrer, referring entity,
# requester, service type, resolver.
ENTITIES = ("rft", "rfr", "rfe", "req", "svc", "res")

# Context-object administration keys (version, encoding, time, id).
ADMIN_KEYS = frozenset(
    {"url_ver", "url_tim", "url_ctx_fmt", "url_ctx_val", "ctx_ver", "ctx_enc", "ctx_tim", "ctx_id"}
)

# Referent metadata keys of the journal, book and dissertation formats (also the 0.1 keys).
METADATA_KEYS = frozenset(
    {
        "genre",
        "atitle",
        "jtitle",
        "btitle",
        "title",
        "stitle",
        "aulast",
        "aufirst",
        "auinit",
        "auinit1",
        "auinitm",
        "ausuffix",
        "au",
        "aucorp",
        "date",
        "chron",
        "ssn",
        "quarter",
        "volume",
        "part",
        "issue",
        "spage",
        "epage",
        "pages",
        "artnum",
        "issn",
        "eissn",
        "isbn",
        "eisbn",
        "coden",
        "sici",
        "bici",
        "place",
        "pub",
        "publisher",
        "edition",
        "tpages",
        "series",
        "doi",
        "pmid",
        "oclcnum",
        "lccn",
        "language",
        "inst",
        "advisor",
        "degree",
        "month",
        "day",
        # Not in either standard, but written by many 0.1 sources (and `rft.year` by some
        # 1.0 ones): the publication year, read as the date when there is none.
        "year",
    }
)

# 0.1 keys that are not metadata: `sid` names the source (1.0 rfr_id), `id` an identifier
# (1.0 rft_id), `pid` private data (1.0 rft_dat).
LEGACY_KEYS: dict[str, str] = {"sid": "rfr_id", "id": "rft_id", "pid": "rft_dat"}

# Metadata keys that carry identifiers, by kind (identifiers.NORMALISERS).
IDENTIFIER_KEYS: dict[str, str] = {
    "isbn": "isbn",
    "eisbn": "isbn",
    "issn": "issn",
    "eissn": "eissn",
    "doi": "doi",
    "pmid": "pmid",
    "oclcnum": "oclc",
    "lccn": "lccn",
}

# rft_val_fmt (info:ofi/fmt:kev:mtx:<format>) when no genre says more.
FORMAT_GENRE: dict[str, str] = {
    "journal": "article",
    "book": "book",
    "dissertation": "dissertation",
    "patent": "patent",
}

# genre -> (service type, request format, ISO 18626 publication type). A part of something
# (an article, a chapter, a paper) is copied; a whole thing is lent. Why: that is what every
# ILL system (Alma, ILLiad, Relais) does with these genres by default.
GENRES: dict[str, tuple[ServiceType, RequestFormat, str]] = {
    "article": (ServiceType.COPY, RequestFormat.DIGITAL, "Article"),
    "preprint": (ServiceType.COPY, RequestFormat.DIGITAL, "Article"),
    "proceeding": (ServiceType.COPY, RequestFormat.DIGITAL, "ConferenceProc"),
    "conference": (ServiceType.LOAN, RequestFormat.PHYSICAL, "ConferenceProc"),
    "bookitem": (ServiceType.COPY, RequestFormat.DIGITAL, "Chapter"),
    "chapter": (ServiceType.COPY, RequestFormat.DIGITAL, "Chapter"),
    "book": (ServiceType.LOAN, RequestFormat.PHYSICAL, "Book"),
    "report": (ServiceType.LOAN, RequestFormat.PHYSICAL, "Report"),
    "document": (ServiceType.LOAN, RequestFormat.PHYSICAL, "Book"),
    "dissertation": (ServiceType.LOAN, RequestFormat.PHYSICAL, "Thesis"),
    "thesis": (ServiceType.LOAN, RequestFormat.PHYSICAL, "Thesis"),
    "patent": (ServiceType.COPY, RequestFormat.DIGITAL, "Patent"),
    # A whole journal or issue is lent (a volume); with an article title it is an article.
    "journal": (ServiceType.LOAN, RequestFormat.PHYSICAL, "Journal"),
    "issue": (ServiceType.LOAN, RequestFormat.PHYSICAL, "Journal"),
    "unknown": (ServiceType.LOAN, RequestFormat.PHYSICAL, "Book"),
}
# Genres that name a whole serial but, with an article title, mean an article in it.
SERIAL_GENRES = frozenset({"journal", "issue", "unknown"})

# Service type as a form or `svc.*` key says it.
SERVICE_WORDS: dict[str, ServiceType] = {
    "loan": ServiceType.LOAN,
    "copy": ServiceType.COPY,
    "article": ServiceType.COPY,
    "document_delivery": ServiceType.COPY,
    "ill": ServiceType.LOAN,
}

# Keys the hub adds to the KEV it hands its own codec (after authenticating the borrower and
# verifying the patron). Incoming keys in this namespace are dropped by the intake.
HUB_PREFIX = "rshub."
# Keys a borrower's link uses to authenticate itself and sign its patron; never stored.
LINK_TOKEN_KEY = "rshub_token"
SIGNATURE_KEYS = frozenset({"req_sig", "req_exp"})
