"""Seeded generators of hostile input for the fuzz tests: mutations of the shared samples and
of messages rshub's own writers produce. Deterministic for a seed, so a failure reproduces.

Each generator yields (label, bytes); the label says which seed and which mutation, so a
failing case can be found again by its index.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

from connectors.core.model import (
    Bibliographic,
    Event,
    Message,
    Money,
    NotApplicable,
    Reason,
    RequestFormat,
)
from connectors.iso10161 import asn1, codec, mapping
from connectors.iso18626 import writer as iso18626_writer
from connectors.ncip import tables as ncip_tables
from connectors.ncip import writer as ncip_writer
from tests.asn1_values import value_for

STANDARDS = Path(__file__).resolve().parents[2] / "shared" / "standards"
DATA = Path(__file__).resolve().parent / "data"
WHEN = datetime(2026, 12, 1, 10, 30, tzinfo=UTC)

# Values that broke decoders before (the robustness issue) or sit at the edges of a type.
HOSTILE_VALUES = [
    "1E400000",
    "1E999999999",
    "1e999999",
    "NaN",
    "-Infinity",
    "abc",
    "²",
    "٣",
    "9" * 5000,
    "-1",
    "0x10",
    "",
    " ",
    "\u202e",
    "\U0001d518\U0001d52b",  # outside the BMP (UTF-16 surrogate pairs)
    "書" * 20_000,
    "x" * 150_000,
    "0000-00-00",
    "9999-12-31T23:59:59-23:59",
    "0001-01-01T00:00:00+14:00",
    "2026-13-45",
]
DOCTYPES = [
    b"<!DOCTYPE a [<!ENTITY % p \"<!ENTITY x 'y'>\"> %p;]>",
    b'<!DOCTYPE a [<!ENTITY x SYSTEM "file:///etc/passwd">]>',
    b'<!DOCTYPE a [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]>',
    b'<!DOCTYPE a [<!ENTITY % e SYSTEM "http://127.0.0.1:9/x.dtd"> %e;]>',
    b"<!DOCTYPE a [<!ELEMENT a ANY>]>",
    b'<!DOCTYPE a SYSTEM "http://127.0.0.1:9/x.dtd">',
]


def canonical_messages() -> list[Message]:
    """One canonical message of every event, with every field the writers use."""
    fields = dict(
        request_id="t0123456789abcdef.1",
        patron_id="p1",
        item_id="BC1",
        bibliographic=Bibliographic(
            title="T", author="A", bibliographic_level="Book", isbn="123", issn="1234-5678"
        ),
        request_format=RequestFormat.PHYSICAL,
        due_date=WHEN,
        desired_due_date=WHEN,
        date_received=WHEN,
        date_shipped=WHEN,
        need_before=WHEN,
        reason=Reason.from_code(10),
        note="a note",
        cost=Money(amount="5.00", currency="EUR"),
        max_cost=Money(amount="25", currency="EUR"),
        delivery_address="1 Main St",
    )
    return [
        Message(
            event=event,
            answer=True if event in (Event.CANCEL_REPLY, Event.RENEW_ANSWER) else None,
            **fields,
        )
        for event in Event
    ]


def ncip_seeds() -> list[bytes]:
    samples = sorted((STANDARDS / "ncip" / "samples").glob("*.xml"))
    written = [
        ncip_writer.encode(m, from_agency="01A||MAIN", to_agency="01B||MAIN")
        for m in canonical_messages()
        if m.event in ncip_tables.ENCODE
    ]
    return [p.read_bytes() for p in samples] + written


def iso18626_seeds() -> list[bytes]:
    samples = sorted((STANDARDS / "iso18626" / "samples").glob("*.xml"))
    written = []
    for message in canonical_messages():
        try:
            written.append(iso18626_writer.encode(message, from_agency="A", to_agency="B"))
        except NotApplicable:
            continue
    return [p.read_bytes() for p in samples] + written


def iso10161_seeds(agency: str = "A") -> list[bytes]:
    """APDUs of every type (standard and IMPLICIT-tagged), rshub's own (from `agency`), and
    those captured from yaz-illclient."""
    types = asn1.compiled().types
    apdus = [codec.encode(n, value_for(types[n].type, full)) for n in asn1.APDUS for full in (0, 1)]
    implicit = [
        bytes(asn1.compiled_implicit().encode("ILL-APDU", (n.lower(), value_for(types[n].type, 1))))
        for n in asn1.APDUS
    ]
    written = []
    for message in canonical_messages():
        try:
            written.append(mapping.render(message, agency, "RSHUB"))
        except NotApplicable:
            continue
    captured = [p.read_bytes() for p in sorted(DATA.glob("*.ber"))]
    return apdus + implicit + written + captured


# -- mutations: each takes (rng, seed bytes) and returns hostile bytes ----------------------


def flip_bits(rng: random.Random, data: bytes) -> bytes:
    out = bytearray(data)
    for _ in range(rng.randint(1, 8)):
        at = rng.randrange(len(out))
        out[at] ^= 1 << rng.randrange(8)
    return bytes(out)


def insert_bytes(rng: random.Random, data: bytes) -> bytes:
    at = rng.randrange(len(data) + 1)
    junk = bytes(rng.randrange(256) for _ in range(rng.randint(1, 16)))
    return data[:at] + junk + data[at:]


def truncate(rng: random.Random, data: bytes) -> bytes:
    return data[: rng.randrange(len(data))]


def duplicate_slice(rng: random.Random, data: bytes) -> bytes:
    start = rng.randrange(len(data))
    end = min(len(data), start + rng.randint(1, 200))
    return data[:end] + data[start:end] * rng.randint(1, 50) + data[end:]


def invalid_utf8(rng: random.Random, data: bytes) -> bytes:
    at = rng.randrange(len(data) + 1)
    return (
        data[:at] + rng.choice([b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\xf8\x88\x80"]) + data[at:]
    )


# XML only ---------------------------------------------------------------------------------

_TEXT = re.compile(rb">([^<>]{1,200})</")


def huge_or_hostile_value(rng: random.Random, data: bytes) -> bytes:
    """One element's text replaced by a hostile value (huge, non-numeric, exponent, ...)."""
    spots = list(_TEXT.finditer(data))
    if not spots:
        return data
    spot = rng.choice(spots)
    value = rng.choice(HOSTILE_VALUES).encode()
    return data[: spot.start(1)] + value + data[spot.end(1) :]


