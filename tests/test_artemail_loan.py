"""What each BLDSS reply code means for a BL loan, in every state a BL loan can be in.

Each code is read the way the hub reads it (a reply mail through the ARTEmail codec) and
applied to a loan whose borrower speaks ISO 18626 and whose lender is the BL, with the
channels' real report tables (`Registry.reports`). The table below is what docs/mail.md
says per code; a code added to `connectors/artemail/codes.py` without a row here (and in the
docs) fails.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from connectors.artemail.codec import ArtemailCodec
from connectors.artemail.codes import CODES
from connectors.core.contract import Limits
from connectors.core.model import Event, Message
from connectors.core.records import Tick, VerdictOutcome
from hub.domain.engine import apply
from hub.domain.lifecycle import State
from hub.domain.transaction import Transaction
from tests.test_silent_partners import REPORTS, T0, Walk, directory

DOCS = Path(__file__).resolve().parents[1] / "docs" / "mail.md"
REFUSED = None  # the state has no row: a dead letter, staff read the mail in Failed
# The states a BL loan can be in when a reply comes (the BL says no WillSupply).
STATES = (State.REQUESTED, State.LOANED, State.RECEIVED, State.OVERDUE, State.RETURNED)
UNFILLED = {State.REQUESTED: State.UNFILLED}  # the walk's rota has the BL alone
NOTE = {s: s for s in STATES}
# Per code: the state each one leads to from each state (absent: refused).
MEANS: dict[str, dict[State, State]] = {
    "CANC": UNFILLED,
    "CAT*REAPPLY": UNFILLED,
    "CRF*CANNOT MATCH ITEM": UNFILLED,
    "*INVALID ORDERING OPTIONS": UNFILLED,
    "NOT": UNFILLED,
    "NOT*NUKL": UNFILLED,
    "DUE": {State.REQUESTED: State.LOANED},
    "SHIPPED COPY": {State.REQUESTED: State.COPY_COMPLETED},
    "*TOTAL LIBRARY MAX COST": {State.REQUESTED: State.REQUESTED},
    "RENEWED*": {
        State.LOANED: State.LOANED,
        State.RECEIVED: State.RECEIVED,
        State.OVERDUE: State.RECEIVED,
    },
    "NO RENEW": {
        State.LOANED: State.LOANED,
        State.RECEIVED: State.RECEIVED,
        State.OVERDUE: State.OVERDUE,
    },
    "*FINAL DEMAND": {
        State.LOANED: State.OVERDUE,
        State.RECEIVED: State.OVERDUE,
        State.OVERDUE: State.OVERDUE,
        State.RETURNED: State.RETURNED,  # and staff are asked to settle it
    },
    # The hub sends the BL no cancel (ARTEmail has no form for one): never pending.
    "NCANC": {},
    **{
        code: NOTE
        for code in (
            "DIRECT",
            "DUE*AUTOMATIC RENEWAL PENDING",
            "DUE WAIT",
            "RCOP",
            "*TOTAL LIBRARY",
            "TOTAL LOAN*MORE THAN 1 VOLUME",
            "USE O/D",
            "USE*",
        )
    },
}
VALUES = {"DUE": " 15-06-2026", "RENEWED*": "20-07-2026", "CAT*REAPPLY": " 4", "USE*": "1234"}


def into(state: State) -> Walk:
    walk = Walk(directory("iso18626", "artemail", REPORTS))
    walk.says(Event.REQUEST, "B")
    if state is State.REQUESTED:
        return walk
    walk.says(Event.LOANED, "L")
    if state is State.OVERDUE:
        assert isinstance(walk.txn, Transaction) and walk.txn.due_date is not None
        due = walk.txn.due_date
        walk.txn = apply(
            walk.txn, Tick(transaction_id=walk.txn_id, at=due), due, directory=walk.directory
        ).transaction
    elif state in (State.RECEIVED, State.RETURNED):
        walk.says(Event.RECEIVED, "B")
        if state is State.RETURNED:
            walk.says(Event.SHIPPED_RETURN, "B")
    assert walk.state is state
    return walk


def bl_says(walk: Walk, code: str) -> Message:
    """The code as the BL mails it, read by the codec."""
    assert isinstance(walk.txn, Transaction) and walk.txn.attempt is not None
    reference = walk.txn.attempt.request_id
    mail = (
        f"From: bldss@bl.uk\r\nSubject: BLDSS status report FILEREFNO {reference}\r\n\r\n"
        f"Your ref: TX{reference}\r\n{code}{VALUES.get(code, '')}\r\n"
    ).encode()
    decoded = ArtemailCodec().decode(mail, "L", Limits(max_body_bytes=1 << 20))
    assert not decoded.more
    return decoded.message.model_copy(
        update={"transaction_id": walk.txn_id, "timestamp": T0 + timedelta(days=1)}
    )


def test_every_code_has_its_meaning_here() -> None:
    assert set(MEANS) == set(CODES)


@pytest.mark.parametrize("code", sorted(CODES))
@pytest.mark.parametrize("state", STATES, ids=lambda s: s.value)
def test_each_code_in_each_state_of_a_bl_loan(code: str, state: State) -> None:
    walk = into(state)
    message = bl_says(walk, code)
    result = apply(walk.txn, message, T0 + timedelta(days=1), directory=walk.directory)
    assert result.verdict is not None and result.transaction is not None
    expected = MEANS[code].get(state, REFUSED)
    if expected is REFUSED:
        assert result.verdict.outcome is VerdictOutcome.REFUSED, result.transaction.state
        assert result.transaction.state is state
        return
    assert result.verdict.outcome is VerdictOutcome.APPLIED
    assert result.transaction.state is expected
    if code == "*FINAL DEMAND" and state is State.RETURNED:
        assert (result.transaction.needs_attention or "").startswith("Overdue reported by L")


def test_the_docs_name_every_code() -> None:
    text = DOCS.read_text()
    table = text[text.index("| BLDSS code |") :]
    table = table[: table.index("\n\n")]
    for code in CODES:
        assert f"`{code}" in table, code
