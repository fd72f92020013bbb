"""Stopping a mailbox listener ends its session even when a cancel is swallowed: Python 3.11's
asyncio.wait_for (aioimaplib waits for every answer with it) returns the answer instead of
raising when the cancel and the answer meet, and the session goes on. A CI run hung a whole
test suite on that (the listener's stop awaited a session that never ended)."""

from __future__ import annotations

import asyncio

from connectors.artemail.codec import ArtemailCodec
from connectors.artemail.options import ArtemailOptions
from connectors.mail.listener import MailboxListener
from connectors.mail.options import MailSettings


def listener() -> MailboxListener:
    return MailboxListener(
        protocol="artemail",
        codec=ArtemailCodec(),
        partner="BL",
        options=ArtemailOptions(address="artemail@art.bl.uk", mailbox_user="hub-bl"),
        settings=MailSettings(),
        password="unused",
    )


async def test_stop_ends_a_session_that_swallowed_the_cancel() -> None:
    reader = listener()
    swallowed = 0

    async def session() -> None:
        """As the listener's loop when one of its commands swallowed the cancel: it goes on
        while the listener is not stopping."""
        nonlocal swallowed
        while not reader._stopping:
            try:
                await asyncio.sleep(0.01)  # a command's wait, the answer about to arrive
            except asyncio.CancelledError:
                swallowed += 1  # as wait_for does when the answer came at the same moment
        # and the loop, seeing the listener stop, ends

    reader._task = asyncio.create_task(session())
    await asyncio.sleep(0)  # the session is running
    await asyncio.wait_for(reader.stop(), 10)  # the bound turns a hang into a failure
    assert reader._task.done() and swallowed == 1
    assert reader.health()["state"] == "stopped"


async def test_stop_cancels_again_a_session_that_does_not_look_at_the_flag() -> None:
    reader = listener()
    cancels = 0

    async def stubborn() -> None:
        nonlocal cancels
        while True:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                cancels += 1
                if cancels == 2:
                    raise

    reader._task = asyncio.create_task(stubborn())
    await asyncio.sleep(0)
    await asyncio.wait_for(reader.stop(), 10)
    assert reader._task.cancelled() and cancels == 2
