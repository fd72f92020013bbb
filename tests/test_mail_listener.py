"""The mailbox listener against a real Dovecot, and the SMTP sender against a real SMTP server
delivering into it: restart safety, Failed + dead letters, IDLE and polling, MOVE and
COPY+EXPUNGE, STARTTLS and implicit TLS, refusals."""

from __future__ import annotations

import asyncio
import os
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from connectors.artemail.codec import ArtemailCodec
from connectors.artemail.options import ArtemailOptions
from connectors.core.contract import Limits, Outgoing
from connectors.core.directory import Directory, Partner
from connectors.mail.channel import mailbox_listeners
from connectors.mail.listener import MailboxListener
from connectors.mail.options import MailSettings, TlsMode
from connectors.mail.sender import SmtpSender
from tests.mail_intake import Crash, MemoryIntake
from tests.mail_servers import USERS, MailServers, available, mail_servers
from tests.test_artemail_codec import ENV, SAMPLES, article_1301, bl

pytestmark = pytest.mark.skipif(not available(), reason="dovecot is not installed (.ci/run)")

# Capabilities of a server without IDLE and MOVE (Dovecot's list, less those two).
PLAIN_CAPABILITIES = "IMAP4rev1 LITERAL+ SASL-IR LOGIN-REFERRALS ID ENABLE UIDPLUS"


@pytest.fixture
def servers() -> Iterator[MailServers]:
    with mail_servers() as running:
        yield running


def settings_for(m: MailServers, **extra: object) -> MailSettings:
    return MailSettings.model_validate(
        {
            "imap_port": m.dovecot.imaps_port,
            "imap_tls": TlsMode.TLS,
            "smtp_port": m.smtp.port,
            "smtp_user": "hub-out",
            "smtp_password_env": "TEST_SMTP_PASSWORD",
            "ca_file": str(m.dovecot.cert),
            "timeout_s": 10,
            "reconnect_s": 0.1,
            **extra,
        }
    )


def bl_options() -> ArtemailOptions:
    return ArtemailOptions(
        address="artemail@art.bl.uk",
        mailbox_user="hub-bl",
        from_addresses=["@bl.uk"],
        accept_unverified=True,  # the harness's MTA writes no verdict (one test adds them)
    )


def listener(m: MailServers, **extra: object) -> MailboxListener:
    return MailboxListener(
        protocol="artemail",
        codec=ArtemailCodec(),
        partner="BL",
        options=bl_options(),
        settings=settings_for(m, **extra),
        password=USERS["hub-bl"],
    )


def ref(n: int) -> str:
    return f"t{n:016x}.1"


def bl_reply(n: int, code: str = "SHIPPED COPY", sender: str = "bldss@bl.uk") -> bytes:
    return (
        f"From: {sender}\r\nTo: hub-bl@localhost\r\nSubject: FILEREFNO {ref(n)}\r\n"
        f"Message-ID: <reply-{n}@bl.uk>\r\n\r\nTX{ref(n)}\r\n{code}\r\n"
    ).encode()


async def until_done(task: asyncio.Task[None] | None) -> None:
    assert task is not None
    with pytest.raises(Crash):
        await task


def drop(crashed: MailboxListener) -> None:
    """What a dead process leaves: its connection closes without a LOGOUT."""
    if crashed._imap is not None:
        crashed._imap.protocol.transport.close()


async def test_crashes_at_every_step_apply_each_mail_once_and_skip_none(
    servers: MailServers,
) -> None:
    for n in range(1, 6):
        servers.dovecot.deliver("hub-bl", bl_reply(n))
    intake = MemoryIntake()

    # Killed after mail 2 was made durable, before its position was recorded.
    intake.crash_after_take = ref(2)
    first = listener(servers)
    await first.start(intake)
    await until_done(first._task)
    drop(first)
    assert servers.dovecot.count("hub-bl", "Processed") == 1

    # Killed after mail 4's position was recorded, before it was moved.
    intake.crash_after_checkpoint = 4
    second = listener(servers)
    await second.start(intake)
    await until_done(second._task)
    drop(second)
    assert servers.dovecot.count("hub-bl") == 2  # mails 4 and 5 still in the inbox

    third = listener(servers)
    await third.start(intake)
    await third.wait_handled(1)  # mail 5; mail 4 is only moved
    await third.stop()

    assert servers.dovecot.count("hub-bl") == 0
    assert servers.dovecot.count("hub-bl", "Processed") == 5
    assert sorted(intake.applied.values()) == [ref(n) for n in range(1, 6)]
    # Mail 2 was handed over again after the first crash (the engine drops it by content
    # id); mail 4 was not, as its position said it had been taken.
    assert intake.taken[ref(2)] == 2 and intake.taken[ref(4)] == 1
    assert all(intake.taken[ref(n)] == 1 for n in (1, 3, 5))
    assert intake.dead == []


