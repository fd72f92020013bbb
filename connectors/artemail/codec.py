"""The ARTEmail codec (sans-IO): BL reply mails in, orders out."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from connectors.artemail import order as orders
from connectors.artemail.codes import EVENTS_IN
from connectors.artemail.options import DEFAULT_REFERENCE, ArtemailCorrelation, ArtemailOptions
from connectors.artemail.reply import Report, amount_in, date_in, number_in, read_reply
from connectors.core.contract import Answer, Attempt, Decoded, Fault, Limits, Outgoing, Refusal
from connectors.core.model import (
    Bibliographic,
    Event,
    Message,
    Money,
    NotApplicable,
    Reason,
    RenderError,
    ServiceType,
)
from connectors.core.secret import Secret
from connectors.mail.channel import TEXT, fault_answer, partner_address
from connectors.mail.compose import compose, message_id
from connectors.mail.mime import MailError, MailLimits, looks_like_mail, parse_mail

PROTOCOL = "artemail"
# Delivery keywords that order a loan (FORMAT.md); every other delivery keyword is a copy.
LOAN_KEYWORDS = frozenset({"LOAN"})


class ArtemailCodec:
    protocol = PROTOCOL
    content_type = "message/rfc822"
    events_in = EVENTS_IN | {Event.REQUEST}
    events_out = frozenset({Event.REQUEST})
    # No mail form of these is known for the BL (FORMAT.md): the borrower is told the step
    # is not supported by this partner.
    not_applicable = frozenset(Event) - events_out

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        self.environ = environ
        # Reply patterns per partner (options.reference_pattern), set when listeners are built.
        self.patterns: dict[str, re.Pattern[str]] = {}
        self.default_pattern = re.compile(DEFAULT_REFERENCE)

    # -- inbound ----------------------------------------------------------------------------

    def _refuse(self, fault: Fault, detail: str, stage: str = "parse") -> Refusal:
        return Refusal(detail, fault_answer(fault, detail), stage=stage)

    def decode(self, body: bytes, sender: str, limits: Limits) -> Decoded[Any]:
        limit = limits.max_body_bytes
        subject = ""
        if looks_like_mail(body):
            try:
                mail = parse_mail(body, MailLimits(max_bytes=limit))
            except MailError as error:
                raise self._refuse(error.fault, error.detail) from None
            subject, text = mail.subject, mail.text
        else:
            if len(body) > limit:
                raise self._refuse(Fault.TOO_LARGE, f"{len(body)} bytes, over {limit}")
            try:
                text = body.decode("utf-8")
            except UnicodeDecodeError:
                raise self._refuse(Fault.SYNTAX, "body is not UTF-8 text") from None
        if orders.is_order(text):
            return self._order(text, sender)
        pattern = self.patterns.get(sender, self.default_pattern)
        reports = read_reply(subject, text, pattern)
        unreferenced = [r for r in reports if r.reference is None]
        if unreferenced:
            # A report of the mail names no request: refused whole, so that no report of it
            # is applied while another is not (a person reads the mail in Failed).
            raise self._refuse(
                Fault.UNKNOWN_REQUEST,
                f"no reference found in the reply: {unreferenced[0].line[:120]!r}",
            )
        # One message per request reported on, in the mail's order: each request's first
        # coded line is its report, any further lines of it ride along as its note.
        by_reference: dict[str, list[Report]] = {}
        for report in reports:
            by_reference.setdefault(report.reference or "", []).append(report)
        messages = []
        for group in by_reference.values():
            coded = [r for r in group if r.code] or group
            try:
                messages.append(
                    self._message(coded[0], sender, subject, [r.line for r in coded[1:]])
                )
            except ValidationError as error:
                raise self._refuse(
                    Fault.SYNTAX, f"reply out of bounds: {error.errors()[0]['msg']}"
                ) from None
        return Decoded(messages[0], reports, more=tuple(messages[1:]))

    def _message(self, report: Report, sender: str, subject: str, more: list[str]) -> Message:
        spec = report.spec
        note = " / ".join([report.line, *more])[:4000]
        fields: dict[str, Any] = {
            "event": spec.event if spec else Event.LENDER_NOTE,
            "sender": sender,
            "request_id": report.reference,
            "source_protocol": PROTOCOL,
            "note": note,
            "correlation": ArtemailCorrelation(request_id=report.reference or ""),
            "extensions": {
                PROTOCOL: {"code": report.code or "", "line": report.line, "subject": subject}
            },
        }
        if spec is not None:
            fields["answer"] = spec.answer
            if spec.reason is not None:
                fields["reason"] = Reason.from_code(spec.reason, note=spec.meaning)
            if spec.value == "date":
                fields["due_date"] = date_in(report.value)
            elif spec.value == "amount":
                amount = amount_in(report.value)
                fields["cost"] = Money(amount=amount, currency="GBP") if amount else None
            elif spec.value == "number":
                fields["extensions"][PROTOCOL]["number"] = number_in(report.value) or ""
            elif spec.value == "weeks":
                fields["extensions"][PROTOCOL]["weeks"] = number_in(report.value) or ""
        if fields["event"] in (Event.LOANED, Event.COPY_COMPLETED):
            # The BL names no item; our order reference identifies this supply in every
            # later step (NCIP borrowers need an item id for them).
            fields["item_id"] = report.reference or None
        return Message(**fields)

    def _order(self, text: str, sender: str) -> Decoded[Any]:
        """An order: one Request per TX block, each read completely (bibliographic lines,
        keywords, delivery block); a block that cannot be read refuses the whole mail."""
        try:
            order = orders.read_order(text)
        except orders.OrderError as error:
            raise self._refuse(Fault.SYNTAX, str(error)) from None
        messages = []
        for request in order.requests:
            try:
                messages.append(self._request(request, sender))
            except ValidationError as error:
                raise self._refuse(
                    Fault.SYNTAX,
                    f"request TX{request.reference}: {error.errors()[0]['msg']} "
                    "(nothing of the order is taken)",
                ) from None
        return Decoded(messages[0], order, more=tuple(messages[1:]))

    def _request(self, request: orders.OrderRequest, sender: str) -> Message:
        loan = any(word in LOAN_KEYWORDS for word in request.keywords)
        postal = [x for x in request.deliver_to if "@" not in x]
        return Message(
            event=Event.REQUEST,
            sender=sender,
            request_id=request.reference,
            source_protocol=PROTOCOL,
            service_type=ServiceType.LOAN if loan else ServiceType.COPY,
            bibliographic=Bibliographic(**orders.read_bibliographic(request.lines)),
            delivery_address="\n".join(postal) or None,
            delivery_email=next((x for x in request.deliver_to if "@" in x), None),
            extensions={
                PROTOCOL: {
                    "keywords": request.keywords,
                    "lines": request.lines,
                    "deliver_to": request.deliver_to,
                }
            },
        )

    def accept(self, decoded: Decoded[Any], state: str | None = None) -> Answer:
        return Answer(b"", TEXT)

    def fault(
        self,
        fault: Fault,
        detail: str,
        decoded: Decoded[Any] | None = None,
        state: str | None = None,
    ) -> Answer:
        return fault_answer(fault, detail)

    # -- outbound ---------------------------------------------------------------------------

    def _secret(self, secret: Secret) -> str:
        value = secret.value(self.environ)
        if not value:
            raise RenderError(
                f"{secret.source()} is not set (the BL customer code and ART password)"
            )
        return value

    def render(self, outgoing: Outgoing) -> bytes:
        message = outgoing.message
        if message.event is not Event.REQUEST:
            raise NotApplicable(f"the British Library takes no {message.event} by ARTEmail")
        try:
            options = ArtemailOptions.model_validate(outgoing.recipient.options)
        except ValidationError as error:
            raise RenderError(f"options: {error.errors()[0]['msg']}") from None
        address = partner_address(outgoing.recipient, options)
        if not address:
            raise RenderError("the partner has no mail address (options.address or mailto:)")
        reference = message.request_id
        try:
            block = orders.request_block(message, reference, options)
        except orders.OrderError as error:
            raise RenderError(str(error)) from None
        text = orders.order_text(
            self._secret(options.customer_code_env), self._secret(options.password_env), [block]
        )
        sender = options.reply_to or "rshub@localhost"
        return compose(
            sender=sender,
            to=address,
            subject=f"FILEREFNO {reference}",
            text=text,
            mid=message_id(
                message.transaction_id or reference,
                f"{message.event}:{reference}",
                sender.rsplit("@", 1)[-1],
            ),
            date=message.timestamp,
        )

    def redact(self, body: bytes) -> bytes:
        """The body with an order's customer code and ART password replaced, for every
        place a body is shown or exported (the operators' index keeps this, not the original).
        A mail is kept as its header and its decoded text (a base64 or quoted-printable
        body would otherwise carry the credentials in a form the replacement cannot see)."""
        if not looks_like_mail(body):
            return orders.redact_text(body.decode("utf-8", "replace")).encode()
        head, sep, _ = body.partition(b"\r\n\r\n")
        if not sep:
            head, sep, _ = body.partition(b"\n\n")
        try:
            text = parse_mail(body, MailLimits(max_bytes=len(body) + 1)).text
        except MailError:
            return orders.redact_text(body.decode("utf-8", "replace")).encode()
        redacted = orders.redact_text(text)
        if redacted == text:
            return body
        return head + sep + redacted.encode()

    def read_answer(self, body: bytes) -> dict[str, Any] | None:
        return None  # a mail is a message; `rshub decode` shows it as one

    def judge(self, body: bytes, status: int | None = None) -> Attempt:
        # SMTP has no answer to read: a mail accepted by the server is a request sent.
        return Attempt(True, False, "accepted by the SMTP server")


CODEC = ArtemailCodec()
