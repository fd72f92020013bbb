"""ISO 10161 over TCP: the protocol's part of the gateway, a TCP front, and TCP delivery.

Inbound, APDUs arrive back to back on a connection (no length prefix; `codec.Splitter`).
Who is speaking is decided by what a partner cannot simply claim (see `identify`): its
pinned TLS client certificate, or its source address; the System-Id in the APDU
(requester-id or responder-id, as its role says) then only chooses among the partners that
connection may be. Each APDU is answered on the same connection with a
Status-Or-Error-Report: a status report when it was accepted, an error report (security
problem, unrecognized APDU, unknown transaction, state-transition-prohibited with the current
state, resource limitation while the broker is away) when not.

A connection is closed when it sends nothing for `idle_timeout_s` between APDUs, when an APDU
once begun is not complete within `read_timeout_s` or an answer is not taken within it (a
partner that sends and never reads), and refused when its source already holds
`max_connections_per_source` or the port `max_connections`. The hub hangs up by half-closing
and draining first (`hang_up`), so a partner still sending reads the last report.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import structlog
from pydantic import BaseModel, ConfigDict, Field

from connectors.core import tcp
from connectors.core.connections import SourceLimit, bind, hang_up, server_health
from connectors.core.contract import (
    Answer,
    Attempt,
    Codec,
    Decoded,
    Fault,
    Intake,
    Limits,
    Outgoing,
    Refusal,
)
from connectors.core.directory import Directory, Partner
from connectors.core.model import EITHER_SIDE, SENDER, Event, Message, NotApplicable, Role
from connectors.core.tcp import FramedReader, PeerIdentity, ReadTimedOut, send_within
from connectors.iso10161 import codec, mapping

log = structlog.get_logger(__name__)
BER = "application/iso-10161-ill-1"

# The ISO state a transaction is in after each event, for status reports.
STATE_AFTER: dict[Event, str] = {
    Event.REQUEST: "pENDING",
    Event.WILL_SUPPLY: "iN-PROCESS",
    Event.LOANED: "sHIPPED",
    Event.COPY_COMPLETED: "sHIPPED",
    Event.UNFILLED: "nOT-SUPPLIED",
    Event.EXPIRED: "nOT-SUPPLIED",
    Event.RECEIVED: "rECEIVED",
    Event.SHIPPED_RETURN: "rETURNED",
    Event.LOAN_COMPLETED: "cHECKED-IN",
    Event.CANCEL: "cANCEL-PENDING",
    Event.CANCEL_REPLY: "cANCELLED",
    Event.RENEW: "rENEW-PENDING",
    Event.RENEW_ANSWER: "rECEIVED",
    Event.RECALLED: "rECALL",
    Event.OVERDUE: "oVERDUE",
}
# The hub's states as ISO 10161 Current-State, for state-transition-prohibited.
CURRENT_STATE: dict[str, str] = {
    "New": "uNKNOWN",
    "Locating": "pENDING",
    "Requested": "pENDING",
    "WillSupply": "iN-PROCESS",
    "Loaned": "sHIPPED",
    "Received": "rECEIVED",
    "RenewPending": "rENEW-PENDING",
    "CancelPending": "cANCEL-PENDING",
    "Recalled": "rECALL",
    "Overdue": "oVERDUE",
    "Returned": "rETURNED",
    "LoanCompleted": "cHECKED-IN",
    "CopyCompleted": "rECEIVED",
    "Cancelled": "cANCELLED",
    "Unfilled": "nOT-SUPPLIED",
    "Expired": "nOT-SUPPLIED",
}
# APDU -> History-Report most-recent-service. That enumeration has no Renew or Overdue (ISO
# 10161-1 lists none for them); its closest word, mESSAGE, stands for them there.
SERVICE: dict[str, str] = {
    "ILL-Request": "iLL-REQUEST",
    "Forward-Notification": "fORWARD-NOTIFICATION",
    "Shipped": "sHIPPED",
    "ILL-Answer": "iLL-ANSWER",
    "Conditional-Reply": "cONDITIONAL-REPLY",
    "Cancel": "cANCEL",
    "Cancel-Reply": "cANCEL-REPLY",
    "Received": "rECEIVED",
    "Recall": "rECALL",
    "Returned": "rETURNED",
    "Checked-In": "cHECKED-IN",
    "Renew-Answer": "rENEW-ANSWER",
    "Lost": "lOST",
    "Damaged": "dAMAGED",
    "Message": "mESSAGE",
    "Status-Query": "sTATUS-QUERY",
    "Status-Or-Error-Report": "sTATUS-OR-ERROR-REPORT",
    "Expired": "eXPIRED",
}
# APDU -> ILL-APDU-Type, which names every APDU: an error report about a Renew or an Overdue
# says so, not mESSAGE.
APDU_TYPE: dict[str, str] = {**SERVICE, "Renew": "rENEW", "Overdue": "oVERDUE"}
EMPTY_TRANSACTION = {
    "transaction-group-qualifier": ("generalstring", ""),
    "transaction-qualifier": ("generalstring", ""),
}


def report(
    apdu: dict[str, Any] | None,
    *,
    status: dict[str, Any] | None = None,
    error: dict[str, Any] | None = None,
    note: str | None = None,
) -> bytes:
    """A Status-Or-Error-Report about `apdu` (the partner's, decoded), in wire form."""
    today = datetime.now(UTC)
    value: dict[str, Any] = {
        "protocol-version-num": 2,
        "transaction-id": (apdu or {}).get("transaction-id", EMPTY_TRANSACTION),
        "service-date-time": {
            "date-time-of-this-service": {
                "date": mapping.iso_date(today),
                "time": today.strftime("%H%M%S"),
            }
        },
    }
    if status is not None:
        value["status-report"] = status
    if error is not None:
        value["error-report"] = error
    if note:
        value["note"] = ("generalstring", note[:500])
    return codec.for_the_wire(codec.encode("Status-Or-Error-Report", value))


def error_report(
    detail: str, *, user: tuple[str, Any] | None = None, provider: tuple[str, Any] | None = None
) -> dict[str, Any]:
    error: dict[str, Any] = {
        "correlation-information": ("generalstring", detail[:200] or "-"),
        "report-source": "user" if user else "provider",
    }
    if user:
        error["user-error-report"] = user
    if provider:
        error["provider-error-report"] = provider
    return error


Context = tuple[str, dict[str, Any]]


class Iso10161Settings(BaseModel):
    """The ISO 10161 port (RSHUB_ISO10161_<FIELD>)."""

    model_config = ConfigDict(extra="forbid")
    port: int = Field(1611, ge=0, le=65535, description="TCP port of the ISO 10161 endpoint")
    tls_cert_file: Path | None = Field(
        None, description="PEM certificate: serve ISO 10161 over TLS (with the key file)"
    )
    tls_key_file: Path | None = Field(
        None, description="PEM private key of the ISO 10161 TLS certificate"
    )
    tls_client_ca_file: Path | None = Field(
        None,
        description="PEM certificates that partners' client certificates are verified "
        "against (a CA, or the partners' self-signed certificates)",
    )


class Iso10161Codec:
    protocol = "iso10161"
    content_type = BER
    events_in = (
        frozenset(mapping.APDU_EVENTS.values())
        | frozenset(mapping.ANSWER_EVENTS.values())
        | {Event.LENDER_NOTE, Event.BORROWER_NOTE}
    )
    events_out = frozenset(mapping.EVENT_APDUS)
    not_applicable = frozenset(Event) - events_out

    def decode(self, body: bytes, sender: str, limits: Limits) -> Decoded[Context]:
        name, value = None, None
        try:
            name, value, left_out = codec.read(body)
            message = mapping.to_canonical(name, value, sender=sender, left_out=left_out)
            if not message.request_id:
                detail = "transaction-qualifier is empty: the request cannot be told apart"
                error = error_report(
                    detail, provider=("transaction-id-problem", "invalid-transaction-id")
                )
                raise Refusal(detail, Answer(report(value, error=error, note=detail), BER))
            return Decoded(message, (name, value))
        except codec.Iso10161Error as error:
            problem = "badly-structured-APDU" if name is None else "mistyped-APDU"
            reply = report(
                value,
                error=error_report(str(error), provider=("general-problem", problem)),
                note=str(error),
            )
            raise Refusal(str(error), Answer(reply, BER)) from None
        except NotApplicable as exc:
            reply = report(
                value,
                error=error_report(str(exc), user=("unable-to-perform", "not-available")),
                note=str(exc),
            )
            raise Refusal(str(exc), Answer(reply, BER)) from None

    def accept(self, decoded: Decoded[Context], state: str | None = None) -> Answer:
        name, value = decoded.context
        today = mapping.iso_date(datetime.now(UTC))
        status = {
            "user-status-report": {
                "date-of-last-transition": today,
                "most-recent-service": SERVICE.get(name, "mESSAGE"),
                "date-of-most-recent-service": today,
                "initiator-of-most-recent-service": {},
            },
            "provider-status-report": CURRENT_STATE.get(state or "")
            or STATE_AFTER.get(decoded.message.event, "uNKNOWN"),
        }
        return Answer(report(value, status=status), BER)

    def fault(
        self,
        fault: Fault,
        detail: str,
        decoded: Decoded[Context] | None = None,
        state: str | None = None,
    ) -> Answer:
        value = decoded.context[1] if decoded else None
        if fault in (Fault.UNKNOWN_PARTNER, Fault.UNAUTHENTICATED):
            error = error_report(detail, user=("security-problem", ("generalstring", detail[:200])))
        elif fault is Fault.UNAVAILABLE:
            error = error_report(detail, user=("unable-to-perform", "resource-limitation"))
        elif fault is Fault.UNKNOWN_REQUEST:
            error = error_report(
                detail, provider=("transaction-id-problem", "unknown-transaction-id")
            )
        elif fault is Fault.STATE:
            name = decoded.context[0] if decoded else "Message"
            error = error_report(
                detail,
                provider=(
                    "state-transition-prohibited",
                    {
                        "aPDU-type": APDU_TYPE.get(name, "mESSAGE"),
                        "current-state": CURRENT_STATE.get(state or "", "uNKNOWN"),
                    },
                ),
            )
        else:
            error = error_report(detail, provider=("general-problem", "badly-structured-APDU"))
        return Answer(report(value, error=error, note=detail), BER)

    def render(self, outgoing: Outgoing) -> bytes:
        message = outgoing.message
        lender_side = outgoing.to_borrower if message.event in EITHER_SIDE else None
        return mapping.render(
            message,
            outgoing.sender_agency,
            outgoing.recipient.agency_id,
            lender_side,
            outgoing.correlation,
        )

    def judge(self, body: bytes, status: int | None = None) -> Attempt:
        try:
            name, value = codec.decode(body)
        except codec.Iso10161Error as error:
            return Attempt(True, False, f"sent; answer unreadable: {error}")
        if name == "Status-Or-Error-Report" and value.get("error-report"):
            return Attempt(False, False, f"ISO 10161 error report: {value['error-report']}")
        return Attempt(True, False, f"sent; answered with {name}", answer=body)

    def read_answer(self, body: bytes) -> dict[str, Any] | None:
        return None  # a Status-Or-Error-Report decodes as a message (a note)


def identify(
    directory: Directory,
    name: str,
    value: dict[str, Any],
    address: str,
    certificate: str | None = None,
) -> Partner | None:
    """The partner that sent this APDU: the one among the connection's `candidates` whose
    System-Id the APDU names on its side (the lender's responder-id or the borrower's
    requester-id, falling back to the other), or None."""
    allowed = tcp.candidates(directory, "iso10161", PeerIdentity(address, certificate))
    if not allowed:
        return None
    try:
        event = mapping.event_of(name, value)
        lender_side = SENDER.get(event) is Role.LENDER
    except (NotApplicable, codec.Iso10161Error):
        lender_side = False
    order = ("responder-id", "requester-id") if lender_side else ("requester-id", "responder-id")
    for field in order:
        symbol = mapping.system_symbol(value.get(field))
        if not symbol:
            continue
        for partner in allowed:
            if symbol in (partner.symbol, *partner.agency_ids):
                return partner
    return None


def tls_context(settings: Iso10161Settings) -> ssl.SSLContext | None:
    """The ISO 10161 port's TLS context (None: plain TCP); see `tcp.server_context`."""
    return tcp.server_context(settings)


def identity_problems(directory: Directory, settings: Iso10161Settings) -> list[str]:
    """Why the ISO 10161 port cannot identify some partner as configured (empty: it can)."""
    pinned = tcp.pinned(directory, "iso10161")
    if not pinned:
        return []
    problems = []
    if not (settings.tls_cert_file and settings.tls_key_file):
        problems.append(
            f"partners {', '.join(pinned)} are identified by a client certificate, but "
            "RSHUB_ISO10161_TLS_CERT_FILE and RSHUB_ISO10161_TLS_KEY_FILE are not both set"
        )
    if not settings.tls_client_ca_file:
        problems.append(
            f"partners {', '.join(pinned)} are identified by a client certificate, but "
            "RSHUB_ISO10161_TLS_CLIENT_CA_FILE (what their certificates are verified "
            "against) is not set"
        )
    return problems


class Iso10161Server:
    """The TCP listener: splits APDUs, identifies partners, hands each APDU to the intake."""

    def __init__(self, limits: Limits, settings: Iso10161Settings, codec: Iso10161Codec) -> None:
        self.limits, self.settings, self.codec = limits, settings, codec
        self.server: asyncio.Server | None = None
        self.intake: Intake | None = None
        self.sources = SourceLimit(
            limits.max_connections_per_source, "iso10161", limits.max_connections
        )
        self.sock: socket.socket | None = None

    def bind(self) -> None:
        """Bind the port now, so a port in use stops start-up before anything runs."""
        self.sock = bind(self.limits.host, self.settings.port, "ISO 10161")

    async def start(self, intake: Intake) -> None:
        self.intake = intake
        if self.sock is None:
            self.bind()
        tls = tls_context(self.settings)
        self.server = await asyncio.start_server(
            self._connection,
            sock=self.sock,
            ssl=tls,
            ssl_handshake_timeout=self.limits.read_timeout_s if tls else None,
        )
        log.info(
            "iso10161.listening",
            host=self.limits.host,
            port=self.server.sockets[0].getsockname()[1],
            tls=tls is not None,
        )

    def health(self) -> dict[str, Any]:
        return server_health(self.server, self.sources)

    async def stop(self) -> None:
        if self.server:
            self.server.close()
            await self.server.wait_closed()

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = PeerIdentity.of(writer)
        address, certificate = peer.address, peer.certificate
        if not self.sources.admit(address):
            writer.transport.abort()
            return
        try:
            await self._serve(reader, writer, address, certificate)
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError):
            pass
        except TimeoutError:
            log.warning("iso10161.hung_up", source=address, reason="the partner does not read")
        finally:
            try:
                await hang_up(reader, writer)
            finally:
                self.sources.release(address)

    async def _serve(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        address: str,
        certificate: str | None,
    ) -> None:
        splitter = codec.Splitter(max_apdu=self.limits.max_body_bytes)
        frames = FramedReader(
            reader, splitter, self.limits.idle_timeout_s, self.limits.read_timeout_s
        )
        while True:
            try:
                apdus = await frames.next()
            except ReadTimedOut as timeout:
                log.info(
                    "iso10161.timeout",
                    source=address,
                    waiting=f"APDU incomplete ({timeout.pending} B)" if timeout.pending else "idle",
                )
                return
            except codec.FramingError as error:
                # The stream has lost its APDU boundaries: say why, then hang up.
                await self._refuse_stream(str(error), address, writer)
                return
            if apdus is None:
                return
            for apdu in apdus:
                answer = await self._one(apdu, address, certificate)
                await send_within(writer, answer.body, self.limits.read_timeout_s)

    async def _refuse_stream(self, detail: str, address: str, writer: asyncio.StreamWriter) -> None:
        assert self.intake is not None
        answer = self.codec.fault(Fault.SYNTAX, detail)
        await self.intake.refuse(Refusal(detail, answer), address, "iso10161")
        log.warning("iso10161.framing_lost", source=address, error=detail[:200])
        writer.write(answer.body)  # hang_up flushes it

    async def _one(self, apdu: bytes, address: str, certificate: str | None = None) -> Answer:
        intake = self.intake
        assert intake is not None
        if not intake.broker_up:
            return intake.unavailable(self.codec).answer
        try:
            name, value = codec.decode(apdu)
        except codec.Iso10161Error as error:
            log.warning("iso10161.malformed", source=address, error=str(error)[:200])
            refusal = Refusal(str(error), self.codec.fault(Fault.SYNTAX, str(error)))
            await intake.refuse(refusal, address, "iso10161")
            return refusal.answer
        partner = identify(intake.directory, name, value, address, certificate)
        if partner is None:
            who = f"certificate {certificate[:16]}..." if certificate else "no client certificate"
            detail = f"no ISO 10161 partner with this System-Id at {address} ({who})"
            decoded = Decoded(Message(event=Event.BORROWER_NOTE), (name, value))
            refusal = Refusal(
                detail, self.codec.fault(Fault.UNAUTHENTICATED, detail, decoded), "authenticate"
            )
            await intake.refuse(refusal, address, "iso10161")
            return refusal.answer
        try:
            return await intake.take(self.codec, partner.symbol, apdu, BER)
        except Refusal as refusal:
            await intake.refuse(refusal, partner.symbol, "iso10161")
            return refusal.answer


