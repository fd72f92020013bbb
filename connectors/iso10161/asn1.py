"""The ISO 10161 ASN.1, compiled with asn1tools (BER).

The module texts in `asn/` stay as published. `FIXES` lists every change made in memory before
compiling, each with the reason asn1tools needs it (see shared/standards/iso10161/NOTES.md).
None changes a tag or an encoding, so the wire format is the standard's.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

import asn1tools
import asn1tools.codecs.ber as ber

ASN = Path(__file__).parent / "asn"

APDUS = [
    "ILL-Request",
    "Forward-Notification",
    "Shipped",
    "ILL-Answer",
    "Conditional-Reply",
    "Cancel",
    "Cancel-Reply",
    "Received",
    "Recall",
    "Returned",
    "Checked-In",
    "Overdue",
    "Renew",
    "Renew-Answer",
    "Lost",
    "Damaged",
    "Message",
    "Status-Query",
    "Status-Or-Error-Report",
    "Expired",
]
# [APPLICATION n] tag of each APDU, n = 1 (ILL-Request) ... 20 (Expired).
APPLICATION_TAG = {name: number for number, name in enumerate(APDUS, start=1)}

# X.208 EXTERNAL as real traffic encodes it (single-ASN1-type as [0] EXPLICIT ANY, tag a0);
# asn1tools' built-in EXTERNAL is the X.680 form and rejects it.
EXTERNAL_X208 = """
External-X208 ::= [UNIVERSAL 8] IMPLICIT SEQUENCE {
    direct-reference OBJECT IDENTIFIER OPTIONAL,
    indirect-reference INTEGER OPTIONAL,
    data-value-descriptor ObjectDescriptor OPTIONAL,
    encoding CHOICE {
        single-ASN1-type [0] ANY,
        octet-aligned [1] IMPLICIT OCTET STRING,
        arbitrary [2] IMPLICIT BIT STRING
    }
}
"""


def _name_apdu_alternatives(text: str) -> str:
    """ILL-APDU ::= CHOICE lists its alternatives unnamed (1988 style): name them."""

    def rename(match: re.Match[str]) -> str:
        lines = [f"\t{name.lower()} {name}" for name in APDUS]
        return "ILL-APDU ::= CHOICE {\n" + ",\n".join(lines) + "\n\t}"

    return re.sub(r"ILL-APDU ::= CHOICE \{.*?\}", rename, text, count=1, flags=re.S)


def _name_ill_string_alternatives(text: str) -> str:
    return text.replace(
        "ILL-String ::= CHOICE {\n\tGeneralString,",
        "ILL-String ::= CHOICE {\n\tgeneralstring GeneralString,",
    ).replace(
        "\t-- (control) character set\n\tEDIFACTString\n",
        "\t-- (control) character set\n\tedifactstring EDIFACTString\n",
    )


def _enumerated_defaults_by_name(text: str) -> str:
    """Numeric ENUMERATED defaults decode as ints asn1tools cannot re-encode: use names."""
    text = text.replace(
        "IMPLICIT Transaction-Type DEFAULT 1", "IMPLICIT Transaction-Type DEFAULT simple"
    )
    text = text.replace(
        "IMPLICIT Place-On-Hold-Type DEFAULT 3",
        "IMPLICIT Place-On-Hold-Type DEFAULT according-to-responder-policy",
    )
    text = re.sub(r"(no-Expiry\s*\(3\)\s*\})\s*DEFAULT 3", r"\1 DEFAULT no-Expiry", text)
    return re.sub(r"(unordered\s*\(2\)\s*\})\s*DEFAULT 2", r"\1 DEFAULT unordered", text)


FIXES: list[tuple[str, Callable[[str], str]]] = [
    ("name the 20 ILL-APDU alternatives", _name_apdu_alternatives),
    ("name the two ILL-String alternatives", _name_ill_string_alternatives),
    (
        'drop the """ item asn1tools cannot parse from the EDIFACTString alphabet',
        lambda t: t.replace('"!"|"""|"%"', '"!"|"%"'),
    ),
    (
        "drop the enum-based constraint of Shipped-Service-Type",
        lambda t: t.replace("ILL-Service-Type (loan | copy-non-returnable)", "ILL-Service-Type"),
    ),
    ("write ENUMERATED defaults by name", _enumerated_defaults_by_name),
    ("ANY DEFINED BY compiles only as ANY", lambda t: re.sub(r"ANY DEFINED BY [\w-]+", "ANY", t)),
    (
        "EXTERNAL in its X.208 form",
        lambda t: re.sub(r"\bEXTERNAL\b", "External-X208", t).replace(
            "\nEND", EXTERNAL_X208 + "\nEND"
        ),
    ),
]


def ill_module() -> str:
    text = (ASN / "ill9702.asn").read_text(encoding="latin-1")
    for _reason, fix in FIXES:
        text = fix(text)
    return text


def oclc_module() -> str:
    """OCLC ILL-Request extension 1.0.10161.13.2; SystemNo lacks its opening brace."""
    text = (ASN / "oclc-ill-req-ext.asn").read_text(encoding="latin-1")
    return text.replace(
        "SEQUENCE SIZE (1..10) OF SEQUENCE \n", "SEQUENCE SIZE (1..10) OF SEQUENCE {\n"
    )


