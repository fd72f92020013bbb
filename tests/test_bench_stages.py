"""bench.stages: how py-spy samples of the hub are attributed to stages."""

import pytest

from bench import stages

LOOP = "BaseEventLoop._run_once (asyncio/base_events.py);Handle._run (asyncio/events.py)"
RAW = f"""\
{LOOP};RequestHandler._handle_request (aiohttp/web_protocol.py);Gateway._take (hub/runtime/gateway.py);Topic.send (faust/topics.py);Producer.send (faust/transport/drivers/aiokafka.py) 6
{LOOP};TransactionAgent.step (hub/runtime/transaction_agent.py);TransactionAgent.apply (hub/runtime/transaction_agent.py);Engine.apply (hub/domain/engine.py) 3
{LOOP};TransactionAgent.step (hub/runtime/transaction_agent.py);TransactionAgent.commit (hub/runtime/transaction_agent.py);Producing.write (hub/kafka/faust_app.py);Producer.send (faust/transport/drivers/aiokafka.py) 2
{LOOP};Sender._sender_routine (aiokafka/producer/sender.py) 4
Thread._bootstrap (threading.py);WorkerThread.run (mode/threads.py);Fetcher._proc_fetch_request (aiokafka/consumer/fetcher.py) 5
{LOOP};BaseEventLoop.time (asyncio/base_events.py) 1
not a stack line
"""


def test_a_sample_counts_for_the_stage_that_asked_for_the_work() -> None:
    samples = stages.parse(RAW.splitlines())
    assert samples["gateway: HTTP in, decode, audit and inbound records"] == 6
    assert samples["transaction agent: the engine applying a step"] == 3
    assert samples["transaction agent: table row, sending its records"] == 2
    assert samples["producing (faust's buffer, aiokafka's sender)"] == 4
    assert samples["fetching (faust's consumer thread)"] == 5
    assert samples[stages.OTHER] == 1
    assert sum(samples.values()) == 21


def test_shares_are_scaled_to_the_measured_cpu_per_request() -> None:
    breakdown = stages.breakdown(stages.parse(RAW.splitlines()), 21.0)
    assert sum(row["share"] for row in breakdown.values()) == pytest.approx(1.0)
    assert breakdown["fetching (faust's consumer thread)"]["cpu_ms_per_request"] == pytest.approx(
        5.0
    )
    # every stage is listed, sampled or not, so runs compare row by row
    assert breakdown["outbound agent: render, POST, delivery result"]["share"] == 0.0
    assert len(breakdown) == len(stages.STAGES) + 1


def test_without_samples_the_breakdown_is_empty_not_an_error() -> None:
    breakdown = stages.breakdown(stages.parse([]), None)
    assert all(row == {"share": 0.0} for row in breakdown.values())
