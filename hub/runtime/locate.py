"""The locate step's I/O: search candidate lenders' catalogues concurrently, with time-outs
and a cache, and return one `HoldingsResult` per lender.

The catalogue clients (Z39.50, SRU) come from `connectors.registry.catalogue_clients`; a
client never raises (a failure is an UNKNOWN result), and a lender whose catalogue kind has
no client is UNKNOWN with that said.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import structlog

from connectors.core.directory import Directory
from connectors.core.holdings import Client, Holding, HoldingsResult

log = structlog.get_logger(__name__)
CacheKey = tuple[str, str, str, tuple[tuple[str, str], ...]]


class Locator:
    def __init__(
        self,
        directory: Directory,
        clients: dict[str, Client],
        cache_s: float = 600.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.directory, self.clients, self.cache_s, self.clock = directory, clients, cache_s, clock
        # Only definite answers are kept: a catalogue that failed is asked again next time.
        self.cache: dict[CacheKey, tuple[float, HoldingsResult]] = {}

    async def one(self, lender: str, terms: list[tuple[str, str]]) -> HoldingsResult:
        partner = self.directory.partner(lender)
        catalogue = partner.catalogue if partner else None
        if catalogue is None:
            return HoldingsResult(lender=lender, status=Holding.UNCHECKED, detail="no catalogue")
        key = (catalogue.kind, catalogue.address, catalogue.database, tuple(terms))
        stored = self.cache.get(key)
        if stored is not None and self.clock() - stored[0] <= self.cache_s:
            hit = stored[1]
            return hit.model_copy(update={"lender": lender, "detail": hit.detail + " (cached)"})
        client = self.clients.get(catalogue.kind)
        if client is None:
            return HoldingsResult(
                lender=lender, status=Holding.UNKNOWN, detail=f"no {catalogue.kind} client"
            )
        result = await client(lender, catalogue, terms)
        if result.status in (Holding.HELD, Holding.NOT_HELD):
            self.cache[key] = (self.clock(), result)
        return result

    async def locate(
        self, lenders: list[str], terms: list[tuple[str, str]]
    ) -> list[HoldingsResult]:
        """Every lender's result, in the order given; all asked at once."""
        results = await asyncio.gather(*(self.one(lender, terms) for lender in lenders))
        log.info(
            "locate.done",
            terms=terms,
            results={r.lender: r.status.value for r in results},
        )
        return list(results)
