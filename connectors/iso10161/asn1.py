"""The ISO 10161 ASN.1, compiled with asn1tools (BER).

The module texts in `asn/` stay as published. `FIXES` lists every change made in memory before
compiling, each with the reason asn1tools needs it (see shared/standards/iso10161/NOTES.md).
None changes a tag or an encoding, so the wire format is the standard's.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import asn1tools
import asn1tools.codecs.ber as ber

from connectors.ber import FramingError, Splitter

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


# Elements the ASN.1 makes OPTIONAL that rshub cannot do without (paths under the APDU; a
# path names the element and everything inside it). A deviation inside one refuses the APDU,
# naming the element; a deviation in any other optional element leaves that element out.
NEEDED: dict[str, str] = {
    "transaction-id": "it identifies the transaction",
    "requester-id": "it says who the requester is",
    "responder-id": "it says who the responder is",
    "item-id.title": "it names the item the lender is to supply",
    "item-id.title-of-article": "it names the article the lender is to copy",
}
# Deviations one APDU may have before it is refused whole: each costs a walk of the element
# it leaves out, so a hostile APDU of a million bad elements must not be walked a million times.
MAX_DEVIATIONS = 16
# The bytes of a left-out element kept for staff (as hex in extensions, within their bounds).
MAX_RAW = 2_048


@dataclass(frozen=True)
class Deviation:
    """An element left out of a decoded APDU because it deviates from the ASN.1."""

    element: str  # its ASN.1 path, e.g. ILL-Request.cost-info-type.maximum-cost
    reason: str  # what deviates, naming the element at fault when it lies deeper
    raw: bytes  # the element as received (its first MAX_RAW bytes)


@dataclass
class Reading:
    """What one APDU's decoding knows: where it is (the ASN.1 path of the element being
    decoded), and what it left out."""

    path: list[str]
    deviations: list[Deviation] = field(default_factory=list)


# The decoding under way in this context: decoding has no parameter that reaches every type,
# and a SEQUENCE needs its path to name an element. None outside `reading()`: strict.
_READING: ContextVar[Reading | None] = ContextVar("iso10161_reading", default=None)


@contextmanager
def reading(apdu: str) -> Iterator[Reading]:
    """Decode the APDU `apdu` liberally within: deviating optional elements are left out
    and recorded; a refusal names the element at fault (DecodeError.element)."""
    current = Reading([apdu])
    token = _READING.set(current)
    try:
        yield current
    finally:
        _READING.reset(token)


def element_of(error: Exception) -> str | None:
    """The ASN.1 path of the element a DecodeError was raised for, if a SEQUENCE named it."""
    return getattr(error, "element", None)


def _depth(error: Exception) -> int:
    element = element_of(error)
    return element.count(".") + 1 if element else 0


def _name(error: Exception, path: list[str], member: str | None = None) -> Exception:
    """Name the element at fault, once: the innermost SEQUENCE that sees the error knows its
    path; asn1tools' own location adds the CHOICE alternatives below it."""
    if element_of(error) is None:
        names = [*path, member] if member else list(path)
        for located in reversed(getattr(error, "location", [])):
            if located.name and located.name != names[-1]:
                names.append(located.name)
        error.element = ".".join(names)  # type: ignore[attr-defined]
    return error


def _needed(path: list[str]) -> str | None:
    """Why the element at `path` (APDU name first) cannot be left out, if it cannot."""
    under = path[1:]
    for needed, why in NEEDED.items():
        parts = needed.split(".")
        if under[: len(parts)] == parts:
            return f"{'.'.join(path[: len(parts) + 1])} cannot be left out: {why}"
    return None


def _element_end(data: Any, offset: int, limit: int | None) -> int | None:
    """Where the BER element at `offset` ends (definite or indefinite length), if whole."""
    try:
        length, content_at = ber.decode_length(data, ber.skip_tag(data, offset), False)
    except ber.DecodeError:
        return None
    if length is not None:
        end = content_at + length
    else:  # indefinite: the splitter finds the matching end-of-contents
        splitter = Splitter(lambda _first: True, max_apdu=len(data) + 1)
        try:
            found = splitter.feed(bytes(data[offset : limit or len(data)]))
        except FramingError:
            return None
        if not found:
            return None
        end = offset + len(found[0])
    return end if end <= (limit or len(data)) else None


class Refused(ber.DecodeError):
    """A failure no enclosing optional element is left out for: the APDU is refused."""


def _record(reading: Reading, deviation: Deviation) -> None:
    if len(reading.deviations) >= MAX_DEVIATIONS:
        raise _name(
            Refused(f"more than {MAX_DEVIATIONS} elements deviate from ISO 10161"), reading.path
        )
    reading.deviations.append(deviation)


