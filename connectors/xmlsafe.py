"""Hardened XML parsing for every XML protocol (NCIP, ISO 18626).

Partners are on the open internet: no entity is expanded, no DTD or schema is fetched, no
document larger than the configured limit or deeper than DEPTH_LIMIT is built. A DOCTYPE
without an internal subset (NCIP 1.0 sends one) is allowed; a document whose DOCTYPE declares
entities or elements is refused. That is decided on the parsed document (libxml2's view of its
DTD), not on its bytes, so it holds in every encoding (UTF-16, UTF-32, ...).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeAlias

from lxml import etree

DEFAULT_LIMIT = 1_048_576
DEPTH_LIMIT = 64


class UnsafeXml(ValueError):
    """The document is malformed, too large, or uses constructs that are refused."""


def _parser() -> etree.XMLParser:
    return etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        dtd_validation=False,
        huge_tree=False,
        remove_comments=True,
        remove_pis=True,
    )


def parse(body: bytes, limit: int = DEFAULT_LIMIT) -> etree._Element:
    if len(body) > limit:
        raise UnsafeXml(f"message of {len(body)} bytes exceeds the limit of {limit} bytes")
    if not body.strip():
        raise UnsafeXml("empty message")
    try:
        root = etree.fromstring(body, _parser())
    except (etree.XMLSyntaxError, etree.ParserError) as exc:
        raise UnsafeXml(f"not well-formed XML: {str(exc)[:300]}") from None
    dtd = root.getroottree().docinfo.internalDTD
    # The parser neither loads nor expands entities (resolve_entities, load_dtd); whatever the
    # internal subset declares is refused before anything else sees the document.
    if dtd is not None and (any(True for _ in dtd.iterentities()) or dtd.elements()):
        raise UnsafeXml("DTD internal subsets and entity declarations are not accepted")
    depth = 0
    for event, _element in etree.iterwalk(root, events=("start", "end")):
        depth += 1 if event == "start" else -1
        if depth > DEPTH_LIMIT:
            raise UnsafeXml(f"elements nested deeper than {DEPTH_LIMIT} levels")
    return root


def local(element: etree._Element) -> str:
    """The local name of an element ("" for a comment or processing instruction). Read off the
    tag, "{namespace}name" or "name": a QName object per call was 4% of the hub's CPU."""
    tag = element.tag
    return tag.rpartition("}")[2] if isinstance(tag, str) else ""


Child: TypeAlias = etree._Element | str | None


def element_maker(namespace: str, nsmap: dict[str | None, str]) -> Callable[..., etree._Element]:
    """A builder of elements in one namespace: el(name, *children). A str child is the text,
    None is skipped, so optional parts can be written inline."""

    def el(name: str, *children: Child) -> etree._Element:
        node = etree.Element(f"{{{namespace}}}{name}", nsmap=nsmap)
        for part in children:
            if part is None:
                continue
            if isinstance(part, str):
                node.text = part
            else:
                node.append(part)
        return node

    return el
