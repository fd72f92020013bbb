"""The consortium directory: partners, their protocols and credentials, and rota profiles.

Loaded from YAML at start-up and validated as a whole; every error names the bad entry.
Secrets are never in the file: an entry names the environment variable or file holding them.
"""

from __future__ import annotations

import base64
import hmac
import ipaddress
from collections.abc import Iterable, Mapping
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    IPvAnyNetwork,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from connectors.core.holdings import Catalogue
from connectors.core.model import Event, Message, RequestFormat, ServiceType
from connectors.core.secret import Secret, value_of


class DirectoryError(ValueError):
    """The directory file is missing, unreadable or inconsistent."""


class AuthScheme(StrEnum):
    BEARER = "bearer"
    BASIC = "basic"
    NONE = "none"


class Credential(BaseModel):
    """How a partner proves who it is (inbound) or how rshub logs in to it (outbound)."""

    model_config = ConfigDict(extra="forbid")
    scheme: AuthScheme = Field(
        AuthScheme.BEARER,
        description="bearer (Authorization: Bearer <secret>), basic (username and secret), or "
        "none (no check: only for partners reached over a private network)",
    )
    username: str | None = Field(None, description="the user name of basic auth")
    secret_env: str | None = Field(None, description="environment variable holding the secret")
    secret_file: Path | None = Field(None, description="file holding the secret")

    @model_validator(mode="after")
    def _has_source(self) -> Credential:
        if self.scheme is not AuthScheme.NONE and not (self.secret_env or self.secret_file):
            raise ValueError("needs secret_env or secret_file (secrets never go in the directory)")
        if self.scheme is AuthScheme.BASIC and not self.username:
            raise ValueError("basic auth needs a username")
        return self

    @property
    def kept(self) -> Secret | None:
        """Where the secret is kept, as the one door reads it (none for scheme none)."""
        if not (self.secret_env or self.secret_file):
            return None
        return Secret(env=self.secret_env, file=self.secret_file)

    def secret(self) -> str | None:
        """The secret, read now (so rotating it needs no restart); None if it is not set."""
        return value_of(self.kept)

    def source(self) -> str:
        """Where the secret is read from, for people (never the secret itself)."""
        return self.kept.source() if self.kept else ""


def authenticated(credential: Credential | None, header: str | None) -> bool:
    """Constant-time check of an Authorization header against a partner's credential."""
    if credential is None:
        return False
    if credential.scheme is AuthScheme.NONE:
        return True
    expected = authorization(credential).get("Authorization")
    if not expected or not header or not credential.secret():
        return False
    return hmac.compare_digest(header.encode(), expected.encode())


