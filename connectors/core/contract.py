"""The connector contract: what a protocol package gives the hub, and what the hub gives it.

A protocol package exports one `Connector`. It declares the protocol's name (the URL segment,
the directory's `protocol:`, the `ill.outbound.<name>` topic), its sans-IO `Codec`, how
partners reach the hub (`inbound`: HTTP endpoints the hub serves, and/or `Listener`s the
connector runs itself: TCP sessions, mailboxes), how the hub reaches partners (`sender`), its
per-partner directory options, its settings, its correlation data and its simulator. The hub
derives everything else (routes, topics, agents, CLI choices, fixtures) from the list of
connectors in `connectors.registry`.

What the hub offers a connector's transports is the `Intake` (inbound) and nothing else: a
transport never sees Kafka, faust or the gateway. Connectors report evidence (canonical
messages); only the engine decides what it means for a transaction.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, ClassVar, Generic, Protocol, TypeVar, runtime_checkable
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict

from connectors.core.directory import Directory, Partner
from connectors.core.model import Correlation, Event, Message
from connectors.core.topics import OUTBOUND_PREFIX

__all__ = [
    "Answer",
    "Attempt",
    "Codec",
    "Connector",
    "Decoded",
    "Fault",
    "HttpInbound",
    "Intake",
    "Limits",
    "Listener",
    "NoOptions",
    "NoSettings",
    "Outgoing",
    "Refusal",
    "Sender",
    "WebRequest",
    "WebResponse",
    "WebRoute",
]


class Fault(StrEnum):
    """Failures every protocol must be able to report, each in its own vocabulary."""

    SYNTAX = "syntax"
    TOO_LARGE = "too_large"
    UNKNOWN_PARTNER = "unknown_partner"
    UNAUTHENTICATED = "unauthenticated"
    UNKNOWN_REQUEST = "unknown_request"
    STATE = "state"
    UNAVAILABLE = "unavailable"  # the broker cannot take the message now; try again later


@dataclass(frozen=True)
class Answer:
    """What a partner is told, in its protocol. `status` matters to HTTP channels only (a
    TCP session or a mailbox ignores it)."""

    body: bytes
    content_type: str = "application/xml; charset=utf-8"
    status: int = 200


class Refusal(Exception):
    """A protocol-level refusal: the answer the partner gets, and the stage it failed at
    (parse, authenticate, address, apply; `unavailable` for a temporary failure)."""

    def __init__(
        self, reason: str, answer: Answer, stage: str = "parse", audit_ref: str | None = None
    ) -> None:
        super().__init__(reason)
        self.reason, self.answer, self.stage, self.audit_ref = reason, answer, stage, audit_ref


C = TypeVar("C")


@dataclass
class Decoded(Generic[C]):
    """A partner's message in canonical form, with what the codec needs to answer it in its
    own protocol (`context`: the parsed document, the APDU ...). `more`: further messages
    the same body carries, each for its own request (a mail reporting on several orders, an
    order of several requests); the hub applies every one, none is dropped."""

    message: Message
    context: C
    more: tuple[Message, ...] = ()

    @property
    def messages(self) -> tuple[Message, ...]:
        return (self.message, *self.more)


@dataclass(frozen=True)
class Outgoing:
    """What a codec renders: a canonical step for one recipient. `correlation` is what the
    recipient gave to recognise its own messages (its request id, ISO 10161 transaction-id
    qualifiers ...), None when the hub speaks first (a new request to a lender)."""

    message: Message
    sender_agency: str
    recipient: Partner
    correlation: Correlation | None = None
    state: str | None = None  # the transaction's state after this step, in the hub's words
    to_borrower: bool = False  # the recipient is the request's borrower (else a lender)


# How a delivery's detail begins when the partner's system makes a person complete the step
# (ILLiad makes staff log in to submit a request link): the step is delivered as far as the
# hub can take it, and `rshub deliveries` lists it for staff while its lender holds it.
FOR_STAFF = "link for staff"


@dataclass
class Attempt:
    """One try of a delivery: accepted or not, whether another try may cure a failure, what
    happened in words, and the partner's answer where its protocol has one (relays return it
    to their caller)."""

    ok: bool
    retryable: bool
    detail: str
    answer: bytes | None = None


class Limits(BaseModel):
    """The hub's settings every transport needs (built by the hub from its settings)."""

    model_config = ConfigDict(frozen=True)
    host: str = "127.0.0.1"
    max_body_bytes: int = 1_048_576
    idle_timeout_s: float = 15.0
    read_timeout_s: float = 30.0
    max_connections_per_source: int = 32
    max_connections: int = 256
    outbound_timeout_s: float = 30.0
    outbound_retries: int = 2
    outbound_backoff_s: float = 1.0
    validate_xsd: bool = True