def delivery_info_module() -> str:
    """APDU-Delivery-Info 1.0.10161.13.3: an extract without a module header; wrap it."""
    body = (ASN / "ill-apdu-delivery-info_1.0.10161.13.3.asn").read_text(encoding="latin-1")
    return f"ILL-APDU-Delivery-Info DEFINITIONS ::=\nBEGIN\n{body}\nEND\n"


def _own_tags(kind: Any, constructed: bool) -> list[bytes]:
    """The tags the type itself starts with (a CHOICE: each alternative's), of one form."""
    while isinstance(kind, ber.Recursive) and kind.inner is not None:
        kind = kind.inner
    tags = list(kind.tag_to_member) if isinstance(kind, ber.Choice) else [bytes(kind.tag or b"")]
    return [tag for tag in tags if tag and bool(tag[0] & 0x20) == constructed]


class TolerantExplicitTag(ber.ExplicitTag):
    """An EXPLICIT tag that also reads the IMPLICIT form some encoders write in its place.

    Encoders built on Perl's Convert::ASN1 know no EXPLICIT tags: they write
    `[APPLICATION n] SEQUENCE` as `6n len 80 01 02 ...` (no inner `30 len`), a tagged date as
    `8n len 20260101` and a tagged ILL-String as `8n len text`. Read that way, the content is
    the inner type's content: it is decoded as if it carried the inner type's own tag (for a
    CHOICE, the first alternative whose form fits: GeneralString for an ILL-String). The
    standard form is tried first and is what rshub writes."""

    def decode(self, data: Any, offset: int, values: Any = None) -> tuple[Any, int]:
        try:
            decoded, end = super().decode(data, offset, values)
        except ber.DecodeError:
            implicit = self._implicit(data, offset)
            if implicit is None:
                raise
            return implicit
        if decoded is ber.TAG_MISMATCH:
            return self._implicit(data, offset) or (decoded, end)
        return decoded, end

    def _implicit(self, data: Any, offset: int) -> tuple[Any, int] | None:
        start = offset + self.tag_len
        tag = bytes(data[offset:start])
        primitive = bytes([self.tag[0] & ~0x20]) + bytes(self.tag[1:])
        if tag not in (bytes(self.tag), primitive):
            return None
        length, content_at = ber.decode_length(data, start, enforce_definite=False)
        if length is None:  # indefinite: the content ends before the end-of-contents octets
            end = ber.skip_tag_length_contents(data, offset)
            content = bytes(data[content_at : end - 2])
        else:
            end = content_at + length
            content = bytes(data[content_at:end])
        for inner_tag in _own_tags(self.inner, constructed=bool(tag[0] & 0x20)):
            rebuilt = bytearray(inner_tag + ber.encode_length_definite(len(content)) + content)
            try:
                value, used = self.inner.decode(rebuilt, 0)
            except ber.DecodeError:
                continue
            if value is not ber.TAG_MISMATCH and used == len(rebuilt):
                return value, end
        return None


def _tolerate(kind: Any, seen: set[int]) -> None:
    """Make the compiled types lenient where real encoders deviate; encoding stays strict.

    - an ENUMERATED value outside its list decodes as None instead of failing: real clients
      send such values (yaz-illclient sends transaction-type 0);
    - an EXPLICIT tag also reads its IMPLICIT form (TolerantExplicitTag)."""
    if id(kind) in seen:
        return
    seen.add(id(kind))
    if isinstance(kind, ber.Enumerated):
        kind.has_extension_marker = True
    if type(kind) is ber.ExplicitTag:
        kind.__class__ = TolerantExplicitTag
    for attribute in ("inner", "element_type"):
        if hasattr(kind, attribute):
            _tolerate(getattr(kind, attribute), seen)
    for attribute in ("root_members", "members", "additions"):
        for member in getattr(kind, attribute, None) or []:
            _tolerate(member, seen)


def _compile(tags: str = "EXPLICIT") -> asn1tools.compiler.Specification:
    text = ill_module()
    if tags == "IMPLICIT":
        # X.680: a tagged ANY (like a tagged CHOICE) stays explicit; asn1tools would drop it.
        text = re.sub(r"(\[\d+\])\s+ANY\b", r"\1 EXPLICIT ANY", text)
        text = text.replace("DEFINITIONS EXPLICIT TAGS", "DEFINITIONS IMPLICIT TAGS", 1)
    return asn1tools.compile_string("\n".join([text, oclc_module(), delivery_info_module()]), "ber")


@cache
def compiled() -> asn1tools.compiler.Specification:
    spec = _compile()
    seen: set[int] = set()
    for compiled_type in spec.types.values():
        _tolerate(compiled_type.type, seen)
    return spec


@cache
def compiled_implicit() -> asn1tools.compiler.Specification:
    """The module as Convert::ASN1-based encoders write it (every tag IMPLICIT where X.680
    allows): what tests feed the tolerant decoder with. Not used to read or write traffic."""
    return _compile("IMPLICIT")
