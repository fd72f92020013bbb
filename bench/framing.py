"""Benchmark: APDU framing (the BER splitter) fed in 1 KB pieces against fed in one piece.

    python -m bench.framing [--kbytes 200] [--piece 1024]

A partner's TCP stream arrives in reads of any size; framing must cost the same per byte
however it is cut. Two streams: one APDU with indefinite lengths (an outer constructed
element holding many small ones, the shape that made a re-scanning splitter quadratic) and one
with a definite length. Prints the time of each feeding and their ratio (pieces / one shot),
which should be about 1 for the indefinite stream; before the splitter resumed where it
stopped it grew with the size (26 at 50 KB). The definite stream costs a header and a byte
count either way, so its times are microseconds and its ratio is the fixed cost of each call.
"""

from __future__ import annotations

import argparse
import json
import time

from connectors.iso10161 import codec

ILL_REQUEST = 0x61  # [APPLICATION 1] constructed


def indefinite_apdu(size: int) -> bytes:
    inner = b"\x30\x80" + b"\x04\x06abcdef" * 4 + b"\x00\x00"  # a small nested SEQUENCE
    body = inner * (size // len(inner))
    return bytes([ILL_REQUEST, 0x80]) + body + b"\x00\x00"


def definite_apdu(size: int) -> bytes:
    body = b"\x04\x06abcdef" * (size // 8)
    return bytes([ILL_REQUEST, 0x84]) + len(body).to_bytes(4, "big") + body


def feed(data: bytes, piece: int) -> float:
    splitter = codec.Splitter(max_apdu=len(data) + 16)
    started = time.perf_counter()
    found = []
    for at in range(0, len(data), piece):
        found += splitter.feed(data[at : at + piece])
    elapsed = time.perf_counter() - started
    assert found == [data] and splitter.pending == 0
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kbytes", type=int, default=200)
    parser.add_argument("--piece", type=int, default=1024)
    args = parser.parse_args()
    results = {}
    for name, make in (("indefinite", indefinite_apdu), ("definite", definite_apdu)):
        data = make(args.kbytes * 1024)
        whole = min(feed(data, len(data)) for _ in range(3))
        pieces = min(feed(data, args.piece) for _ in range(3))
        results[name] = {
            "bytes": len(data),
            "one_shot_s": round(whole, 4),
            f"pieces_of_{args.piece}_s": round(pieces, 4),
            "ratio": round(pieces / whole, 2),
        }
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
