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
    """Feed it bytes as they arrive; it returns the complete APDUs found so far.

    The work is linear in the bytes received: the splitter remembers where it is inside the
    pending APDU (the next element header to read, the end of a definite-length element it
    is waiting for, how many indefinite-length elements are open) and resumes there, instead
    of parsing the pending APDU again from its first byte on every read. Only an element
    header cut by a read boundary (a dozen bytes at most) is read twice.
    """

    def __init__(
        self,
        accepts: Callable[[int], bool],
        max_apdu: int = DEFAULT_MAX_APDU,
        max_depth: int = DEFAULT_MAX_DEPTH,
    ) -> None:
        self.accepts, self.max_apdu, self.max_depth = accepts, max_apdu, max_depth
        self.buffer = bytearray()
        self._at = 0  # next unread element header in `buffer`
        self._skip_to: int | None = None  # end of the definite-length element being waited for
        self._open = 0  # indefinite-length elements open around `_at`

    def feed(self, data: bytes) -> list[bytes]:
        self.buffer.extend(data)
        out: list[bytes] = []
        start = 0  # first byte of the pending APDU in `buffer`
        try:
            while True:
                end = self._advance(start)
                if end is None:
                    break
                out.append(bytes(self.buffer[start:end]))
                start = end
        finally:
            if start:  # drop the APDUs handed out, once per feed
                del self.buffer[:start]
                self._at -= start
                if self._skip_to is not None:
                    self._skip_to -= start
        if len(self.buffer) > self.max_apdu:
            raise FramingError(f"APDU larger than {self.max_apdu} bytes")
        return out

    @property
    def pending(self) -> int:
        """Bytes held for an APDU not yet complete (0 at a clean boundary)."""
        return len(self.buffer)

    def _advance(self, start: int) -> int | None:
        """Read on from where the last call stopped; the end of the APDU that begins at
        `start` once it is whole, None when more bytes are needed."""
        buffer = self.buffer
        while True:
            if self._skip_to is not None:
                if self._skip_to > len(buffer):
                    return None
                self._at, self._skip_to = self._skip_to, None
                if self._open == 0:
                    return self._at
            at = self._at
            if at >= len(buffer):
                return None
            if self._open and buffer[at] == 0:  # 00 00 (end-of-contents) closes the innermost
                if at + 1 >= len(buffer):
                    return None
                if buffer[at + 1] == 0:
                    self._at, self._open = at + 2, self._open - 1
                    if self._open == 0:
                        return self._at
                    continue
            try:
                header_end, length = self._header(at, start)
            except _NeedMore:
                return None
            if length is None:  # indefinite: its elements follow, then 00 00
                self._open += 1
                self._at = header_end
                continue
            end = header_end + length
            if end - start > self.max_apdu:
                raise FramingError(f"declared length {length} exceeds the limit of {self.max_apdu}")
            self._skip_to = end

    def _byte(self, at: int) -> int:
        if at >= len(self.buffer):
            raise _NeedMore
        return self.buffer[at]

    def _header(self, at: int, start: int) -> tuple[int, int | None]:
        """(offset past the tag and length of the element at `at`, its length or None for
        indefinite); checks depth, the first byte of an APDU and the length's size."""
        depth = self._open
        if depth > self.max_depth:
            raise FramingError(f"BER nesting deeper than {self.max_depth}")
        first = self._byte(at)
        if at == start and not self.accepts(first):
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
            return at, None
        if length_byte & 0x80:
            count = length_byte & 0x7F
            if count > 4:
                raise FramingError(f"length of {count} bytes is not accepted")
            length = 0
            for i in range(count):
                length = (length << 8) | self._byte(at + i)
            return at + count, length
        return at, length_byte