async def test_unreadable_and_foreign_mail_goes_to_failed_with_a_dead_letter(
    servers: MailServers,
) -> None:
    hostile = {
        "html only": (
            b"From: bldss@bl.uk\r\nSubject: x\r\nContent-Type: text/html\r\n\r\n<p>DUE</p>\r\n"
        ),
        "wrong charset": (
            b"From: bldss@bl.uk\r\nSubject: x\r\nContent-Type: text/plain; charset=us-ascii\r\n"
            b"Content-Transfer-Encoding: 8bit\r\n\r\nTX" + ref(9).encode() + b"\r\nNOT \xff\xfe\r\n"
        ),
        "not the BL": bl_reply(10, sender="someone@example.org"),
        "unknown reference": b"From: bldss@bl.uk\r\nSubject: status\r\n\r\nDUE 01-01-2027\r\n",
        "too large": bl_reply(11) + b"x" * 5000 + b"\r\n",
    }
    for raw in hostile.values():
        servers.dovecot.deliver("hub-bl", raw)
    servers.dovecot.deliver("hub-bl", bl_reply(12))
    intake = MemoryIntake()
    reader = listener(servers, max_mail_bytes=4000)
    await reader.start(intake)
    await reader.wait_handled(len(hostile) + 1)
    await reader.stop()

    assert servers.dovecot.count("hub-bl", "Failed") == len(hostile)  # kept, never deleted
    assert servers.dovecot.count("hub-bl", "Processed") == 1
    assert list(intake.applied.values()) == [ref(12)]
    reasons = [reason for _, reason, _ in intake.dead]
    assert len(reasons) == len(hostile)
    assert any("HTML-only" in r for r in reasons)
    assert any("not valid us-ascii" in r for r in reasons)
    assert any("someone@example.org" in r for r in reasons)
    assert any("no reference" in r for r in reasons)
    assert any("over 4000" in r for r in reasons)
    stages = {stage for stage, _, _ in intake.dead}
    assert "authenticate" in stages
    assert all(partner == "BL" for _, _, partner in intake.dead)


async def test_a_mail_its_transaction_refuses_goes_to_failed(servers: MailServers) -> None:
    servers.dovecot.deliver("hub-bl", bl_reply(13))
    servers.dovecot.deliver("hub-bl", bl_reply(14))
    intake = MemoryIntake()
    intake.unknown.add(ref(13))
    reader = listener(servers)
    await reader.start(intake)
    await reader.wait_handled(2)
    await reader.stop()
    assert servers.dovecot.count("hub-bl", "Failed") == 1
    assert b"TX" + ref(13).encode() in servers.dovecot.mails("hub-bl", "Failed")[0]
    assert list(intake.applied.values()) == [ref(14)]
    assert intake.dead == [("apply", f"no transaction {ref(13)}", "BL")]


async def test_idle_delivers_new_mail_without_polling(servers: MailServers) -> None:
    intake = MemoryIntake()
    reader = listener(servers, poll_interval_s=3600)  # only IDLE can wake it
    await reader.start(intake)
    async with reader._changed:
        await reader._changed.wait_for(lambda: reader.idling)
    servers.dovecot.deliver("hub-bl", bl_reply(21))
    await reader.wait_handled(1)
    await reader.stop()
    assert list(intake.applied.values()) == [ref(21)]
    assert servers.dovecot.count("hub-bl", "Processed") == 1


