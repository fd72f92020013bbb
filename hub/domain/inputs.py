"""What goes through the lifecycle table: one input, with what its effects need.

The engine reads each record (a partner's message, a delivery result, a catalogue search's
answer, a clock tick, a staff command) into `Input`s; effects add follow-up inputs. The
table is keyed by `name` (and `answer`); the other fields are the evidence the effects use.
"""

from __future__ import annotations

from dataclasses import dataclass

from connectors.core.holdings import HoldingsResult
from connectors.core.model import Event, Message, Reason, Role
from connectors.core.records import DeliveryResult
from hub.domain.lifecycle import Hub

HUB = "rshub"  # the sender of the hub's own inputs


@dataclass(frozen=True)
class Input:
    name: Event | Hub
    sender: str | None = HUB
    answer: bool | None = None
    # Said on ill.events after what the effects said (the holdings found, a delivery's error).
    note: str = ""
    # A partner's message and the side that said it.
    message: Message | None = None
    role: Role | None = None
    # A delivery result; the holdings a search found; the lender or partner staff named.
    result: DeliveryResult | None = None
    holdings: tuple[HoldingsResult, ...] = ()
    lender: str | None = None
    partner: str | None = None
    # Why the hub acts: `why` for routing reasons and the borrower, `withdraw` for the
    # Cancel a withdrawn lender gets, `outcome` and `reason` for the attempt that ends.
    why: str | None = None
    withdraw: str = ""
    outcome: str = ""
    reason: Reason | None = None
