"""ncip connector: `CONNECTOR` is what the registry lists."""

from connectors.ncip.connector import CONNECTOR

__all__ = ["CONNECTOR"]
