"""ISO 10161 ILL (BER over TCP: OCLC VDX, Aleph, LADD, ILL SBN), as a connector."""

from __future__ import annotations

from typing import Any

from connectors.core.contract import Codec, Connector, Limits, Listener, NoOptions
from connectors.core.directory import Directory
from connectors.iso10161.mapping import Iso10161Correlation
from connectors.iso10161.transport import (
    Iso10161Codec,
    Iso10161Server,
    Iso10161Settings,
    TcpSender,
    identity_problems,
    tls_context,
)

CODEC = Iso10161Codec()


def listeners(limits: Limits, settings: Iso10161Settings, _directory: Directory) -> list[Listener]:
    return [Iso10161Server(limits, settings, CODEC)]


def sender(limits: Limits, _settings: Iso10161Settings, codec: Codec[Any]) -> TcpSender:
    return TcpSender(limits, codec)


def check(settings: Iso10161Settings, directory: Directory) -> list[str]:
    """Start-up problems: partners the port cannot identify as configured, TLS set up
    halfway or with unusable files."""
    problems = identity_problems(directory, settings)
    if bool(settings.tls_cert_file) != bool(settings.tls_key_file):
        problems.append("RSHUB_ISO10161_TLS_CERT_FILE and RSHUB_ISO10161_TLS_KEY_FILE go together")
    elif not problems:
        try:
            tls_context(settings)
        except (OSError, ValueError) as error:  # ssl.SSLError is an OSError
            problems.append(f"ISO 10161 TLS certificate or key not usable: {error}")
    return problems


CONNECTOR: Connector[NoOptions, Iso10161Settings] = Connector(
    name="iso10161",
    codec=CODEC,
    listeners=listeners,
    sender=sender,
    settings=Iso10161Settings,
    endpoint_schemes=("tcp",),
    correlation=Iso10161Correlation,
    check=check,
    describe="ISO 10161 ILL, BER over TCP (OCLC VDX, Aleph, LADD, ILL SBN)",
)
