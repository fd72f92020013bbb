"""The SLNP connector's models: a partner's options, the connector's settings, and what an SLNP
partner needs to recognise its own orders."""

from __future__ import annotations

import codecs
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from connectors.core.model import Correlation, Id


class SlnpOptions(BaseModel):
    """A partner's `options:` in the directory (protocol: slnp).

    Who the partner is comes from what it cannot merely claim: its source network
    (`addresses`) and/or its pinned TLS client certificate (`tls_client_cert_sha256`), both
    fields of the partner itself; its `inbound_auth` (scheme basic: username and secret_env)
    is then the login it must give in `SLNPServerInit` before anything else, and its
    `outbound_auth` the login rshub gives its server."""

    model_config = ConfigDict(extra="forbid")
    encoding: str = Field(
        "utf-8",
        description="character set of the partner's SLNP text (Koha's servers: utf-8; older "
        "SISIS installations: iso-8859-1)",
    )
    date_format: str = Field(
        "%Y-%m-%d", description="how rshub writes dates to this partner (strftime)"
    )
    line_end: Literal["lf", "crlf"] = Field("lf", description="line end rshub writes")
    greeting: bool = Field(
        True, description="rshub waits for the partner server's `220` greeting on connect"
    )
    login_command: str = Field(
        "SLNPServerInit", pattern=r"^\w+$", description="the command rshub logs in with"
    )

    @field_validator("encoding")
    @classmethod
    def _known(cls, value: str) -> str:
        try:
            return codecs.lookup(value).name
        except LookupError:
            raise ValueError(f"unknown character set {value!r}") from None


class SlnpSettings(BaseModel):
    """Read from `RSHUB_SLNP_<FIELD>`."""

    model_config = ConfigDict(extra="forbid")
    port: int = Field(
        9001,
        ge=0,
        le=65535,
        description="TCP port of the SLNP listener (no registered port; 9001 is what Koha's "
        "SLNP servers are configured with)",
    )
    tls_cert_file: Path | None = Field(
        None, description="PEM certificate: serve SLNP over TLS (with the key file)"
    )
    tls_key_file: Path | None = Field(None, description="PEM private key of that certificate")
    tls_client_ca_file: Path | None = Field(
        None,
        description="PEM certificates partners' client certificates are verified against "
        "(needed for partners identified by tls_client_cert_sha256)",
    )
    client_cert_file: Path | None = Field(
        None, description="PEM certificate rshub presents to slnps:// partners (with key)"
    )
    client_key_file: Path | None = Field(None, description="PEM key of the client certificate")
    server_ca_file: Path | None = Field(
        None, description="PEM certificates slnps:// partners are verified against (unset: system)"
    )
    greeting: str = Field(
        "SLNP rshub ready", max_length=200, description="text of the `220` greeting line"
    )
    max_line_bytes: int = Field(
        32_768, ge=256, description="longest line of a command (a line over it ends the session)"
    )
    max_command_bytes: int = Field(
        262_144, ge=1024, description="largest command (also bounded by RSHUB_MAX_BODY_BYTES)"
    )
    answer_wait_s: float = Field(
        10.0, gt=0, description="how long rshub waits for a partner's reply to one command"
    )


class SlnpCorrelation(Correlation):
    """What an SLNP partner recognises its orders by: the `BestellId` it gave (`request_id`,
    also `order_id`), the borrowing library's sigel, the order type, and the local number
    (`PFLNummer`) rshub answered with."""

    protocol: Id = "slnp"
    order_id: Id = ""
    sigel_nb: Id | None = None
    order_type: Id | None = None
    local_number: Id | None = None
