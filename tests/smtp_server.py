"""A real SMTP server for the tests: aiosmtpd with AUTH and STARTTLS (or implicit TLS),
handing every accepted mail to Dovecot's LMTP. Run as its own process by tests/mail_servers.py.

While a file named `refuse` exists beside the certificate, every mail is answered
`451 4.3.0` (a temporary refusal), so tests can make the server refuse and recover.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import smtplib
import ssl
from pathlib import Path
from typing import Any

from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session


class ToLmtp:
    def __init__(self, lmtp_port: int, refuse: Path) -> None:
        self.lmtp_port, self.refuse = lmtp_port, refuse

    def _deliver(self, envelope: Envelope) -> str:
        rcpts = [f"{r.split('@', 1)[0]}@localhost" for r in envelope.rcpt_tos]
        try:
            with smtplib.LMTP("127.0.0.1", self.lmtp_port) as lmtp:
                lmtp.sendmail(envelope.mail_from or "", rcpts, envelope.original_content or b"")
        except smtplib.SMTPRecipientsRefused as error:
            code, text = next(iter(error.recipients.values()))
            words = text.decode(errors="replace") if isinstance(text, bytes) else text
            return f"{code} {words}"
        except smtplib.SMTPResponseException as error:
            reason = error.smtp_error
            words = reason.decode(errors="replace") if isinstance(reason, bytes) else reason
            return f"{error.smtp_code} {words}"
        except OSError:
            return "451 4.3.0 mailbox server unavailable"
        return "250 2.0.0 delivered"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self.refuse.exists():
            return "451 4.3.0 try again later"
        return await asyncio.to_thread(self._deliver, envelope)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--lmtp-port", type=int, required=True)
    parser.add_argument("--user", required=True)
    parser.add_argument("--tls", choices=["starttls", "tls"], default="starttls")
    parser.add_argument("--cert", required=True)
    parser.add_argument("--key", required=True)
    args = parser.parse_args()
    password = os.environ["SMTP_TEST_PASSWORD"].encode()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(args.cert, args.key)
    handler = ToLmtp(args.lmtp_port, Path(args.cert).parent / "refuse")

    def authenticate(
        server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        ok = (
            isinstance(data, LoginPassword)
            and data.login == args.user.encode()
            and data.password == password
        )
        return AuthResult(success=ok, handled=False)

    def factory() -> SMTP:
        return SMTP(
            handler,
            hostname="localhost",
            tls_context=context if args.tls == "starttls" else None,
            require_starttls=args.tls == "starttls",
            authenticator=authenticate,
            auth_required=True,
            # Implicit TLS wraps the socket below aiosmtpd, which then does not know the
            # session is encrypted; it is, so AUTH is offered from the start.
            auth_require_tls=args.tls == "starttls",
        )

    async def serve() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(
            factory, "127.0.0.1", args.port, ssl=context if args.tls == "tls" else None
        )
        async with server:
            await server.serve_forever()

    asyncio.run(serve())


if __name__ == "__main__":
    main()
