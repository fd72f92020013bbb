"""iso18626 connector: `CONNECTOR` is what the registry lists."""

from connectors.iso18626.connector import CONNECTOR

__all__ = ["CONNECTOR"]
