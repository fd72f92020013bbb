"""ISO 10161 over TCP: the protocol's part of the gateway, a TCP front, and TCP delivery.

Inbound, APDUs arrive back to back on a connection (no length prefix; `codec.Splitter`).
A partner is identified by the System-Id in the APDU (requester-id or responder-id, as its
role says) and, where the directory lists addresses, by its source address. Each APDU is
answered on the same connection with a Status-Or-Error-Report: a status report when it was
accepted, an error report (security problem, unrecognized APDU, unknown transaction,
state-transition-prohibited with the current state) when not.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import structlog

from connectors.iso10161 import codec, mapping
from hub.directory import Directory, Partner
from hub.gateway import Decoded, Endpoint, Fault, Gateway, Refusal, Reply
from hub.model import SENDER, Event, Message, NotApplicable, Role
from hub.outbound import Attempted, Outbound
from hub.settings import Settings

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
}
SERVICE: dict[str, str] = {  # APDU -> History-Report most-recent-service
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


class Iso10161Endpoint(Endpoint):
    protocol = "iso10161"

    def decode(self, body: bytes, sender: str, limit: int) -> Decoded:
        name, value = None, None
        try:
            name, value = codec.decode(body)
            message = mapping.to_canonical(name, value, sender=sender)
            if not message.request_id:
                detail = "transaction-qualifier is empty: the request cannot be told apart"
                error = error_report(
                    detail, provider=("transaction-id-problem", "invalid-transaction-id")
                )
                raise Refusal(detail, Reply(200, report(value, error=error, note=detail), BER))
            return Decoded(message, (name, value))
        except codec.Iso10161Error as error:
            problem = "badly-structured-APDU" if name is None else "mistyped-APDU"
            reply = report(
                value,
                error=error_report(str(error), provider=("general-problem", problem)),
                note=str(error),
            )
            raise Refusal(str(error), Reply(200, reply, BER)) from None
        except NotApplicable as exc:
            reply = report(
                value,
                error=error_report(str(exc), user=("unable-to-perform", "not-available")),
                note=str(exc),
            )
            raise Refusal(str(exc), Reply(200, reply, BER)) from None

    def accept(self, decoded: Decoded, state: str | None = None) -> Reply:
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
        return Reply(200, report(value, status=status), BER)

    def fault(
        self, fault: Fault, detail: str, decoded: Decoded | None = None, state: str | None = None
    ) -> Reply:
        value = decoded.context[1] if decoded else None
        if fault in (Fault.UNKNOWN_PARTNER, Fault.UNAUTHENTICATED):
            error = error_report(detail, user=("security-problem", ("generalstring", detail[:200])))
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
                        "aPDU-type": SERVICE.get(name, "mESSAGE"),
                        "current-state": CURRENT_STATE.get(state or "", "uNKNOWN"),
                    },
                ),
            )
        else:
            error = error_report(detail, provider=("general-problem", "badly-structured-APDU"))
        return Reply(200, report(value, error=error, note=detail), BER)


def identify(
    directory: Directory, name: str, value: dict[str, Any], address: str
) -> Partner | None:
    """The ISO 10161 partner that sent this APDU: by System-Id, and by address if listed."""
    try:
        event = mapping.event_of(name, value)
        lender_side = SENDER[event] is Role.LENDER
    except (NotApplicable, codec.Iso10161Error):
        lender_side = False
    order = ("responder-id", "requester-id") if lender_side else ("requester-id", "responder-id")
    for field in order:
        symbol = mapping.system_symbol(value.get(field))
        for partner in directory.partners:
            if partner.protocol != "iso10161" or not symbol:
                continue
            if symbol in (partner.symbol, *partner.agency_ids):
                if partner.addresses and address not in partner.addresses:
                    continue
                return partner
    return None


class Iso10161Server:
    """The TCP front: splits APDUs, identifies partners, hands each APDU to the gateway."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.server: asyncio.Server | None = None
        self.endpoint = Iso10161Endpoint()
        self.gateway: Gateway | None = None

    async def start(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self.server = await asyncio.start_server(
            self._connection, self.settings.http_host, self.settings.iso10161_port
        )
        log.info(
            "iso10161.listening", host=self.settings.http_host, port=self.settings.iso10161_port
        )

    async def stop(self) -> None:
        if self.server:
            self.server.close()
            await self.server.wait_closed()

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername") or ("?", 0)
        splitter = codec.Splitter(max_apdu=self.settings.max_body_bytes)
        try:
            while data := await reader.read(65536):
                try:
                    apdus = splitter.feed(data)
                except codec.FramingError as error:
                    # The stream has lost its APDU boundaries: say why, then hang up.
                    await self._refuse_stream(str(error), peer[0], writer)
                    return
                for apdu in apdus:
                    writer.write((await self._one(apdu, peer[0])).body)
                    await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def _refuse_stream(self, detail: str, address: str, writer: asyncio.StreamWriter) -> None:
        assert self.gateway is not None
        reply = self.endpoint.fault(Fault.SYNTAX, detail)
        await self.gateway.dead(Refusal(detail, reply), address, "iso10161")
        writer.write(reply.body)
        await writer.drain()

    async def _one(self, apdu: bytes, address: str) -> Reply:
        assert self.gateway is not None
        try:
            name, value = codec.decode(apdu)
        except codec.Iso10161Error as error:
            refusal = Refusal(str(error), self.endpoint.fault(Fault.SYNTAX, str(error)))
            await self.gateway.dead(refusal, address, "iso10161")
            return refusal.reply
        partner = identify(self.gateway.directory, name, value, address)
        if partner is None:
            detail = f"no ISO 10161 partner with this System-Id at {address}"
            decoded = Decoded(Message(event=Event.BORROWER_NOTE), (name, value))
            refusal = Refusal(
                detail, self.endpoint.fault(Fault.UNAUTHENTICATED, detail, decoded), "authenticate"
            )
            await self.gateway.dead(refusal, address, "iso10161")
            return refusal.reply
        try:
            return await self.gateway.take(self.endpoint, partner.symbol, apdu, BER)
        except Refusal as refusal:
            await self.gateway.dead(refusal, partner.symbol, "iso10161")
            return refusal.reply


class TcpDelivery:
    """Delivers APDUs to a partner's host and port; reads the Status-Or-Error-Report a peer
    may answer with (an error report is a refusal; no answer within a moment is accepted)."""

    ANSWER_WAIT_S = 2.0

    def __init__(self, settings: Settings, outbound: Outbound) -> None:
        self.settings, self.outbound = settings, outbound

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    async def _send(self, partner: Partner, body: bytes) -> Attempted:
        target = urlsplit(partner.endpoint or "")
        if not target.hostname or not target.port:
            return Attempted(False, False, f"endpoint {partner.endpoint!r} is not tcp://host:port")
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(target.hostname, target.port),
                self.settings.outbound_timeout_s,
            )
        except (OSError, TimeoutError) as exc:
            return Attempted(False, True, f"{type(exc).__name__}: {exc}")
        try:
            writer.write(codec.for_the_wire(body))
            await writer.drain()
            splitter = codec.Splitter(max_apdu=self.settings.max_body_bytes)
            try:
                while not (
                    answers := splitter.feed(
                        await asyncio.wait_for(reader.read(65536), self.ANSWER_WAIT_S)
                    )
                ):
                    pass
            except TimeoutError:
                return Attempted(True, False, "sent; no answer")
            return self.outbound.judge(200, answers[0], self.settings.max_body_bytes)
        except (OSError, codec.FramingError) as exc:
            return Attempted(False, True, f"{type(exc).__name__}: {exc}")
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def deliver(self, partner: Partner, body: bytes) -> tuple[Attempted, int]:
        delay, tries = self.settings.outbound_backoff_s, 0
        while True:
            tries += 1
            attempted = await self._send(partner, body)
            if attempted.ok or not attempted.retryable or tries >= self.settings.outbound_retries:
                return attempted, tries
            await asyncio.sleep(delay)
            delay *= 2


class Iso10161Outbound(Outbound):
    protocol = "iso10161"
    content_type = BER

    def render(self, message: Message, sender_agency: str, recipient: Partner) -> bytes:
        name, value = mapping.from_canonical(message, sender_agency, recipient.agency_id)
        return codec.encode(name, value)

    def judge(self, status: int, body: bytes, limit: int) -> Attempted:
        try:
            name, value = codec.decode(body)
        except codec.Iso10161Error as error:
            return Attempted(True, False, f"sent; answer unreadable: {error}")
        if name == "Status-Or-Error-Report" and value.get("error-report"):
            return Attempted(False, False, f"ISO 10161 error report: {value['error-report']}")
        return Attempted(True, False, f"sent; answered with {name}")

    def delivery(self, settings: Settings) -> TcpDelivery:
        return TcpDelivery(settings, self)