class TcpSender:
    """Delivers APDUs to a partner's host and port; reads the Status-Or-Error-Report a peer
    may answer with (an error report is a refusal; no answer within a moment is accepted)."""

    ANSWER_WAIT_S = 2.0

    def __init__(self, limits: Limits, codec: Codec[Any]) -> None:
        self.limits, self.codec = limits, codec

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    async def send(self, partner: Partner, body: bytes) -> Attempt:
        target = urlsplit(partner.endpoint or "")
        if not target.hostname or not target.port:
            return Attempt(False, False, f"endpoint {partner.endpoint!r} is not tcp://host:port")
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(target.hostname, target.port),
                self.limits.outbound_timeout_s,
            )
        except (OSError, TimeoutError) as exc:
            return Attempt(False, True, f"{type(exc).__name__}: {exc}")
        try:
            writer.write(codec.for_the_wire(body))
            await writer.drain()
            splitter = codec.Splitter(max_apdu=self.limits.max_body_bytes)
            try:
                while not (
                    answers := splitter.feed(
                        await asyncio.wait_for(reader.read(65536), self.ANSWER_WAIT_S)
                    )
                ):
                    pass
            except TimeoutError:
                return Attempt(True, False, "sent; no answer")
            return self.codec.judge(answers[0])
        except (OSError, codec.FramingError) as exc:
            return Attempt(False, True, f"{type(exc).__name__}: {exc}")
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