def authorization(credential: Credential | None) -> dict[str, str]:
    """The Authorization header rshub sends with a credential (none for scheme none)."""
    if credential is None or credential.scheme is AuthScheme.NONE:
        return {}
    secret = credential.secret() or ""
    if credential.scheme is AuthScheme.BEARER:
        return {"Authorization": f"Bearer {secret}"}
    token = base64.b64encode(f"{credential.username}:{secret}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


class Thresholds(BaseModel):
    model_config = ConfigDict(extra="forbid")
    overload: int | None = Field(
        None, ge=1, description="open requests in total at which the lender is ranked lower"
    )
    overload_from_borrower: int | None = Field(
        None, ge=1, description="open requests from one borrower at which it is ranked lower"
    )
    max_open_incoming: int | None = Field(
        None, ge=0, description="open requests at which new ones are rejected on its behalf"
    )


class PatronNotices(BaseModel):
    """E-mail to the patron when a request of this borrowing library reaches a chosen state
    (hub/runtime/patron_notices.py, docs/api.md: Patron e-mail). Sent only where the
    request names the patron's e-mail address."""

    model_config = ConfigDict(extra="forbid")
    states: list[str] = Field(
        default_factory=lambda: ["Loaned", "CopyCompleted", "Received", "Overdue"],
        min_length=1,
        description="the states whose reaching the patron is told of (Loaned, CopyCompleted: "
        "shipped; Received: arrived for pickup; Overdue; any state name of the hub)",
    )
    language: str = Field(
        "en",
        pattern=r"^[a-z]{2}$",
        description="the language of the mail (en, de built in; another falls back to English "
        "words unless subject and template are given)",
    )
    from_address: str | None = Field(
        None, description="the mail's sender (default: the SMTP settings' from_address)"
    )
    reply_to: str | None = Field(None, description="where the patron's answers go")
    subject: str | None = Field(
        None,
        max_length=500,
        description="the subject, with $title, $state, $request_id (default: the language's)",
    )
    template: str | None = Field(
        None,
        max_length=20_000,
        description="the plain-text body, with $title, $state (in words), $due_date, "
        "$request_id and $status_link (empty where unknown) (default: the language's)",
    )
    status_base_url: str | None = Field(
        None,
        pattern=r"^https?://",
        description="the hub's public address, for the patron's status link of requests "
        "placed through the API (none: no link)",
    )


class Partner(BaseModel):
    model_config = ConfigDict(extra="forbid")
    symbol: str = Field(
        pattern=r"^[A-Za-z0-9_.:-]+$",
        description="the partner's short name in the hub: its URLs (/ncip/SYMBOL), rotas, "
        "commands and metrics",
    )
    name: str = Field(description="the library's name, for people")
    protocol: str = Field(description="the connector it speaks (ncip, iso18626, iso10161, ...)")
    endpoint: str | None = Field(
        None,
        description="where rshub delivers to this partner (http(s)://, tcp://host:port, "
        "slnp(s)://, mailto:); a partner that does not lend may have none",
    )
    agency_ids: list[str] = Field(
        default_factory=list,
        description="the ids its messages name it by (ISIL, Alma's institution||library, ISO "
        "10161 System-Id symbols); the first is the one rshub writes (default: the symbol)",
    )
    addresses: list[IPvAnyNetwork] = Field(
        default_factory=list,
        description="networks (CIDR; a bare address is one host) a TCP partner connects from",
    )
    tls_client_cert_sha256: str | None = Field(
        None,
        description="SHA-256 fingerprint of the client certificate the partner presents over "
        "TLS (hex, colons allowed)",
    )
    inbound_auth: Credential | None = Field(
        None, description="how the partner proves who it is when it calls the hub"
    )
    outbound_auth: Credential | None = Field(
        None, description="how rshub logs in when it calls the partner"
    )
    options: dict[str, Any] = Field(
        default_factory=dict,
        description="settings of the partner's protocol, checked by its connector at start-up",
    )
    contact_name: str | None = Field(
        None, description="who to ask when its deliveries fail (shown in the console)"
    )
    contact_email: str | None = Field(None, description="their email address")
    contact_phone: str | None = Field(None, description="their telephone number")
    services: list[str] = Field(
        default_factory=lambda: ["loan", "copy"], description="what it supplies as a lender"
    )
    lends: bool = Field(True, description="whether it is asked to lend (false: borrows only)")
    thresholds: Thresholds = Field(
        default_factory=Thresholds, description="load limits of a lender (all unset: none)"
    )
    catalogue: Catalogue | None = Field(None, description="where the holdings check searches")
    answer_timeout_days: float = Field(
        5.0, gt=0, description="days a lender has to answer a request before the next is asked"
    )
    delivery_time_offset_days: float = Field(
        0.0, ge=0, description="days taken off a lender's due date before it reaches this borrower"
    )
    # Libraries' systems go down for hours (nightly jobs, upgrades): retries are spaced in
    # minutes, in the spirit of ReShare (3 tries 10 minutes apart) and crosslink (5 minutes).
    retry_minutes: list[Annotated[float, Field(gt=0)]] = Field(
        default_factory=lambda: [5.0, 10.0, 10.0, 30.0, 60.0],
        max_length=50,
        description="wait before each new try of a failed delivery; after the last, parked",
    )
    parked_retry_minutes: float = Field(
        60.0, gt=0, description="how often a parked delivery is tried again on its own"
    )
    unreachable_after_minutes: float = Field(
        30.0,
        gt=0,
        description="a new request this lender cannot be reached for in this time goes to the next",
    )
    # Where neither party of a loan can report its end (the BL and any borrower after the
    # return; an OpenURL patron with the BL, an OpenURL or ILLiad e-mail lender), the hub
    # closes it by this clock (`SILENT_ENDS` in hub/domain/lifecycle.py). Four weeks: a loan
    # returned by post has arrived, and the BL's final demand for one that has not comes
    # while the loan is still open.
    close_unreported_after_days: float = Field(
        28.0,
        gt=0,
        description="days after which the hub closes a loan with this lender whose end "
        "nobody can report: counted from the borrower's return when this lender cannot "
        "report its check-in, else from the due date (or the request) when the borrower "
        "cannot report either; listed for staff until then",
    )

    patron_notices: PatronNotices | None = Field(
        None,
        description="e-mail to the patron of this borrowing library's requests on the states "
        "it chooses (none: no mail)",
    )

    @field_validator("tls_client_cert_sha256")
    @classmethod
    def _fingerprint(cls, value: str | None) -> str | None:
        if value is None:
            return None
        digits = value.replace(":", "").lower()
        if len(digits) != 64 or any(c not in "0123456789abcdef" for c in digits):
            raise ValueError("expected 64 hex digits (the certificate's SHA-256 fingerprint)")
        return digits

    def connects_from(self, address: str) -> bool:
        """Whether a connection from `address` may be this partner's (by `addresses`; a
        partner with none is identified by its certificate alone)."""
        if not self.addresses:
            return True
        try:
            ip = ipaddress.ip_address(address.split("%")[0])
        except ValueError:
            return False
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
            ip = ip.ipv4_mapped
        return any(ip in network for network in self.addresses)

    @property
    def agency_id(self) -> str:
        """The agency id rshub uses for this partner in outgoing messages."""
        return self.agency_ids[0] if self.agency_ids else self.symbol


class Rota(BaseModel):
    """A rota profile: who may be asked, and how they are ranked."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(description="the rota's name, for rules and default_rota")
    ordered: bool = Field(True, description="tried in order; unordered is ranked by load")
    members: list[str] = Field(description="the partners asked, by symbol")
    last_resort: list[str] = Field(
        default_factory=list, description="partners asked only after every member"
    )
    check_holdings: bool = Field(True, description="search members' catalogues first")
    unknown_holdings_last: bool = Field(
        True, description="rank lenders whose catalogue did not answer after confirmed holders"
    )


class RotaRule(BaseModel):
    """Attaches a rota to the requests it matches; every given condition must hold."""

    model_config = ConfigDict(extra="forbid")
    rota: str = Field(description="the rota matching requests get")
    service_type: ServiceType | None = Field(None, description="only requests of this service")
    request_format: RequestFormat | None = Field(None, description="only requests of this format")
    borrowers: list[str] = Field(default_factory=list, description="empty: any borrower")

    def matches(self, request: Message) -> bool:
        return (
            (self.service_type is None or request.service_type is self.service_type)
            and (self.request_format is None or request.request_format is self.request_format)
            and (not self.borrowers or request.sender in self.borrowers)
        )


class Directory(BaseModel):
    model_config = ConfigDict(extra="forbid")
    consortium: str = Field(description="the consortium's name")
    partners: list[Partner] = Field(description="every library and system the hub talks to")
    rotas: list[Rota] = Field(
        default_factory=list, description="rota profiles (none: every lending partner in order)"
    )
    rules: list[RotaRule] = Field(default_factory=list, description="first match wins")
    default_rota: str | None = Field(
        None, description="the rota of requests no rule matches (unset: the first rota)"
    )
    supported_protocols: frozenset[str] = Field(
        frozenset(),
        description="the connectors' names, given by `load` (empty: protocols not checked)",
    )
    reports: dict[str, frozenset[Event]] = Field(
        default_factory=dict,
        description="per protocol, the steps its partners can report (each connector's "
        "`events_in`), given by `load`; a protocol not named is taken to report every step",
    )
    needs: dict[str, tuple[str, ...]] = Field(
        default_factory=dict,
        description="per protocol, the request fields its lenders cannot do without "
        "(`Connector.request_needs`), given by `load`",
    )
    _index: dict[str, Partner] | None = PrivateAttr(None)

    @model_validator(mode="after")
    def _consistent(self) -> Directory:
        problems: list[str] = []
        seen: set[str] = set()
        agencies: dict[str, str] = {}
        for i, partner in enumerate(self.partners):
            where = f"partners[{i}] ({partner.symbol})"
            if partner.symbol in seen:
                problems.append(f"{where}: symbol is used twice")
            seen.add(partner.symbol)
            if self.supported_protocols and partner.protocol not in self.supported_protocols:
                problems.append(
                    f"{where}: protocol {partner.protocol!r} is not one of "
                    f"{sorted(self.supported_protocols)}"
                )
            if partner.lends and not partner.endpoint:
                problems.append(f"{where}: a lending partner needs an endpoint")
            if (
                partner.protocol == "iso10161"
                and not partner.addresses
                and not partner.tls_client_cert_sha256
            ):
                # A System-Id is only a claim: anyone reaching the port could make it.
                problems.append(
                    f"{where}: an ISO 10161 partner needs addresses (the networks it connects "
                    "from) or tls_client_cert_sha256 (its pinned client certificate)"
                )
            for agency in partner.agency_ids:
                if agency in agencies and agencies[agency] != partner.symbol:
                    problems.append(
                        f"{where}: agency id {agency!r} also belongs to {agencies[agency]}"
                    )
                agencies[agency] = partner.symbol
        names = [r.name for r in self.rotas]
        for rota in self.rotas:
            for member in [*rota.members, *rota.last_resort]:
                if member not in seen:
                    problems.append(f"rotas ({rota.name}): unknown partner {member!r}")
        for i, rule in enumerate(self.rules):
            if rule.rota not in names:
                problems.append(f"rules[{i}]: no rota named {rule.rota!r}")
            for borrower in rule.borrowers:
                if borrower not in seen:
                    problems.append(f"rules[{i}]: unknown partner {borrower!r}")
        if self.default_rota and self.default_rota not in names:
            problems.append(f"default_rota: no rota named {self.default_rota!r}")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def replace(self, new: Directory) -> None:
        """Take every value of `new` in place (a reloaded directory: every running part of
        the hub holds this object and reads it at each use)."""
        for name in type(new).model_fields:
            setattr(self, name, getattr(new, name))
        self._index = None  # the lookup of partner(), rebuilt at its next use

    def partner(self, symbol: str) -> Partner | None:
        # Rebuilt if the list changed (tests edit directories in place); rota ranking asks
        # this for every member, so a scan would make a 500-lender rota quadratic. Read from
        # pydantic's own store: `self._index` goes through BaseModel.__getattr__ (1.7 µs a
        # read here, 30 times a dict lookup), and a step asks this dozens of times.
        private = self.__pydantic_private__
        index = private.get("_index") if private is not None else None
        if index is None or len(index) != len(self.partners):
            index = self._index = {p.symbol: p for p in self.partners}
        return index.get(symbol)

    def unreported(self, symbol: str | None) -> frozenset[Event]:
        """The steps partner `symbol`'s channel cannot report (the lifecycle's silent-partner
        rows stand in for them)."""
        partner = self.partner(symbol or "")
        if partner is None or partner.protocol not in self.reports:
            return frozenset()
        return frozenset(Event) - self.reports[partner.protocol]

    def lacking(self, request: Message) -> list[str]:
        """What `request` lacks for every lender of its rota: the fields the lender missing
        fewest misses (empty: a lender can take it, or no protocol says what it needs)."""
        fewest: list[str] | None = None
        for symbol in self.rota_for(request):
            partner = self.partner(symbol)
            if partner is None:
                continue
            missing = [f for f in self.needs.get(partner.protocol, ()) if not _has(request, f)]
            if not missing:
                return []
            if fewest is None or len(missing) < len(fewest):
                fewest = missing
        return fewest or []

    def credentials(self) -> list[tuple[Partner, str, Credential]]:
        """Every credential of every partner: (partner, inbound/outbound, credential)."""
        return [
            (partner, direction, credential)
            for partner in self.partners
            for direction, credential in (
                ("inbound", partner.inbound_auth),
                ("outbound", partner.outbound_auth),
            )
            if credential is not None and credential.scheme is not AuthScheme.NONE
        ]

    def by_agency(self, agency_id: str) -> Partner | None:
        return next((p for p in self.partners if agency_id in p.agency_ids), None)

    def rota(self, name: str) -> Rota | None:
        return next((r for r in self.rotas if r.name == name), None)

    def profile_for(self, request: Message) -> Rota:
        """The rota for a request: the first matching rule's, else the default, else the first
        rota, else every lending partner in directory order."""
        rule = next((r for r in self.rules if r.matches(request)), None)
        name = rule.rota if rule else self.default_rota
        rota = self.rota(name) if name else None
        if rota is None and self.rotas:
            rota = self.rotas[0]
        if rota is None:
            rota = Rota(name="all lenders", members=[p.symbol for p in self.partners if p.lends])
        return rota

    def rota_for(self, request: Message) -> list[str]:
        """The profile's members then its lenders of last resort, without the borrower; a
        request addressed to one lending partner (an SLNP AFL order names its member) goes
        to that partner alone. Requests addressed to the hub itself are routed by rota."""
        named = self.by_agency(request.to_agency) if request.to_agency else None
        if named is not None and named.lends and named.symbol != request.sender:
            return [named.symbol]
        rota = self.profile_for(request)
        members = [*rota.members, *rota.last_resort]
        return [m for m in dict.fromkeys(members) if m != request.sender]


def _has(message: Message, dotted: str) -> bool:
    value: Any = message
    for name in dotted.split("."):
        value = getattr(value, name, None)
        if value is None:
            return False
    return bool(value)


def _describe(error: ValidationError, raw: dict[str, Any]) -> str:
    lines = []
    for item in error.errors():
        loc = item["loc"]
        where = ".".join(str(part) for part in loc)
        if len(loc) >= 2 and loc[0] == "partners" and isinstance(loc[1], int):
            partners = raw.get("partners") or []
            symbol = partners[loc[1]].get("symbol", "?") if loc[1] < len(partners) else "?"
            rest = ".".join(str(part) for part in loc[2:])
            where = f"partners[{loc[1]}] ({symbol})" + (f".{rest}" if rest else "")
        lines.append(f"{where}: {item['msg']}")
    return "; ".join(lines)


def load(
    path: Path | str,
    protocols: Iterable[str] | Mapping[str, frozenset[Event]] = (),
    needs: Mapping[str, tuple[str, ...]] | None = None,
) -> Directory:
    """The directory in `path`, checked; `protocols`: the names of the hub's connectors
    (a partner of any other protocol is an error naming it), or a mapping from each name to
    the steps its partners can report (`Registry.reports`); `needs`: `Registry.needs`."""
    reports = dict(protocols) if isinstance(protocols, Mapping) else {}
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError as exc:
        raise DirectoryError(f"directory file {path} does not exist") from exc
    except yaml.YAMLError as exc:
        raise DirectoryError(f"directory file {path} is not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise DirectoryError(f"directory file {path}: expected a mapping at the top")
    try:
        return Directory.model_validate(
            {
                **raw,
                "supported_protocols": frozenset(protocols),
                "reports": reports,
                "needs": dict(needs or {}),
            }
        )
    except ValidationError as exc:
        raise DirectoryError(f"directory file {path}: {_describe(exc, raw)}") from exc
