"""The outbound agent of one protocol: reads ill.outbound.<protocol> and delivers each command
through `hub.runtime.partner_queues.PartnerQueues` (one queue per partner). A command is
acknowledged only once its result and the "delivered" mark are durable, so a crash re-sends at
most the calls that were in flight; a command already delivered (re-read after a restart) is
acknowledged without a second delivery."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import structlog

from connectors.core.contract import Attempt, Connector, Outgoing, Sender
from connectors.core.directory import Directory, Partner
from connectors.core.model import NotApplicable, now
from connectors.core.records import AuditRecord, Delivery, DeliveryOutcome, DeliveryResult
from connectors.core.topics import Topic
from hub.domain.transaction import as_output
from hub.kafka.steplog import Consumed, Inputs
from hub.runtime import metrics
from hub.runtime.partner_queues import PartnerQueues
from hub.runtime.settings import Settings
from hub.runtime.writing import Writer

log = structlog.get_logger(__name__)
DELIVERED_MEMORY = 100  # command ids remembered per transaction
# In the `delivered` table before a call is made: "being sent". Found there when the command
# comes again (the worker died during the call), the step is a re-send the partner may
# already have; the timeline and the log say so (issue 23.6).
SENDING = "sending:"
RESENT = "re-sent after an interruption (the partner may have it already; same ids)"
HUB_AGENCY = "RSHUB"
HELD = "held back: an earlier step to this partner has not been delivered"
WITHDRAWN = "withdrawn:"  # prefix of a withdrawn command's id in the `delivered` table


def handled(marks: list[str], command_id: str) -> bool:
    """Whether a command was handled: delivered, or withdrawn before it was tried."""
    return command_id in marks or f"{WITHDRAWN}{command_id}" in marks


class Delivered(Protocol):
    """The command ids delivered per transaction (the `delivered` table)."""

    def get(self, transaction_id: str) -> list[str]: ...

    async def set(self, partition: int, transaction_id: str, done: list[str]) -> None:
        """Returns once the mark is durable."""
        ...


class OutboundAgent:
    def __init__(
        self,
        connector: Connector[Any, Any],
        sender: Sender,
        directory: Directory,
        settings: Settings,
        writer: Writer,
        delivered: Delivered,
        queues: PartnerQueues,
        announce: Callable[[str], Awaitable[None]],
    ) -> None:
        """`announce`: tell every worker that a partner answers again (ill.partners)."""
        self.connector = connector
        self.codec = connector.codec
        self.sender = sender
        self.directory = directory
        self.settings = settings
        self.writer = writer
        self.delivered = delivered
        self.queues = queues
        self.announce = announce
        self.failing: set[str] = set()  # partners whose last delivery from this worker failed
        # Commands a later step takes back (Delivery.withdraws), read before they were tried.
        self.recalled: set[str] = set()

    async def start(self) -> None:
        await self.sender.start()

    async def stop(self) -> None:
        self.queues.cancel()
        await self.sender.stop()

    async def run(self, inputs: Inputs) -> None:
        await self.start()
        try:
            async for record in inputs.records():
                try:
                    command = Delivery.model_validate_json(record.value)
                except ValueError as exc:
                    log.error("delivery.unreadable", topic=record.topic, error=str(exc))
                    await inputs.ack(record)
                    continue
                if handled(self.delivered.get(command.transaction_id), command.command_id):
                    log.info("delivery.already_done", command_id=command.command_id)
                    await inputs.ack(record)
                    continue
                # Read before the steps it takes back have their turn (they wait behind a
                # slow partner): they are not tried.
                self.recalled.update(command.withdraws)
                # The partner's place is taken around the call only (`attempt`): the records
                # written before and after it keep no other delivery to the partner waiting.
                await self.queues.submit(
                    command.transaction_id,
                    command.recipient,
                    self.job(command, record, inputs),
                    own_place=True,
                )
        finally:
            await self.stop()

    def job(
        self, command: Delivery, record: Consumed, inputs: Inputs
    ) -> Callable[[], Awaitable[bool]]:
        async def run() -> bool:
            return await self.deliver(command, record, inputs)

        return run

    async def deliver(self, command: Delivery, record: Consumed, inputs: Inputs) -> bool:
        """One job of the partner's queue: whether the partner took the command."""
        if handled(self.delivered.get(command.transaction_id), command.command_id):
            # The same command twice in the queue (a replayed engine output): the first
            # delivered it while this one waited behind it.
            log.info("delivery.already_done", command_id=command.command_id)
            await inputs.ack(record)
            return True
        withdrawn = self.withdrawn(command)
        if withdrawn is not None:
            return await self.withdraw(command, record, inputs, withdrawn)
        try:
            result = await self.attempt(command, record.partition)
        except Exception as exc:
            result = _result(command, DeliveryOutcome.FAILED)
            result.detail = f"{type(exc).__name__}: {exc}"[:1000]
        failed = result.outcome is DeliveryOutcome.FAILED
        (log.warning if failed else log.info)(
            "delivery.result",
            transaction_id=command.transaction_id,
            protocol=self.connector.name,
            recipient=command.recipient,
            step=command.message.event.value,
            outcome=result.outcome.value,
            try_number=command.try_number,
            detail=result.detail,
        )
        held = result.detail == HELD
        metrics.delivered(self.connector.name, result, held, record.timestamp)
        await self.writer.write([as_output(Topic.DELIVERY, command.transaction_id, result)])
        accepted = result.outcome is not DeliveryOutcome.FAILED
        if accepted:
            # Durable before the input is acknowledged: replayed after a crash, this
            # command is recognised and not sent twice.
            sending = SENDING + command.command_id
            kept = [x for x in self.delivered.get(command.transaction_id) if x != sending]
            done = [*kept, command.command_id]
            await self.delivered.set(
                record.partition, command.transaction_id, done[-DELIVERED_MEMORY:]
            )
            if command.recipient in self.failing:
                self.failing.discard(command.recipient)
                await self.announce(command.recipient)
        else:
            if result.retryable and not held:
                self.failing.add(command.recipient)
            sending = SENDING + command.command_id
            known = self.delivered.get(command.transaction_id)
            if sending in known:  # the call's outcome is recorded: a later try is no re-send
                kept = [x for x in known if x != sending]
                await self.delivered.set(record.partition, command.transaction_id, kept)
        await inputs.ack(record)
        return accepted

    def withdrawn(self, command: Delivery) -> str | None:
        """Why a command is not to be sent (taken back by staff rerouting), or None."""
        if command.command_id in self.recalled:
            return "withdrawn before it was sent: the request moved to another lender"
        if command.withdraws:
            marks = self.delivered.get(command.transaction_id)
            if not any(i in marks for i in command.withdraws):
                # Only what the partner accepted needs taking back.
                return "not sent: the partner never received what it would take back"
        return None

    async def withdraw(self, command: Delivery, record: Consumed, inputs: Inputs, why: str) -> bool:
        """Report a command withdrawn (the engine records it in the timeline) and mark it
        handled, so a replay after a restart does not send it either."""
        self.recalled.discard(command.command_id)
        result = _result(command, DeliveryOutcome.WITHDRAWN)
        result.detail, result.tries = why, 0
        log.info(
            "delivery.withdrawn",
            transaction_id=command.transaction_id,
            recipient=command.recipient,
            step=command.message.event.value,
        )
        await self.writer.write([as_output(Topic.DELIVERY, command.transaction_id, result)])
        marks = [*self.delivered.get(command.transaction_id), f"{WITHDRAWN}{command.command_id}"]
        await self.delivered.set(
            record.partition, command.transaction_id, marks[-DELIVERED_MEMORY:]
        )
        await inputs.ack(record)
        return True

    async def attempt(self, command: Delivery, partition: int = 0) -> DeliveryResult:
        directory, queues, codec = self.directory, self.queues, self.codec
        partner = directory.partner(command.recipient)
        sender = directory.partner(command.message.sender)
        result = _result(command, DeliveryOutcome.SENT)
        if command.try_number > 1:
            queues.release(command.transaction_id, command.recipient)
        elif queues.is_held(command.transaction_id, command.recipient):
            result.outcome, result.detail = DeliveryOutcome.FAILED, HELD
            return result
        if command.message.event in codec.not_applicable:
            # Checked first: a partner without an endpoint (an OpenURL borrower) is never
            # sent the steps its protocol has no form for.
            result.outcome = DeliveryOutcome.NOT_APPLICABLE
            result.detail = f"{self.connector.name} has no form for {command.message.event.value}"
            return result
        if partner is None or not partner.endpoint:
            result.outcome, result.retryable = DeliveryOutcome.FAILED, False
            result.detail = "partner has no endpoint"
            return result
        outgoing = Outgoing(
            message=command.message,
            sender_agency=sender.agency_id if sender else HUB_AGENCY,
            recipient=partner,
            correlation=command.correlation,
            state=command.state,
            to_borrower=command.attempt == 0,
        )
        try:
            body = codec.render(outgoing)
        except NotApplicable as exc:
            result.outcome, result.detail = DeliveryOutcome.NOT_APPLICABLE, str(exc)
            return result
        except Exception as exc:  # RenderError, and any defect of a writer
            # Rendering is total: a step that cannot be written in the partner's protocol is
            # a failed delivery the engine handles (next lender, or parked for staff).
            result.outcome, result.retryable = DeliveryOutcome.FAILED, False
            result.detail = f"cannot be written in {self.connector.name}: {exc}"[:1000]
            return result
        # A protocol that carries credentials in the message (ARTEmail's customer code and
        # password) is audited without them: a redelivery renders the step again.
        redact = getattr(codec, "redact", None)
        audit = AuditRecord.of(
            "out",
            self.connector.name,
            partner.symbol,
            redact(body) if redact is not None else body,
            codec.content_type,
            command.transaction_id,
        )
        # Both durable before the call, in one round trip to the broker: neither needs the
        # other first (a mark without its audit record is a re-send, audited again then).
        resent, _ = await asyncio.gather(
            self._mark_sending(command, partition),
            self.writer.write([as_output(Topic.AUDIT, command.transaction_id, audit)]),
        )
        async with queues.place(command.recipient):
            attempted, tries = await self.send(partner, body)
        result.tries, result.detail = tries, attempted.detail[:1000]
        if resent:
            result.detail = f"{RESENT}; {result.detail}"[:1000]
        if not attempted.ok:
            result.outcome, result.retryable = DeliveryOutcome.FAILED, attempted.retryable
        result.at = now()
        return result

    async def _mark_sending(self, command: Delivery, partition: int) -> bool:
        """Durably notes that the call is about to be made; whether it had been noted before
        (a call a crashed worker made, or may have made: this one is a re-send)."""
        sending = SENDING + command.command_id
        known = self.delivered.get(command.transaction_id)
        if sending in known:
            log.warning(
                "delivery.resent",
                transaction_id=command.transaction_id,
                recipient=command.recipient,
                command_id=command.command_id,
            )
            return True
        marked = [*known, sending]
        await self.delivered.set(partition, command.transaction_id, marked[-DELIVERED_MEMORY:])
        return False

    async def send(self, partner: Partner, body: bytes) -> tuple[Attempt, int]:
        """One delivery with quick retries (doubling back-off) for failures another try may
        cure within seconds; the engine's schedule takes over after `outbound_retries`. The
        last attempt and the number of tries."""
        delay, tries = self.settings.outbound_backoff_s, 0
        while True:
            tries += 1
            attempted = await self.sender.send(partner, body)
            if attempted.ok or not attempted.retryable or tries >= self.settings.outbound_retries:
                return attempted, tries
            log.info("delivery.retry", partner=partner.symbol, tries=tries, detail=attempted.detail)
            await asyncio.sleep(delay)  # a back-off before the partner is asked again
            delay *= 2


def _result(command: Delivery, outcome: DeliveryOutcome) -> DeliveryResult:
    return DeliveryResult(
        command_id=command.command_id,
        transaction_id=command.transaction_id,
        recipient=command.recipient,
        event=command.message.event,
        attempt=command.attempt,
        try_number=command.try_number,
        outcome=outcome,
    )