class TolerantMembers:
    """The members of a SEQUENCE or SET, decoded as asn1tools does (in any order), and:

    - an element whose tag no member has is left out (asn1tools stops there and drops every
      element after it without a word);
    - an OPTIONAL (or DEFAULT) member that fails to decode is left out, unless it is NEEDED;
    - a failure that refuses the APDU names the element at fault by its ASN.1 path.
    What is left out is recorded in the `Reading`, with its bytes. Outside `reading()` (and
    for types with extension additions, whose unknown elements asn1tools reads as additions)
    asn1tools' own decoding runs."""

    root_members: list[Any]
    additions: Any

    def decode_members(
        self,
        members: list[Any],
        data: Any,
        values: dict[str, Any],
        offset: int,
        end_offset: int | None,
        ignore_missing: bool = False,
    ) -> tuple[int, bool]:
        current = _READING.get()
        if current is None or self.additions:
            return super().decode_members(  # type: ignore[misc]
                members, data, values, offset, end_offset, ignore_missing
            )
        path = current.path
        remaining, unknown = list(members), list[str]()
        while True:
            out_of_data, offset = ber.is_end_of_data(data, offset, end_offset)
            if out_of_data:
                break
            undecoded, progress = [], False
            for member in remaining:
                if out_of_data:
                    undecoded.append(member)
                    continue
                start, kept = offset, len(current.deviations)
                path.append(member.name)
                try:
                    value, offset = member.decode(data, offset, values=values)
                except ber.DecodeError as error:
                    del current.deviations[kept:]  # left out whole, or refused
                    value, offset = _left_out(current, member, error, data, start, end_offset)
                finally:
                    path.pop()
                if value is ber.TAG_MISMATCH:
                    undecoded.append(member)
                    continue
                progress = True
                if value is not _LEFT_OUT:
                    values[member.name] = value
                elif member.has_default():  # left out, it reads as if absent
                    values[member.name] = member.get_default()
                out_of_data, offset = ber.is_end_of_data(data, offset, end_offset)
            remaining = undecoded
            if out_of_data:
                break
            if not progress:
                offset = _unknown_element(current, data, offset, end_offset, unknown)
        for member in remaining:
            if member.optional:
                continue
            if member.has_default():
                values[member.name] = member.get_default()
            elif ignore_missing:
                break
            else:
                found = f" ({', '.join(unknown)} was left out)" if unknown else ""
                raise _name(ber.DecodeError(f"is missing{found}", offset=offset), path, member.name)
        why = _needed(path) if unknown else None
        if why is not None:  # inside what rshub needs, an element it cannot place refuses
            where = ".".join(path)
            raise _name(Refused(f"{', '.join(unknown)} is no element of {where} ({why})"), path)
        return offset, out_of_data


_LEFT_OUT = object()


def _left_out(
    current: Reading, member: Any, error: Exception, data: Any, start: int, limit: int | None
) -> tuple[object, int]:
    """Leave out an optional member that failed to decode, or raise naming the fault."""
    path = current.path
    _name(error, path)
    if not (member.optional or member.has_default()) or isinstance(
        error, (Refused, ber.OutOfByteDataError)
    ):
        raise error
    why = _needed(path)
    if why is not None:
        if not getattr(error, "needed", False):  # said once, by the element that is needed
            error.message = f"{error.message} ({why})"  # type: ignore[attr-defined]
            error.needed = True  # type: ignore[attr-defined]
        raise error
    end = _element_end(data, start, limit)
    if end is None:
        raise error
    at_fault = element_of(error) or ".".join(path)
    reason = getattr(error, "message", str(error))
    if at_fault != ".".join(path):
        reason = f"{at_fault}: {reason}"
    _record(current, Deviation(".".join(path), reason, bytes(data[start:end][:MAX_RAW])))
    return _LEFT_OUT, end


def _unknown_element(
    current: Reading, data: Any, offset: int, limit: int | None, unknown: list[str]
) -> int:
    """Leave out an element no member of the SEQUENCE has the tag of, and go past it."""
    tag = bytes(ber.read_tag(data, offset)).hex()
    end = _element_end(data, offset, limit)
    if end is None:
        raise _name(
            ber.DecodeError(f"an element tagged {tag} cannot be read", offset=offset),
            current.path,
        )
    unknown.append(f"an element tagged {tag}")
    if _needed(current.path) is None:  # else refused once the SEQUENCE is read (below)
        reason = f"no element of {'.'.join(current.path)} is tagged {tag}"
        raw = bytes(data[offset:end][:MAX_RAW])
        _record(current, Deviation(".".join(current.path), reason, raw))
    return end


class TolerantSequence(TolerantMembers, ber.Sequence):
    pass


