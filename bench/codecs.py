"""Benchmark: codec throughput (decode + encode per second) for NCIP, ISO 18626 and ISO 10161,
beside the raw broker pipe (aiokafka through the embedded broker) in the same run.

    python -m bench.codecs [--messages 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime

from bench.measure import fetch_wait_ms
from bench.pipe import pipelined_throughput
from connectors.core.model import Bibliographic, Event, Message, RequestFormat
from connectors.iso10161 import codec as ill_codec
from connectors.iso10161 import mapping as ill_mapping
from connectors.iso18626 import codec as iso_codec
from connectors.iso18626 import writer as iso_writer
from connectors.ncip import codec as ncip_codec
from connectors.ncip import writer as ncip_writer
from hub.cli.process import ROOT
from hub.kafka import topics
from hub.kafka.embedded import EmbeddedBroker, wait_for_metadata
from hub.runtime import logs

REQUEST = Message(
    event=Event.REQUEST,
    request_id="t0123456789abcdef.1",
    patron_id="p1",
    request_format=RequestFormat.PHYSICAL,
    timestamp=datetime(2026, 1, 1, tzinfo=UTC),
    bibliographic=Bibliographic(
        title="A title", author="An author", isbn="9780151446476", bibliographic_level="Book"
    ),
)


def round_trips() -> dict[str, tuple[bytes, Callable[[bytes], bytes]]]:
    """protocol -> (a request in that protocol, decode-then-encode of such bytes)."""
    ncip = ncip_writer.encode(REQUEST, from_agency="A", to_agency="B")
    iso = iso_writer.encode(REQUEST, from_agency="A", to_agency="B")
    ill = ill_codec.encode(*ill_mapping.from_canonical(REQUEST, "A", "B"))
    return {
        "ncip": (
            ncip,
            lambda b: ncip_writer.encode(ncip_codec.decode(b), from_agency="A", to_agency="B"),
        ),
        "iso18626": (
            iso,
            lambda b: iso_writer.encode(
                iso_codec.to_canonical(iso_codec.parse(b)), from_agency="A", to_agency="B"
            ),
        ),
        "iso10161": (
            ill,
            lambda b: ill_codec.encode(
                *ill_mapping.from_canonical(
                    ill_mapping.to_canonical(*ill_codec.decode(b)), "A", "B"
                )
            ),
        ),
    }


def measure(work: Callable[[bytes], bytes], body: bytes, count: int) -> float:
    start = time.perf_counter()
    for _ in range(count):
        work(body)
    return count / (time.perf_counter() - start)


async def main(count: int) -> dict[str, object]:
    results: dict[str, object] = {}
    logs.configure("WARNING", "console")
    with EmbeddedBroker() as broker:
        await wait_for_metadata(broker.bootstrap_servers)
        await topics.ensure(broker.bootstrap_servers, topics.load(ROOT / "topics.yaml"))
        for protocol, (body, work) in round_trips().items():
            print(f"  {protocol}: decode+encode x{count}", file=sys.stderr, flush=True)
            per_second = measure(work, body, count)
            pipe = await pipelined_throughput(
                broker.bootstrap_servers, len(body), min(count, 2000), fetch_wait_ms(True)
            )
            results[protocol] = {
                "message_bytes": len(body),
                "decode_encode_per_second": per_second,
                "raw_pipe_per_second": pipe["per_second"],
                "ratio_codec_to_pipe": per_second / pipe["per_second"],
            }
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=2000)
    args = parser.parse_args()
    result = asyncio.run(main(args.messages))
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    (out / "codecs.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