@runtime_checkable
class Codec(Protocol[C]):
    """A protocol's sans-IO part: bytes <-> canonical messages, no I/O.

    Inbound: `decode` a partner's bytes (raise `Refusal` with the protocol's error answer),
    `accept` what the hub applied, `fault` what it did not. Outbound: `render` a step (raise
    `NotApplicable` when the protocol has no form for it, `RenderError` when it cannot carry
    it) and `judge` the partner's answer to a delivery.

    `events_in`: every event `decode` can report; `events_out`: every event `render` has a
    form for. The hub checks that each event the lifecycle can send a partner is in
    `events_out` or explicitly in `not_applicable`, so a gap fails a test, not a partner."""

    protocol: str
    content_type: str
    events_in: frozenset[Event]
    events_out: frozenset[Event]
    not_applicable: frozenset[Event]

    def decode(self, body: bytes, sender: str, limits: Limits) -> Decoded[C]: ...

    def accept(self, decoded: Decoded[C], state: str | None = None) -> Answer: ...

    def fault(
        self,
        fault: Fault,
        detail: str,
        decoded: Decoded[C] | None = None,
        state: str | None = None,
    ) -> Answer: ...

    def render(self, outgoing: Outgoing) -> bytes: ...

    def judge(self, body: bytes, status: int | None = None) -> Attempt: ...

    def read_answer(self, body: bytes) -> dict[str, Any] | None:
        """A partner's answer (NCIP response, ISO 18626 confirmation) as data, for `rshub
        decode`; None if the body is not one."""
        ...


class Intake(Protocol):
    """What the hub offers a connector's listeners: the directory, the limits, and one way to
    hand over a partner's message. `take` audits, decodes, addresses, makes it durable and
    (with `wait`) waits for the engine's verdict, and returns the partner's answer; it raises
    `Refusal`, which the listener passes to `refuse` (the dead letter) before answering with
    `refusal.answer`. A mailbox passes `wait=False`: nothing waits for a mail's answer, and
    the engine drops a re-read mail by its content id."""

    directory: Directory
    limits: Limits

    @property
    def broker_up(self) -> bool: ...

    async def take(
        self,
        codec: Codec[Any],
        partner: str,
        body: bytes,
        content_type: str | None = None,
        *,
        wait: bool = True,
    ) -> Answer: ...

    async def refuse(self, refusal: Refusal, partner: str | None, protocol: str) -> None: ...

    def unavailable(self, codec: Codec[Any]) -> Refusal: ...

    def authenticated(self, partner: str, authorization: str | None) -> bool:
        """Whether an HTTP Authorization header proves `partner` (its `inbound_auth`)."""
        ...

    async def audit(
        self,
        direction: str,
        protocol: str,
        partner: str | None,
        body: bytes,
        content_type: str | None,
    ) -> str:
        """Write raw bytes to ill.audit (acknowledged); the audit reference."""
        ...

    async def audit_refused(
        self,
        protocol: str,
        partner: str | None,
        body: bytes,
        content_type: str | None,
        source: str | None,
    ) -> str | None:
        """Input refused before its sender was authenticated: a bounded prefix, its size and
        digest on ill.audit, within a budget per source; the reference, or None when not
        kept (over the budget, or the broker cannot take it now)."""
        ...

    async def relay(
        self, protocol: str, caller: str, target: str, body: bytes, content_type: str
    ) -> Attempt:
        """A synchronous call through the hub: the call is written to the relay topic
        (acknowledged), carried out by the relay agent with `target`'s connector sender, and
        its `Attempt` (with the target's answer bytes) returned here."""
        ...

    async def status(self, transaction_id: str) -> str | None:
        """A transaction's state (a lifecycle state name), None if this hub does not know it
        (for status pages; read from this worker's view, no broker round trip)."""
        ...

    async def load_checkpoint(self, key: str) -> str | None:
        """A listener's durable position (a mailbox's UIDVALIDITY and last UID), or None."""
        ...

    async def save_checkpoint(self, key: str, value: str) -> None:
        """Store a listener's position durably (acknowledged by the broker on return)."""
        ...


