"""XSD validation of NCIP messages, as a diagnostic: real peers break the schema in small ways
(unqualified attributes, no namespace, bare dates) and are still served."""

from __future__ import annotations

import copy
from functools import cache
from pathlib import Path

from lxml import etree

from connectors.ncip.tables import NS

XSD = Path(__file__).parent / "xsd" / "ncip_v2_02.xsd"


@cache
def _schema() -> etree.XMLSchema:
    parser = etree.XMLParser(resolve_entities=False, no_network=True)
    return etree.XMLSchema(etree.parse(str(XSD), parser))


def normalized(root: etree._Element) -> etree._Element:
    """The message as the schema expects it: NCIP namespace, qualified version/Scheme."""
    tree = copy.deepcopy(root)
    for element in tree.iter():
        if not isinstance(element.tag, str):
            continue
        if etree.QName(element).namespace is None:
            element.tag = f"{{{NS}}}{element.tag}"
        for name in ("version", "Scheme"):
            if name in element.attrib:
                element.set(f"{{{NS}}}{name}", element.attrib.pop(name))
    return tree


def diagnose(root: etree._Element) -> list[str]:
    """Schema errors of the message (after normalizing what is commonly sent unqualified)."""
    schema = _schema()
    try:
        if schema.validate(normalized(root)):
            return []
    except etree.Error as error:  # a diagnostic: libxml2's own failures are reported, not raised
        return [f"schema validation failed: {error}"]
    return [f"line {e.line}: {e.message}" for e in schema.error_log][:20]
