"""What the relay agent's replay table may answer a retry with (hub/runtime/relay.py), and how
the relay codec judges a member's answer: only a success within the window is replayed."""

from __future__ import annotations

from datetime import timedelta

from connectors.ncip import codec as ncip
from connectors.ncip_relay import codec as c
from connectors.ncip_relay.simulator import Broker, MemberResponder
from hub.runtime import metrics
from hub.runtime import relay as hr

WINDOW = timedelta(minutes=15)


def _result(**changes: object) -> dict[str, object]:
    result = hr.RelayResult(
        call_id="r1",
        protocol="ncip-relay",
        caller="RELAIS",
        target="NORTH-CIRC",
        outcome=hr.RelayOutcome.ANSWERED,
        ok=True,
    )
    return result.model_copy(update=changes).model_dump(mode="json")


def test_only_a_success_within_the_window_is_replayed() -> None:
    assert hr.replayable(_result(), WINDOW) is not None
    assert hr.replayable(_result(ok=False), WINDOW) is None
    assert hr.replayable(_result(outcome=hr.RelayOutcome.FAILED), WINDOW) is None
    assert hr.replayable(None, WINDOW) is None
    late = hr.RelayResult.model_validate(_result()).at + WINDOW + timedelta(seconds=1)
    assert hr.replayable(_result(), WINDOW, late) is None


def test_a_row_kept_by_an_older_hub_is_not_replayed() -> None:
    """The table survives a restart: a Problem an older hub kept (no `ok`) is not replayed."""
    row = _result()
    del row["ok"]
    assert hr.replayable(row, WINDOW) is None


def _answer(problem: str | None, version: str = "2.0") -> bytes:
    member = MemberResponder("NORTH-CIRC", "01NORTH_INST", version=version)
    if problem:
        member.problems["CheckOutItem"] = problem
    call = Broker("RELAIS", "Relais", "t").call("CheckOutItem", "01NORTH_INST")
    return member.answer(ncip.parse(call))


def test_judge_an_answer_with_a_problem_is_relayed_but_not_a_success() -> None:
    for version in ("2.0", "1.0"):
        attempt = c.CODEC.judge(_answer("Temporary Processing Failure", version), 200)
        assert (attempt.ok, attempt.retryable) == (False, True)
        assert attempt.answer is not None
        refused = c.CODEC.judge(_answer("Unknown Item", version), 200)
        assert (refused.ok, refused.retryable) == (False, False)
        assert refused.answer is not None
        good = c.CODEC.judge(_answer(None, version), 200)
        assert good.ok and good.answer is not None
    assert c.CODEC.judge(b"<html/>", 502).answer is None


def test_relay_metrics_count_outcomes_and_time_the_member() -> None:
    def calls(outcome: str) -> float:
        labels = {"partner": "INNREACH", "member": "SOUTH-CIRC", "outcome": outcome}
        return metrics.REGISTRY.get_sample_value("rshub_relay_calls_total", labels) or 0.0

    def timed() -> float:
        labels = {"partner": "INNREACH", "member": "SOUTH-CIRC"}
        return metrics.REGISTRY.get_sample_value("rshub_relay_target_seconds_count", labels) or 0

    before = {o: calls(o) for o in ("ok", "problem", "failed", "replayed")}
    count = timed()
    for outcome, ok in (("answered", True), ("answered", False), ("failed", False)):
        metrics.relayed("INNREACH", "SOUTH-CIRC", outcome, ok, 0.2)
    metrics.relayed("INNREACH", "SOUTH-CIRC", "replayed", True, 0.0)
    assert {o: calls(o) - n for o, n in before.items()} == {
        "ok": 1,
        "problem": 1,
        "failed": 1,
        "replayed": 1,
    }
    assert timed() - count == 3  # a replayed call did not reach the member
    assert b"rshub_relay_calls_total" in metrics.exposition()
