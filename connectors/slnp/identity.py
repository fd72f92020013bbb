"""Who is speaking on an SLNP connection, from what a partner cannot merely claim.

A connection presenting a client certificate pinned in the directory may be that partner and
no other; otherwise it may be any SLNP partner without a pinned certificate whose `addresses`
hold its source. A partner with neither is never admitted (anyone could reach the port). Among
the partners a connection may be, a partner with an `inbound_auth` must log in
(`SLNPServerInit` with its user name and secret) before it is heard; partners sharing a network
without logins are told apart by the sigel a command names (`SigelNB`/`SigelGB` among their
`agency_ids`), which is only a choice among partners that network already may be.
"""

from __future__ import annotations

import hmac
import ssl

from connectors.core import tcp
from connectors.core.directory import Directory, Partner
from connectors.core.tcp import PeerIdentity
from connectors.slnp.models import SlnpSettings
from connectors.slnp.wire import Command

PROTOCOL = "slnp"
USER_PARAMS = ("Kennung", "LoginKennung")
SECRET_PARAMS = ("Kennwort", "Passwort", "LoginPasswort")
SIGEL_PARAMS = ("SigelNB", "SigelGB")


def candidates(directory: Directory, address: str, certificate: str | None) -> list[Partner]:
    return tcp.candidates(directory, PROTOCOL, PeerIdentity(address, certificate))


def user_of(command: Command) -> str | None:
    """The login name a login command gives."""
    return next((v for p in USER_PARAMS if (v := command.value(p))), None)


def login(allowed: list[Partner], command: Command) -> Partner | None:
    """The partner whose inbound_auth this login command proves, or None."""
    user = user_of(command)
    secret = next((v for p in SECRET_PARAMS if (v := command.get(p))), None)
    if user is None or secret is None:
        return None
    for partner in allowed:
        credential = partner.inbound_auth
        if credential is None or credential.username != user:
            continue
        expected = credential.secret()
        if expected and hmac.compare_digest(expected.encode(), secret.encode()):
            return partner
    return None


def choose(allowed: list[Partner], logged_in: Partner | None, command: Command) -> Partner | None:
    """The partner a command on this connection comes from, or None."""
    if logged_in is not None:
        return logged_in
    open_ = [p for p in allowed if p.inbound_auth is None]
    if len(open_) == 1:
        return open_[0]
    sigels = {v for p in SIGEL_PARAMS if (v := command.value(p))}
    named = [p for p in open_ if sigels & {p.symbol, *p.agency_ids}]
    return named[0] if len(named) == 1 else None


def server_context(settings: SlnpSettings) -> ssl.SSLContext | None:
    """The listener's TLS context (None: plain TCP, e.g. behind stunnel); see
    `tcp.server_context`."""
    return tcp.server_context(settings)


def client_context(settings: SlnpSettings) -> ssl.SSLContext:
    """TLS towards an slnps:// partner (see `tcp.client_context`)."""
    return tcp.client_context(
        settings.server_ca_file, settings.client_cert_file, settings.client_key_file
    )


def problems(directory: Directory, settings: SlnpSettings) -> list[str]:
    """Why the SLNP port cannot identify some partner as configured (empty: it can)."""
    found: list[str] = []
    slnp = [p for p in directory.partners if p.protocol == PROTOCOL]
    for partner in slnp:
        if not tcp.identifiable(partner):
            found.append(
                f"partner {partner.symbol}: an SLNP partner needs addresses (the networks it "
                "connects from) or tls_client_cert_sha256 (its pinned client certificate)"
            )
        if partner.inbound_auth is not None and not partner.inbound_auth.username:
            found.append(f"partner {partner.symbol}: inbound_auth needs a username (Kennung)")
    pinned = tcp.pinned(directory, PROTOCOL)
    if pinned and not (
        settings.tls_cert_file and settings.tls_key_file and settings.tls_client_ca_file
    ):
        found.append(
            f"partners {', '.join(pinned)} are identified by a client certificate, but "
            "RSHUB_SLNP_TLS_CERT_FILE, RSHUB_SLNP_TLS_KEY_FILE and "
            "RSHUB_SLNP_TLS_CLIENT_CA_FILE are not all set"
        )
    return found
