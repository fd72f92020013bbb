"""asyncio transport for `connectors.z3950.codec.Lookup`: one TCP session per look-up."""

from __future__ import annotations

import asyncio
from contextlib import suppress

from connectors.core.holdings import Catalogue, HoldingsResult
from connectors.z3950.codec import Lookup

READ_SIZE = 65536


async def lookup(lender: str, catalogue: Catalogue, terms: list[tuple[str, str]]) -> HoldingsResult:
    """Ask one catalogue; never raises: failures and time-outs come back as UNKNOWN."""
    conversation = Lookup(lender, catalogue, terms)
    try:
        async with asyncio.timeout(catalogue.timeout_s):
            return await _converse(conversation, catalogue.address)
    except TimeoutError:
        return conversation.fail(f"no answer within {catalogue.timeout_s:g} s")
    except OSError as error:
        return conversation.fail(f"connection failed: {error.strerror or error}")


async def _converse(conversation: Lookup, address: str) -> HoldingsResult:
    host, _, port = address.rpartition(":")
    reader, writer = await asyncio.open_connection(host or "localhost", int(port))
    try:
        outgoing: bytes | None = conversation.start()
        while conversation.result is None:
            if outgoing:
                writer.write(outgoing)
                await writer.drain()
            data = await reader.read(READ_SIZE)
            if not data:
                return conversation.fail("the server closed the connection")
            outgoing = conversation.receive(data)
        return conversation.result
    finally:
        writer.close()
        with suppress(OSError):
            await writer.wait_closed()
