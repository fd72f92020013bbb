"""Fuzzing each codec: at least 1,000 seeded hostile inputs per protocol (tests/fuzz.py)
through the endpoint's decode, as the gateway calls it. Every input must end as a canonical
message within the model's bounds, or as the protocol's own error reply (the Refusal the
gateway answers with); nothing else may escape. What decodes must also render in every
protocol or be refused with NotApplicable / RenderError."""

from __future__ import annotations

import contextlib
import time
from typing import Any

import pytest

from connectors.core.contract import Codec, Limits, Refusal
from connectors.core.model import Message, NotApplicable, RenderError
from connectors.iso10161 import codec as iso10161_codec
from connectors.iso10161 import mapping
from connectors.iso10161.transport import Iso10161Codec
from connectors.iso18626 import codec as iso18626_codec
from connectors.iso18626 import writer as iso18626_writer
from connectors.iso18626.connector import Iso18626Codec
from connectors.ncip import codec as ncip_codec
from connectors.ncip import writer as ncip_writer
from connectors.ncip.connector import NcipCodec
from tests import fuzz

COUNT = 1_000
LIMIT = Limits(max_body_bytes=1_048_576)
# A decoded message stays far below the broker's 1 MB record limit (connectors.core.model.LIMITS).
MAX_MESSAGE_JSON = 300_000
# What a refusal writes to ill.deadletter stays small whatever the input.
MAX_REASON = 2_000


def _ncip_error(body: bytes) -> bool:
    return bool(ncip_codec.read_response(body).problems)


def _iso18626_error(body: bytes) -> bool:
    return not iso18626_codec.read_confirmation(body).ok


def _iso10161_error(body: bytes) -> bool:
    name, value = iso10161_codec.decode(body)
    return name == "Status-Or-Error-Report" and "error-report" in value


PROTOCOLS = {
    "ncip": (NcipCodec(), fuzz.ncip_seeds, fuzz.XML, _ncip_error),
    "iso18626": (
        Iso18626Codec(),
        fuzz.iso18626_seeds,
        fuzz.XML,
        _iso18626_error,
    ),
    "iso10161": (Iso10161Codec(), fuzz.iso10161_seeds, fuzz.BER, _iso10161_error),
}


def renders_or_refuses(message: Message) -> None:
    """Every writer renders a decoded message or raises only NotApplicable / RenderError."""
    for render in (
        lambda m: ncip_writer.encode(m, from_agency="01A||MAIN", to_agency="01B||MAIN"),
        lambda m: iso18626_writer.encode(m, from_agency="ISIL:A", to_agency="ISIL:B"),
        lambda m: mapping.render(m, "A", "B"),
    ):
        with contextlib.suppress(NotApplicable, RenderError):
            assert render(message)


@pytest.mark.parametrize("protocol", sorted(PROTOCOLS))
def test_every_generated_input_is_a_message_or_the_protocols_error(protocol: str) -> None:
    endpoint: Codec[Any]
    endpoint, seeds, mutations, is_error = PROTOCOLS[protocol]
    started, decoded, refused = time.monotonic(), 0, 0
    for label, body in fuzz.inputs(seeds(), mutations, COUNT, seed=18626 + len(protocol)):
        try:
            result = endpoint.decode(body, "PARTNER", LIMIT)
        except Refusal as refusal:
            refused += 1
            assert len(refusal.reason) <= MAX_REASON, label
            assert is_error(refusal.answer.body), label
            assert refusal.answer.status < 500, label
            continue
        decoded += 1
        dumped = result.message.model_dump_json()
        assert len(dumped) <= MAX_MESSAGE_JSON, label
        assert Message.model_validate_json(dumped) == result.message, label
        renders_or_refuses(result.message)
    # Both outcomes are exercised: seeds decode, most mutations do not.
    assert decoded >= 10 and refused >= COUNT // 2, (decoded, refused)
    assert time.monotonic() - started < 60
