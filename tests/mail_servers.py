"""Real mail servers for the tests: Dovecot (IMAP, LMTP) and an SMTP server delivering into it.

Dovecot (Debian `dovecot-imapd` + `dovecot-lmtpd`) runs from a temporary configuration in a
temporary folder, on free loopback ports, as an unprivileged user: when the tests run as root
(CI does) the master process is started as the `mail` system user (Dovecot's login processes
refuse to run as root, and a test server needs no privilege), otherwise as the current user.
Mailboxes are Maildirs under the folder; users and passwords are a passwd-file.

The SMTP server is aiosmtpd (a real RFC 5321 server) in its own process
(`tests/smtp_server.py`), speaking STARTTLS or implicit TLS with AUTH, and handing each
accepted mail to Dovecot's LMTP: the same path a production MTA (Postfix, Exim) takes with
`mailbox_transport = lmtp:...`. Postfix would need root, system-wide configuration and a
system mail spool; aiosmtpd needs none of that and starts in well under a second.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from connectors.core.connections import free_port

HERE = Path(__file__).resolve().parent
DOVECOT = shutil.which("dovecot") or "/usr/sbin/dovecot"


def available() -> bool:
    return Path(DOVECOT).exists()


def _run_as() -> pwd.struct_passwd:
    return pwd.getpwnam("mail") if os.geteuid() == 0 else pwd.getpwuid(os.geteuid())


def _wait_port(port: int, process: subprocess.Popen[bytes], log: Path, what: str) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited: {log.read_text() if log.exists() else ''}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)  # polling a port that is not open yet: nothing to await
    raise RuntimeError(
        f"{what} did not open port {port}: {log.read_text() if log.exists() else ''}"
    )


def make_certificate(folder: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1/localhost (openssl), for STARTTLS and TLS."""
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost,IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


@dataclass
class Dovecot:
    """A running Dovecot: IMAP (plain + implicit TLS) and LMTP on loopback."""

    folder: Path
    users: dict[str, str]
    capabilities: str | None = None  # None: Dovecot's own (IDLE, MOVE ...)
    imap_port: int = field(default_factory=free_port)
    imaps_port: int = field(default_factory=free_port)
    lmtp_port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def cert(self) -> Path:
        return self.folder / "cert.pem"

    def client_tls(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.cert))
        return context

    def _config(self) -> str:
        who = _run_as()
        extra = f"imap_capability = {self.capabilities}\n" if self.capabilities else ""
        return f"""
base_dir = {self.folder}/run
state_dir = {self.folder}/state
log_path = {self.folder}/dovecot.log
protocols = imap lmtp
listen = 127.0.0.1
ssl = yes
ssl_cert = <{self.cert}
ssl_key = <{self.folder}/key.pem
disable_plaintext_auth = no
auth_mechanisms = plain login
default_login_user = {who.pw_name}
default_internal_user = {who.pw_name}
default_internal_group = {who.pw_name}
mail_location = maildir:~/Maildir
lmtp_save_to_detail_mailbox = no
first_valid_uid = {who.pw_uid}
last_valid_uid = {who.pw_uid}
first_valid_gid = {who.pw_gid}
{extra}
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%n {self.folder}/passwd
}}
userdb {{
  driver = static
  args = uid={who.pw_uid} gid={who.pw_gid} home={self.folder}/home/%n
}}
service imap-login {{
  chroot =
  inet_listener imap {{
    address = 127.0.0.1
    port = {self.imap_port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {self.imaps_port}
    ssl = yes
  }}
}}
service lmtp {{
  inet_listener lmtp {{
    address = 127.0.0.1
    port = {self.lmtp_port}
  }}
  unix_listener lmtp {{
    mode = 0600
  }}
}}
service anvil {{
  chroot =
}}
service stats {{
  unix_listener stats-reader {{
    mode = 0600
  }}
  unix_listener stats-writer {{
    mode = 0600
  }}
}}
"""

    def start(self) -> None:
        who = _run_as()
        for sub in ("run", "state", "home"):
            (self.folder / sub).mkdir(exist_ok=True)
        if not self.cert.exists():
            make_certificate(self.folder)
        (self.folder / "passwd").write_text(
            "".join(f"{user}:{password}\n" for user, password in self.users.items())
        )
        (self.folder / "dovecot.conf").write_text(self._config())
        for path in [self.folder, *self.folder.rglob("*")]:
            os.chown(path, who.pw_uid, who.pw_gid)
        os.chmod(self.folder, 0o755)
        command = [DOVECOT, "-F", "-c", str(self.folder / "dovecot.conf")]
        if os.geteuid() == 0:
            command = ["setpriv", f"--reuid={who.pw_uid}", f"--regid={who.pw_gid}",
                       "--clear-groups", *command]  # fmt: skip
        self.process = subprocess.Popen(
            command,
            stdout=subprocess.DEVNULL,
            stderr=open(self.folder / "stderr.log", "wb"),  # noqa: SIM115 (closed with Popen)
            env={**os.environ, "HOME": str(self.folder)},
            start_new_session=True,
        )
        log = self.folder / "dovecot.log"
        _wait_port(self.imap_port, self.process, self.folder / "stderr.log", "dovecot")
        _wait_port(self.lmtp_port, self.process, log, "dovecot")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self.process = None

    def maildir(self, user: str, folder: str = "INBOX") -> Path:
        base = self.folder / "home" / user / "Maildir"
        return base if folder == "INBOX" else base / f".{folder}"

    def count(self, user: str, folder: str = "INBOX") -> int:
        """Mails in a folder, read from the Maildir (new + cur) as the server stored them."""
        box = self.maildir(user, folder)
        return sum(
            len(list((box / sub).glob("*"))) for sub in ("new", "cur") if (box / sub).is_dir()
        )

    def mails(self, user: str, folder: str = "INBOX") -> list[bytes]:
        box = self.maildir(user, folder)
        paths = sorted(
            (p for sub in ("new", "cur") if (box / sub).is_dir() for p in (box / sub).iterdir()),
            key=lambda p: p.name,
        )
        return [p.read_bytes() for p in paths]

    def sessions(self, user: str) -> int:
        """IMAP sessions `user` has open now, as Dovecot counts them (`doveadm who`: the
        count its per-user connection limit is held to)."""
        found = subprocess.run(
            ["doveadm", "-c", str(self.folder / "dovecot.conf"), "who", "-1", user],
            capture_output=True,
            text=True,
            check=True,
        )
        return sum(
            1 for line in found.stdout.splitlines()[1:] if line.split()[:2] == [user, "imap"]
        )

    def deliver(self, user: str, raw: bytes, sender: str = "sender@example.org") -> None:
        """Deliver a mail over LMTP (as an MTA would)."""
        import smtplib

        with smtplib.LMTP("127.0.0.1", self.lmtp_port) as lmtp:
            lmtp.sendmail(sender, [f"{user}@localhost"], raw)