class TolerantSet(TolerantMembers, ber.Set):
    pass


class TolerantExplicitTag(ber.ExplicitTag):
    """An EXPLICIT tag that also reads the IMPLICIT form some encoders write in its place.

    Encoders built on Perl's Convert::ASN1 know no EXPLICIT tags: they write
    `[APPLICATION n] SEQUENCE` as `6n len 80 01 02 ...` (no inner `30 len`), a tagged date as
    `8n len 20260101` and a tagged ILL-String as `8n len text`. Read that way, the content is
    the inner type's content: it is decoded as if it carried the inner type's own tag (for a
    CHOICE, the first alternative whose form fits: GeneralString for an ILL-String). The
    standard form is tried first and is what rshub writes.

    When neither form reads, the error raised is the one that got deepest into the content:
    an IMPLICIT APDU with a bad element deep inside is refused naming that element, not the
    inner tag its first byte is not."""

    def decode(self, data: Any, offset: int, values: Any = None) -> tuple[Any, int]:
        current = _READING.get()
        kept = len(current.deviations) if current else 0
        try:
            decoded, end = super().decode(data, offset, values)
        except ber.DecodeError as error:
            if isinstance(error, Refused):
                raise
            if current is not None:
                del current.deviations[kept:]  # what a failed reading left out is not left out
                if _depth(error) > len(current.path) and self._standard_form(data, offset):
                    raise  # the standard form, failing inside: that error names the element
            implicit, deeper = self._implicit(data, offset)
            if implicit is not None:
                return implicit
            if deeper is not None and _depth(deeper) > _depth(error):
                raise deeper from None
            raise
        if decoded is ber.TAG_MISMATCH:
            implicit, deeper = self._implicit(data, offset)
            if implicit is not None:
                return implicit
            if deeper is not None and current is not None and _depth(deeper) > len(current.path):
                raise deeper  # our tag, written IMPLICIT, with a bad element inside
        return decoded, end

    def _standard_form(self, data: Any, offset: int) -> bool:
        """Whether the content starts with one of the inner type's own tags."""
        try:
            _length, content_at = ber.decode_length(data, offset + self.tag_len, False)
            first = bytes(ber.read_tag(data, content_at))
        except ber.DecodeError:
            return False
        return first in _own_tags(self.inner, True) + _own_tags(self.inner, False)

    def _implicit(self, data: Any, offset: int) -> tuple[Any, Exception | None]:
        """The IMPLICIT reading (value, end), or None and the error of the attempt that got
        deepest into the content."""
        start = offset + self.tag_len
        tag = bytes(data[offset:start])
        primitive = bytes([self.tag[0] & ~0x20]) + bytes(self.tag[1:])
        if tag not in (bytes(self.tag), primitive):
            return None, None
        length, content_at = ber.decode_length(data, start, enforce_definite=False)
        if length is None:  # indefinite: the content ends before the end-of-contents octets
            end = ber.skip_tag_length_contents(data, offset)
            content = bytes(data[content_at : end - 2])
        else:
            end = content_at + length
            content = bytes(data[content_at:end])
        current = _READING.get()
        deepest: Exception | None = None
        for inner_tag in _own_tags(self.inner, constructed=bool(tag[0] & 0x20)):
            kept = len(current.deviations) if current else 0
            rebuilt = bytearray(inner_tag + ber.encode_length_definite(len(content)) + content)
            try:
                value, used = self.inner.decode(rebuilt, 0)
            except ber.DecodeError as error:
                if isinstance(error, Refused):
                    raise
                if deepest is None or _depth(error) > _depth(deepest):
                    deepest = error
                value, used = ber.TAG_MISMATCH, 0
            if value is not ber.TAG_MISMATCH and used == len(rebuilt):
                return (value, end), None
            if current is not None:
                del current.deviations[kept:]
        return None, deepest


def _tolerate(kind: Any, seen: set[int]) -> None:
    """Make the compiled types lenient where real encoders deviate; encoding stays strict.

    - an ENUMERATED value outside its list decodes as None instead of failing: real clients
      send such values (yaz-illclient sends transaction-type 0);
    - an EXPLICIT tag also reads its IMPLICIT form (TolerantExplicitTag);
    - a SEQUENCE or SET leaves out deviating optional elements and names the element at
      fault when it refuses (TolerantMembers, within `reading()`)."""
    if id(kind) in seen:
        return
    seen.add(id(kind))
    if isinstance(kind, ber.Enumerated):
        kind.has_extension_marker = True
    if type(kind) is ber.ExplicitTag:
        kind.__class__ = TolerantExplicitTag
    if type(kind) is ber.Sequence:
        kind.__class__ = TolerantSequence
    if type(kind) is ber.Set:
        kind.__class__ = TolerantSet
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
