"""SLNP (Simple Library Network Protocol): how the German regional ILL servers ("ZFL") talk to
a library's system. Text commands over TCP; see docs/slnp.md.

- `wire`: framing and the text form of commands and replies (sans-IO)
- `vocabulary`, `codes`: what the commands, parameters, status words and reply codes mean
- `codec`: commands <-> canonical messages (the connector's `Codec`)
- `server`: the listener the ZFL servers connect to; `client`: the sender to their servers
- `identity`: who is speaking on a connection; `models`: options, settings, correlation
- `simulator`: a simulated ZFL server and client
"""

from __future__ import annotations

from connectors.core.contract import Connector, Limits, Listener, Sender
from connectors.core.directory import Directory
from connectors.slnp.client import SCHEMES, SlnpSender
from connectors.slnp.codec import SlnpCodec
from connectors.slnp.identity import problems
from connectors.slnp.models import SlnpCorrelation, SlnpOptions, SlnpSettings
from connectors.slnp.server import SlnpListener
from connectors.slnp.simulator import simulator

CODEC = SlnpCodec()


def listeners(limits: Limits, settings: SlnpSettings, directory: Directory) -> list[Listener]:
    return [SlnpListener(limits, settings, CODEC)]


def check(settings: SlnpSettings, directory: Directory) -> list[str]:
    return problems(directory, settings)


def sender(limits: Limits, settings: SlnpSettings, codec: object) -> Sender:
    return SlnpSender(limits, settings, CODEC)


CONNECTOR: Connector[SlnpOptions, SlnpSettings] = Connector(
    name="slnp",
    codec=CODEC,
    listeners=listeners,
    sender=sender,
    options=SlnpOptions,
    settings=SlnpSettings,
    endpoint_schemes=SCHEMES,
    correlation=SlnpCorrelation,
    simulator=simulator,
    check=check,
    describe="SLNP over TCP: the German regional ILL servers (ZFL)",
    request_needs=("bibliographic.title",),  # an SLNPFLBestellung's Titel
)

__all__ = ["CONNECTOR"]
