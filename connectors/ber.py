"""BER framing shared by the TCP protocols (ISO 10161, Z39.50): a sans-IO splitter.

Over TCP there is no length prefix: a PDU ends where its BER tag and length say. The
splitter reads definite lengths and indefinite ones (ending in 00 00, at any nesting), keeps
PDUs split across reads until they are whole and hands out several packed into one read.
It refuses, before buffering anything, a PDU declared larger than its limit, nesting deeper
than its depth limit, and a first byte the protocol does not start a PDU with.
"""

from __future__ import annotations

from collections.abc import Callable

DEFAULT_MAX_APDU = 1_048_576
DEFAULT_MAX_DEPTH = 64


class FramingError(ValueError):
    """The byte stream is not a sequence of acceptable BER PDUs; the connection is unusable."""


class _NeedMore(Exception):
    """Not enough bytes yet."""


class Splitter:
    """Feed it bytes as they arrive; it returns the complete APDUs found so far."""

    def __init__(
        self,
        accepts: Callable[[int], bool],
        max_apdu: int = DEFAULT_MAX_APDU,
        max_depth: int = DEFAULT_MAX_DEPTH,
    ) -> None:
        self.accepts, self.max_apdu, self.max_depth = accepts, max_apdu, max_depth
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
        if depth == 0 and not self.accepts(first):
            raise FramingError(f"byte {first:#04x} does not start an APDU")
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
