"""Raw messages as people read them: XML indented, JSON indented, other text as it is,
binary (ISO 10161's BER) as a hex dump. The result is plain text; pages escape it.

XML from partners is parsed for display only, without entities, DTDs or network; a document
that declares a DTD subset, or does not parse, is shown as the text it is.
"""

from __future__ import annotations

import json
from typing import Any

from lxml import etree

HEX_WIDTH = 16
MAX_SHOWN = 256 * 1024  # a page shows at most this much of one message


def raw_bytes(raw: dict[str, Any]) -> bytes:
    """The bytes an audit row holds (kept as latin-1 text in the index)."""
    return str(raw.get("body") or "").encode("latin-1", "replace")


def _text(data: bytes) -> str | None:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    return text if all(c.isprintable() or c in "\r\n\t" for c in text) else None


def _xml(data: bytes) -> Any:
    parser = etree.XMLParser(
        resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False
    )
    try:
        root = etree.fromstring(data, parser)
    except (etree.XMLSyntaxError, etree.ParserError, ValueError):
        return None
    dtd = root.getroottree().docinfo.internalDTD
    if dtd is not None and (any(True for _ in dtd.iterentities()) or dtd.elements()):
        return None  # declarations: shown as sent, not as a parser reads them
    return root


def hexdump(data: bytes) -> str:
    lines = []
    for at in range(0, len(data), HEX_WIDTH):
        chunk = data[at : at + HEX_WIDTH]
        shown = "".join(chr(b) if 32 <= b < 127 else "." for b in chunk)
        lines.append(f"{at:08x}  {chunk.hex(' '):<{HEX_WIDTH * 3}} {shown}")
    return "\n".join(lines)


def pretty(data: bytes, content_type: str | None = None) -> tuple[str, str]:
    """(how it is shown: xml, json, text or hex; the text to show)."""
    cut = len(data) > MAX_SHOWN
    data = data[:MAX_SHOWN]
    note = f"\n... ({MAX_SHOWN} bytes shown)" if cut else ""
    stripped = data.lstrip()
    if stripped.startswith(b"<") and not cut:
        root = _xml(data)
        if root is not None:
            etree.indent(root, space="  ")  # whitespace-only text is re-indented
            return "xml", etree.tostring(root, encoding="unicode")
    if stripped[:1] in (b"{", b"[") and not cut:
        try:
            return "json", json.dumps(json.loads(data), indent=2, ensure_ascii=False)
        except ValueError:
            pass
    text = _text(data)
    if text is not None:
        return "text", text + note
    return "hex", hexdump(data) + note


def canonical(body: Any) -> str:
    """A record the hub wrote (canonical message, decision), as indented JSON."""
    return json.dumps(body, indent=2, ensure_ascii=False, sort_keys=True, default=str)
