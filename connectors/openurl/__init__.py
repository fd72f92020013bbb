"""OpenURL: requests from discovery systems' links (with a form when data is missing) and
requests to partners whose intake is an OpenURL (Relais, ILLiad, GTBib-SOD, Clio II)."""

from __future__ import annotations

from typing import Any

from connectors.core.contract import Connector
from connectors.openurl.codec import CODEC, OpenUrlCodec
from connectors.openurl.options import OpenUrlCorrelation, OpenUrlOptions, OpenUrlSettings
from connectors.openurl.sender import build as build_sender
from connectors.openurl.web import routes

CONNECTOR: Connector[Any, Any] = Connector(
    name="openurl",
    codec=CODEC,
    web=routes,
    sender=build_sender,
    options=OpenUrlOptions,
    settings=OpenUrlSettings,
    correlation=OpenUrlCorrelation,
    describe="OpenURL 0.1/1.0 links in (with a request form), OpenURL requests out",
)

__all__ = ["CODEC", "CONNECTOR", "OpenUrlCodec"]
