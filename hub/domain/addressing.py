"""Which transaction a partner's message belongs to, from what the message carries."""

from __future__ import annotations

from collections.abc import Callable

from connectors.core.model import (
    SENDER,
    Event,
    Message,
    Role,
    parse_lender_request_id,
    transaction_id,
)


def address(message: Message, lookup_item: Callable[[str, str], str | None]) -> str | None:
    """The transaction id, or None when the message names no transaction we can find.

    - a request: derived from (borrower, its request id), so a re-sent request finds its row;
    - an id rshub gave a lender: it embeds the transaction id;
    - a borrower's own request id (an event only borrowers say, or either side does):
      derived as for the request;
    - otherwise the item id, through the item index (NCIP renewals and recalls).
    """
    if message.event is Event.REQUEST:
        return transaction_id(message.sender, message.request_id)
    if message.request_id:
        parsed = parse_lender_request_id(message.request_id)
        if parsed:
            return parsed[0]
        if SENDER.get(message.event, Role.BORROWER) is Role.BORROWER:
            return transaction_id(message.sender, message.request_id)
    if message.item_id:
        return lookup_item(message.sender, message.item_id)
    return None