def repeat_element(rng: random.Random, data: bytes) -> bytes:
    """One leaf element repeated thousands of times (repeated elements)."""
    spots = list(re.finditer(rb"<([\w:]+)>[^<>]{0,80}</\1>", data))
    if not spots:
        return data
    spot = rng.choice(spots)
    return data[: spot.end()] + spot.group() * rng.choice([10, 700, 5000]) + data[spot.end() :]


def deep_nesting(rng: random.Random, data: bytes) -> bytes:
    depth = rng.choice([63, 65, 300, 5000])
    spots = [m.end() for m in re.finditer(rb"<[\w:]+>", data)] or [0]
    at = rng.choice(spots)
    return data[:at] + b"<d>" * depth + b"</d>" * depth + data[at:]


def with_doctype(rng: random.Random, data: bytes) -> bytes:
    body = re.sub(rb"^<\?xml[^>]*\?>", b"", data.lstrip(b"\xef\xbb\xbf")).lstrip()
    entity = rng.choice([b"", b"&x;", b"&b;"])
    body = re.sub(rb"(<[^?!/][^>]*>)", lambda m: m.group(1) + entity, body, count=1)
    return b'<?xml version="1.0"?>' + rng.choice(DOCTYPES) + body


def other_encoding(rng: random.Random, data: bytes) -> bytes:
    """The document re-encoded as UTF-16/UTF-32 (with or without BOM and declaration), often
    with a DTD first: byte patterns do not see it there."""
    text = data.decode("utf-8", "replace")
    text = re.sub(r"^\ufeff?<\?xml[^>]*\?>", "", text).lstrip()
    encoding = rng.choice(["utf-16", "utf-16-le", "utf-16-be", "utf-32", "utf-32-le"])
    if rng.random() < 0.6:
        text = rng.choice(DOCTYPES).decode() + text.replace(">", ">&x;", 1)
    if rng.random() < 0.7:
        text = f'<?xml version="1.0" encoding="{encoding.upper()}"?>' + text
    return text.encode(encoding)


