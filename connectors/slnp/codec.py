"""The SLNP codec, sans-IO: a command's UTF-8 text <-> canonical messages, SLNP replies.

The transports turn a partner's character set into UTF-8 before `decode` and back after
`accept`/`fault`/`render` (`encode_for`/`decode_from`), so the codec sees one encoding.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from pydantic import ValidationError

from connectors.core import fidelity
from connectors.core.contract import Answer, Attempt, Decoded, Fault, Limits, Outgoing, Refusal
from connectors.core.model import (
    SENDER,
    Bibliographic,
    Event,
    Message,
    Money,
    NotApplicable,
    Reason,
    RenderError,
    Role,
    ServiceType,
    parse_lender_request_id,
    shown,
    transaction_id,
    violation,
)
from connectors.slnp import codes, vocabulary
from connectors.slnp.models import SlnpCorrelation, SlnpOptions
from connectors.slnp.wire import (
    Command,
    Response,
    SlnpError,
    data,
    error,
    parse_command,
    parse_response,
    render_command,
    render_response,
)

PROTOCOL = "slnp"
CONTENT_TYPE = "text/plain; charset=utf-8"


def error_response(kind: str, text: str) -> Response:
    code, cls = codes.error_of(kind)
    # One line: a partner's value quoted in the text must not end the reply early.
    return error(code, cls, kind, " ".join(text.split()))


def answer(response: Response) -> Answer:
    return Answer(render_response(response).encode(), CONTENT_TYPE)


def refusal(kind: str, text: str, stage: str = "parse") -> Refusal:
    return Refusal(text, answer(error_response(kind, text)), stage)


# The order number rshub answers an order with (`PFLNummer`). ZFL clients take it for a
# number: Koha's SLNP servers answer their request's row id (the sample's `PFLNummer:73`),
# the ZFL keeps it and names it in the changes it sends (SLNPPFLDatenAenderung), and the Koha
# plugin matches it as digits (`^(\d*)$`). So it is a number as such clients store one:
# - no leading zero, or a client that keeps it as a number gives back a shorter string;
# - 15 digits, below 2**53: exact as an IEEE double (Perl's and JavaScript's numbers, a
#   spreadsheet's export) and far inside a signed 64-bit integer (the transaction id's 64
#   bits took 20 digits: half of them overflowed a signed 64-bit integer and half began
#   with 0).
# It is derived from the transaction id: stable (a re-sent order gets the same number),
# the same in every hub process, and checked against the order its change names by
# BestellId (`_check_order_number`); it is never looked up, so it need not be reversible.
ORDER_NUMBER_DIGITS = 15
_FIRST_ORDER_NUMBER = 10 ** (ORDER_NUMBER_DIGITS - 1)
_ORDER_NUMBERS = 9 * _FIRST_ORDER_NUMBER  # the 15-digit numbers not starting with 0


def order_number(txn_id: str) -> str:
    """The `PFLNummer` of a transaction: 15 decimal digits, the first never 0."""
    return str(_FIRST_ORDER_NUMBER + int(txn_id.removeprefix("t"), 16) % _ORDER_NUMBERS)


def is_order_number(text: str) -> bool:
    """Whether `text` has the form of a number rshub gives (the partner's own may not)."""
    text = text.strip()
    return (
        len(text) == ORDER_NUMBER_DIGITS
        and text.isascii()
        and text.isdigit()
        and not text.startswith("0")
    )


def canonical_name(name: str) -> str:
    return vocabulary.ALIASES.get(name, name)


def parse_date(text: str) -> datetime:
    for form in vocabulary.DATE_FORMATS:
        try:
            return datetime.strptime(text.strip(), form).replace(tzinfo=UTC)
        except ValueError:
            continue
    raise ValueError(f"{shown(text)!r} is not a date (YYYY-MM-DD, DD.MM.YYYY or YYYYMMDD)")


def options_of(partner_options: dict[str, Any]) -> SlnpOptions:
    return SlnpOptions.model_validate(partner_options)


class SlnpCodec:
    protocol = PROTOCOL
    content_type = "text/plain; charset=utf-8"
    events_in = frozenset({Event.REQUEST, *vocabulary.STATUS.values()})
    events_out = frozenset({Event.REQUEST, *vocabulary.STATUS.values()})
    not_applicable = vocabulary.NOT_APPLICABLE

    def __init__(self, check_order_numbers: bool = True) -> None:
        """`check_order_numbers`: refuse a change naming another order's PFLNummer (the hub's
        side; a simulated partner reading the hub's own changes has no transaction ids to
        check them against)."""
        self.check_order_numbers = check_order_numbers

    # -- inbound ---------------------------------------------------------------------------

    def parse(self, body: bytes, limit: int) -> Command:
        """The command in `body` (UTF-8), or Refusal with its SLNP error."""
        if len(body) > limit:
            raise refusal("SLNP_REQ_FORMAT_ERROR", f"the command is longer than {limit} bytes")
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise refusal(
                "SLNP_REQ_FORMAT_ERROR", f"Error in request: not UTF-8 at byte {exc.start}"
            ) from None
        try:
            return parse_command(text)
        except SlnpError as exc:
            raise refusal(exc.kind, exc.detail) from None

    def decode(self, body: bytes, sender: str, limits: Limits) -> Decoded[Command]:
        command = self.parse(body, limits.max_body_bytes)
        name = canonical_name(command.name)
        if name == vocabulary.ORDER:
            mandatory = vocabulary.ORDER_MANDATORY
        elif name == vocabulary.CHANGE:
            mandatory = vocabulary.CHANGE_MANDATORY
        else:
            raise refusal(
                "SLNP_CMD_NOT_IMPLEMENTED",
                f"The SLNP command '{shown(command.name)}' is not implemented.",
            )
        for param in mandatory:
            if command.value(param) is None:
                raise refusal(
                    "SLNP_MAND_PARAM_LACKING",
                    f"The mandatory SLNP parameter '{param}' is lacking in request.",
                )
        try:
            if name == vocabulary.ORDER:
                message = self._order(command, sender)
            else:
                message = self._change(command, sender)
        except ValidationError as exc:
            found = violation(exc)
            param = vocabulary.PARAMETER_OF.get(found.field, found.field)
            raise refusal(
                "SLNP_PARAM_VALUE_NOT_VALID",
                f"The value of the SLNP parameter '{param}' is not valid: {found.reason}",
            ) from None
        except _Invalid as exc:
            raise refusal(
                "SLNP_PARAM_VALUE_NOT_VALID",
                f"The value of the SLNP parameter '{exc.param}' is not valid: {exc.reason}",
            ) from None
        return Decoded(message, command)

    def _order(self, command: Command, sender: str) -> Message:
        order_type = (command.value("BsTyp") or "").upper()
        if order_type not in vocabulary.ORDER_TYPES:
            raise _Invalid("BsTyp", f"{shown(order_type)!r} is not PFL or AFL")
        bib = {
            field: command.value(param)
            for param, field in vocabulary.ORDER_BIBLIOGRAPHIC.items()
            if command.value(param) is not None
        }
        if bib.get("local_id") in vocabulary.DUMMY_RECORD_IDS:
            del bib["local_id"]
        fields: dict[str, Any] = {
            field: command.value(param)
            for param, field in vocabulary.ORDER_FIELDS.items()
            if command.value(param) is not None
        }
        service = vocabulary.SERVICE_TYPES.get(
            (command.value("BsTyp2") or "").upper(), ServiceType.LOAN
        )
        sigels = [s.strip() for s in (command.get("SigelListe") or "").split(":") if s.strip()]
        if order_type == "AFL" and sigels:
            fields["to_agency"] = sigels[0]
        if deadline := command.value(vocabulary.ORDER_DEADLINE):
            fields["need_before"] = _date(vocabulary.ORDER_DEADLINE, deadline)
        if max_cost := command.value(vocabulary.ORDER_MAX_COST):
            fields["max_cost"] = Money(
                amount=_amount(vocabulary.ORDER_MAX_COST, max_cost), currency=vocabulary.CURRENCY
            )
        address = [
            " ".join(v for p in line if (v := command.value(p)))
            for line in vocabulary.ADDRESS_LINES
        ]
        if any(address):
            fields["delivery_address"] = "\n".join(line for line in address if line)
        known = {
            *vocabulary.ORDER_BIBLIOGRAPHIC,
            *vocabulary.ORDER_FIELDS,
            vocabulary.ORDER_DEADLINE,
            vocabulary.ORDER_MAX_COST,
            *(p for line in vocabulary.ADDRESS_LINES for p in line),
        }
        fields["bibliographic"] = bib  # validated with the message: errors name its field
        correlation = SlnpCorrelation(
            request_id=fields["request_id"],
            order_id=fields["request_id"],
            sigel_nb=fields.get("from_agency"),
            order_type=order_type,
            # The number the order is answered with, so the changes rshub sends name it too.
            local_number=order_number(transaction_id(sender, fields["request_id"])),
        )
        return Message(
            event=Event.REQUEST,
            sender=sender,
            source_protocol=PROTOCOL,
            service_type=service,
            request_format=vocabulary.REQUEST_FORMATS[service],
            correlation=correlation,
            extensions={PROTOCOL: _extension(command, known)},
            **fields,
        )

    def _change(self, command: Command, sender: str) -> Message:
        word = vocabulary.status_word(command.value("Status") or "")
        if word is None:
            raise _Invalid(
                "Status",
                f"{shown(command.value('Status') or '')!r} is not one of "
                f"{', '.join(vocabulary.STATUS)}",
            )
        event = vocabulary.STATUS[word]
        fields: dict[str, Any] = {}
        for param, field in vocabulary.CHANGE_FIELDS.items():
            if field and (value := command.value(param)) is not None:
                fields[field] = value
        for param, field in vocabulary.CHANGE_DATES.items():
            if value := command.value(param):
                fields[field] = _date(param, value)
        if (said := command.value(vocabulary.ANSWER_PARAM)) is not None:
            if said.casefold() not in vocabulary.ANSWERS:
                raise _Invalid(vocabulary.ANSWER_PARAM, f"{shown(said)!r} is not ja or nein")
            fields["answer"] = vocabulary.ANSWERS[said.casefold()]
        reason = command.value(vocabulary.REASON_PARAM)
        code = command.value(vocabulary.REASON_CODE_PARAM)
        if code is not None:
            if not code.isdigit() or len(code) > 3:
                raise _Invalid(vocabulary.REASON_CODE_PARAM, f"{shown(code)!r} is not a number")
            fields["reason"] = Reason.from_code(int(code), note=reason)
        elif reason:
            fields["reason"] = Reason(name="ResponderSpecific", note=reason)
        if cost := command.value(vocabulary.COST_PARAM):
            fields["cost"] = Money(
                amount=_amount(vocabulary.COST_PARAM, cost),
                currency=command.value(vocabulary.CURRENCY_PARAM) or vocabulary.CURRENCY,
            )
        order_id = command.value("BestellId") or ""
        if self.check_order_numbers:
            _check_order_number(command.value("PFLNummer"), sender, order_id)
        lender_side = SENDER.get(event) is Role.LENDER
        sigel_ours = command.value("SigelGB" if lender_side else "SigelNB")
        known = {
            "BestellId",
            "Status",
            *vocabulary.CHANGE_FIELDS,
            *vocabulary.CHANGE_DATES,
            vocabulary.ANSWER_PARAM,
            vocabulary.REASON_PARAM,
            vocabulary.REASON_CODE_PARAM,
            vocabulary.COST_PARAM,
            vocabulary.CURRENCY_PARAM,
        }
        return Message(
            event=event,
            sender=sender,
            request_id=order_id,
            source_protocol=PROTOCOL,
            from_agency=sigel_ours,
            correlation=SlnpCorrelation(
                request_id=order_id,
                order_id=order_id,
                sigel_nb=command.value("SigelNB"),
                local_number=command.value("PFLNummer"),
            ),
            extensions={PROTOCOL: _extension(command, known)},
            **fields,
        )

    def accept(self, decoded: Decoded[Command], state: str | None = None) -> Answer:
        name = decoded.context.name
        message = decoded.message
        word = vocabulary.state_word(state) if state else None
        if canonical_name(name) == vocabulary.ORDER:
            txn = message.transaction_id or transaction_id(message.sender, message.request_id)
            params = [("PFLNummer", order_number(txn))]
            if state in vocabulary.STATES_AFTER_ORDER:
                # Only an order made before is in such a state once taken (a new one is
                # searching, with a lender, or told no one lends): the same order sent again
                # (same BestellId, same content) is answered as it was, with where it is now.
                params += [("Zustand", word or ""), ("OKMsg", "ILL request already inserted.")]
            else:
                params.append(("OKMsg", "ILL request successfully inserted."))
            return answer(data(name, *params))
        params = [("BestellId", message.request_id), ("OKMsg", "Change accepted.")]
        if word:
            params.insert(1, ("Zustand", word))
        return answer(data(name, *params))

    def fault(
        self,
        fault: Fault,
        detail: str,
        decoded: Decoded[Command] | None = None,
        state: str | None = None,
    ) -> Answer:
        text = detail
        if state and fault is Fault.STATE:
            text = f"{detail} (Zustand: {vocabulary.state_word(state)})"
            order = decoded.message if decoded is not None else None
            if order is not None and order.event is Event.REQUEST:
                # A re-sent order (same BestellId) that differs from the first: the partner
                # is told the number its first order has.
                txn = order.transaction_id or transaction_id(order.sender, order.request_id)
                text += f" (PFLNummer: {order_number(txn)})"
        return answer(error_response(codes.FAULTS[fault], text))

    # -- outbound --------------------------------------------------------------------------

    def render(self, outgoing: Outgoing) -> bytes:
        message = outgoing.message
        if message.event in vocabulary.NOT_APPLICABLE:
            raise NotApplicable(f"SLNP has no command for {message.event.value}")
        try:
            options = options_of(outgoing.recipient.options)
        except ValidationError as exc:
            raise RenderError(f"the partner's SLNP options are not valid: {exc}") from None
        if message.event is Event.REQUEST:
            command = self._render_order(outgoing, options)
        else:
            command = self._render_change(outgoing, options)
        line_end = "\r\n" if options.line_end == "crlf" else "\n"
        return render_command(command, line_end).encode()

    def _render_order(self, outgoing: Outgoing, options: SlnpOptions) -> Command:
        message = outgoing.message
        bib = message.bibliographic or Bibliographic()
        if not bib.title:
            raise RenderError("an SLNPFLBestellung needs a Titel; the request has no title")
        params: list[tuple[str, str]] = [
            ("BsTyp", "AFL"),  # the partner lends
            ("BestellId", message.request_id),
            ("SigelNB", outgoing.sender_agency),
            ("SigelListe", outgoing.recipient.agency_id),
            # A lender knows the borrowing library, not its patron (the library is the
            # lender's patron in German ILL as elsewhere).
            ("BenutzerNummer", outgoing.sender_agency),
        ]
        if message.service_type is ServiceType.COPY:
            params.append(("BsTyp2", vocabulary.COPY_TYPE))
        for param, field in vocabulary.ORDER_BIBLIOGRAPHIC.items():
            value = getattr(bib, field)
            if value:
                params.append((param, str(value)))
        if message.need_before:
            params.append(
                (vocabulary.ORDER_DEADLINE, message.need_before.strftime(options.date_format))
            )
        carried = vocabulary.CARRIES | vocabulary.WITHHELD
        if message.max_cost and message.max_cost.currency == vocabulary.CURRENCY:
            params.append((vocabulary.ORDER_MAX_COST, f"{message.max_cost.amount:f}"))
        else:
            carried -= {"max_cost"}  # MaxKostenKopie is in euros: another amount is noted
        for param, field in vocabulary.ORDER_FIELDS_OUT.items():
            if value := getattr(message, field):
                params.append((param, value))
        if note := fidelity.note_for(message, carried):
            params.append(("Bemerkung", note))
        return Command(vocabulary.ORDER, tuple(_one_line(params)))

    def _render_change(self, outgoing: Outgoing, options: SlnpOptions) -> Command:
        message = outgoing.message
        word = vocabulary.STATUS_OF.get(message.event)
        if word is None:
            raise NotApplicable(f"SLNP has no status word for {message.event.value}")
        correlation = (
            SlnpCorrelation.model_validate(outgoing.correlation.model_dump())
            if outgoing.correlation is not None
            else None
        )
        order_id = (correlation.order_id or correlation.request_id) if correlation else ""
        params: list[tuple[str, str]] = [
            ("BestellId", order_id or message.request_id),
            ("Status", word),
        ]
        ours = "SigelGB" if SENDER.get(message.event) is Role.LENDER else "SigelNB"
        params.append((ours, outgoing.sender_agency))
        if correlation and correlation.local_number:
            params.append(("PFLNummer", correlation.local_number))
        elif outgoing.to_borrower and message.transaction_id:
            params.append(("PFLNummer", order_number(message.transaction_id)))
        if message.item_id:
            params.append(("Mediennummer", message.item_id))
        for param, field in vocabulary.CHANGE_DATES.items():
            if moment := getattr(message, field):
                params.append((param, moment.strftime(options.date_format)))
        if message.answer is not None:
            params.append((vocabulary.ANSWER_PARAM, "ja" if message.answer else "nein"))
        if message.reason:
            if message.reason.code is not None:
                params.append((vocabulary.REASON_CODE_PARAM, str(message.reason.code)))
            params.append((vocabulary.REASON_PARAM, message.reason.note or message.reason.name))
        if message.cost:
            params.append((vocabulary.COST_PARAM, f"{message.cost.amount:f}"))
            if message.cost.currency:
                params.append((vocabulary.CURRENCY_PARAM, message.cost.currency))
        if message.note:
            params.append(("Bemerkung", message.note))
        return Command(vocabulary.CHANGE, tuple(_one_line(params)))

    def read_answer(self, body: bytes) -> dict[str, Any] | None:
        return None  # `rshub decode` shows partners' messages; answers read as refusals

    def judge(self, body: bytes, status: int | None = None) -> Attempt:
        text = body.decode("utf-8", errors="replace")
        try:
            response = parse_response(text)
        except SlnpError as exc:
            return Attempt(False, True, f"SLNP reply unreadable: {exc.detail}", body)
        if response.ok:
            number = response.get("PFLNummer")
            said = f"; PFLNummer {number}" if number else ""
            return Attempt(True, False, f"accepted ({response.code}{said})", body)
        if response.is_error:
            retry = response.error_type in codes.RETRYABLE
            what = " ".join(p for p in (response.error_type, response.text) if p)
            detail = f"SLNP {response.code} {response.error_class}: {what}".rstrip(": ")
            return Attempt(False, retry, detail, body)
        return Attempt(False, True, f"unexpected SLNP reply {response.code}", body)


class _Invalid(ValueError):
    def __init__(self, param: str, reason: str) -> None:
        super().__init__(reason)
        self.param, self.reason = param, reason


def _check_order_number(number: str | None, sender: str, order_id: str) -> None:
    """A change naming one of rshub's order numbers must name the order its BestellId does:
    a number of another order is refused, never applied to the wrong loan."""
    if not number or not is_order_number(number):
        return  # not a number rshub gave (the partner's own, or none)
    parsed = parse_lender_request_id(order_id)
    expected = parsed[0] if parsed else transaction_id(sender, order_id)
    if number.strip() != order_number(expected):
        raise _Invalid("PFLNummer", f"{number} is not the number of order {shown(order_id)!r}")


def _date(param: str, text: str) -> datetime:
    try:
        return parse_date(text)
    except ValueError as exc:
        raise _Invalid(param, str(exc)) from None


def _amount(param: str, text: str) -> Decimal:
    try:
        value = Decimal(text.strip().replace(",", "."))  # German decimal comma
    except InvalidOperation:
        raise _Invalid(param, f"{shown(text)!r} is not an amount") from None
    if not value.is_finite() or len(text.strip()) > 40:
        raise _Invalid(param, f"{shown(text)!r} is not an amount")
    return value


def _extension(command: Command, known: set[str]) -> dict[str, Any]:
    """What the command said beyond the canonical fields, kept (nothing is dropped): the
    command's name and its other parameters, repeated ones as lists."""
    kept: dict[str, Any] = {"command": command.name}
    for key, value in command.params():
        if key in known:
            continue
        if key in kept:
            previous = kept[key]
            kept[key] = [*previous, value] if isinstance(previous, list) else [previous, value]
        else:
            kept[key] = value
    groups = [
        [list(item) for item in group.items if isinstance(item, tuple)]
        for group in command.groups()
    ]
    if groups:
        kept["groups"] = groups
    return kept


def _one_line(params: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Parameters as they can be written: values of any text (the wire escapes newlines)."""
    return [(key, value) for key, value in params if value is not None]


def decode_from(body: bytes, encoding: str) -> bytes:
    """A partner's bytes in its character set, as UTF-8 (undecodable bytes stay visible as
    U+FFFD: a wrong `encoding` option shows in the values instead of failing every command)."""
    if encoding == "utf-8":
        return body
    return body.decode(encoding, errors="replace").encode("utf-8")


def encode_for(body: bytes, encoding: str) -> bytes:
    """UTF-8 bytes in a partner's character set (what it cannot carry becomes `?`)."""
    if encoding == "utf-8":
        return body
    return body.decode("utf-8", errors="replace").encode(encoding, errors="replace")
