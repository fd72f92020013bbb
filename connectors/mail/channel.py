"""What every mail connector builds the same way: its listeners (one per partner mailbox),
addresses, and the codec's answers (a mail has no synchronous answer: the text of an Answer
only goes to the dead letters)."""

from __future__ import annotations

import os
from typing import Any

from pydantic import BaseModel

from connectors.core.contract import Answer, Codec, Fault
from connectors.core.directory import Directory, Partner
from connectors.mail.listener import MailboxListener
from connectors.mail.options import MailPartnerOptions, MailSettings

TEXT = "text/plain; charset=utf-8"
# Status of each fault, for channels that carry one (none of the mail channels do).
STATUS: dict[Fault, int] = {
    Fault.SYNTAX: 400,
    Fault.TOO_LARGE: 413,
    Fault.UNKNOWN_PARTNER: 404,
    Fault.UNAUTHENTICATED: 401,
    Fault.UNKNOWN_REQUEST: 404,
    Fault.STATE: 409,
    Fault.UNAVAILABLE: 503,
}


def fault_answer(fault: Fault, detail: str) -> Answer:
    return Answer(f"{fault.value}: {detail}".encode(), TEXT, STATUS[fault])


def partner_address(partner: Partner, options: MailPartnerOptions) -> str | None:
    if options.address:
        return options.address
    if partner.endpoint and partner.endpoint.lower().startswith("mailto:"):
        return partner.endpoint[len("mailto:") :]
    return None


def mailbox_listeners(
    protocol: str,
    codec: Codec[Any],
    options_model: type[BaseModel],
    settings: MailSettings,
    directory: Directory,
) -> list[MailboxListener]:
    """One listener per partner of `protocol` whose options name a mailbox."""
    found = []
    for partner in directory.partners:
        if partner.protocol != protocol:
            continue
        options = options_model.model_validate(partner.options)
        assert isinstance(options, MailPartnerOptions)
        if not options.mailbox_user:
            continue
        password = os.environ.get(options.mailbox_password_env or "", "")
        found.append(
            MailboxListener(
                protocol=protocol,
                codec=codec,
                partner=partner.symbol,
                options=options,
                settings=settings,
                password=password,
            )
        )
    return found