# BER only ---------------------------------------------------------------------------------


def huge_string(rng: random.Random, data: bytes) -> bytes:
    """A GeneralString (1b) or VisibleString (1a) made very long, lengths fixed up outward
    only for the APDU (inner lengths left stale half the time: inconsistent lengths)."""
    spots = [m.start() for m in re.finditer(rb"[\x1a\x1b][\x01-\x7f]", data)]
    if not spots:
        return data
    at = rng.choice(spots)
    length = data[at + 1]
    value = rng.choice([b"x" * 100_000, "書".encode() * 3000, b"1E999999", b"\x00\x1b(B"])
    tag = data[at : at + 1] + _length(len(value))
    mutated = data[:at] + tag + value + data[at + 2 + length :]
    return _reframe(mutated) if rng.random() < 0.5 else mutated


def _length(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(raw)]) + raw


def _reframe(data: bytes) -> bytes:
    """The APDU's outer length recomputed for its (changed) content."""
    if len(data) < 2:
        return data
    first = data[1]
    skip = 2 + (first & 0x7F if first & 0x80 and first != 0x80 else 0)
    return data[:1] + _length(len(data) - skip) + data[skip:]


def ber_nesting(rng: random.Random, data: bytes) -> bytes:
    depth = rng.choice([10, 70, 500])
    return data[:1] + b"\x80" + b"\x30\x80" * depth + b"\x00\x00" * depth + data[2:]


def wrong_tag(rng: random.Random, data: bytes) -> bytes:
    return bytes([0x60 | rng.randint(0, 31)]) + data[1:]


Mutation = Callable[[random.Random, bytes], bytes]
COMMON: list[Mutation] = [flip_bits, insert_bytes, truncate, duplicate_slice, invalid_utf8]
XML: list[Mutation] = [
    *COMMON,
    huge_or_hostile_value,
    huge_or_hostile_value,
    repeat_element,
    deep_nesting,
    with_doctype,
    other_encoding,
]
BER: list[Mutation] = [*COMMON, huge_string, huge_string, ber_nesting, wrong_tag]


def sample(
    seeds: list[bytes], mutations: list[Mutation], count: int, seed: int
) -> list[tuple[str, bytes]]:
    """`count` inputs drawn from a larger generated set: seeds and mutations mixed."""
    generated = list(inputs(seeds, mutations, max(count * 8, len(seeds) * 2), seed))
    return random.Random(seed).sample(generated, count)


def inputs(
    seeds: list[bytes], mutations: list[Mutation], count: int, seed: int
) -> Iterator[tuple[str, bytes]]:
    """`count` inputs: every seed as it is, then mutations (one to three stacked)."""
    rng = random.Random(seed)
    for index, data in enumerate(seeds):
        yield f"seed {index}", data
    for index in range(count - len(seeds)):
        base = rng.randrange(len(seeds))
        data, names = seeds[base], []
        for _ in range(rng.choice([1, 1, 1, 2, 3])):
            mutation = rng.choice(mutations)
            names.append(mutation.__name__)
            data = mutation(rng, data) if data else data
        yield f"#{index} seed {base} {'+'.join(names)}", data
