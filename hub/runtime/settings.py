"""Process settings, read from the environment. Every setting has a default; see docs/settings.md.

Values are checked here, once, so a bad one stops `rshub` with one line naming the variable
rather than failing later inside the part that reads it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator

from connectors.core.contract import Limits
from connectors.core.records import packed_size

# What an audit record adds to its body (names, partner, content type, times).
RECORD_SLACK = 4_096

ENV_PREFIX = "RSHUB_"
BOOTSTRAP_ENV = "KAFKA_BOOTSTRAP_SERVERS"


class SettingsError(ValueError):
    """A setting from the environment is not acceptable; the message names the variable."""


class Settings(BaseModel):
    bootstrap_servers: str | None = Field(
        None, description="KAFKA_BOOTSTRAP_SERVERS; unset starts the embedded Tansu broker"
    )
    directory: Path = Field(Path("examples/consortium.yaml"), description="consortium YAML")
    topics_file: Path | None = Field(
        None, description="topic declarations; unset: the ones installed with rshub"
    )
    app_id: str = Field("rshub", description="faust application id (consumer group prefix)")
    single_worker: bool = Field(
        False,
        description="this hub runs alone on Apache Kafka: `serve` starts without "
        "RSHUB_ID_SECRET (the data folder's id-secret keys the ids). Unset, with "
        "KAFKA_BOOTSTRAP_SERVERS set, RSHUB_ID_SECRET is required: workers that scale out "
        "must share it",
    )
    data_dir: Path = Field(
        Path(".rshub-data"),
        description="worker scratch folder (holds the embedded broker's address for tail/route)",
    )
    http_host: str = Field(
        "127.0.0.1", description="address of the inbound endpoints (HTTP and ISO 10161)"
    )
    http_port: int = Field(8000, ge=0, le=65535, description="port of the inbound HTTP endpoints")
    extra_connectors: str = Field(
        "",
        description="connectors besides the built-in ones, as package.module:NAME, "
        "comma-separated (a protocol maintained outside rshub)",
    )
    max_body_bytes: int = Field(
        614_400,
        ge=1,
        description="largest accepted inbound message; everything derived from it must fit "
        "RSHUB_MAX_RECORD_BYTES (at most about 3/4 of it)",
    )
    refused_keep_bytes: int = Field(
        2048,
        ge=0,
        description="of input refused before authentication, the first bytes kept on ill.audit "
        "(with its size and SHA-256)",
    )
    refused_audits_per_minute: int = Field(
        20,
        ge=0,
        description="refused unauthenticated inputs audited per source address and minute; "
        "beyond, only counted and logged",
    )
    idle_timeout_s: float = Field(
        15.0,
        gt=0,
        description="a connection that has not sent a whole HTTP request head, or the first "
        "byte of an APDU, within this is closed",
    )
    read_timeout_s: float = Field(
        30.0,
        gt=0,
        description="an HTTP body, or an ISO 10161 APDU once begun, must arrive whole within this",
    )
    max_connections_per_source: int = Field(
        32, ge=1, description="open connections one source address may hold, per port"
    )
    max_connections: int = Field(
        256,
        ge=1,
        description="open connections each partners' port holds in all; more are closed at "
        "once, so a flood on one port leaves file descriptors for the others",
    )
    reply_timeout_s: float = Field(
        10.0, gt=0, description="how long an endpoint waits for the state machine's verdict"
    )
    outbound_timeout_s: float = Field(30.0, gt=0, description="HTTP time-out towards partners")
    outbound_retries: int = Field(
        2,
        ge=1,
        description="quick tries of one delivery (network blips) before it is reported failed; "
        "later tries follow the partner's retry_minutes",
    )
    outbound_backoff_s: float = Field(1.0, ge=0, description="pause between quick tries, doubled")
    delivery_per_partner: int = Field(
        4, ge=1, description="deliveries under way at once to one partner"
    )
    delivery_total: int = Field(256, ge=1, description="deliveries under way at once in all")
    fetch_wait_ms: int | None = Field(
        None,
        ge=0,
        description="how long a consumer's fetch waits at the broker; unset: 10 on the "
        "embedded broker (it polls), 500 on Apache Kafka",
    )
    idle_fetch_wait_ms: int = Field(
        100,
        ge=0,
        le=10_000,
        description="the agents' consumer's fetch wait after a quiet second on the embedded "
        "broker (it polls: a longer wait is less idle CPU, and that much longer a first hop "
        "for the first message after a pause)",
    )
    producer_linger_ms: float = Field(
        0.0, ge=0, description="how long the agents' producer waits to batch records"
    )
    max_record_bytes: int = Field(
        900_000,
        ge=10_000,
        description="largest record the hub writes (below the broker's message.max.bytes); "
        "a step whose records would be larger is dead-lettered, not written",
    )
    holdings_cache_s: float = Field(
        600.0, ge=0, description="how long a catalogue's held / not held answer is reused"
    )
    locate_concurrency: int = Field(
        4, ge=1, description="requests whose catalogues are searched at once"
    )
    timer_interval_s: float = Field(
        60.0,
        gt=0,
        description="how often deadlines (answer time-outs, need-before, due dates) are checked",
    )
    replication_factor: int = Field(
        1, ge=1, description="replication of topics created at start-up"
    )
    broker_session_timeout_s: float = Field(
        6.0, gt=0, description="Kafka consumer session time-out"
    )
    broker_check_interval_s: float = Field(
        2.0,
        gt=0,
        description="how often the gateway checks that the broker answers (endpoints answer "
        "a temporary failure while it does not)",
    )
    broker_snapshot_s: float = Field(
        300.0,
        gt=0,
        description="how often the embedded broker's keeper writes its snapshot to the data "
        "folder (what a crash of the broker or the machine can lose)",
    )
    console_enabled: bool = Field(
        True, description="serve the operators' console (its own port and login)"
    )
    console_host: str = Field("127.0.0.1", description="address of the operators' console")
    console_port: int = Field(
        8001, ge=0, le=65535, description="port of the operators' console (web pages)"
    )
    console_users_file: Path | None = Field(
        None,
        description="the console's users, hashed passwords (rshub console-user add); "
        "unset: <RSHUB_DATA_DIR>/console-users",
    )
    console_session_hours: float = Field(
        8.0, gt=0, description="a console session unused this long is logged out"
    )
    console_secure_cookies: bool = Field(
        False, description="console cookies only over HTTPS (set when TLS is in front of it)"
    )
    console_max_connections: int = Field(
        64,
        ge=1,
        description="open connections the console's port holds in all (each source address "
        "at most RSHUB_MAX_CONNECTIONS_PER_SOURCE)",
    )
    console_live_interval_s: float = Field(
        1.0, gt=0, description="how often the console's live updates look for news"
    )
    # The console's one setting here (hub/ops/console reads it): times shown to staff.
    console_timezone: str = Field(
        "UTC",
        description="time zone the console shows times in (an IANA name, e.g. Europe/Berlin)",
    )
    api_enabled: bool = Field(
        True, description="serve the JSON API at /api/v1 on the HTTP port (docs/api.md)"
    )
    webhook_allow_private: bool = Field(
        False,
        description=(
            "let webhooks reach loopback, private and link-local addresses (tests, a receiver "
            "inside your own network); off: a library cannot make the hub call inside it"
        ),
    )
    api_tokens_file: Path | None = Field(
        None,
        description="the API's clients with their hashed tokens (rshub api-token add); "
        "unset: <RSHUB_DATA_DIR>/api-tokens",
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "INFO", description="DEBUG, INFO, WARNING, ERROR"
    )
    log_format: Literal["json", "console"] = Field(
        "json", description="json, or console (coloured only on a terminal)"
    )
    library_log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "WARNING",
        description="least level logged from faust, mode and aiokafka (their INFO lines are "
        "start-up and rebalance chatter)",
    )
    validate_xsd: bool = Field(True, description="validate inbound XML against the XSDs")

    @field_validator("console_timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"{value!r} is not a time zone (e.g. Europe/Berlin)") from None
        return value

    @field_validator("log_level", "library_log_level", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @model_validator(mode="after")
    def _one_size_budget(self) -> Settings:
        """A message within the body limit must fit the broker as its audit record: otherwise
        it would be taken and then fail for ever as a temporary failure (issue 22.3)."""
        largest = packed_size(self.max_body_bytes) + RECORD_SLACK
        if largest > self.max_record_bytes:
            raise ValueError(
                f"RSHUB_MAX_BODY_BYTES={self.max_body_bytes} makes audit records of up to "
                f"{largest} bytes, over RSHUB_MAX_RECORD_BYTES={self.max_record_bytes}; lower "
                "the first or raise the second (keep it below the broker's message.max.bytes)"
            )
        return self

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Settings:
        """The settings in effect; raises SettingsError naming the first bad variable."""
        env = os.environ if environ is None else environ
        values: dict[str, str] = {}
        if env.get(BOOTSTRAP_ENV):
            values["bootstrap_servers"] = env[BOOTSTRAP_ENV]
        for name in cls.model_fields:
            key = env_name(name)
            # Empty is unset: docker compose passes `${VAR:-}` through as "".
            if env.get(key) and key != BOOTSTRAP_ENV:
                values[name] = env[key]
        try:
            return cls.model_validate(values)
        except ValidationError as exc:
            error = exc.errors()[0]
            name = str(error["loc"][0]) if error["loc"] else ""
            raise SettingsError(
                f"{env_name(name)}={values.get(name, '')!r}: {error['msg']}"
            ) from None

    def limits(self) -> Limits:
        """What every connector's transports share of these settings."""
        return Limits(
            host=self.http_host,
            max_body_bytes=self.max_body_bytes,
            idle_timeout_s=self.idle_timeout_s,
            read_timeout_s=self.read_timeout_s,
            max_connections_per_source=self.max_connections_per_source,
            max_connections=self.max_connections,
            outbound_timeout_s=self.outbound_timeout_s,
            outbound_retries=self.outbound_retries,
            outbound_backoff_s=self.outbound_backoff_s,
            validate_xsd=self.validate_xsd,
        )

    def console_users(self) -> Path:
        return self.console_users_file or self.data_dir / "console-users"

    def api_tokens(self) -> Path:
        return self.api_tokens_file or self.data_dir / "api-tokens"

    def rows(self) -> list[tuple[str, str, str, str]]:
        """(variable, value in effect, default, meaning) for every setting."""
        rows = []
        for name, field in Settings.model_fields.items():
            value = getattr(self, name)
            rows.append(
                (
                    env_name(name),
                    "unset" if value is None else str(value),
                    "unset" if field.default is None else str(field.default),
                    field.description or "",
                )
            )
        return rows

    @staticmethod
    def documentation() -> list[tuple[str, str, str]]:
        """(variable, default, meaning) for every setting."""
        return [(key, default, text) for key, _value, default, text in Settings().rows()]


def env_name(field: str) -> str:
    return BOOTSTRAP_ENV if field == "bootstrap_servers" else ENV_PREFIX + field.upper()
