"""ISO 10161 codec, sans-IO: APDU bytes <-> (APDU name, asn1tools value), and the splitter
that finds APDU boundaries in a TCP byte stream (`connectors.ber.Splitter`, restricted to
ILL APDU tags).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import asn1tools

from connectors import ber
from connectors.ber import FramingError
from connectors.core.model import shown
from connectors.iso10161.asn1 import APDUS, Deviation, compiled, element_of, reading

__all__ = [
    "Apdu",
    "Deviation",
    "FramingError",
    "Iso10161Error",
    "Splitter",
    "decode",
    "encode",
    "for_the_wire",
    "read",
]
_BY_ALTERNATIVE = {name.lower(): name for name in APDUS}


class Iso10161Error(ValueError):
    """An APDU that cannot be decoded or encoded. The text goes into a Status-Or-Error-Report
    and onto ill.deadletter, so it is kept short whatever the library quoted of the input."""

    def __init__(self, detail: str) -> None:
        super().__init__(shown(detail, 500))


def encode(name: str, value: dict[str, Any]) -> bytes:
    """Definite-length BER of one APDU."""
    if name not in APDUS:
        raise Iso10161Error(f"{name} is not an ILL APDU")
    try:
        return bytes(compiled().encode("ILL-APDU", (name.lower(), value)))
    except (asn1tools.Error, TypeError, ValueError, KeyError) as exc:
        raise Iso10161Error(f"cannot encode {name}: {exc}") from None


class Apdu(NamedTuple):
    name: str
    value: dict[str, Any]
    left_out: list[Deviation]  # optional elements that deviate from the ASN.1, left out


def read(data: bytes) -> Apdu:
    """The APDU, read liberally: an optional element that deviates from the ASN.1 (a wrong
    tag inside it, an element its SEQUENCE has not) is left out and listed, unless rshub
    needs it (`asn1.NEEDED`). Iso10161Error for what is not a whole, valid APDU; its text
    starts with the ASN.1 path of the element at fault (ILL-Request.item-id.title: ...)."""
    try:
        with reading(apdu_type(data) or "ILL-APDU") as seen:
            alternative, value = compiled().decode("ILL-APDU", data)
    except asn1tools.DecodeError as exc:
        # With the element named, asn1tools' offset is left out: inside an element read in
        # its IMPLICIT form it counts from a rebuilt copy, not from the APDU's first byte.
        element = element_of(exc)
        text = f"{element}: {getattr(exc, 'message', exc)}" if element else str(exc)
        raise Iso10161Error(f"not a valid ILL APDU: {text}") from None
    except (asn1tools.Error, TypeError, ValueError, IndexError, KeyError, RecursionError) as exc:
        raise Iso10161Error(f"not a valid ILL APDU: {exc}") from None
    return Apdu(_BY_ALTERNATIVE[alternative], value, seen.deviations)


def decode(data: bytes) -> tuple[str, dict[str, Any]]:
    """The APDU's name and value (`read`, without what was left out)."""
    name, value, _left_out = read(data)
    return name, value


def apdu_type(data: bytes) -> str | None:
    """The APDU name from the first tag byte ([APPLICATION n], constructed), if it is one."""
    if not data:
        return None
    first = data[0]
    number = first & 0x1F
    if first & 0xE0 != 0x60 or not 1 <= number <= len(APDUS):
        return None
    return APDUS[number - 1]


class Splitter(ber.Splitter):
    """A splitter for ILL APDUs: the first byte of each must be an [APPLICATION n] tag."""

    def __init__(
        self, max_apdu: int = ber.DEFAULT_MAX_APDU, max_depth: int = ber.DEFAULT_MAX_DEPTH
    ) -> None:
        super().__init__(lambda first: apdu_type(bytes([first])) is not None, max_apdu, max_depth)


def for_the_wire(data: bytes) -> bytes:
    """The APDU with its outer length in long form (81 nn, 82 nn nn, ...), which BER allows.

    YAZ's comstack takes a packet whose first three bytes are printable ASCII for HTTP and
    waits for headers; a short APDU such as Status-Or-Error-Report (73 33 30 ...) is exactly
    that. The long form makes the second byte 0x8n, so YAZ peers read it as BER."""
    length_byte = data[1]
    if length_byte & 0x80:
        return data  # already long form, or indefinite
    return bytes([data[0], 0x81, length_byte]) + data[2:]
