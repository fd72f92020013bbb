"""Several ARTEmail orders in one mail (where the partner's options ask for it).

Orders to one partner wait up to `batch_window_s` for others (at most `batch_max` per mail);
each caller's send returns the one SMTP attempt of the shared mail. The merged mail's
Message-ID is derived from its orders' ids, so the same batch re-sent is the same mail.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
from dataclasses import dataclass, field
from datetime import datetime
from email.utils import parsedate_to_datetime

from connectors.artemail import order as orders
from connectors.artemail.options import ArtemailOptions
from connectors.core.contract import Attempt, Limits
from connectors.core.directory import Partner
from connectors.mail.compose import compose, message_id
from connectors.mail.options import MailSettings
from connectors.mail.sender import SmtpSender


@dataclass
class _Batch:
    mails: list[bytes] = field(default_factory=list)
    done: asyncio.Future[Attempt] | None = None
    timer: asyncio.TimerHandle | None = None


def merge(mails: list[bytes]) -> bytes:
    """One mail holding the orders of `mails` (same customer, in their order)."""
    parsed = [email.message_from_bytes(m, policy=email.policy.default) for m in mails]
    bodies = [orders.read_order(str(p.get_body(("plain",)).get_content())) for p in parsed]  # type: ignore[union-attr]
    blocks = []
    for order in bodies:
        for request in order.requests:
            block = [f"TX{request.reference} {' '.join(request.keywords)}", *request.lines]
            if request.deliver_to:
                block += [*orders.GAP, orders.DELIVER, *request.deliver_to]
            blocks.append([*block, *orders.GAP])
    first = parsed[0]
    sender = str(first["From"])
    ids = ",".join(str(p["Message-ID"]) for p in parsed)
    date_header = str(first["Date"])
    date: datetime = parsedate_to_datetime(date_header)
    return compose(
        sender=sender,
        to=str(first["To"]),
        subject=str(first["Subject"]),
        text=orders.order_text(bodies[0].customer, bodies[0].password, blocks),
        mid=message_id(ids, "batch", sender.rsplit("@", 1)[-1].strip(">")),
        date=date,
    )


class BatchingSender(SmtpSender):
    def __init__(self, limits: Limits, settings: MailSettings) -> None:
        super().__init__(limits, settings)
        self.batches: dict[str, _Batch] = {}

    async def send(self, partner: Partner, body: bytes) -> Attempt:
        options = ArtemailOptions.model_validate(partner.options)
        if options.batch_max <= 1:
            return await super().send(partner, body)
        batch = self.batches.setdefault(partner.symbol, _Batch())
        if batch.done is None:
            batch.done = asyncio.get_running_loop().create_future()
            batch.timer = asyncio.get_running_loop().call_later(
                options.batch_window_s, lambda: asyncio.ensure_future(self._flush(partner))
            )
        batch.mails.append(body)
        done = batch.done
        if len(batch.mails) >= options.batch_max:
            await self._flush(partner)
        return await asyncio.shield(done)

    async def _flush(self, partner: Partner) -> None:
        batch = self.batches.pop(partner.symbol, None)
        if batch is None or batch.done is None:
            return
        if batch.timer:
            batch.timer.cancel()
        try:
            mail = merge(batch.mails) if len(batch.mails) > 1 else batch.mails[0]
            attempt = await super().send(partner, mail)
        except (ValueError, orders.OrderError) as error:
            attempt = Attempt(False, False, f"batch: {error}")
        if not batch.done.done():
            batch.done.set_result(attempt)
