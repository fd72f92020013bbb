"""Values for any asn1tools (BER) type, built by walking the compiled type: the minimal value
(required fields only) or a full one (every optional field too, down to a depth)."""

from __future__ import annotations

from typing import Any

import asn1tools.codecs.ber as ber

STRINGS = (
    ber.VisibleString,
    ber.GeneralString,
    ber.IA5String,
    ber.PrintableString,
    ber.UTF8String,
    ber.GraphicString,
    ber.NumericString,
    ber.TeletexString,
)


def value_for(kind: Any, full: bool, depth: int = 0, variant: int = 0) -> Any:
    if isinstance(kind, ber.ExplicitTag):
        return value_for(kind.inner, full, depth, variant)
    if isinstance(kind, ber.Recursive):
        raise RecursionError  # left out by the caller (only optional members recurse)
    if isinstance(kind, (ber.Sequence, ber.Set)):
        out = {}
        for member in kind.root_members:
            if member.optional or member.default is not None:
                if not full or depth > 6:
                    continue
                try:
                    out[member.name] = value_for(member, full, depth + 1, variant)
                except RecursionError:
                    continue
            else:
                out[member.name] = value_for(member, full, depth + 1, variant)
        return out
    if isinstance(kind, (ber.SequenceOf, ber.SetOf)):
        return [value_for(kind.element_type, full, depth + 1, variant)]
    if isinstance(kind, ber.Choice):
        members = kind.members
        for offset in range(len(members)):
            member = members[(variant + offset) % len(members)]
            try:
                return (member.name, value_for(member, full, depth + 1, variant))
            except RecursionError:
                continue
        raise RecursionError
    if isinstance(kind, ber.Enumerated):
        names = sorted(kind.data_to_value)
        return names[variant % len(names)]
    if isinstance(kind, ber.Integer):
        return 2
    if isinstance(kind, ber.Boolean):
        return True
    if isinstance(kind, ber.Null):
        return None
    if isinstance(kind, ber.OctetString):
        return b"octets"
    if isinstance(kind, ber.BitString):
        return (b"\x80", 1)
    if isinstance(kind, ber.ObjectIdentifier):
        return "1.0.10161.13.3"
    if isinstance(kind, ber.ObjectDescriptor):
        return "descriptor"
    if isinstance(kind, (ber.Any, ber.AnyDefinedBy)):
        return b"\x04\x03any"  # any BER element: an OCTET STRING
    if isinstance(kind, STRINGS):
        return "20261122"
    raise TypeError(f"no value for {type(kind).__name__}")


def indefinite(data: bytes) -> bytes:
    """The same BER with every constructed element re-encoded in indefinite-length form."""
    out, at = bytearray(), 0
    while at < len(data):
        start = at
        first = data[at]
        at += 1
        if first & 0x1F == 0x1F:
            while data[at] & 0x80:
                at += 1
            at += 1
        tag = data[start:at]
        length_byte = data[at]
        at += 1
        if length_byte & 0x80:
            count = length_byte & 0x7F
            length = int.from_bytes(data[at : at + count], "big")
            at += count
        else:
            length = length_byte
        content = data[at : at + length]
        at += length
        if first & 0x20:
            out += tag + b"\x80" + indefinite(content) + b"\x00\x00"
        else:
            out += data[start:at]
    return bytes(out)
