"""Settings and per-partner options every mail connector shares (pydantic models).

Settings are the connector's (`RSHUB_<CONNECTOR>_<FIELD>`): the mail servers and limits.
Options are each partner's (`options:` in the directory): its address, the hub's mailbox
dedicated to it, and who may write into that mailbox.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from connectors.core.secret import Secret


class TlsMode(StrEnum):
    NONE = "none"  # plain text: loopback test servers only
    STARTTLS = "starttls"  # upgrade after connecting (SMTP 587, IMAP 143)
    TLS = "tls"  # implicit TLS from the first byte (SMTP 465, IMAP 993)


class MailSettings(BaseModel):
    """The mail servers a mail connector uses, and how much mail it will read."""

    model_config = ConfigDict(extra="forbid")
    imap_host: str = Field("127.0.0.1", description="IMAP server holding the partners' mailboxes")
    imap_port: int = Field(993, ge=1, le=65535, description="IMAP port")
    imap_tls: TlsMode = Field(TlsMode.TLS, description="IMAP transport security")
    smtp_host: str = Field("127.0.0.1", description="SMTP submission server for outgoing mail")
    smtp_port: int = Field(587, ge=1, le=65535, description="SMTP submission port")
    smtp_tls: TlsMode = Field(TlsMode.STARTTLS, description="SMTP transport security")
    smtp_user: str | None = Field(None, description="SMTP login (none: no AUTH)")
    smtp_password_env: Secret = Field(
        Secret(env="RSHUB_SMTP_PASSWORD"),
        description="environment variable (or {env, file}) holding the SMTP password",
    )
    ca_file: str | None = Field(
        None, description="CA certificates to verify the mail servers by (default: system's)"
    )
    from_address: str = Field(
        "rshub@localhost", description="sender of outgoing mail when the partner has no reply_to"
    )
    domain: str = Field("rshub.invalid", description="right-hand side of the Message-IDs")
    inbox: str = Field("INBOX", description="folder new partner mail arrives in")
    processed_folder: str = Field("Processed", description="folder mails go to once taken")
    failed_folder: str = Field("Failed", description="folder unreadable or refused mails go to")
    poll_interval_s: float = Field(
        60.0, gt=0, description="seconds between checks when the server offers no IDLE"
    )
    idle_renew_s: float = Field(
        1500.0, gt=0, description="seconds before an IDLE is renewed (RFC 2177: under 29 min)"
    )
    use_idle: bool = Field(True, description="use IMAP IDLE where the server offers it")
    wait_verdict: bool = Field(
        True,
        description="wait for the state machine's verdict on each mail, so a mail its "
        "transaction refuses is filed under Failed (false: faster; such mails go to Processed, "
        "their dead letter is written all the same)",
    )
    reconnect_s: float = Field(5.0, gt=0, description="first wait before reconnecting")
    reconnect_max_s: float = Field(300.0, gt=0, description="longest wait before reconnecting")
    timeout_s: float = Field(30.0, gt=0, description="time-out of one IMAP or SMTP command")
    max_mail_bytes: int | None = Field(
        None,
        gt=0,
        description="larger mails are refused unread (none: the hub's body limit "
        "RSHUB_MAX_BODY_BYTES; a larger value is capped at it)",
    )
    max_mail_attempts: int = Field(
        5,
        ge=1,
        description="a mail whose handing over fails this often while the broker answers is "
        "filed under Failed with a dead letter (stage intake) instead of being tried again",
    )
    max_parts: int = Field(50, gt=0, description="MIME parts a mail may have")
    max_depth: int = Field(5, gt=0, description="how deep MIME parts may nest")
    max_text_chars: int = Field(200_000, gt=0, description="characters of text a mail may have")


class MailPartnerOptions(BaseModel):
    """A mail partner in the directory (`options:`). How the hub knows a mail is really the
    partner's: it arrives in a mailbox only this partner is given (`mailbox_user`), its From
    is one of `from_addresses`, and, where the hub's MTA verifies DKIM/DMARC, the MTA's
    Authentication-Results (`authserv_id`) says `pass` for one of `dkim_domains`."""

    model_config = ConfigDict(extra="forbid")
    address: str | None = Field(
        None, description="the partner's address (default: the endpoint's mailto: address)"
    )
    reply_to: str | None = Field(
        None, description="the hub's address dedicated to this partner (From of our mails)"
    )
    mailbox_user: str | None = Field(
        None, description="IMAP login of that mailbox (none: the hub reads no mail from it)"
    )
    mailbox_password_env: Secret | None = Field(
        None, description="environment variable (or {env, file}) holding the mailbox password"
    )
    from_addresses: list[str] = Field(
        default_factory=list,
        description="senders accepted in the mailbox: name@domain, @domain (that domain "
        "only) or @*.domain (its subdomains) (empty: the partner's address)",
    )
    authserv_id: str | None = Field(
        None, description="trust Authentication-Results headers from this MTA (RFC 8601)"
    )
    accept_unverified: bool = Field(
        False,
        description="read mail without authserv_id, trusting the From header alone (only for "
        "a mailbox nobody but the partner's servers can write to; default: refused at start)",
    )
    dkim_domains: list[str] = Field(
        default_factory=list,
        description="with authserv_id: dkim (header.d) or dmarc (header.from) must pass for "
        "one of these domains, exactly (empty: the domains of from_addresses, else address)",
    )
    local_received: int = Field(
        1,
        ge=0,
        description="with authserv_id: Received fields the hub's own servers prepend after the "
        "MTA that verifies (Dovecot LMTP delivery: 1; delivery without LMTP: 0)",
    )
