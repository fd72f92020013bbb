"""The brokers' front door: one broker call in, the member's answer out, over the hub's
Intake only (no Kafka, no aiohttp here).

In order: the broker is known and authenticated, the body is within the limit, the raw call is
audited, read, addressed to a member the broker may drive, translated for it, relayed through
the hub (`Intake.relay`: durable on the relay topic, carried out by the relay agent, the
member's answer correlated back), translated back, audited, answered. Whatever fails on the
way is an NCIP Problem to the broker (never a 5xx from the member's side) and, where the call
was at fault, a dead letter.
"""

from __future__ import annotations

import asyncio
import time

import structlog

from connectors.core.contract import (
    Answer,
    Attempt,
    Intake,
    Limits,
    Refusal,
    WebRequest,
    WebResponse,
    WebRoute,
)
from connectors.core.directory import Partner
from connectors.ncip_relay import codec as c
from connectors.ncip_relay import tables as t
from connectors.ncip_relay.options import RelayOptions, RelaySettings, Role, Version

log = structlog.get_logger(__name__)


def _answer(problem: c.RelayProblem, call: c.Call | None, version: Version) -> Answer:
    # what was read of a refused call addresses the answer (its service, its version)
    body = c.problem_answer(problem.problem, call or problem.about, version)
    return Answer(body, c.CONTENT_TYPE, problem.problem.http_status)


def _broker_version(partner: Partner | None) -> Version:
    if partner is None or partner.protocol != c.PROTOCOL:
        return "2.0"
    try:
        return c.options(partner).ncip_version
    except ValueError:
        return "2.0"


async def handle(
    intake: Intake,
    settings: RelaySettings,
    symbol: str,
    body: bytes,
    content_type: str | None,
    authorization: str | None,
) -> Answer:
    """A broker's call, answered (every failure is an NCIP answer; refusals dead-lettered)."""
    broker = intake.directory.partner(symbol)
    version = _broker_version(broker)
    try:
        return await _handle(intake, settings, symbol, broker, body, content_type, authorization)
    except _Refused as refused:
        await intake.refuse(refused.refusal, symbol, c.PROTOCOL)
        return refused.refusal.answer
    except Refusal as refusal:  # the hub cannot take the call now (broker down)
        await intake.refuse(refusal, symbol, c.PROTOCOL)
        return refusal.answer
    except c.RelayProblem as problem:  # a defect upstream must still be an NCIP answer
        return _answer(problem, None, version)


class _Refused(Exception):
    def __init__(self, refusal: Refusal) -> None:
        super().__init__(refusal.reason)
        self.refusal = refusal


def _refuse(
    problem: c.RelayProblem, call: c.Call | None, version: Version, audit_ref: str | None = None
) -> _Refused:
    return _Refused(
        Refusal(str(problem), _answer(problem, call, version), problem.stage, audit_ref)
    )


async def _handle(
    intake: Intake,
    settings: RelaySettings,
    symbol: str,
    broker: Partner | None,
    body: bytes,
    content_type: str | None,
    authorization: str | None,
) -> Answer:
    version = _broker_version(broker)
    if broker is None or broker.protocol != c.PROTOCOL or c.options(broker).role is not Role.BROKER:
        raise _refuse(
            c.RelayProblem(t.NOT_BROKER, f"no NCIP broker {symbol!r} in this consortium"),
            None,
            version,
        )
    if not intake.authenticated(symbol, authorization):
        raise _refuse(
            c.RelayProblem(
                t.UNAUTHENTICATED, f"credentials for {symbol} not accepted", "authenticate"
            ),
            None,
            version,
        )
    limit = intake.limits.max_body_bytes
    if len(body) > limit:
        raise _refuse(
            c.RelayProblem(
                t.TOO_LARGE, f"message of {len(body)} bytes exceeds the limit of {limit} bytes"
            ),
            None,
            version,
        )
    if not intake.broker_up:
        raise intake.unavailable(c.CODEC)
    audit_ref = await intake.audit("in", c.PROTOCOL, symbol, body, content_type)
    call = None
    try:
        call = c.read_call(body, limit)
        member, member_options = c.member_for(call, broker, intake.directory)
        outgoing = c.to_member(call, broker, member, member_options)
    except c.RelayProblem as problem:
        raise _refuse(problem, call, call.version if call else version, audit_ref) from None
    started = time.monotonic()
    attempt = await _relay(intake, settings, symbol, member.symbol, outgoing, member_options)
    log.info(
        "relay.answered",
        broker=symbol,
        member=member.symbol,
        service=call.service,
        ok=attempt.ok,
        detail=attempt.detail,
        ms=round((time.monotonic() - started) * 1000, 1),
    )
    try:
        if attempt.answer is None:
            raise c.RelayProblem(
                t.TEMPORARY, f"{member.symbol} did not answer: {attempt.detail}", "relay"
            )
        answer = Answer(c.to_broker(attempt.answer, call, broker, limit), c.CONTENT_TYPE)
    except c.RelayProblem as problem:
        answer = _answer(problem, call, call.version)
    await intake.audit("out", c.PROTOCOL, symbol, answer.body, answer.content_type)
    return answer


async def _relay(
    intake: Intake,
    settings: RelaySettings,
    broker: str,
    member: str,
    body: bytes,
    member_options: RelayOptions,
) -> Attempt:
    """The member's answer through the hub, within the broker-facing time-out."""
    content_type = c.content_type(member_options.ncip_version)
    try:
        async with asyncio.timeout(settings.answer_timeout_s):
            return await intake.relay(c.PROTOCOL, broker, member, body, content_type)
    except TimeoutError:
        waited = f"{settings.answer_timeout_s:g} s"
        return Attempt(False, True, f"no answer within {waited} (recorded when it comes)")
    except Refusal:
        raise
    except Exception as error:  # the hub's side failed: still an NCIP answer to the broker
        log.error("relay.failed", broker=broker, member=member, error=repr(error)[:300])
        return Attempt(False, True, f"the hub could not relay the call ({type(error).__name__})")


async def http_handler(
    intake: Intake, settings: RelaySettings, symbol: str, request: WebRequest
) -> WebResponse:
    """`HttpInbound.handler`: a broker's call on the shared `/ncip/{symbol}`."""
    headers = {k.lower(): v for k, v in request.headers.items()}
    answer = await handle(
        intake,
        settings,
        symbol,
        request.body,
        headers.get("content-type"),
        headers.get("authorization"),
    )
    return WebResponse(answer.status, answer.body, answer.content_type)


def routes(intake: Intake, limits: Limits, settings: RelaySettings) -> list[WebRoute]:
    """`Connector.web`: the relay's own door, `POST /ncip-relay/{symbol}` (the shared
    `/ncip/{symbol}` reaches `handle` through the gateway, by the partner's protocol)."""

    async def post(request: WebRequest) -> WebResponse:
        headers = {k.lower(): v for k, v in request.headers.items()}
        answer = await handle(
            intake,
            settings,
            request.match["symbol"],
            request.body,
            headers.get("content-type"),
            headers.get("authorization"),
        )
        return WebResponse(answer.status, answer.body, answer.content_type)

    return [WebRoute("POST", "/ncip-relay/{symbol}", post)]
