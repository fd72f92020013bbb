"""Property: every canonical Message that validates renders in every protocol, or the writer
raises NotApplicable (no message for the step) or RenderError (a value the protocol cannot
carry). Nothing else: the outbound side turns those two into a recorded delivery failure,
anything else would stop it. What a writer renders, its own codec reads back without crashing."""

from __future__ import annotations

import contextlib
from datetime import UTC, timedelta, timezone
from decimal import Decimal

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from connectors.core.model import LIMITS, MAX_AMOUNT, Event, Message, NotApplicable, RenderError
from connectors.iso10161 import codec as iso10161_codec
from connectors.iso10161 import mapping
from connectors.iso18626 import codec as iso18626_codec
from connectors.iso18626 import writer as iso18626_writer
from connectors.ncip import codec as ncip_codec
from connectors.ncip import writer as ncip_writer


# Text of any Unicode, now and then at the edge of its bound (connectors.core.model.LIMITS).
def text(limit: str) -> st.SearchStrategy[str]:
    size = LIMITS[limit]
    return st.one_of(
        st.text(max_size=40),
        st.text(alphabet=st.characters(codec="latin-1"), max_size=40),
        st.integers(size - 2, size).map(lambda n: "é" * n),
    )


def optional(strategy: st.SearchStrategy) -> st.SearchStrategy:
    return st.none() | strategy


moments = st.datetimes(
    timezones=st.sampled_from([UTC, timezone(timedelta(hours=14)), timezone(-timedelta(hours=12))])
)
amounts = st.decimals(min_value=0, max_value=MAX_AMOUNT, places=4, allow_nan=False)
money = st.fixed_dictionaries(
    {"amount": amounts | st.sampled_from([Decimal("1E+3"), Decimal("0")])},
    optional={"currency": st.sampled_from(["EUR", "JPY", "BHD", "usd", "X", "currencyCode1"])},
)
bibliographic = st.fixed_dictionaries(
    {},
    optional={
        "title": text("title"),
        "author": text("text"),
        "title_of_component": text("title"),
        "publisher": text("text"),
        "pagination": text("text"),
        "bibliographic_level": text("id"),
        "call_number": text("text"),
        "isbn": text("id"),
        "issn": text("id"),
        "oclc_number": text("id"),
        "local_id": text("id"),
    },
)
messages = st.fixed_dictionaries(
    {"event": st.sampled_from(list(Event))},
    optional={
        "request_id": text("id"),
        "transaction_id": text("id"),
        "patron_id": text("id"),
        "item_id": text("id"),
        "service_type": st.sampled_from(["Loan", "Copy"]),
        "request_format": st.sampled_from(["Physical", "Digital", "NonReturnable"]),
        "bibliographic": bibliographic,
        "due_date": moments,
        "desired_due_date": moments,
        "date_shipped": moments,
        "date_received": moments,
        "need_before": moments,
        "timestamp": moments,
        "pickup_location": text("text"),
        "delivery_address": text("address"),
        "delivery_email": text("address"),
        "answer": st.booleans(),
        "reason": st.fixed_dictionaries(
            {"name": text("id")}, optional={"code": st.integers(0, 999), "note": text("note")}
        ),
        "note": text("note"),
        "cost": money,
        "max_cost": money,
    },
)


@settings(
    derandomize=True,
    max_examples=400,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
@given(messages)
def test_any_valid_message_renders_or_raises_only_the_documented_errors(fields: dict) -> None:
    try:
        message = Message.model_validate(fields)
    except ValidationError:
        assume(False)
        return
    writers = [
        (
            lambda: ncip_writer.encode(message, from_agency="01A||MAIN", to_agency="01B||MAIN"),
            lambda body: ncip_codec.decode(body),
            ncip_codec.NcipError,
        ),
        (
            lambda: iso18626_writer.encode(message, from_agency="ISIL:A", to_agency="ISIL:B"),
            lambda body: iso18626_codec.to_canonical(iso18626_codec.parse(body)),
            iso18626_codec.Iso18626Error,
        ),
        (
            lambda: mapping.render(message, "A", "B"),
            lambda body: mapping.to_canonical(*iso10161_codec.decode(body)),
            iso10161_codec.Iso10161Error,
        ),
    ]
    for render, read, refused in writers:
        try:
            body = render()
        except (NotApplicable, RenderError):
            continue
        # The message may lack what the protocol requires of a partner: refused, no crash.
        with contextlib.suppress(refused, NotApplicable):
            read(body)
