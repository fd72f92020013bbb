"""XSD validation of ISO 18626 messages as a diagnostic, against the schema of their version
(v1.2 and 2021-2 share a namespace but not an element order)."""

from __future__ import annotations

from functools import cache
from pathlib import Path

from lxml import etree

XSD = Path(__file__).parent / "xsd"
SCHEMAS = {"1.2": "ISO-18626-v1_2.xsd", "2021": "ISO-18626-2021-2.xsd"}


@cache
def _schema(name: str) -> etree.XMLSchema:
    parser = etree.XMLParser(resolve_entities=False, no_network=True)
    return etree.XMLSchema(etree.parse(str(XSD / name), parser))


def diagnose(root: etree._Element, version: str) -> list[str]:
    """Errors against the schema of the message's version (2021 for 2021-*, else v1.2)."""
    schema = _schema(SCHEMAS["2021" if version.startswith("2021") else "1.2"])
    try:
        if schema.validate(root):
            return []
    except etree.Error as error:  # a diagnostic: libxml2's own failures are reported, not raised
        return [f"schema validation failed: {error}"]
    return [f"line {e.line}: {e.message}" for e in schema.error_log][:20]
