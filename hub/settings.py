"""Process settings, read from the environment. Every setting has a default; see README."""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import BaseModel, Field

ENV_PREFIX = "RSHUB_"


class Settings(BaseModel):
    bootstrap_servers: str | None = Field(
        None, description="KAFKA_BOOTSTRAP_SERVERS; unset starts the embedded Tansu broker"
    )
    directory: Path = Field(Path("examples/consortium.yaml"), description="consortium YAML")
    topics_file: Path = Field(Path("topics.yaml"), description="topic declarations")
    app_id: str = Field("rshub", description="faust application id (consumer group prefix)")
    data_dir: Path = Field(Path(".rshub-data"), description="faust worker scratch folder")
    http_host: str = Field("127.0.0.1", description="address of the inbound HTTP endpoints")
    http_port: int = Field(8000, description="port of the inbound HTTP endpoints")
    iso10161_port: int = Field(1611, description="TCP port of the ISO 10161 endpoint (IANA ill)")
    max_body_bytes: int = Field(1_048_576, description="largest accepted inbound message")
    reply_timeout_s: float = Field(
        10.0, description="how long an endpoint waits for the state machine's verdict"
    )
    outbound_timeout_s: float = Field(30.0, description="HTTP time-out towards partners")
    outbound_retries: int = Field(
        2,
        description="quick tries of one delivery (network blips) before it is reported failed; "
        "later tries follow the partner's retry_minutes",
    )
    outbound_backoff_s: float = Field(1.0, description="pause between quick tries, doubled")
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
        600.0, description="how long a catalogue's held / not held answer is reused"
    )
    locate_concurrency: int = Field(4, description="requests whose catalogues are searched at once")
    timer_interval_s: float = Field(
        60.0,
        description="how often deadlines (answer time-outs, need-before, due dates) are checked",
    )
    replication_factor: int = Field(1, description="replication of topics created at start-up")
    broker_session_timeout_s: float = Field(6.0, description="Kafka consumer session time-out")
    log_level: str = Field("INFO", description="DEBUG, INFO, WARNING, ERROR")
    log_format: str = Field("json", description="json or console")
    validate_xsd: bool = Field(True, description="validate inbound XML against the XSDs")

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        values: dict[str, str] = {}
        if env.get("KAFKA_BOOTSTRAP_SERVERS"):
            values["bootstrap_servers"] = env["KAFKA_BOOTSTRAP_SERVERS"]
        for name in cls.model_fields:
            key = ENV_PREFIX + name.upper()
            if key in env:
                values[name] = env[key]
        return cls.model_validate(values)

    @staticmethod
    def documentation() -> list[tuple[str, str, str]]:
        rows = []
        for name, field in Settings.model_fields.items():
            key = (
                "KAFKA_BOOTSTRAP_SERVERS"
                if name == "bootstrap_servers"
                else ENV_PREFIX + name.upper()
            )
            rows.append((key, str(field.default), field.description or ""))
        return rows
