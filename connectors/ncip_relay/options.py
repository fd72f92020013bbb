"""The relay's directory options (`options:` of a partner whose protocol is `ncip-relay`) and
its settings (`RSHUB_NCIP_RELAY_*`).

A relay partner is either a **broker** (ILLiad, Relais, Navigator, VDX, WorldShare, SHAREit,
GTBib-SOD, Clio II, INN-Reach: it calls, over `POST /ncip/<symbol>`) or a **member** (a library's
own NCIP responder: Alma's NCIPServlet, FOLIO edge-ncip, Koha's NCIPServer ...: the relay calls
it at the partner's `endpoint`). Secrets are never in the directory: they are read from the
environment variable or file named here, when a call is made (rotation needs no restart).
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from connectors.core import secret
from connectors.ncip_relay import tables as t

Version = Literal["2.0", "1.0"]


class Role(StrEnum):
    BROKER = "broker"
    MEMBER = "member"


class Secret(BaseModel):
    """Where a secret value is read from (never the value itself)."""

    model_config = ConfigDict(extra="forbid")
    secret_env: str | None = Field(None, description="environment variable holding it")
    secret_file: Path | None = Field(None, description="file holding it")

    @model_validator(mode="after")
    def _has_source(self) -> Secret:
        if not (self.secret_env or self.secret_file):
            raise ValueError("needs secret_env or secret_file (secrets never go in the directory)")
        return self

    def source(self) -> str:
        """Where the secret is read from, for people (never the secret itself)."""
        parts = (
            self.secret_env and f"${self.secret_env}",
            self.secret_file and str(self.secret_file),
        )
        return " or ".join(part for part in parts if part)

    def value(self) -> str | None:
        """Read now through the one door (connectors.core.secret), the variable first."""
        return secret.Secret(env=self.secret_env, file=self.secret_file).value()


class QueryToken(Secret):
    """A token the member wants in its URL (some responders take an API key there)."""

    param: str = Field("apikey", description="name of the URL parameter")


class RelayOptions(BaseModel):
    """One relay partner: a broker, or a member library's NCIP responder."""

    model_config = ConfigDict(extra="forbid")
    role: Role = Field(description="broker (it calls the hub) or member (the hub calls it)")
    ncip_version: Version = Field(
        "2.0", description="the NCIP version this party speaks (INN-Reach, SHAREit: 1.0)"
    )
    agency_scheme: str | None = Field(
        None, description="NCIP 1.0 UniqueAgencyId Scheme written to this party"
    )
    # -- broker --
    members: list[str] = Field(
        default_factory=list,
        description="broker: the member symbols it may drive ('*': every member)",
    )
    aliases: dict[str, str] = Field(
        default_factory=dict,
        description="broker: ToAgencyId it uses -> member symbol (INN-Reach agency codes)",
    )
    agency_id: str | None = Field(
        None, description="broker: FromAgencyId written when it sends an empty one"
    )
    application_profile: str | None = Field(
        None, description="broker: ApplicationProfileType added when its calls carry none"
    )
    # -- member --
    agency_ids: list[str] = Field(
        default_factory=list,
        description="member: ToAgencyId values that address it (institution code, ISIL, "
        "institution||library, broker agency codes)",
    )
    institution_code: str | None = Field(
        None, description="member: ToAgencyId written in every call to it (Alma institution)"
    )
    partner_codes: dict[str, str] = Field(
        default_factory=dict,
        description="member: broker symbol -> ApplicationProfileType written in that broker's "
        "calls (Alma's partner code; what Alma sites needed a script for with INN-Reach)",
    )
    from_agency_authentication: Secret | None = Field(
        None, description="member: FromAgencyAuthentication value it expects"
    )
    query_token: QueryToken | None = Field(
        None, description="member: a token it expects as a URL parameter"
    )
    services: list[str] = Field(
        default_factory=lambda: list(t.SERVICES),
        description="member: the services its responder supports",
    )

    @model_validator(mode="after")
    def _fits_role(self) -> RelayOptions:
        broker_only = {"members", "aliases", "agency_id", "application_profile"}
        member_only = {
            "agency_ids",
            "institution_code",
            "partner_codes",
            "from_agency_authentication",
            "query_token",
        }
        wrong = (member_only if self.role is Role.BROKER else broker_only) & self.model_fields_set
        if wrong:
            raise ValueError(f"a {self.role.value} has no {', '.join(sorted(wrong))}")
        unknown = sorted(set(self.services) - set(t.SERVICES))
        if unknown:
            raise ValueError(f"services {unknown} are not relayed (known: {list(t.SERVICES)})")
        return self

    def may_drive(self, member: str) -> bool:
        return "*" in self.members or member in self.members

    def secrets(self) -> list[tuple[str, Secret]]:
        """The member's own secrets (beside the partner's outbound_auth): option name and
        where it is read from."""
        named: list[tuple[str, Secret | None]] = [
            ("from_agency_authentication", self.from_agency_authentication),
            ("query_token", self.query_token),
        ]
        return [(name, secret) for name, secret in named if secret is not None]


class RelaySettings(BaseModel):
    """`RSHUB_NCIP_RELAY_<FIELD>`."""

    model_config = ConfigDict(extra="forbid")
    answer_timeout_s: float = Field(
        25.0,
        gt=0,
        description="how long a broker waits for its member's answer before it gets NCIP "
        "Temporary Processing Failure (the late answer is still recorded)",
    )
    member_timeout_s: float = Field(
        60.0, gt=0, description="how long the relay agent waits for a member's responder"
    )
    replay_window_s: float = Field(
        900.0,
        ge=0,
        description="a state-changing call repeated with the same content within this is "
        "answered with the first answer, without calling the member again (0: off)",
    )
    concurrency: int = Field(64, ge=1, description="member calls under way at once per worker")