class Listener(Protocol):
    """An inbound channel the connector runs itself: a TCP server, a mailbox poller.
    `bind` is called at start-up before anything runs (a port in use stops the hub with a
    clear error there); `start` when the hub is ready to take messages."""

    def bind(self) -> None: ...

    async def start(self, intake: Intake) -> None: ...

    async def stop(self) -> None: ...

    def health(self) -> dict[str, Any]:
        """For /health: at least `state`; `dead` (the channel stopped taking input on its
        own) makes the hub unhealthy; anything else is shown as it is."""
        ...


class Sender(Protocol):
    """How steps reach a partner of this protocol (HTTP POST, a TCP session, SMTP)."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def send(self, partner: Partner, body: bytes) -> Attempt: ...


@dataclass(frozen=True)
class HttpInbound:
    """Partners POST to `/<path>/<symbol>` on the hub's HTTP port (path: the connector's
    name unless given); the hub serves it, authenticates the partner by its `inbound_auth`
    and hands the body to the codec of the partner's own protocol. Several connectors may
    share a path (NCIP peers and NCIP brokers): the partner's `protocol` chooses."""

    path: str | None = None
    # A connector that answers the request itself (a relay: the call is not a loan step)
    # instead of through `Intake.take`: called with the intake, the connector's settings, the
    # partner's symbol and the request (body already bounded); it authenticates, audits and
    # answers.
    handler: Callable[[Intake, Any, str, WebRequest], Awaitable[WebResponse]] | None = None


@dataclass(frozen=True)
class WebRequest:
    """An HTTP request as a connector's web route sees it (no aiohttp in the contract)."""

    method: str
    path: str
    match: Mapping[str, str]
    query: tuple[tuple[str, str], ...]
    headers: Mapping[str, str]
    body: bytes
    remote: str
    raw_query: bytes = b""  # undecoded (OpenURLs arrive in Latin-1 too, and with `??`)


@dataclass(frozen=True)
class WebResponse:
    status: int
    body: bytes
    content_type: str = "text/html; charset=utf-8"
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class WebRoute:
    """A route a connector adds to the hub's HTTP port (an OpenURL form, a relay). The hub
    bounds the body (`max_body_bytes`, `read_timeout_s`) before the handler runs and turns
    any exception in it into a logged 500-free refusal; handlers answer in their protocol."""

    method: str
    path: str  # aiohttp pattern, e.g. "/openurl/{symbol}"
    handler: Callable[[WebRequest], Awaitable[WebResponse]]


class NoOptions(BaseModel):
    """A protocol without per-partner options."""

    model_config = ConfigDict(extra="forbid")


class NoSettings(BaseModel):
    """A protocol without settings of its own."""

    model_config = ConfigDict(extra="forbid")


OptionsT = TypeVar("OptionsT", bound=BaseModel)
SettingsT = TypeVar("SettingsT", bound=BaseModel)


@dataclass(frozen=True)
class Connector(Generic[OptionsT, SettingsT]):
    """Everything the hub needs to know about one protocol.

    - `name`: URL segment, directory `protocol:`, topic suffix, CLI choice.
    - `codec`: the sans-IO codec.
    - `http`: served by the hub's HTTP port (None: not over HTTP).
    - `listeners`: other inbound channels, built from the limits, the connector's settings
      and the directory.
    - `web`: routes it adds to the hub's HTTP port, built from the intake, the limits and
      the settings (pages, relays: anything that is not a POST answered by the codec).
    - `sender`: the outbound transport, built from the limits, the settings and the codec
      (None: the hub never sends in this protocol).
    - `options`: the pydantic model of a partner's `options:` in the directory, validated
      at start-up; `settings`: the model of its settings, read from `RSHUB_<NAME>_<FIELD>`.
    - `endpoint_schemes`: URL schemes a partner's `endpoint` may have.
    - `correlation`: the model of what its partners need to recognise their own messages.
    - `simulator`: builds a simulated partner for tests, the demo and the bench.
    - `check`: what stops start-up for this protocol (settings and directory together).
    - `topics`: topics this connector needs besides the hub's own and its outbound topic.
    - `request_needs`: canonical fields (dotted paths) a request must have for this
      protocol's lenders to take it (`render` raises RenderError without them); intakes ask
      their patrons for them before promising a request no lender can take.
    """

    name: str
    codec: Codec[Any]
    http: HttpInbound | None = None
    listeners: Callable[[Limits, SettingsT, Directory], list[Listener]] | None = None
    web: Callable[[Intake, Limits, SettingsT], list[WebRoute]] | None = None
    sender: Callable[[Limits, SettingsT, Codec[Any]], Sender] | None = None
    options: type[OptionsT] = NoOptions  # type: ignore[assignment]
    settings: type[SettingsT] = NoSettings  # type: ignore[assignment]
    endpoint_schemes: tuple[str, ...] = ("http", "https")
    correlation: type[Correlation] = Correlation
    simulator: Callable[..., Any] | None = None
    check: Callable[[SettingsT, Directory], list[str]] | None = None
    topics: tuple[str, ...] = ()
    describe: str = ""
    request_needs: tuple[str, ...] = ()
    ENV_PREFIX: ClassVar[str] = "RSHUB_"

    @property
    def outbound_topic(self) -> str:
        return f"{OUTBOUND_PREFIX}{self.name}"

    def env_prefix(self) -> str:
        return f"{self.ENV_PREFIX}{self.name.upper().replace('-', '_')}_"

    def load_settings(self, environ: Mapping[str, str]) -> SettingsT:
        """The connector's settings from `RSHUB_<NAME>_<FIELD>` variables (defaults else);
        pydantic's ValidationError names the field."""
        prefix = self.env_prefix()
        # Empty is unset: docker compose passes `${VAR:-}` through as "".
        values = {
            name: environ[prefix + name.upper()]
            for name in self.settings.model_fields
            if environ.get(prefix + name.upper())
        }
        return self.settings.model_validate(values)

    def partner_options(self, partner: Partner) -> OptionsT:
        """A partner's `options:` as this connector's typed model."""
        return self.options.model_validate(partner.options)


