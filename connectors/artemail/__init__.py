"""The British Library's ARTEmail: orders by e-mail, BLDSS status reports back by e-mail."""

from __future__ import annotations

from typing import Any

from connectors.artemail.batch import BatchingSender
from connectors.artemail.codec import CODEC, PROTOCOL
from connectors.artemail.options import ArtemailCorrelation, ArtemailOptions
from connectors.core.contract import Codec, Connector, Limits, Listener, Sender
from connectors.core.directory import Directory
from connectors.mail.channel import mailbox_listeners, partner_problems
from connectors.mail.options import MailSettings


def _listeners(limits: Limits, settings: MailSettings, directory: Directory) -> list[Listener]:
    import re

    for partner in directory.partners:
        if partner.protocol == PROTOCOL:
            options = ArtemailOptions.model_validate(partner.options)
            CODEC.patterns[partner.symbol] = re.compile(options.reference_pattern)
    return list(mailbox_listeners(PROTOCOL, CODEC, ArtemailOptions, settings, directory))


def _check(settings: MailSettings, directory: Directory) -> list[str]:
    return partner_problems(PROTOCOL, ArtemailOptions, directory)


def _sender(limits: Limits, settings: MailSettings, codec: Codec[Any]) -> Sender:
    return BatchingSender(limits, settings)


CONNECTOR: Connector[ArtemailOptions, MailSettings] = Connector(
    name=PROTOCOL,
    codec=CODEC,
    listeners=_listeners,
    sender=_sender,
    options=ArtemailOptions,
    settings=MailSettings,
    endpoint_schemes=("mailto",),
    check=_check,
    correlation=ArtemailCorrelation,
    describe="British Library ARTEmail: orders and BLDSS status reports by e-mail",
)
