"""BER as an editable tree, for tests that hand-build deviating APDUs: `parse` bytes into
[tag, content] nodes (tag as bytes, multi-byte tags included; content bytes for a primitive
element, a list of nodes for a constructed one), `build` them back (definite lengths)."""

from __future__ import annotations

from typing import Union

from asn1tools.codecs.ber import decode_length, encode_length_definite, skip_tag

Node = list[Union[bytes, "Nodes"]]
Nodes = list[Node]


def parse(data: bytes) -> Nodes:
    out: Nodes = []
    at = 0
    while at < len(data):
        content_at = skip_tag(data, at)
        tag = bytes(data[at:content_at])
        length, content_at = decode_length(data, content_at)
        content = data[content_at : content_at + length]
        out.append([tag, parse(content) if tag[0] & 0x20 else bytes(content)])
        at = content_at + length
    return out


def build(nodes: Nodes) -> bytes:
    out = b""
    for tag, content in nodes:
        assert isinstance(tag, bytes)
        body = content if isinstance(content, bytes) else build(content)
        out += tag + bytes(encode_length_definite(len(body))) + body
    return out


def find(nodes: Nodes, *tags: bytes) -> Node:
    """The node reached by following `tags` down from `nodes`, one tag per level."""
    node: Node = [b"", nodes]
    for tag in tags:
        children = node[1]
        assert isinstance(children, list)
        node = next(child for child in children if child[0] == tag)
    return node
