"""Benchmark: the end-to-end path beside the raw broker pipe and the minimal forwarder, measured
in the same run (a short form of `bench.hub` with one in-flight level).

    python -m bench.e2e [--borrower ncip] [--lender ncip] [--messages 400] [--concurrency 16]

`--messages` are sent with `--concurrency` in flight, plus max(10, messages/20) one at a time;
everything else is `bench.hub` (see its docstring). Writes bench/results/e2e-<b>-<l>.json.
Protocols: ncip, iso18626 (HTTP) and iso10161 (TCP).
"""

from __future__ import annotations

import asyncio

from bench import hub, measure

if __name__ == "__main__":
    parser = hub.arguments(__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=400)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    hub.quick(args)
    if not args.quick:
        args.per_level, args.single = args.messages, max(10, args.messages // 20)
    args.inflight = [args.concurrency]
    result = asyncio.run(hub.main(args))
    print(hub.report(result))
    name = args.name or f"e2e-{args.borrower}-{args.lender}"
    print(f"\nwritten: {measure.write_result(name, result)}")
