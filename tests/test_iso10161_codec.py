"""The ISO 10161 codec without a network: every APDU round-trips; the stream splitter finds
APDU boundaries however the bytes arrive, and refuses what would hurt the hub."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connectors.iso10161 import asn1, codec
from tests.asn1_values import indefinite, value_for


def apdu_value(name: str, full: bool, variant: int = 0) -> dict:
    return value_for(asn1.compiled().types[name].type, full, variant=variant)


CASES = [(name, full) for name in asn1.APDUS for full in (False, True)]


@pytest.mark.parametrize("name,full", CASES)
def test_every_apdu_round_trips(name: str, full: bool) -> None:
    value = apdu_value(name, full)
    data = codec.encode(name, value)
    assert codec.apdu_type(data) == name
    assert data[0] == 0x60 | asn1.APPLICATION_TAG[name]
    decoded_name, decoded = codec.decode(data)
    assert decoded_name == name
    assert codec.encode(name, decoded) == data  # re-encoding gives the same bytes
    # Decoding adds DEFAULT values; everything that was given comes back.
    assert set(value) <= set(decoded)
    assert all(decoded[k] == v for k, v in value.items() if not isinstance(v, dict))


@pytest.mark.parametrize("name", asn1.APDUS)
def test_indefinite_length_form_decodes_to_the_same_value(name: str) -> None:
    data = codec.encode(name, apdu_value(name, True))
    assert codec.decode(indefinite(data)) == codec.decode(data)


@pytest.mark.parametrize("variant", range(4))
def test_choice_variants_round_trip(variant: int) -> None:
    for name in ("ILL-Request", "ILL-Answer", "Status-Or-Error-Report"):
        data = codec.encode(name, apdu_value(name, True, variant))
        assert codec.encode(name, codec.decode(data)[1]) == data


def stream() -> tuple[list[bytes], bytes]:
    apdus = [codec.encode(n, apdu_value(n, True)) for n in ("ILL-Request", "Shipped", "Expired")]
    apdus.append(indefinite(codec.encode("ILL-Answer", apdu_value("ILL-Answer", True))))
    return apdus, b"".join(apdus)


def test_splitter_at_every_byte_boundary() -> None:
    apdus, data = stream()
    for cut in range(1, len(data)):
        splitter = codec.Splitter()
        got = splitter.feed(data[:cut]) + splitter.feed(data[cut:])
        assert got == apdus, cut
        assert splitter.pending == 0


def test_splitter_byte_by_byte_and_packed() -> None:
    apdus, data = stream()
    splitter = codec.Splitter()
    got = [apdu for i in range(len(data)) for apdu in splitter.feed(data[i : i + 1])]
    assert got == apdus
    assert codec.Splitter().feed(data) == apdus


@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=400), min_size=1, max_size=30))
def test_splitter_any_chunking(sizes: list[int]) -> None:
    apdus, data = stream()
    splitter, got, at = codec.Splitter(), [], 0
    for size in sizes:
        got += splitter.feed(data[at : at + size])
        at += size
    got += splitter.feed(data[at:])
    assert got == apdus


def test_huge_declared_length_is_refused_before_buffering() -> None:
    splitter = codec.Splitter(max_apdu=10_000)
    with pytest.raises(codec.FramingError, match="exceeds the limit"):
        splitter.feed(b"\x61\x84\x7f\xff\xff\xff\x30")
    assert splitter.pending < 16


def test_nesting_bomb_is_refused() -> None:
    bomb = b"\x61\x80" + b"\x30\x80" * 200
    with pytest.raises(codec.FramingError, match="nesting deeper"):
        codec.Splitter(max_depth=64).feed(bomb)


@pytest.mark.parametrize("garbage", [b"GET / HTTP/1.0\r\n\r\n", b"\x00\x00", b"\x7f\x01\x00"])
def test_garbage_is_refused(garbage: bytes) -> None:
    with pytest.raises(codec.FramingError):
        codec.Splitter().feed(garbage)


def test_truncated_or_inconsistent_apdus_are_decode_errors() -> None:
    data = codec.encode("Cancel", apdu_value("Cancel", True))
    assert codec.Splitter().feed(data[:-3]) == []  # waits for the rest
    for broken in (data[:-3], data[:2] + b"\x30\x7f" + data[4:], b"\x66\x03\x30\x01\x02"):
        with pytest.raises(codec.Iso10161Error):
            codec.decode(broken)


def test_oversized_stream_without_an_end_is_refused() -> None:
    splitter = codec.Splitter(max_apdu=1000)
    splitter.feed(b"\x61\x80")
    with pytest.raises(codec.FramingError):
        for _ in range(200):
            splitter.feed(b"\x04\x03abc")


def test_request_from_yaz_illclient_decodes() -> None:
    """Captured from Debian's yaz-illclient 5.34: indefinite lengths, empty strings, and a
    transaction-type of 0, which is outside the ENUMERATED list (decoded as None)."""
    data = (Path(__file__).parent / "data" / "yaz-illclient-request.ber").read_bytes()
    assert data[:2] == b"\x61\x80"  # [APPLICATION 1], indefinite length
    assert codec.Splitter().feed(data) == [data]
    name, value = codec.decode(data)
    assert name == "ILL-Request"
    assert value["transaction-type"] is None
    assert "transaction-id" in value and "item-id" in value


@pytest.mark.parametrize("name", ["Status-Or-Error-Report", "Shipped"])
def test_wire_form_is_never_mistaken_for_http(name: str) -> None:
    data = codec.encode(name, apdu_value(name, False))
    wire = codec.for_the_wire(data)
    assert not all(0x20 <= b < 0x7F for b in wire[:3])
    assert codec.decode(wire) == codec.decode(data)
    assert codec.Splitter().feed(wire) == [wire]
