"""A consortium of brokers and member responders for the NCIP relay tests."""

from __future__ import annotations

from typing import Any

from connectors.core.directory import Directory
from connectors.ncip_relay import tables as t

SUPPORTED = frozenset({"ncip", "iso18626", "iso10161", "ncip-relay"})
NORTH_INST, SOUTH_INST = "01NORTH_INST", "01SOUTH_INST"


def relay_partners(
    north_endpoint: str = "http://127.0.0.1:9/view/NCIPServlet",
    south_endpoint: str = "http://127.0.0.1:9/view/NCIPServlet",
    north_version: str = "2.0",
    south_version: str = "1.0",
) -> list[dict[str, Any]]:
    """RELAIS (2.0) may drive NORTH and SOUTH; INNREACH (1.0) may drive NORTH only, by its
    agency code `nrth`; NORTH is an Alma-like 2.0 responder, SOUTH a 1.0 one."""
    return [
        {
            "symbol": "RELAIS",
            "name": "Relais D2D",
            "protocol": "ncip-relay",
            "lends": False,
            "inbound_auth": {"scheme": "bearer", "secret_env": "RSHUB_SECRET_RELAIS"},
            "options": {"role": "broker", "members": ["NORTH-CIRC", "SOUTH-CIRC"]},
        },
        {
            "symbol": "INNREACH",
            "name": "INN-Reach",
            "protocol": "ncip-relay",
            "lends": False,
            "inbound_auth": {"scheme": "bearer", "secret_env": "RSHUB_SECRET_INNREACH"},
            "options": {
                "role": "broker",
                "ncip_version": "1.0",
                "members": ["NORTH-CIRC"],
                "aliases": {"nrth": "NORTH-CIRC"},
            },
        },
        {
            "symbol": "NORTH-CIRC",
            "name": "North University (Alma NCIPServlet)",
            "protocol": "ncip-relay",
            "lends": False,
            "endpoint": north_endpoint,
            "outbound_auth": {"scheme": "bearer", "secret_env": "RSHUB_SECRET_NORTH_CIRC"},
            "options": {
                "role": "member",
                "ncip_version": north_version,
                "agency_ids": [NORTH_INST, f"{NORTH_INST}||MAIN", "NO-0000001"],
                "institution_code": NORTH_INST,
                "partner_codes": {"INNREACH": "INNREACH_PARTNER"},
                "from_agency_authentication": {"secret_env": "RSHUB_NORTH_NCIP_AUTH"},
            },
        },
        {
            "symbol": "SOUTH-CIRC",
            "name": "South College (NCIP 1.0 ILS)",
            "protocol": "ncip-relay",
            "lends": False,
            "endpoint": south_endpoint,
            "options": {
                "role": "member",
                "ncip_version": south_version,
                "agency_ids": [SOUTH_INST],
                "services": [s for s in t.SERVICES if s != "RecallItem"],
            },
        },
        {
            "symbol": "OUTSIDER",
            "name": "A library not in the relay",
            "protocol": "ncip-relay",
            "lends": False,
            "endpoint": "http://127.0.0.1:9/view/NCIPServlet",
            "options": {"role": "member", "agency_ids": ["01OUT_INST"]},
        },
    ]


def relay_directory(**endpoints: Any) -> Directory:
    return Directory.model_validate(
        {
            "consortium": "Relay test",
            "supported_protocols": SUPPORTED,
            "partners": relay_partners(**endpoints),
        }
    )