async def test_a_mail_arriving_while_the_one_before_is_handed_over_is_read_at_once(
    servers: MailServers,
) -> None:
    """The server tells of a mail once, in the answer to the command it was busy with (here
    the FETCH or MOVE of the mail before): the listener must not then sit in IDLE until it
    is renewed (25 minutes by default) with that mail unread."""
    servers.dovecot.deliver("hub-bl", bl_reply(23))
    intake = MemoryIntake()

    def next_mail() -> None:
        intake.during_take = None
        servers.dovecot.deliver("hub-bl", bl_reply(24))

    intake.during_take = next_mail
    reader = listener(servers, poll_interval_s=3600)  # only IDLE or a search can wake it
    await reader.start(intake)
    # The bound only turns a hang into a failure: the second mail is read in well under it.
    await asyncio.wait_for(reader.wait_handled(2), 30)
    await reader.stop()
    assert sorted(intake.applied.values()) == [ref(23), ref(24)]
    assert servers.dovecot.count("hub-bl", "Processed") == 2


async def test_polling_and_copy_expunge_where_idle_and_move_are_not_offered() -> None:
    with mail_servers(capabilities=PLAIN_CAPABILITIES) as servers:
        servers.dovecot.deliver("hub-bl", bl_reply(31))
        intake = MemoryIntake()
        reader = listener(servers, poll_interval_s=0.2)
        await reader.start(intake)
        await reader.wait_handled(1)
        assert not reader.idling and not reader._imap.has_capability("MOVE")  # type: ignore[union-attr]
        servers.dovecot.deliver("hub-bl", bl_reply(32))
        await reader.wait_handled(2)
        await reader.stop()
        assert servers.dovecot.count("hub-bl") == 0
        assert servers.dovecot.count("hub-bl", "Processed") == 2
        assert sorted(intake.applied.values()) == [ref(31), ref(32)]


async def test_imap_server_restart_loses_nothing(servers: MailServers) -> None:
    servers.dovecot.deliver("hub-bl", bl_reply(41))
    intake = MemoryIntake()
    reader = listener(servers)
    await reader.start(intake)
    await reader.wait_handled(1)
    servers.dovecot.stop()
    servers.dovecot.start()
    servers.dovecot.deliver("hub-bl", bl_reply(42))
    await reader.wait_handled(2)
    await reader.stop()
    assert sorted(intake.applied.values()) == [ref(41), ref(42)]


async def test_starttls_upgrades_the_plain_port_before_login(servers: MailServers) -> None:
    servers.dovecot.deliver("hub-bl", bl_reply(51))
    intake = MemoryIntake()
    reader = listener(servers, imap_port=servers.dovecot.imap_port, imap_tls=TlsMode.STARTTLS)
    await reader.start(intake)
    await reader.wait_handled(1)
    assert reader._imap is not None
    transport = reader._imap.protocol.transport
    assert transport.get_extra_info("ssl_object") is not None  # the session is encrypted
    # Capabilities were asked again after TLS (RFC 3501 6.2.1): no STARTTLS offered twice.
    assert "STARTTLS" not in reader._imap.protocol.capabilities
    await reader.stop()
    assert list(intake.applied.values()) == [ref(51)]


async def test_starttls_refuses_a_server_it_cannot_verify(
    servers: MailServers, tmp_path: Path
) -> None:
    from tests.mail_servers import make_certificate

    other, _ = make_certificate(tmp_path)  # a CA that did not sign Dovecot's certificate
    reader = listener(
        servers,
        imap_port=servers.dovecot.imap_port,
        imap_tls=TlsMode.STARTTLS,
        ca_file=str(other),
    )
    with pytest.raises(ssl.SSLCertVerificationError):
        await reader._connect()


@pytest.fixture
def smtp_password() -> Iterator[None]:
    os.environ["TEST_SMTP_PASSWORD"] = USERS["hub-out"]
    yield
    os.environ.pop("TEST_SMTP_PASSWORD", None)


def bl_at_localhost() -> Partner:
    return bl(address="bl@localhost")


