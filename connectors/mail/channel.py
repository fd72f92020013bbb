"""What every mail connector builds the same way: its listeners (one per partner mailbox),
addresses, and the codec's answers (a mail has no synchronous answer: the text of an Answer
only goes to the dead letters)."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import unquote, urlsplit

from pydantic import BaseModel

from connectors.core.contract import Answer, Codec, Fault
from connectors.core.directory import Directory, Partner
from connectors.core.secret import value_of
from connectors.mail import identity
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
    """The partner's mail address: `options.address`, else the endpoint's. A mailto: URL
    (RFC 6068) has no authority (`mailto:a@b`); `mailto://a@b` is read the same way, as
    URL checkers that want a host (and people) write it so. Whether it is an address at all
    is `check`'s question, at start-up."""
    if options.address:
        return options.address
    if not partner.endpoint:
        return None
    target = urlsplit(partner.endpoint)
    if target.scheme.lower() != "mailto":
        return None
    return unquote(target.netloc + target.path).strip() or None


_ADDRESS = re.compile(r"[^@\s<>()]+@[^@\s<>()]+")


def partner_problems(
    protocol: str, options_model: type[BaseModel], directory: Directory
) -> list[str]:
    """Start-up checks of the mail partners: each has a mail address, and a mailbox the hub
    reads has its password variable named (the listener could not log in otherwise)."""
    problems: list[str] = []
    for partner in directory.partners:
        if partner.protocol != protocol:
            continue
        try:
            options = options_model.model_validate(partner.options)
        except ValueError:
            continue  # the registry reports invalid options itself
        assert isinstance(options, MailPartnerOptions)
        address = partner_address(partner, options)
        if not address or not _ADDRESS.fullmatch(address):
            problems.append(
                f"partner {partner.symbol}: no mail address (endpoint mailto:name@domain or "
                f"options.address), found {address!r}"
            )
        if options.mailbox_user and not options.mailbox_password_env:
            problems.append(
                f"partner {partner.symbol}: mailbox_user {options.mailbox_user!r} needs "
                "mailbox_password_env (the variable holding its password)"
            )
        if options.mailbox_user:
            reading = options.model_copy(update={"address": address})
            problems += [
                f"partner {partner.symbol}: mailbox {options.mailbox_user!r}: {problem}"
                for problem in identity.config_problems(reading)
            ]
    return problems


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
        password = value_of(options.mailbox_password_env) or ""
        # The partner's address as the identity check reads it: the endpoint's when the
        # directory gives none (docs/mail.md: from_addresses defaults to the partner's address).
        options = options.model_copy(update={"address": partner_address(partner, options)})
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
