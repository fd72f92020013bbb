"""aiohttp transport for SRU look-ups (`connectors.sru.codec`)."""

from __future__ import annotations

import time

import aiohttp

from connectors.core.holdings import Catalogue, Holding, HoldingsResult
from connectors.sru import codec

MAX_BODY = 4 * 1_048_576


async def lookup(
    lender: str,
    catalogue: Catalogue,
    terms: list[tuple[str, str]],
    session: aiohttp.ClientSession | None = None,
) -> HoldingsResult:
    """Ask one SRU catalogue; never raises: failures and time-outs come back as UNKNOWN."""
    started = time.monotonic()
    own = session is None
    session = session or aiohttp.ClientSession()
    try:
        timeout = aiohttp.ClientTimeout(total=catalogue.timeout_s)
        params = codec.request_params(catalogue, terms)
        async with session.get(catalogue.address, params=params, timeout=timeout) as response:
            body = await response.content.read(MAX_BODY + 1)
            if len(body) > MAX_BODY:
                result = HoldingsResult(
                    lender=lender,
                    status=Holding.UNKNOWN,
                    detail=f"SRU {catalogue.address}: response larger than {MAX_BODY} bytes",
                )
            else:
                result = codec.read_response(lender, catalogue, response.status, body)
    except TimeoutError:
        result = HoldingsResult(
            lender=lender,
            status=Holding.UNKNOWN,
            detail=f"SRU {catalogue.address}: no answer within {catalogue.timeout_s:g} s",
        )
    except aiohttp.ClientError as error:
        result = HoldingsResult(
            lender=lender, status=Holding.UNKNOWN, detail=f"SRU {catalogue.address}: {error}"
        )
    finally:
        if own:
            await session.close()
    result.elapsed_ms = round((time.monotonic() - started) * 1000, 1)
    return result