async def _send_order(servers: MailServers, settings: MailSettings) -> None:
    body = ArtemailCodec(environ=ENV).render(Outgoing(article_1301(), "HUB", bl_at_localhost()))
    attempt = await SmtpSender(Limits(outbound_retries=0), settings).send(bl_at_localhost(), body)
    assert attempt.ok, attempt.detail
    (arrived,) = servers.dovecot.mails("bl")
    sample = (SAMPLES / "request-single-article-ptw.txt").read_bytes()
    # The order, byte for byte, in the BL's mailbox (a Maildir keeps LF line ends).
    assert arrived.endswith(b"\n\n" + sample)
    assert b"Message-ID: <rshub." in arrived


async def test_order_over_starttls_arrives_byte_for_byte(
    servers: MailServers, smtp_password: None
) -> None:
    await _send_order(servers, settings_for(servers))


async def test_order_over_implicit_tls_arrives(smtp_password: None) -> None:
    with mail_servers(smtp_tls="tls") as servers:
        await _send_order(servers, settings_for(servers, smtp_tls=TlsMode.TLS))


async def test_smtp_refusals_are_judged_retryable_or_not(
    servers: MailServers, smtp_password: None
) -> None:
    body = ArtemailCodec(environ=ENV).render(Outgoing(article_1301(), "HUB", bl_at_localhost()))
    sender = SmtpSender(Limits(outbound_retries=0), settings_for(servers))
    refuse = servers.folder / "refuse"
    refuse.touch()
    temporary = await sender.send(bl_at_localhost(), body)
    assert not temporary.ok and temporary.retryable and "451" in temporary.detail
    refuse.unlink()
    os.environ["TEST_SMTP_PASSWORD"] = "wrong"
    refused = await sender.send(bl_at_localhost(), body)
    assert not refused.ok and not refused.retryable and "535" in refused.detail
    assert servers.dovecot.count("bl") == 0


async def test_smtp_server_down_is_retryable(smtp_password: None, tmp_path: Path) -> None:
    from connectors.core.connections import free_port

    settings = MailSettings(smtp_port=free_port(), smtp_user="hub-out",
                            smtp_password_env="TEST_SMTP_PASSWORD", timeout_s=2)  # fmt: skip
    body = ArtemailCodec(environ=ENV).render(Outgoing(article_1301(), "HUB", bl_at_localhost()))
    attempt = await SmtpSender(Limits(outbound_retries=1, outbound_backoff_s=0.01), settings).send(
        bl_at_localhost(), body
    )
    assert not attempt.ok and attempt.retryable


# -- no one mail stops the listener (issue 22, finding 2) -------------------------------------


