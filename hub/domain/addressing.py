"""Which transaction a partner's message belongs to, from what the message carries, and the
keys of the index (ill.items) for what the message alone cannot say."""

from __future__ import annotations

from typing import Protocol

from connectors.core.model import (
    SENDER,
    Event,
    Message,
    Role,
    parse_lender_request_id,
    transaction_id,
)


class Index(Protocol):
    """What the compacted ill.items topic says, as the gateway follows it."""

    def lookup(self, partner: str, item_id: str) -> str | None:
        """The transaction of a partner's item id (NCIP renewals and recalls)."""

    def retried(self, borrower: str, request_id: str) -> str | None:
        """The transaction a borrower's later id for a request names (ISO 18626 Retry)."""


def item_key(partner: str, item_id: str) -> str:
    return f"{partner}|{item_id}"


# A borrower's later id for a request shares ill.items with item ids, so its key starts with
# a character no partner symbol has (`Partner.symbol`): it can be no item's key.
RETRIED = "#"


def retried_key(borrower: str, request_id: str) -> str:
    return f"{RETRIED}{borrower}|{request_id}"


def address(message: Message, index: Index) -> str | None:
    """The transaction id, or None when the message names no transaction we can find.

    - a request: derived from (borrower, its request id), so a re-sent request finds its row;
    - an id rshub gave a lender: it embeds the transaction id;
    - a borrower's own request id (an event only borrowers say, or either side does): the
      transaction an ISO 18626 Retry gave that id to (the Retry continued the transaction
      of the id it named, so the new id derives none), else derived as for the request;
    - otherwise the item id, through the item index (NCIP renewals and recalls).
    """
    if message.event is Event.REQUEST:
        return transaction_id(message.sender, message.request_id)
    if message.request_id:
        parsed = parse_lender_request_id(message.request_id)
        if parsed:
            return parsed[0]
        if SENDER.get(message.event, Role.BORROWER) is Role.BORROWER:
            retried = index.retried(message.sender, message.request_id)
            return retried or transaction_id(message.sender, message.request_id)
    if message.item_id:
        return index.lookup(message.sender, message.item_id)
    return None
