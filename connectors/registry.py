"""The protocols rshub speaks, and their inbound and outbound parts."""

from __future__ import annotations

from connectors.ncip.transport import NcipEndpoint, NcipOutbound
from hub.gateway import Endpoint
from hub.outbound import Outbound
from hub.settings import Settings


def endpoints(settings: Settings) -> list[Endpoint]:
    return [NcipEndpoint(settings.validate_xsd)]


def outbounds() -> list[Outbound]:
    return [NcipOutbound()]
