"""The protocols rshub speaks, and their inbound and outbound parts."""

from __future__ import annotations

from typing import Any

from connectors.iso10161.transport import Iso10161Endpoint, Iso10161Outbound, Iso10161Server
from connectors.iso18626 import codec as iso18626_codec
from connectors.iso18626.transport import Iso18626Endpoint, Iso18626Outbound
from connectors.ncip import codec as ncip_codec
from connectors.ncip.transport import NcipEndpoint, NcipOutbound
from connectors.sru import client as sru_client
from connectors.z3950 import client as z3950_client
from hub.gateway import Endpoint, Front
from hub.locate import Client
from hub.outbound import Outbound
from hub.settings import Settings


def endpoints(settings: Settings) -> list[Endpoint]:
    """The HTTP endpoints (POST /<protocol>/<symbol>)."""
    return [NcipEndpoint(settings.validate_xsd), Iso18626Endpoint(settings.validate_xsd)]


def fronts(settings: Settings) -> list[Front]:
    """The other ways in: ISO 10161 over TCP."""
    return [Iso10161Server(settings)]


def decoders(settings: Settings) -> dict[str, Endpoint]:
    """Every protocol's reading side, for `rshub decode`."""
    return {e.protocol: e for e in [*endpoints(settings), Iso10161Endpoint()]}


def outbounds() -> list[Outbound]:
    return [NcipOutbound(), Iso18626Outbound(), Iso10161Outbound()]


def catalogue_clients() -> dict[str, Client]:
    """Holdings look-up clients by catalogue kind (directory `catalogue.kind`)."""
    return {"z3950": z3950_client.lookup, "sru": sru_client.lookup}


def read_answer(protocol: str, body: bytes) -> dict[str, Any] | None:
    """A partner's response (NCIP) or confirmation (ISO 18626) as data; None if it is not one."""
    try:
        if protocol == "ncip":
            if not ncip_codec.parse(body).is_response:
                return None
            return ncip_codec.read_response(body).model_dump()
        if protocol == "iso18626":
            return iso18626_codec.read_confirmation(body).model_dump()
    except (ncip_codec.NcipError, iso18626_codec.Iso18626Error):
        return None
    return None
