"""The KEV reader: an OpenURL query string (0.1, 1.0 or both mixed) as an ordered list of
keys and values, then as a context object. Sans-IO, never raises anything but `KevError`.

Real links are not what the standard says (FORMAT.md, the resolver samples): a logged link
starts with host and path, `??` precedes the query, `&` and spaces go unencoded inside
titles, keys repeat, values are empty, private data holds XML fragments, the encoding
is not always UTF-8. Every rule below exists because real traffic needs it.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, field
from urllib.parse import unquote_to_bytes

from connectors.openurl.keys import (
    ADMIN_KEYS,
    ENTITIES,
    HUB_PREFIX,
    LEGACY_KEYS,
    METADATA_KEYS,
)


class KevError(ValueError):
    """Not a query string we can read; `too_large` when only its size is the problem."""

    def __init__(self, reason: str, too_large: bool = False) -> None:
        super().__init__(reason)
        self.too_large = too_large


# What a key looks like (after `amp;` and `?` are taken off). A segment whose "key" has
# other characters (spaces, `'`, `(`) is the rest of the previous value, cut by an
# unencoded `&`.
_KEY = re.compile(r"[a-z0-9][a-z0-9_.:-]{0,79}")
# `\u00eb` written literally: some discovery systems (Primo) escape non-ASCII that way.
_JS_ESCAPE = re.compile(r"\\u([0-9a-fA-F]{4})")
_TAG = re.compile(r"<[^<>]{0,500}>")
# C0/C1 controls other than tab and newline have no place in a citation (and XML cannot
# carry most of them); they are dropped, not refused.
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ufffe\uffff\ud800-\udfff]")
_SPACE = re.compile(r"\s+")
# Encodings a 1.0 `ctx_enc` may declare (info:ofi/enc:<name>) that we honour.
_ENCODINGS = {"utf-8": "utf-8", "iso-8859-1": "latin-1", "latin1": "latin-1", "us-ascii": "ascii"}


def strip_base(raw: bytes) -> bytes:
    """The query part of a whole link (`host/path?query`, `path??query`) or of a bare query."""
    data = raw.strip()
    mark = data.find(b"?")
    if mark >= 0 and b"=" not in data[:mark] and b"&" not in data[:mark]:
        data = data[mark + 1 :]
    data = data.lstrip(b"?")
    fragment = data.rfind(b"#")
    if fragment >= 0 and b"=" not in data[fragment:] and b"&" not in data[fragment:]:
        data = data[:fragment]  # a URL fragment (#top), not a `#` inside a value
    return data


def _decode(value: bytes, encoding: str) -> str:
    raw = unquote_to_bytes(value.replace(b"+", b" "))
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        # Pre-standard sources send Latin-1 (0.1 had no ctx_enc); latin-1 decodes any byte.
        return raw.decode(encoding if encoding != "utf-8" else "latin-1", errors="replace")


def _declared_encoding(segments: list[bytes]) -> str:
    for segment in segments:
        key, _, value = segment.partition(b"=")
        if key.strip().lower().lstrip(b"?") == b"ctx_enc":
            name = unquote_to_bytes(value).decode("latin-1").lower().rsplit(":", 1)[-1]
            return _ENCODINGS.get(name.strip(), "utf-8")
    return "utf-8"


def clean_key(key: str) -> str:
    text = key.strip().lower().lstrip("?")
    while text.startswith("amp;"):  # `&amp;` copied out of an HTML page
        text = text[4:]
    return text


def _known(key: str) -> bool:
    return (
        key in METADATA_KEYS
        or key in ADMIN_KEYS
        or key in LEGACY_KEYS
        or any(key.startswith((f"{e}.", f"{e}_")) for e in ENTITIES)
        or key.startswith(HUB_PREFIX)
        or "." in key
        or "_" in key
    )


def pairs(raw: bytes, max_pairs: int = 1000) -> list[tuple[str, str]]:
    """The keys and values of a query string, in order, keys cleaned (lower case, no `amp;`),
    values decoded (UTF-8, else the declared or Latin-1 encoding) but otherwise as sent."""
    data = strip_base(raw)
    segments = [s for s in data.split(b"&") if s.strip()]
    if len(segments) > max_pairs * 4:
        raise KevError(f"{len(segments)} key/value pairs, over {max_pairs}", too_large=True)
    encoding = _declared_encoding(segments)
    out: list[tuple[str, str]] = []
    for segment in segments:
        raw_key, _, raw_value = segment.partition(b"=")
        key = clean_key(_decode(raw_key, encoding))
        value = _decode(raw_value, encoding)
        plausible = bool(_KEY.fullmatch(key)) and (_known(key) or bool(value) or not out)
        if not plausible and out:
            # The rest of the previous value after an unencoded `&` ("Crime & Delinquency").
            # The stray `=` some sources leave at its end is dropped with an empty value.
            rest = _decode(raw_key, encoding) + (f"={value}" if value else "")
            last_key, last_value = out[-1]
            out[-1] = (last_key, f"{last_value}&{rest}")
            continue
        if not key:
            continue
        out.append((key, value))
        if len(out) > max_pairs:
            raise KevError(f"more than {max_pairs} key/value pairs", too_large=True)
    return out


def from_query(query: tuple[tuple[str, str], ...] | list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Pairs already split and decoded by an HTTP server: cleaned and re-joined as `pairs`
    does (an unencoded `&` splits a value there too)."""
    out: list[tuple[str, str]] = []
    for raw_key, value in query:
        key = clean_key(raw_key)
        plausible = bool(_KEY.fullmatch(key)) and (_known(key) or bool(value) or not out)
        if not plausible and out:
            last_key, last_value = out[-1]
            out[-1] = (
                last_key,
                f"{last_value}&{raw_key.strip('?')}" + (f"={value}" if value else ""),
            )
            continue
        if key:
            out.append((key, value))
    return out


