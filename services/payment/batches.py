"""Use cases of bulk payments: a batch validated whole (by the api, before anything is stored),
admitted with its lines as payments in one unit, its funds reserved whole or the batch refused
whole, then each line driven as a single payment is.

Funds: reserved whole, or refused whole. Every line's hold is placed in one transaction of the
account context (`Accounts.place_holds`, AccountService.PlaceHolds), decided under the debtor
account's row lock against its available balance: either every line's funds are set aside before
the first line is paid, or nothing is held and the batch is REFUSED with the ledger's reason
(INSUFFICIENT_FUNDS, say). Paying lines one by one until the money runs out would leave the
customer a batch half paid in file order, which no one asked for; holding the whole first also
means a line never fails later for funds that another payment took meanwhile.

Each hold's request id is the one a single payment's would be (`<payment_id>-hold`), so from
then on a line is exactly a payment whose hold is placed: `PaymentProcessor` captures it (an
internal line) or sends it to the network (an external one, QUEUED while the network is down),
and `StoreAndForward` completes any line a cut stream or a crash left behind, as it does any
payment (finding the hold by its request id when the batch's own record of it was lost).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime

from common.callee import SILENCE, CalleeRefused, callee_refusals, denial
from common.clock import Clock
from common.db.base import stored
from common.di import BaseComponent, og_component
from common.errors import AppError, DeadlineExceeded, FieldViolation, NotFound, PermissionDenied, Unavailable, ValidationFailed
from common.idempotency import IdempotencyKey
from common.ids import new_id
from common.pagination import PageRequest
from common.security.context import current_caller
from common.security.policy import denied, unknown
from services.payment.domain import Batch, BatchLine, BatchStatus, Payment, PaymentStatus, batch_total
from services.payment.ports import Accounts, HoldOrder
from services.payment.repository import PaymentUnit, PaymentUnits, StoredLine
from services.payment.service import FraudScreening, PaymentProcessor

IN_PARALLEL = 16  # lines driven at once: each waits on the account context, not on this process
PROGRESS_EVERY = 500  # lines finished between two progress answers


_PAYEE_CHECKS = 16  # payee accounts asked about at once
_MAX_VIOLATIONS = 100  # as many bad lines named as the file's own checks name


@og_component()
class BatchUseCases(BaseComponent):
    def __init__(
        self, units: PaymentUnits, processor: PaymentProcessor, fraud: FraudScreening, accounts: Accounts, clock: Clock
    ) -> None:
        self._units = units
        self._processor = processor
        self._fraud = fraud
        self._accounts = accounts
        self._clock = clock

    async def submit(self, debtor: str, lines: list[BatchLine], message_id: str, key: IdempotencyKey) -> AsyncIterator[Batch]:
        """The batch as it stands: once accepted (or refused), as its lines finish, at the end."""
        currency = await self._debtor_currency(debtor)
        if lines[0].amount.currency != currency:
            raise ValidationFailed([FieldViolation("lines.amount.currency_code", f"the debtor account is in {currency}")])
        await self._require_payees(lines)
        batch = await self._units.write(self._admission(debtor, lines, message_id, key))
        if batch.status is BatchStatus.REFUSED:
            yield batch
            return
        batch = await self._reserve(batch)
        yield batch
        if batch.status is BatchStatus.REFUSED:
            return
        async for progress in self._drive(batch.batch_id):
            yield progress

    async def _require_payees(self, lines: list[BatchLine]) -> None:
        """Every account of this bank a line pays into may be paid into, as a single payment's
        (the bank's own accounts may not): asked once per account, a few at a time; the lines
        paying into one that may not are refused whole, each named."""
        gate = asyncio.Semaphore(_PAYEE_CHECKS)

        async def refusal(account_id: str) -> str:
            async with gate:
                try:
                    await self._accounts.require_payee(account_id)
                except (PermissionDenied, NotFound) as refused:
                    return "not an account that may be paid into" if isinstance(refused, PermissionDenied) else "no such account"
                return ""

        payees = sorted({line.beneficiary.account_id for line in lines if not line.beneficiary.external})
        refused = dict(zip(payees, await asyncio.gather(*(refusal(a) for a in payees)), strict=True))
        violations = [
            FieldViolation(f"lines[{n}].internal.account_id", refused[line.beneficiary.account_id])
            for n, line in enumerate(lines)
            if not line.beneficiary.external and refused[line.beneficiary.account_id]
        ]
        if violations:
            raise ValidationFailed(violations[:_MAX_VIOLATIONS])

    async def _debtor_currency(self, debtor: str) -> str:
        try:
            return await self._accounts.debit_currency(debtor)
        except PermissionDenied as refused:
            if refused.reason == "INTERNAL_ACCOUNT":
                raise
            raise denied("spend from this account") from refused

    def _admission(
        self, debtor: str, lines: list[BatchLine], message_id: str, key: IdempotencyKey
    ) -> Callable[[PaymentUnit], Awaitable[Batch]]:
        """The unit that lets the batch in: the key claimed, the batch and a payment per line
        stored; a line over the single-payment amount limit refuses the batch whole."""
        now, chain = self._clock.now(), current_caller().chain
        total = batch_total(lines)
        batch = Batch(new_id("pbt"), debtor, message_id, len(lines), total, now)
        payments = [
            (
                line,
                Payment(
                    new_id("pay"),
                    debtor,
                    line.beneficiary,
                    line.amount,
                    line.reference,
                    PaymentStatus.PENDING,
                    now,
                    now,
                    authorized_by=chain,
                ),
            )
            for line in lines
        ]
        limit = self._fraud.rules(total.currency).max_amount

        async def admit(uow: PaymentUnit) -> Batch:
            replayed = await uow.claim(key, batch.batch_id)
            if replayed is not None:
                return stored(await uow.batches.get(replayed), replayed)
            await uow.batches.add(batch, payments, chain)
            if any(line.amount.minor > limit.minor for line in lines):
                await uow.batches.refuse(batch.batch_id, "AMOUNT_LIMIT_EXCEEDED", now)
            return stored(await uow.batches.get(batch.batch_id), batch.batch_id)

        return admit

    async def _reserve(self, batch: Batch) -> Batch:
        """Every line without a hold gets one, all in one step of the account context, or the batch
        is refused whole. No answer, or a refusal of the caller's authority: the lines stay
        pending, and the worker finds each hold by its request id (or closes the id) as it does a
        single payment's."""
        waiting = [p for p in await self._units.read(lambda uow: uow.batches.unfinished(batch.batch_id)) if not p.hold_id]
        if waiting:
            try:
                with callee_refusals():
                    clearing = await self._accounts.clearing_account(batch.total.currency)
                    orders = [
                        HoldOrder(
                            PaymentProcessor.hold_request_id(p),
                            p.debtor_account_id,
                            clearing if p.beneficiary.external else p.beneficiary.account_id,
                            p.amount,
                            p.statement_text,
                            p.remittance,
                        )
                        for p in waiting
                    ]
                    holds = await self._accounts.place_holds(orders)
            except SILENCE as silent:  # a deadline stays one (the caller's ran out): a retry learns the outcome
                if isinstance(silent, DeadlineExceeded):
                    raise DeadlineExceeded(
                        silent.reason, silent.message, {**silent.metadata, "batch_id": batch.batch_id}
                    ) from silent
                raise Unavailable(
                    "ACCOUNTS_UNAVAILABLE",
                    "the account context did not answer; the batch is kept: send the same request again to reserve its funds"
                    " (lines still without funds fail on their own after a while; GetPaymentBatch shows them)",
                    {**silent.metadata, "batch_id": batch.batch_id},
                ) from silent
            except CalleeRefused as refused:
                if refused.of_authority:
                    raise denial(
                        refused.error, "the caller may not spend from the debtor account", {"batch_id": batch.batch_id}
                    ) from refused
                reason = "ACCOUNT_NOT_FOUND" if isinstance(refused.error, NotFound) else refused.reason
                return await self._refused(batch.batch_id, reason)
            pairs = [(p.payment_id, h.hold_id) for p, h in zip(waiting, holds, strict=True)]
            await self._units.write(lambda uow: uow.batches.held(pairs))
        return await self.get_unchecked(batch.batch_id)

    async def _refused(self, batch_id: str, reason: str) -> Batch:
        now = self._clock.now()

        async def refuse(uow: PaymentUnit) -> Batch:
            await uow.batches.refuse(batch_id, reason, now)
            return stored(await uow.batches.get(batch_id), batch_id)

        return await self._units.write(refuse)

    async def _drive(self, batch_id: str) -> AsyncIterator[Batch]:
        """Each line on its way taken on as a single payment is (its hold placed), a few at once;
        the batch answered every PROGRESS_EVERY lines and at the end."""
        lines = await self._units.read(lambda uow: uow.batches.unfinished(batch_id))
        gate = asyncio.Semaphore(IN_PARALLEL)

        async def one(p: Payment) -> None:
            async with gate:
                try:
                    await self._processor.process(p, live=True)
                except AppError as passing:  # no answer now: the worker completes this line
                    self.logger.info("batch %s: line %s waits: %s", batch_id, p.payment_id, passing)

        for start in range(0, len(lines), PROGRESS_EVERY):
            await asyncio.gather(*(one(p) for p in lines[start : start + PROGRESS_EVERY]))
            yield await self.get_unchecked(batch_id)
        if not lines:
            yield await self.get_unchecked(batch_id)

    async def get_unchecked(self, batch_id: str) -> Batch:
        return stored(await self._units.read(lambda uow: uow.batches.get(batch_id)), batch_id)

    async def get(self, batch_id: str) -> Batch:
        batch = await self._units.read(lambda uow: uow.batches.get(batch_id))
        if batch is None:
            raise unknown("payment batch", batch_id, "read this batch")
        try:
            await self._accounts.require_read(batch.debtor_account_id)
        except PermissionDenied as refused:
            raise denied("read this batch") from refused
        return batch

    async def lines(self, batch_id: str, request: PageRequest) -> tuple[list[StoredLine], str]:
        await self.get(batch_id)
        page = await self._units.read(lambda uow: uow.batches.lines(batch_id, request.after_seq, request.limit))
        return page.items, request.next_token(page.next_after)

    async def report(self, batch_id: str) -> tuple[Batch, list[StoredLine], datetime]:
        """The batch and all its lines, for its status report."""
        batch = await self.get(batch_id)
        page = await self._units.read(lambda uow: uow.batches.lines(batch_id, 0, batch.line_count))
        return batch, page.items, self._clock.now()
