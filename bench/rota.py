"""Benchmark: rota selection (holdings from the cache, load counts, ranking, the decision and
its routing record) for rotas of 5, 50 and 500 lenders.

    python -m bench.rota [--decisions 300] [--sizes 5 50 500]

One decision = a request's START (profile, the locate command), the cached holdings of every
member, and applying them (ranking, automatic rejections, asking the first lender). Figures
are decisions per second, with each size's cost as a ratio to the 5-lender rota of the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time

from connectors.core.directory import Directory
from connectors.core.holdings import Catalogue, Holding, HoldingsResult
from connectors.core.model import Bibliographic, Event, Message, transaction_id
from connectors.core.records import Located
from hub.domain.engine import apply
from hub.domain.load import LoadBook
from hub.runtime import logs
from hub.runtime.locate import Locator


def consortium(size: int) -> Directory:
    lenders = [f"L{i:03d}" for i in range(size)]
    partners: list[dict[str, object]] = [
        {"symbol": "B", "name": "B", "protocol": "ncip", "endpoint": "http://b"}
    ]
    partners += [
        {
            "symbol": s,
            "name": s,
            "protocol": "ncip",
            "endpoint": f"http://{s}",
            "catalogue": {"kind": "z3950", "address": f"{s}:210"},
            "thresholds": {"overload": 5 + i % 7, "max_open_incoming": 20 + i % 5},
        }
        for i, s in enumerate(lenders)
    ]
    rotas = [{"name": "all", "members": lenders, "ordered": False}]
    return Directory.model_validate({"consortium": "bench", "partners": partners, "rotas": rotas})


async def run(size: int, decisions: int) -> float:
    directory = consortium(size)

    async def catalogue(lender: str, _c: Catalogue, _t: list[tuple[str, str]]) -> HoldingsResult:
        held = Holding.HELD if int(lender[1:]) % 3 else Holding.NOT_HELD
        return HoldingsResult(lender=lender, status=held, detail="bench")

    locator = Locator(directory, {"z3950": catalogue})
    book = LoadBook()
    for i, partner in enumerate(directory.partners[1:]):
        for n in range(i % 9):
            book.apply(f"{partner.symbol}|x{n}", {"borrower": "B" if n % 2 else "X"})
    bib = Bibliographic(title="T", isbn="9780262033848")
    first = _request(0, bib)
    warm = apply(None, first, first.timestamp, directory=directory, load=book).outputs
    command = next(json.loads(json.dumps(o.value)) for o in warm if o.topic == "ill.locate")
    await locator.locate(command["lenders"], [tuple(t) for t in command["terms"]])  # fill cache
    started = time.perf_counter()
    for n in range(decisions):
        request = _request(n, bib)
        started_txn = apply(
            None, request, request.timestamp, directory=directory, load=book
        ).transaction
        assert started_txn is not None and started_txn.locate_id is not None
        terms = [("isbn", "9780262033848")]
        results = await locator.locate(command["lenders"], terms)
        located = Located(
            locate_id=started_txn.locate_id, transaction_id=started_txn.id, results=results
        )
        decided = apply(started_txn, located, request.timestamp, directory=directory, load=book)
        assert decided.transaction is not None and decided.transaction.attempt is not None
    return decisions / (time.perf_counter() - started)


def _request(n: int, bib: Bibliographic) -> Message:
    return Message(
        event=Event.REQUEST,
        sender="B",
        request_id=f"R{n}",
        transaction_id=transaction_id("B", f"R{n}"),
        bibliographic=bib,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--decisions", type=int, default=300)
    parser.add_argument("--sizes", type=int, nargs="+", default=[5, 50, 500])
    args = parser.parse_args(argv)
    logs.configure("WARNING", "console")  # one log line per look-up would be measured too
    rates = {}
    for size in args.sizes:
        count = max(20, args.decisions * args.sizes[0] // size)
        print(f"rota of {size} lenders: {count} decisions ...", file=sys.stderr, flush=True)
        rates[size] = asyncio.run(run(size, count))
    base = rates[args.sizes[0]]
    report = {
        str(size): {
            "decisions_per_s": round(rate, 1),
            "cost_vs_smallest": round(base / rate, 2),
            "ms_per_decision": round(1000 / rate, 2),
        }
        for size, rate in rates.items()
    }
    print(json.dumps({"rota_selection": report}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
