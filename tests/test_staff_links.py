"""`rshub deliveries` lists the requests staff must submit (ILLiad makes a person log in):
the delivery is accepted as a link for staff, so the transaction row no longer holds it; the
list reads it from ill.delivery and keeps it while the lender holds the request unanswered."""

from __future__ import annotations

from typing import Any

from connectors.core.contract import FOR_STAFF
from connectors.openurl.sender import STAFF_LINK
from hub.ops.deliveries import describe, for_staff

LINK = "https://ill.west.edu/illiad/illiad.dll/OpenURL?Action=10&Form=22&genre=article"


def result(txn: str = "t1", attempt: int = 1, detail: str = STAFF_LINK + LINK) -> dict[str, Any]:
    return {
        "transaction_id": txn,
        "recipient": "ILLIAD",
        "event": "Request",
        "attempt": attempt,
        "outcome": "sent",
        "detail": detail,
        "at": "2026-05-04T09:00:00+00:00",
    }


def row(state: str = "Requested", outcome: str | None = None) -> dict[str, Any]:
    return {"state": state, "attempts": [{"number": 1, "lender": "ILLIAD", "outcome": outcome}]}


def test_the_openurl_sender_marks_its_staff_links_the_way_ops_reads_them() -> None:
    assert STAFF_LINK.startswith(FOR_STAFF)


def test_a_link_is_listed_while_the_lender_holds_the_request() -> None:
    [step] = for_staff({"t1": row()}, [result()])
    assert (step["status"], step["link"], step["recipient"]) == ("staff", LINK, "ILLIAD")
    lines = describe({"ILLIAD": [{k: v for k, v in step.items() if k != "recipient"}]})
    assert lines[0] == "ILLIAD: 0 retrying, 0 parked, 1 for staff to submit"
    assert LINK in lines[1] and "t1" in lines[1]


def test_a_link_is_not_listed_once_the_request_moved_on() -> None:
    assert for_staff({"t1": row(state="Loaned")}, [result()]) == []  # answered
    assert for_staff({"t1": row(outcome="Expired: timed out")}, [result()]) == []  # next lender
    assert for_staff({"t1": row()}, [result(attempt=2)]) == []  # another attempt's link
    assert for_staff({}, [result()]) == []  # no such transaction (any more)