def padded(raw: bytes, size: int) -> bytes:
    """`raw` with text lines added to its body up to about `size` bytes."""
    line = b"x" * 998 + b"\r\n"
    return raw + line * max(0, (size - len(raw)) // len(line))


async def sessions_settle(servers: MailServers, user: str, most: int) -> int:
    """Dovecot's count of `user`'s sessions once it is at most `most`, or after 5 s: a
    closed connection leaves Dovecot's count a moment later, and the count can only be
    asked for (no event tells it)."""
    count = servers.dovecot.sessions(user)
    for _ in range(50):
        if count <= most:
            break
        await asyncio.sleep(0.1)  # polling Dovecot's count: it sends no notification
        count = servers.dovecot.sessions(user)
    return count


async def test_a_mail_over_the_body_limit_is_refused_unread_and_the_next_is_read(
    servers: MailServers,
) -> None:
    # A stranger's and the partner's mail of 1.5 MB: under the old 2,000,000-byte mail
    # limit, over the hub's body limit (1 MiB) and over what the producer takes.
    servers.dovecot.deliver("hub-bl", padded(bl_reply(61, sender="x@example.org"), 1_500_000))
    servers.dovecot.deliver("hub-bl", padded(bl_reply(62), 1_500_000))
    servers.dovecot.deliver("hub-bl", bl_reply(63))
    intake = MemoryIntake()
    intake.record_limit = 1_048_576
    reader = listener(servers)
    await reader.start(intake)
    with capture_logs() as logs:
        await asyncio.wait_for(reader.wait_handled(3), 60)
    assert reader.health()["state"] == "running"
    await reader.stop()

    assert servers.dovecot.count("hub-bl", "Failed") == 2
    assert servers.dovecot.count("hub-bl", "Processed") == 1
    assert list(intake.applied.values()) == [ref(63)]
    assert [stage for stage, _, _ in intake.dead] == ["parse", "parse"]
    assert all("over 1048576 (not read)" in reason for _, reason, _ in intake.dead)
    assert all(len(body) < 1_048_576 for body in intake.audits)  # the large ones unread
    refused = [e for e in logs if e["event"] == "mailbox.refused"]
    assert len(refused) == 2 and all(e["log_level"] == "warning" for e in refused)
    assert not any("exc_info" in e or "exception" in e for e in logs)


async def test_max_mail_bytes_is_capped_at_the_body_limit(servers: MailServers) -> None:
    reader = listener(servers, max_mail_bytes=5_000_000)
    intake = MemoryIntake()
    await reader.start(intake)
    assert reader.max_bytes == intake.limits.max_body_bytes
    await reader.stop()
    assert reader.health()["state"] == "stopped"


async def test_a_mail_that_fails_each_time_is_filed_and_no_connection_is_left_open(
    servers: MailServers,
) -> None:
    # Mail 71 meets a defect each time it is handed over; mail 72 within the body limit is
    # refused by the broker each time (the gateway's "unavailable" while the broker answers).
    # More failures than Dovecot lets one user hold connections (10 per address).
    attempts = 12
    for raw in (bl_reply(71), padded(bl_reply(72), 20_000), bl_reply(73)):
        servers.dovecot.deliver("hub-bl", raw)
    intake = MemoryIntake()
    intake.defects.add(ref(71))
    intake.record_limit = 10_000
    reader = listener(servers, max_mail_attempts=attempts)
    await reader.start(intake)
    with capture_logs() as logs:
        await asyncio.wait_for(reader.wait_handled(3), 120)
    assert await sessions_settle(servers, "hub-bl", 1) == 1  # the listener's own, no other
    health = reader.health()
    assert health["state"] == "running" and health["failures"] == 2 * attempts
    await reader.stop()
    assert await sessions_settle(servers, "hub-bl", 0) == 0

    assert servers.dovecot.count("hub-bl", "Failed") == 2
    assert list(intake.applied.values()) == [ref(73)]
    assert [stage for stage, _, _ in intake.dead] == ["intake", "intake"]
    assert "RuntimeError: a defect met by" in intake.dead[0][1]
    assert "hub unavailable" in intake.dead[1][1]
    failed = [e for e in logs if e["event"] == "mailbox.mail_failed"]
    assert len(failed) == 2 * attempts
    assert all(e["where"] != "?" for e in failed)
    assert [e["log_level"] for e in failed].count("error") == 2  # the last try of each


async def test_while_the_broker_is_down_a_mail_is_retried_not_filed(
    servers: MailServers,
) -> None:
    servers.dovecot.deliver("hub-bl", bl_reply(81, sender="x@example.org"))  # dead letter
    servers.dovecot.deliver("hub-bl", bl_reply(82))  # taken
    intake = MemoryIntake()
    intake.broker_up = False
    reader = listener(servers, max_mail_attempts=2)
    await reader.start(intake)
    await asyncio.wait_for(reader.wait_failures(5), 60)  # more than max_mail_attempts
    assert reader.handled == 0 and servers.dovecot.count("hub-bl") == 2
    intake.broker_up = True
    await asyncio.wait_for(reader.wait_handled(2), 30)
    await reader.stop()
    assert servers.dovecot.count("hub-bl", "Failed") == 1
    assert list(intake.applied.values()) == [ref(82)]
    assert [stage for stage, _, _ in intake.dead] == ["authenticate"]
    assert await sessions_settle(servers, "hub-bl", 0) == 0


async def test_a_session_that_cannot_log_in_is_retried_and_says_why(servers: MailServers) -> None:
    reader = MailboxListener(
        protocol="artemail",
        codec=ArtemailCodec(),
        partner="BL",
        options=bl_options(),
        settings=settings_for(servers, reconnect_max_s=0.2),
        password="wrong",
    )
    await reader.start(MemoryIntake())
    await asyncio.wait_for(reader.wait_failures(2), 60)
    health = reader.health()
    assert health["state"] == "connecting" and "LOGIN" in health["last_error"]
    assert "wrong" not in health["last_error"]  # no secret in what is shown
    await reader.stop()


async def test_forged_verdicts_in_a_real_mailbox_go_to_failed(servers: MailServers) -> None:
    """Through Dovecot's LMTP (which prepends its own Received field): only the verdict the
    MTA wrote above its Received field counts, and only for the partner's domain."""
    mx = "mx.hub.example.org"
    mta_received = b"Received: from mail.bl.uk by mx.hub.example.org (Postfix); Mon, 7 Dec 2026\r\n"

    def field(result: str) -> bytes:
        return f"Authentication-Results: {mx}; {result}\r\n".encode()

    forged = {
        # The sender's pass under the MTA's fail.
        91: field("dkim=fail header.d=bl.uk") + mta_received + field("dkim=pass header.d=bl.uk"),
        92: field("dkim=pass header.d=evil.example") + mta_received,  # another domain's
        93: mta_received + field("dkim=pass header.d=bl.uk"),  # below the MTA's Received
        94: field("dkim=pass header.d=bl.uk"),  # never passed the MTA
    }
    for n, head in forged.items():
        servers.dovecot.deliver("hub-bl", head + bl_reply(n))
    servers.dovecot.deliver(
        "hub-bl", field("dkim=pass header.d=bl.uk") + mta_received + bl_reply(95)
    )
    intake = MemoryIntake()
    options = bl_options().model_copy(update={"authserv_id": mx})
    reader = MailboxListener(
        protocol="artemail",
        codec=ArtemailCodec(),
        partner="BL",
        options=options,
        settings=settings_for(servers),
        password=USERS["hub-bl"],
    )
    await reader.start(intake)
    await asyncio.wait_for(reader.wait_handled(len(forged) + 1), 60)
    await reader.stop()
    assert list(intake.applied.values()) == [ref(95)]
    assert servers.dovecot.count("hub-bl", "Failed") == len(forged)
    assert [stage for stage, _, _ in intake.dead] == ["authenticate"] * len(forged)


async def test_a_partner_named_by_its_endpoint_only_takes_mail_from_that_address(
    servers: MailServers,
) -> None:
    """No `from_addresses` and no `address`: the endpoint's mailto: address is the one
    sender (docs/mail.md); forged senders (another address at the BL, the BL's domain, a
    look-alike) go to Failed, each a refusal at stage authenticate."""
    directory = Directory(
        consortium="c",
        partners=[
            Partner(
                symbol="BL",
                name="British Library",
                protocol="artemail",
                endpoint="mailto:artemail@art.bl.uk",
                options={
                    "mailbox_user": "hub-bl",
                    "mailbox_password_env": {"env": "TEST_BL_MAILBOX"},
                    "accept_unverified": True,
                },
            )
        ],
    )
    forged = {81: "bldss@bl.uk", 82: "artemail@bl.uk", 83: "artemail@art.bl.uk.evil.example"}
    for n, sender in forged.items():
        servers.dovecot.deliver("hub-bl", bl_reply(n, sender=sender))
    servers.dovecot.deliver("hub-bl", bl_reply(84, sender="ArtEmail@art.bl.uk"))
    os.environ["TEST_BL_MAILBOX"] = USERS["hub-bl"]
    try:
        (reader,) = mailbox_listeners(
            "artemail", ArtemailCodec(), ArtemailOptions, settings_for(servers), directory
        )
    finally:
        del os.environ["TEST_BL_MAILBOX"]
    intake = MemoryIntake()
    await reader.start(intake)
    await asyncio.wait_for(reader.wait_handled(len(forged) + 1), 60)
    await reader.stop()
    assert list(intake.applied.values()) == [ref(84)]
    assert servers.dovecot.count("hub-bl", "Failed") == len(forged)
    assert [stage for stage, _, _ in intake.dead] == ["authenticate"] * len(forged)
    assert all("is not one of the partner's addresses" in r for _, r, _ in intake.dead)