def clean_text(value: str) -> str:
    """A value for people and catalogues: JS escapes and HTML entities resolved, markup and
    control characters removed, white space collapsed, a stray trailing `=` dropped."""
    text = _JS_ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), value)
    text = html.unescape(_TAG.sub(" ", text))
    text = _CONTROL.sub("", text)
    text = _SPACE.sub(" ", text).strip()
    if text.endswith("=") and not text.endswith("=="):
        text = text[:-1].rstrip()
    return text


@dataclass
class ContextObject:
    """An OpenURL as data: the version it was written in, the referent's metadata (1.0
    `rft.` keys and 0.1 bare keys kept apart, 1.0 preferred), its identifiers, referrer,
    requester, service type, private data, and the hub's own keys."""

    version: str = "0.1"
    metadata: dict[str, list[str]] = field(default_factory=dict)
    legacy: dict[str, list[str]] = field(default_factory=dict)
    ids: list[str] = field(default_factory=list)
    referrer: str = ""
    format: str = ""
    requester: dict[str, list[str]] = field(default_factory=dict)
    service: dict[str, list[str]] = field(default_factory=dict)
    private: dict[str, list[str]] = field(default_factory=dict)
    admin: dict[str, str] = field(default_factory=dict)
    hub: dict[str, str] = field(default_factory=dict)

    def value(self, key: str) -> str:
        """The first non-empty cleaned value of a metadata key (1.0 first, then 0.1)."""
        for source in (self.metadata, self.legacy):
            for raw in source.get(key, ()):
                text = clean_text(raw)
                if text:
                    return text
        return ""

    def values(self, key: str) -> list[str]:
        found = [clean_text(v) for v in [*self.metadata.get(key, ()), *self.legacy.get(key, ())]]
        return [v for v in dict.fromkeys(found) if v]


def _add(table: dict[str, list[str]], key: str, value: str) -> None:
    table.setdefault(key, []).append(value)


def context(items: list[tuple[str, str]]) -> ContextObject:
    """Sort the pairs into a context object. Unknown keys are private data (kept, not used)."""
    co = ContextObject()
    new = old = False
    sid = ""
    for key, value in items:
        if key.startswith(HUB_PREFIX):
            co.hub.setdefault(key[len(HUB_PREFIX) :], value)
        elif key in ADMIN_KEYS:
            new = new or "z39.88" in value.lower() or key.startswith("ctx_")
            co.admin.setdefault(key, value)
        elif key.startswith("rft."):
            new = True
            _add(co.metadata, key[4:], value)
        elif key == "rft_id":
            new = True
            co.ids.append(value)
        elif key == "rft_val_fmt":
            new = True
            co.format = value.rsplit(":", 1)[-1].strip().lower()
        elif key == "rfr_id":
            new = True
            co.referrer = co.referrer or value.strip()
        elif key.startswith(("req.", "req_")):
            _add(co.requester, key, value)
        elif key.startswith(("svc.", "svc_")):
            _add(co.service, key, value)
        elif key in LEGACY_KEYS:
            old = True
            if key == "id":
                co.ids.append(value)
            elif key == "sid":
                sid = sid or value.strip()
            else:
                _add(co.private, key, value)
        elif key in METADATA_KEYS:
            old = True
            _add(co.legacy, key, value)
        else:
            _add(co.private, key, value)
    co.referrer = co.referrer or sid
    co.version = "mixed" if new and old else "1.0" if new else "0.1"
    return co
