"""A mailbox connection that drops while the listener waits in IDLE, without a BYE (a server
that crashed, a NAT that forgot the connection), is noticed at once: the listener connects
again and reads what arrived, instead of waiting for the IDLE renewal (25 minutes by
default). The in-memory IMAP server stands for the mail server; a TCP relay in front of it
is what drops."""

from __future__ import annotations

import asyncio
import contextlib

from connectors.artemail.codec import ArtemailCodec
from connectors.artemail.options import ArtemailOptions
from connectors.core.connections import free_port
from connectors.mail.listener import MailboxListener
from connectors.mail.options import MailSettings, TlsMode
from connectors.mail.simulator import Mailbox
from tests.mail_intake import MemoryIntake
from tests.test_mail_listener import bl_reply, ref


class Relay:
    """Forwards TCP to the mailbox; `drop()` cuts every connection without a word."""

    def __init__(self, target: int) -> None:
        self.target, self.port = target, free_port()
        self.writers: list[asyncio.StreamWriter] = []
        self.server: asyncio.Server | None = None

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._client, "127.0.0.1", self.port)

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target)
        self.writers += [writer, up_writer]

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(ConnectionError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    def drop(self) -> None:
        for writer in self.writers:
            writer.transport.abort()  # no BYE, no FIN handshake to wait for
        self.writers.clear()

    async def stop(self) -> None:
        self.drop()
        if self.server is not None:
            self.server.close()


async def test_a_connection_dropped_during_idle_is_noticed_and_read_again() -> None:
    mailbox = Mailbox("hub-bl", "pw", port=free_port())
    await mailbox.start()
    relay = Relay(mailbox.port)
    await relay.start()
    reader = MailboxListener(
        protocol="artemail",
        codec=ArtemailCodec(),
        partner="BL",
        options=ArtemailOptions(
            address="artemail@art.bl.uk",
            mailbox_user="hub-bl",
            from_addresses=["@bl.uk"],
            accept_unverified=True,  # no MTA verdicts in front of this mailbox
        ),
        # Only IDLE or a reconnection can wake it: no polling, no renewal within the test.
        settings=MailSettings(
            imap_port=relay.port,
            imap_tls=TlsMode.NONE,
            poll_interval_s=3600,
            idle_renew_s=3600,
            reconnect_s=0.1,
            timeout_s=10,
        ),
        password="pw",
    )
    intake = MemoryIntake()
    await reader.start(intake)
    try:
        async with reader._changed:
            await reader._changed.wait_for(lambda: reader.idling)
        failures = reader.failures
        relay.drop()
        await reader.wait_failures(failures + 1)  # the drop is seen, not waited out
        assert "closed the connection" in (reader.last_error or "")
        # Delivered while the hub is away: read on the next connection.
        await mailbox.deliver(bl_reply(61))
        await reader.wait_handled(1)
    finally:
        await reader.stop()
        await relay.stop()
        await mailbox.stop()
    assert list(intake.applied.values()) == [ref(61)]