@dataclass
class SmtpServer:
    """aiosmtpd in its own process, relaying accepted mail to Dovecot's LMTP."""

    folder: Path
    lmtp_port: int
    user: str
    password: str
    tls: str = "starttls"  # starttls | tls
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        log = self.folder / f"smtp-{self.port}.log"
        self.process = subprocess.Popen(
            [
                sys.executable,
                str(HERE / "smtp_server.py"),
                "--port",
                str(self.port),
                "--lmtp-port",
                str(self.lmtp_port),
                "--user",
                self.user,
                "--tls",
                self.tls,
                "--cert",
                str(self.folder / "cert.pem"),
                "--key",
                str(self.folder / "key.pem"),
            ],
            stdout=open(log, "wb"),  # noqa: SIM115
            stderr=subprocess.STDOUT,
            env={**os.environ, "SMTP_TEST_PASSWORD": self.password},
            start_new_session=True,
        )
        _wait_port(self.port, self.process, log, "smtp server")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None


@dataclass
class MailServers:
    dovecot: Dovecot
    smtp: SmtpServer
    folder: Path


USERS = {
    "hub-bl": "hub-bl-pw",  # the hub's mailbox for British Library replies
    "bl": "bl-pw",  # the British Library's ARTEmail mailbox (the simulator reads it)
    "illiad": "illiad-pw",  # ILLiad's import mailbox
    "hub-out": "hub-out-pw",  # the hub's SMTP login
    "hub-orders": "hub-orders-pw",  # the hub's mailbox for ARTEmail orders sent to it
}


@contextmanager
def mail_servers(
    capabilities: str | None = None, smtp_tls: str = "starttls"
) -> Iterator[MailServers]:
    folder = Path(tempfile.mkdtemp(prefix="rshub-mail-"))
    dovecot = Dovecot(folder, dict(USERS), capabilities=capabilities)
    smtp = SmtpServer(folder, dovecot.lmtp_port, "hub-out", USERS["hub-out"], tls=smtp_tls)
    try:
        dovecot.start()
        smtp.start()
        yield MailServers(dovecot, smtp, folder)
    finally:
        smtp.stop()
        dovecot.stop()
        if not os.environ.get("RSHUB_KEEP_MAIL"):
            shutil.rmtree(folder, ignore_errors=True)
