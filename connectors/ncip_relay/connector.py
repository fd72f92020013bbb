"""NCIP broker relay as a connector: brokers call `POST /ncip/<symbol>` (shared with NCIP peers:
the partner's protocol chooses) or `POST /ncip-relay/<symbol>`; each call goes to a member
library's own NCIP responder through the hub's relay topic and agent, and the member's answer
goes back to the broker."""

from __future__ import annotations

from connectors.core.contract import Connector, HttpInbound
from connectors.core.topics import Topic
from connectors.ncip_relay import codec, front, sender
from connectors.ncip_relay.options import RelayOptions, RelaySettings

CONNECTOR: Connector[RelayOptions, RelaySettings] = Connector(
    name=codec.PROTOCOL,
    codec=codec.CODEC,
    http=HttpInbound(path="ncip", handler=front.http_handler),
    web=front.routes,
    sender=sender.member_sender,
    options=RelayOptions,
    settings=RelaySettings,
    topics=(Topic.RELAY, Topic.RELAY_RESULTS),
    describe="NCIP broker relay (ILLiad, Relais, Navigator, VDX, WorldShare, SHAREit, GTBib-SOD, "
    "Clio II, INN-Reach -> members' NCIP responders)",
)
