"""ILLiad as supplier of last resort: a formatted request mail to ILLiad's import mailbox."""

from __future__ import annotations

from typing import Any

from connectors.core.contract import Codec, Connector, Limits, Sender
from connectors.core.directory import Directory
from connectors.illiad_email.codec import CODEC, PROTOCOL
from connectors.illiad_email.options import IlliadEmailOptions
from connectors.mail.channel import partner_problems
from connectors.mail.options import MailSettings
from connectors.mail.sender import SmtpSender


def _check(settings: MailSettings, directory: Directory) -> list[str]:
    return partner_problems(PROTOCOL, IlliadEmailOptions, directory)


def _sender(limits: Limits, settings: MailSettings, codec: Codec[Any]) -> Sender:
    return SmtpSender(limits, settings)


CONNECTOR: Connector[IlliadEmailOptions, MailSettings] = Connector(
    name=PROTOCOL,
    codec=CODEC,
    sender=_sender,
    options=IlliadEmailOptions,
    settings=MailSettings,
    endpoint_schemes=("mailto",),
    check=_check,
    describe="ILLiad e-mail import: requests to a supplier of last resort by formatted e-mail",
)