def _endpoint_fits(endpoint: str, connector: Connector[Any, Any]) -> bool:
    """A mistyped endpoint is otherwise only found when every delivery fails."""
    target = urlsplit(endpoint)
    if target.scheme == "mailto" and target.scheme in connector.endpoint_schemes:
        # RFC 6068: no authority, the address is the path (`mailto://a@b` is read alike); the
        # mail connectors' own checks say whether it is an address.
        return "@" in target.path or "@" in target.netloc
    try:
        port = target.port
    except ValueError:
        return False
    if target.scheme not in connector.endpoint_schemes or not target.hostname:
        return False
    # Stream protocols (tcp://) need a port; URLs default theirs.
    return bool(port) or target.scheme in ("http", "https", "mailto", "smtp")


@dataclass
class Registry:
    """The connectors of this build, by name; everything protocol-specific is derived here."""

    connectors: list[Connector[Any, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        names = [c.name for c in self.connectors]
        if len(set(names)) != len(names):
            raise ValueError(f"connector names repeat: {names}")

    def __iter__(self) -> Any:
        return iter(self.connectors)

    def get(self, name: str) -> Connector[Any, Any] | None:
        return next((c for c in self.connectors if c.name == name), None)

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.connectors]

    @property
    def reports(self) -> dict[str, frozenset[Event]]:
        """What each connector's partners can report (its codec's `events_in`): the engine's
        silent-partner rows stand in for the rest."""
        return {c.name: c.codec.events_in for c in self.connectors}

    @property
    def needs(self) -> dict[str, tuple[str, ...]]:
        """What each connector's lenders cannot take a request without."""
        return {c.name: c.request_needs for c in self.connectors if c.request_needs}

    def check(self, directory: Directory, loaded: Mapping[str, Any] | None = None) -> list[str]:
        """What is wrong with the directory for these connectors (empty: nothing): unknown
        protocols, endpoints of the wrong scheme, options the connector does not accept,
        and each connector's own checks of its settings (`loaded`) against the directory."""
        problems: list[str] = []
        for connector in self.connectors:
            if connector.check is not None:
                own = (loaded or {}).get(connector.name) or connector.settings()
                problems.extend(connector.check(own, directory))
        for partner in directory.partners:
            found = self.get(partner.protocol)
            if found is None:
                problems.append(
                    f"partner {partner.symbol}: unknown protocol {partner.protocol!r} "
                    f"(known: {', '.join(self.names)})"
                )
                continue
            if partner.endpoint and not _endpoint_fits(partner.endpoint, found):
                problems.append(
                    f"partner {partner.symbol}: endpoint {partner.endpoint!r} is not a "
                    f"{' or '.join(s + '://' for s in found.endpoint_schemes)} address"
                )
            try:
                found.partner_options(partner)
            except ValueError as error:
                problems.append(f"partner {partner.symbol}: options: {error}")
        return problems
