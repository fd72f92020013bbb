"""ISO 10161 codec, sans-IO: APDU bytes <-> (APDU name, asn1tools value), and a splitter that
finds APDU boundaries in a TCP byte stream.

Over TCP there is no length prefix: an APDU ends where its BER tag and length say. The
splitter reads definite lengths and indefinite ones (ending in 00 00, at any nesting), keeps
APDUs split across reads until they are whole and hands out several packed into one read.
It refuses, before buffering anything, an APDU declared larger than its limit and nesting
deeper than its depth limit.
"""

from __future__ import annotations

from typing import Any

import asn1tools

from connectors.iso10161.asn1 import APDUS, compiled

DEFAULT_MAX_APDU = 1_048_576
DEFAULT_MAX_DEPTH = 64
_BY_ALTERNATIVE = {name.lower(): name for name in APDUS}


class Iso10161Error(ValueError):
    """An APDU that cannot be decoded or encoded."""


class FramingError(ValueError):
    """The byte stream is not a sequence of acceptable BER APDUs; the connection is unusable."""


def encode(name: str, value: dict[str, Any]) -> bytes:
    """Definite-length BER of one APDU."""
    if name not in APDUS:
        raise Iso10161Error(f"{name} is not an ILL APDU")
    try:
        return bytes(compiled().encode("ILL-APDU", (name.lower(), value)))
    except (asn1tools.Error, TypeError, ValueError, KeyError) as exc:
        raise Iso10161Error(f"cannot encode {name}: {exc}") from None


def decode(data: bytes) -> tuple[str, dict[str, Any]]:
    """The APDU's name and value; Iso10161Error for what is not a whole, valid APDU."""
    try:
        alternative, value = compiled().decode("ILL-APDU", data)
    except (asn1tools.Error, TypeError, ValueError, IndexError, KeyError, RecursionError) as exc:
        raise Iso10161Error(f"not a valid ILL APDU: {exc}") from None
    return _BY_ALTERNATIVE[alternative], value


def apdu_type(data: bytes) -> str | None:
    """The APDU name from the first tag byte ([APPLICATION n], constructed), if it is one."""
    if not data:
        return None
    first = data[0]
    number = first & 0x1F
    if first & 0xE0 != 0x60 or not 1 <= number <= len(APDUS):
        return None
    return APDUS[number - 1]


class _NeedMore(Exception):
    """Not enough bytes yet."""


class Splitter:
    """Feed it bytes as they arrive; it returns the complete APDUs found so far."""

    def __init__(
        self, max_apdu: int = DEFAULT_MAX_APDU, max_depth: int = DEFAULT_MAX_DEPTH
    ) -> None:
        self.max_apdu, self.max_depth = max_apdu, max_depth
        self.buffer = bytearray()

    def feed(self, data: bytes) -> list[bytes]:
        self.buffer.extend(data)
        out = []
        while self.buffer:
            try:
                end = self._element_end(0, 0)
            except _NeedMore:
                if len(self.buffer) > self.max_apdu:
                    raise FramingError(f"APDU larger than {self.max_apdu} bytes") from None
                break
            out.append(bytes(self.buffer[:end]))
            del self.buffer[:end]
        return out

    @property
    def pending(self) -> int:
        """Bytes held for an APDU not yet complete (0 at a clean boundary)."""
        return len(self.buffer)

    def _byte(self, at: int) -> int:
        if at >= len(self.buffer):
            raise _NeedMore
        return self.buffer[at]

    def _element_end(self, at: int, depth: int) -> int:
        """Offset just past the BER element starting at `at`."""
        if depth > self.max_depth:
            raise FramingError(f"BER nesting deeper than {self.max_depth}")
        first = self._byte(at)
        if depth == 0 and apdu_type(bytes([first])) is None:
            raise FramingError(f"byte {first:#04x} does not start an ILL APDU")
        at += 1
        if first & 0x1F == 0x1F:  # high tag number: base-128 continuation bytes
            for count in range(6):
                if not self._byte(at) & 0x80:
                    break
                at += 1
                if count == 5:
                    raise FramingError("tag number too long")
            at += 1
        length_byte = self._byte(at)
        at += 1
        if length_byte == 0x80:
            if not first & 0x20:
                raise FramingError("indefinite length on a primitive element")
            while not (self._byte(at) == 0 and self._byte(at + 1) == 0):
                at = self._element_end(at, depth + 1)
            return at + 2
        if length_byte & 0x80:
            count = length_byte & 0x7F
            if count > 4:
                raise FramingError(f"length of {count} bytes is not accepted")
            length = 0
            for i in range(count):
                length = (length << 8) | self._byte(at + i)
            at += count
        else:
            length = length_byte
        end = at + length
        if end > self.max_apdu:
            raise FramingError(f"declared length {length} exceeds the limit of {self.max_apdu}")
        if end > len(self.buffer):
            raise _NeedMore
        return end


def for_the_wire(data: bytes) -> bytes:
    """The APDU with its outer length in long form (81 nn, 82 nn nn, ...), which BER allows.

    YAZ's comstack takes a packet whose first three bytes are printable ASCII for HTTP and
    waits for headers; a short APDU such as Status-Or-Error-Report (73 33 30 ...) is exactly
    that. The long form makes the second byte 0x8n, so YAZ peers read it as BER."""
    length_byte = data[1]
    if length_byte & 0x80:
        return data  # already long form, or indefinite
    return bytes([data[0], 0x81, length_byte]) + data[2:]
