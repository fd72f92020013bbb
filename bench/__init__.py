"""Benchmarks (not timed tests). Entry points:

    python -m bench.hub            pipe, minimal forwarder and hub in one run; ratios
    python -m bench.longrun        a hub after many messages vs the fresh hub
    python -m bench.slow_partner   deliveries to healthy partners with and without a slow one
    python -m bench.e2e            short form of bench.hub (one in-flight level)
    python -m bench.pipe           the raw aiokafka pipe alone
    python -m bench.codecs         codec decode+encode per second beside the pipe
    python -m bench.rota           rota selection for 5/50/500 lenders

Each prints a table and writes bench/results/<name>.json (git-ignored: figures belong to the
machine and the moment; `--quick` gives a check run with small counts).
"""
