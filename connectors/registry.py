"""The protocols this build of rshub speaks: one line per connector. Everything
protocol-specific in the hub (routes, topics, agents, CLI choices, directory checks) is
derived from this list."""

from __future__ import annotations

from connectors import api, artemail, illiad_email, iso10161, iso18626, ncip, openurl, slnp
from connectors.core.contract import Registry
from connectors.core.holdings import Client
from connectors.ncip_relay.connector import CONNECTOR as NCIP_RELAY
from connectors.sru import client as sru_client
from connectors.z3950 import client as z3950_client

CONNECTORS = Registry(
    [
        ncip.CONNECTOR,
        iso18626.CONNECTOR,
        iso10161.CONNECTOR,
        slnp.CONNECTOR,
        openurl.CONNECTOR,
        NCIP_RELAY,
        artemail.CONNECTOR,
        illiad_email.CONNECTOR,
        api.CONNECTOR,
    ]
)


def catalogue_clients() -> dict[str, Client]:
    """Holdings look-up clients by catalogue kind (directory `catalogue.kind`)."""
    return {"z3950": z3950_client.lookup, "sru": sru_client.lookup}
