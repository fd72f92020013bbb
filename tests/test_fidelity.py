"""The canonical model's request fields, and the note a protocol writes for those it lacks."""

from __future__ import annotations

from datetime import UTC, datetime

from connectors.core import fidelity
from connectors.core.model import Bibliographic, Event, Message, Money


def test_a_stored_row_without_the_new_fields_reads_and_keeps_its_message_id() -> None:
    stored = {"event": "Request", "request_id": "r1", "bibliographic": {"title": "T"}}
    message = Message.model_validate(stored)
    assert message.bibliographic is not None and message.bibliographic.pages_requested is None
    # The id main computed for this message before the fields were added.
    assert message.message_id == "m2d638f156403f344bd3aa389"
    richer = message.model_copy(update={"patron_name": "A"})
    assert richer.message_id != message.message_id


def test_fields_a_protocol_lacks_are_written_as_a_person_reads_them() -> None:
    message = Message(
        event=Event.REQUEST,
        note="Rush, please",
        bibliographic=Bibliographic(
            title="Journal of Things",
            volume="84",
            issue="3",
            pages_requested="301-329",
            doi="10.1000/xyz",
        ),
        patron_surname="Nováková",
        patron_given_name="Jana",
        need_before=datetime(2027, 1, 5, tzinfo=UTC),
        max_cost=Money(amount="40.00"),
    )
    note = fidelity.note_for(message, {"bibliographic.title", "note"})
    assert note == (
        "Rush, please; Vol. 84, no. 3, pp. 301-329; DOI 10.1000/xyz; Patron: Jana Nováková; "
        "Needed before: 2027-01-05; Maximum cost: 40.00 (currency not given)"
    )
    assert fidelity.note_for(message, {f.path for f in fidelity.REQUEST_FIELDS}) == "Rush, please"


def test_a_cut_note_keeps_the_partners_own_words() -> None:
    message = Message(event=Event.REQUEST, note="Keep", bibliographic=Bibliographic(doi="x" * 90))
    assert fidelity.note_for(message, set(), limit=20) == "Keep; DOI xxxxxxx..."
