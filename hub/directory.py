"""The consortium directory: partners, their protocols and credentials, and rota profiles.

Loaded from YAML at start-up and validated as a whole; every error names the bad entry.
Secrets are never in the file: an entry names the environment variable or file holding them.
"""

from __future__ import annotations

import os
from enum import StrEnum
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator


class DirectoryError(ValueError):
    """The directory file is missing, unreadable or inconsistent."""


class AuthScheme(StrEnum):
    BEARER = "bearer"
    BASIC = "basic"
    NONE = "none"


class Credential(BaseModel):
    """How a partner proves who it is (inbound) or how rshub logs in to it (outbound)."""

    model_config = ConfigDict(extra="forbid")
    scheme: AuthScheme = AuthScheme.BEARER
    username: str | None = None
    secret_env: str | None = Field(None, description="environment variable holding the secret")
    secret_file: Path | None = Field(None, description="file holding the secret")

    @model_validator(mode="after")
    def _has_source(self) -> Credential:
        if self.scheme is not AuthScheme.NONE and not (self.secret_env or self.secret_file):
            raise ValueError("needs secret_env or secret_file (secrets never go in the directory)")
        if self.scheme is AuthScheme.BASIC and not self.username:
            raise ValueError("basic auth needs a username")
        return self

    def secret(self) -> str | None:
        """The secret, read now (so rotating it needs no restart); None if it is not set."""
        if self.secret_env:
            value = os.environ.get(self.secret_env)
            if value:
                return value
        if self.secret_file and self.secret_file.is_file():
            return self.secret_file.read_text().strip() or None
        return None


class Thresholds(BaseModel):
    model_config = ConfigDict(extra="forbid")
    overload: int | None = Field(None, ge=0, description="open requests before demotion")
    max_open_incoming: int | None = Field(None, ge=0, description="open requests before rejection")


class Partner(BaseModel):
    model_config = ConfigDict(extra="forbid")
    symbol: str = Field(pattern=r"^[A-Za-z0-9_.:-]+$")
    name: str
    protocol: str
    endpoint: str | None = Field(None, description="where rshub delivers to this partner")
    agency_ids: list[str] = Field(default_factory=list)
    addresses: list[str] = Field(
        default_factory=list, description="source addresses a TCP partner may connect from"
    )
    system_id: str = Field("RSHUB", description="FromSystemId rshub uses towards this partner")
    iso18626_version: str = Field(
        "1.2",
        pattern=r"^(1\.2|2021-2)$",
        description="ISO 18626 version rshub writes to this partner",
    )
    inbound_auth: Credential | None = None
    outbound_auth: Credential | None = None
    services: list[str] = Field(default_factory=lambda: ["loan", "copy"])
    lends: bool = True
    thresholds: Thresholds = Field(default_factory=Thresholds)

    @property
    def agency_id(self) -> str:
        """The agency id rshub uses for this partner in outgoing messages."""
        return self.agency_ids[0] if self.agency_ids else self.symbol


class Rota(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    ordered: bool = True
    members: list[str]
    last_resort: list[str] = Field(default_factory=list)


class Directory(BaseModel):
    model_config = ConfigDict(extra="forbid")
    consortium: str
    partners: list[Partner]
    rotas: list[Rota] = Field(default_factory=list)
    default_rota: str | None = None
    supported_protocols: frozenset[str] = frozenset({"ncip", "iso18626", "iso10161"})

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
            if partner.protocol not in self.supported_protocols:
                problems.append(
                    f"{where}: protocol {partner.protocol!r} is not one of "
                    f"{sorted(self.supported_protocols)}"
                )
            if partner.lends and not partner.endpoint:
                problems.append(f"{where}: a lending partner needs an endpoint")
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
        if self.default_rota and self.default_rota not in names:
            problems.append(f"default_rota: no rota named {self.default_rota!r}")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def partner(self, symbol: str) -> Partner | None:
        return next((p for p in self.partners if p.symbol == symbol), None)

    def by_agency(self, agency_id: str) -> Partner | None:
        return next((p for p in self.partners if agency_id in p.agency_ids), None)

    def rota_for(self, borrower: str) -> list[str]:
        """Lenders to try, in order, for a borrower's request (never the borrower itself)."""
        rota = next((r for r in self.rotas if r.name == self.default_rota), None)
        if rota is None and self.rotas:
            rota = self.rotas[0]
        members = (
            [*rota.members, *rota.last_resort]
            if rota
            else [p.symbol for p in self.partners if p.lends]
        )
        return [m for m in dict.fromkeys(members) if m != borrower]


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


def load(path: Path | str) -> Directory:
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
        return Directory.model_validate(raw)
    except ValidationError as exc:
        raise DirectoryError(f"directory file {path}: {_describe(exc, raw)}") from exc
