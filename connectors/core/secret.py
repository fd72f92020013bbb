"""The one door through which connectors read secrets: `Secret` (an environment variable or
a file naming where a secret is kept, read at each use) and the deployment's id secret.

No other module under `connectors/` reads the environment (tests/test_architecture.py):
secrets come through here, and settings (`RSHUB_<NAME>_<FIELD>`) are read by the hub and
handed to a connector as a mapping (`Connector.load_settings(environ)`). Keeping the reads in
one place keeps one behaviour for all of them: read now, so rotating a secret needs no
restart; empty is unset; the value never appears in a repr, a dump or a log line.
"""

from __future__ import annotations

import contextlib
import functools
import os
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_serializer, model_validator


class Secret(BaseModel):
    """Where a secret is kept: an environment variable, a file, or both (the variable first).

    In YAML a bare string names the variable (`password_env: RSHUB_BL_ART_PASSWORD`), which is
    how the `*_env` options were always written; a mapping (`{env: ..., file: ...}`) may add
    a file. It dumps back to the same shape, so a partner's options round-trip.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)
    env: str | None = Field(None, description="environment variable holding the secret")
    file: Path | None = Field(None, description="file holding the secret")

    @model_validator(mode="before")
    @classmethod
    def _named(cls, data: Any) -> Any:
        return {"env": data} if isinstance(data, str) else data

    @model_validator(mode="after")
    def _somewhere(self) -> Secret:
        if not (self.env or self.file):
            raise ValueError("names no environment variable (env) and no file (file)")
        return self

    @model_serializer
    def _dump(self) -> str | dict[str, str]:
        if self.file is None and self.env:
            return self.env
        return {key: str(value) for key, value in (("env", self.env), ("file", self.file)) if value}

    def value(self, environ: Mapping[str, str] | None = None) -> str | None:
        """The secret, read now; None if it is not set. `environ` stands in for the process
        environment (tests, and codecs given one)."""
        if self.env:
            found = (os.environ if environ is None else environ).get(self.env)
            if found:
                return found
        if self.file is not None and self.file.is_file():
            return self.file.read_text().strip() or None
        return None

    def source(self) -> str:
        """Where the secret is read from, for people (never the secret itself)."""
        return " or ".join(
            part for part in (self.env and f"${self.env}", self.file and str(self.file)) if part
        )

    def __repr__(self) -> str:
        return f"Secret({self.source()})"

    def __str__(self) -> str:
        # As written in the directory or a setting (`settings` lists it so).
        return str(self._dump())


def value_of(secret: Secret | None, environ: Mapping[str, str] | None = None) -> str | None:
    """`secret.value()`, or None where no secret is configured (an optional option)."""
    return secret.value(environ) if secret is not None else None


ID_SECRET_VARIABLE = "RSHUB_ID_SECRET"
ID_SECRET_FILE = "id-secret"
# What rshub.env.example says until the operator puts a generated secret in its place.
ID_SECRET_PLACEHOLDER = "replace-me"


def id_key(environ: Mapping[str, str] | None = None) -> bytes:
    """The deployment's secret for transaction ids: `RSHUB_ID_SECRET`, else the file
    `<RSHUB_DATA_DIR or .rshub-data>/id-secret`, created once (32 random bytes, mode 0600)."""
    env = os.environ if environ is None else environ
    secret = env.get(ID_SECRET_VARIABLE)
    if secret:
        return secret.encode()
    folder = Path(env.get("RSHUB_DATA_DIR") or ".rshub-data")
    return _secret_file((folder / ID_SECRET_FILE).resolve())


@functools.cache
def _secret_file(path: Path) -> bytes:
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        # Written whole under a temporary name, then linked into place: linking fails if the
        # file exists, so two workers starting together end up with the same secret.
        temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(descriptor, "wb") as out:
                out.write(secrets.token_bytes(32))
            with contextlib.suppress(FileExistsError):  # the other worker's secret stands
                os.link(temporary, path)
        finally:
            temporary.unlink()
    secret = path.read_bytes()
    if len(secret) < 16:
        raise ValueError(f"{path} holds {len(secret)} bytes; an id secret needs at least 16")
    return secret
