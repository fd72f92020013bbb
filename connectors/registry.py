"""The protocols rshub speaks, and their inbound and outbound parts."""

from __future__ import annotations

from connectors.iso18626.transport import Iso18626Endpoint, Iso18626Outbound
from connectors.ncip.transport import NcipEndpoint, NcipOutbound
from hub.gateway import Endpoint
from hub.outbound import Outbound
from hub.settings import Settings


def endpoints(settings: Settings) -> list[Endpoint]:
    return [NcipEndpoint(settings.validate_xsd), Iso18626Endpoint(settings.validate_xsd)]


def outbounds() -> list[Outbound]:
    return [NcipOutbound(), Iso18626Outbound()]
