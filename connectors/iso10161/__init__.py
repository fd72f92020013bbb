"""iso10161 connector: `CONNECTOR` is what the registry lists."""

from connectors.iso10161.connector import CONNECTOR

__all__ = ["CONNECTOR"]
