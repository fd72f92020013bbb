"""Sending mail over SMTP (aiosmtplib): STARTTLS or implicit TLS, AUTH from the environment.

The body a codec renders is the whole mail (headers included, Message-ID fixed per step), so
the sender only reads its envelope and submits it. Quick retries with growing waits cover a
server that is restarting; a 4xx answer or a network failure is retryable, a 5xx is not
(the hub's delivery retries and, in the end, the next lender take over).
"""

from __future__ import annotations

import asyncio
import re

import aiosmtplib
import structlog

from connectors.core.contract import Attempt, Limits
from connectors.core.directory import Partner
from connectors.mail.compose import envelope
from connectors.mail.listener import tls_context
from connectors.mail.options import MailSettings, TlsMode

log = structlog.get_logger(__name__)
ADDRESS = re.compile(r"[^\s<>\"'(),;:]+@[^\s<>\"'(),;:]+")


class SmtpSender:
    def __init__(self, limits: Limits, settings: MailSettings) -> None:
        self.limits, self.settings = limits, settings

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    async def send(self, partner: Partner, body: bytes) -> Attempt:
        attempt = await self._once(body)
        tries = 1
        while not attempt.ok and attempt.retryable and tries <= self.limits.outbound_retries:
            # Quick in-call retries (a server restarting); longer waits are the hub's.
            await asyncio.sleep(self.limits.outbound_backoff_s * 2 ** (tries - 1))
            attempt = await self._once(body)
            tries += 1
        # The server's words may quote a recipient (a patron's address, for patron notices):
        # logged without addresses.
        detail = ADDRESS.sub("<address>", attempt.detail or "")
        log.info("smtp.send", partner=partner.symbol, ok=attempt.ok, detail=detail)
        return attempt

    async def _once(self, body: bytes) -> Attempt:
        s = self.settings
        sender, recipients = envelope(body)
        if not recipients:
            return Attempt(False, False, "the mail has no recipient")
        password = s.smtp_password_env.value() if s.smtp_user else None
        if s.smtp_user and not password:
            return Attempt(False, True, f"SMTP password not set ({s.smtp_password_env.source()})")
        try:
            errors, reply = await aiosmtplib.send(
                body,
                sender=sender or s.from_address,
                recipients=recipients,
                hostname=s.smtp_host,
                port=s.smtp_port,
                use_tls=s.smtp_tls is TlsMode.TLS,
                start_tls=s.smtp_tls is TlsMode.STARTTLS,
                tls_context=tls_context(s) if s.smtp_tls is not TlsMode.NONE else None,
                username=s.smtp_user,
                password=password,
                timeout=min(s.timeout_s, self.limits.outbound_timeout_s),
            )
        except aiosmtplib.SMTPRecipientsRefused as error:
            codes = [r.code for r in error.recipients]
            return Attempt(False, all(400 <= c < 500 for c in codes), f"refused: {error}")
        except aiosmtplib.SMTPResponseException as error:
            return Attempt(False, 400 <= error.code < 500, f"{error.code} {error.message}")
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as error:
            return Attempt(False, True, f"SMTP: {type(error).__name__}: {error}")
        if errors:
            return Attempt(False, True, f"some recipients refused: {errors}")
        return Attempt(True, False, f"accepted: {reply}")
