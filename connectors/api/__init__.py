"""The hub's JSON API as a borrower channel: discovery layers, library systems and staff
tools place and follow requests over HTTP (`/api/v1/...`, served by hub.ops.api). This
package is its protocol half, as for any connector: the request models, the sans-IO codec
and the sender of steps owed to an API borrower."""

from __future__ import annotations

from typing import Any

from connectors.api.codec import CODEC, ApiCodec
from connectors.api.sender import build as build_sender
from connectors.core.contract import Connector, NoSettings
from connectors.core.directory import Directory


def check(settings: NoSettings, directory: Directory) -> list[str]:
    """An API client borrows: nothing would carry a lender's side of a loan to it."""
    return [
        f"partner {p.symbol}: an API partner borrows only (set lends: false)"
        for p in directory.partners
        if p.protocol == "api" and p.lends
    ]


CONNECTOR: Connector[Any, Any] = Connector(
    name="api",
    codec=CODEC,
    sender=build_sender,
    check=check,
    describe="the hub's JSON API (/api/v1): requests placed and followed by library systems",
)

__all__ = ["CODEC", "CONNECTOR", "ApiCodec"]
