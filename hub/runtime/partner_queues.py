"""Outbound delivery as one queue per partner: what the outbound agents run.

A slow, hanging or dead partner must cost the others nothing, so deliveries are not done one
at a time per protocol but concurrently: at most `per_partner` at once to one partner and
`total` at once overall. One transaction's steps still go out in the order they were decided
(a chain per transaction), and a step whose predecessor to the same partner failed is held
back (reported failed without being tried) so a partner never gets step 3 before step 2; the
engine sends the held steps again, in order, once the first one got through.

Nothing here decides what a failure means: results go to the transaction engine, which
schedules retries on the partner's clock, parks, or asks the next lender.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Awaitable, Callable
from contextlib import suppress

import structlog

log = structlog.get_logger(__name__)

Job = Callable[[], Awaitable[bool]]  # True: the partner accepted it


class PartnerQueues:
    def __init__(self, per_partner: int, total: int) -> None:
        self.per_partner = per_partner
        self.total = asyncio.Semaphore(total)
        self.partners: dict[str, asyncio.Semaphore] = defaultdict(
            lambda: asyncio.Semaphore(self.per_partner)
        )
        self.chains: dict[str, asyncio.Future[None]] = {}
        self.held: set[tuple[str, str]] = set()
        self.tasks: set[asyncio.Task[None]] = set()

    def place(self, partner: str) -> asyncio.Semaphore:
        """One of the partner's `per_partner` places, for a job submitted with `own_place`
        (`async with queues.place(partner): ...`)."""
        return self.partners[partner]

    def is_held(self, transaction_id: str, partner: str) -> bool:
        return (transaction_id, partner) in self.held

    def release(self, transaction_id: str, partner: str) -> None:
        self.held.discard((transaction_id, partner))

    async def submit(
        self, transaction_id: str, partner: str, job: Job, *, own_place: bool = False
    ) -> None:
        """Queue a delivery; returns once it has a place (back-pressure on the reader), not
        when it is done. `own_place`: the job takes its place among the partner's
        `per_partner` itself (`place`), around its call only, so that what it writes before
        and after the call does not keep the partner's next delivery waiting."""
        await self.total.acquire()
        previous = self.chains.get(transaction_id)
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.chains[transaction_id] = done
        task = asyncio.create_task(
            self._run(transaction_id, partner, job, previous, done, own_place)
        )
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _run(
        self,
        transaction_id: str,
        partner: str,
        job: Job,
        previous: asyncio.Future[None] | None,
        done: asyncio.Future[None],
        own_place: bool = False,
    ) -> None:
        try:
            if previous is not None:
                await previous
            if own_place:
                accepted = await job()
            else:
                async with self.partners[partner]:
                    accepted = await job()
            if not accepted:
                self.held.add((transaction_id, partner))
        except Exception:
            # A job reports its own failures; anything reaching here is a defect, and must
            # not stop the next step of the transaction.
            log.exception("delivery.job_crashed", transaction_id=transaction_id, partner=partner)
        finally:
            self.total.release()
            done.set_result(None)
            if self.chains.get(transaction_id) is done:
                del self.chains[transaction_id]

    async def drain(self) -> None:
        """Wait for the deliveries under way (on stop: what is cut off is sent again)."""
        for task in list(self.tasks):
            with suppress(asyncio.CancelledError):
                await task

    def cancel(self) -> None:
        for task in list(self.tasks):
            task.cancel()
