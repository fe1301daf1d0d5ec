"""gRPC servicer of the account context: a request becomes validated domain values (malformed
input is INVALID_ARGUMENT here, before any use case runs), an answer becomes its message."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from grpc import aio

from common.clock import Clock
from common.di import og_component
from common.errors import FieldViolation, ValidationFailed
from common.grpc.convert import calendar_date, idempotency_key, timestamp
from common.grpc.gates import gated
from common.ids import new_id
from common.money import CURRENCY_EXPONENTS, MAX_MINOR, Money
from common.pagination import PageRequest, PageTokens
from common.security.context import ADMIN
from common.validation import Violations, decimal_fraction
from kernel.convert import date_of, money_pb, requested_money
from kernel.interest import BANKS_DAY, InterestTier
from ogpgy.account.v1 import account_service_pb2 as pb
from ogpgy.account.v1 import account_service_pb2_grpc as pb_grpc
from ogpgy.type.v1 import date_pb2, money_pb2
from services.account.domain import (
    CUSTOMER_TYPES,
    Access,
    Account,
    Charge,
    ChargeOrder,
    Hold,
    InternalAccount,
    Transfer,
    TransferOrder,
)
from services.account.exports import FORMATS, MAX_EXPORTED_ENTRIES, exported
from services.account.messages import ACCOUNT_STATUS, ACCOUNT_TYPE, HOLD_STATUS, INTERNAL_ACCOUNT, entry_pb, remittance_of
from services.account.service import AccountUseCases
from services.account.statements import TrialLine

_ACCESS = {pb.ACCOUNT_ACCESS_READ: Access.READ, pb.ACCOUNT_ACCESS_DEBIT: Access.DEBIT, pb.ACCOUNT_ACCESS_CREDIT: Access.CREDIT}


def account_pb(a: Account) -> pb.Account:
    f = a.features
    return pb.Account(
        account_id=a.account_id,
        customer_id=a.customer_id,
        type=ACCOUNT_TYPE.pb(a.type),
        status=ACCOUNT_STATUS.pb(a.status),
        balance=money_pb(a.money(a.balance)),
        available_balance=money_pb(a.money(a.available)),
        features=pb.AccountFeatures(
            interest_bearing=f.interest_bearing,
            annual_interest_rate=str(f.annual_interest_rate),
            minimum_balance=money_pb(a.money(f.minimum_balance)),
            monthly_fee=money_pb(a.money(f.monthly_fee)),
            overdraft_protection=f.overdraft_protection,
            overdraft_limit=money_pb(a.money(f.overdraft_limit)),
            free_transactions_per_month=f.free_transactions_per_month,
        ),
        open_time=timestamp(a.opened_at),
    )


def transfer_pb(t: Transfer) -> pb.Transfer:
    return pb.Transfer(
        transfer_id=t.transfer_id,
        debit_account_id=t.debit_account_id,
        credit_account_id=t.credit_account_id,
        amount=money_pb(t.amount),
        description=t.description,
        reverses_transfer_id=t.reverses_transfer_id,
        hold_id=t.hold_id,
        post_time=timestamp(t.posted_at),
        actor=t.actor,
    )


def hold_pb(h: Hold) -> pb.Hold:
    return pb.Hold(
        hold_id=h.hold_id,
        debit_account_id=h.debit_account_id,
        credit_account_id=h.credit_account_id,
        amount=money_pb(h.amount),
        status=HOLD_STATUS.pb(h.status),
        captured_amount=money_pb(h.captured) if h.captured else None,
        transfer_id=h.transfer_id,
        owner_context=h.owner_context,
        place_time=timestamp(h.placed_at) if h.placed_at else None,
        actor=h.placed_by,
    )


def charge_pb(c: Charge) -> pb.Charge:
    return pb.Charge(
        request_id=c.request_id,
        charge_id=c.charge_id,
        account_id=c.account_id,
        status=pb.CHARGE_STATUS_POSTED if c.posted else pb.CHARGE_STATUS_REJECTED,
        transfer_ids=list(c.transfer_ids),
        total=money_pb(c.total),
        rejection_reason=c.rejection_reason,
    )


def trial_line_pb(line: TrialLine, currency: str) -> pb.TrialBalanceLine:
    return pb.TrialBalanceLine(
        account_id=line.account_id,
        customer_id=line.customer_id,
        type=ACCOUNT_TYPE.pb(line.type),
        status=ACCOUNT_STATUS.pb(line.status),
        balance=money_pb(Money(currency, line.balance_minor)),
    )


def _order(
    v: Violations,
    debit: str,
    credit: str,
    amount: money_pb2.Money,
    description: str,
    credit_field: str = "credit_account_id",
    hold: pb.PlaceHoldRequest | None = None,
) -> TransferOrder | None:
    """Validates what the contract's rules do not (None, with violations, when something is wrong);
    a hold's order carries what its request says of the payee and the reference."""
    v.check(debit != credit, credit_field, "must differ from the debited account")
    money = requested_money(v, amount, "amount")
    return TransferOrder(debit, credit, money, description, remittance=remittance_of(hold)) if money else None


def _charge(v: Violations, order: pb.ChargeOrder, field: str) -> ChargeOrder | None:
    """One order of PostCharges; None (with violations) when something is wrong."""
    lines: list[tuple[InternalAccount, Money]] = []
    for n, line in enumerate(order.lines):
        internal = INTERNAL_ACCOUNT.of(line.internal_account)
        v.check(
            internal not in {kind for kind, _ in lines},
            f"{field}.lines[{n}].internal_account",
            "each line to a different account",
        )
        amount = requested_money(v, line.amount, f"{field}.lines[{n}].amount")
        v.check(
            amount is None or not lines or amount.currency == lines[0][1].currency,
            f"{field}.lines[{n}].amount.currency_code",
            "all lines in one currency",
        )
        if internal is not None and amount is not None:
            lines.append((internal, amount))
    if len(lines) != len(order.lines) or not lines:
        return None
    v.check(sum(a.minor for _, a in lines) <= MAX_MINOR, f"{field}.lines", "the total must stay within the ledger's limit")
    return ChargeOrder(order.request_id, order.account_id, tuple(lines), order.description)


@og_component()
class AccountApi(pb_grpc.AccountServiceServicer):
    """ogpgy.account.v1.AccountService."""

    def __init__(self, service: AccountUseCases, pages: PageTokens, clock: Clock) -> None:
        self._service = service
        self._pages = pages
        self._clock = clock

    async def OpenAccount(self, request: pb.OpenAccountRequest, context: aio.ServicerContext) -> pb.OpenAccountResponse:
        v = Violations()
        type_ = ACCOUNT_TYPE.of(request.type)
        v.check(type_ in CUSTOMER_TYPES, "type", f"required: one of {', '.join(sorted(t.value for t in CUSTOMER_TYPES))}")
        v.check(
            request.currency_code in CURRENCY_EXPONENTS,
            "currency_code",
            f"required: one of {', '.join(sorted(CURRENCY_EXPONENTS))}",
        )
        account = await self._service.open_account(
            request.customer_id, v.valid(type_), request.currency_code, idempotency_key(request, "OpenAccount")
        )
        return pb.OpenAccountResponse(account=account_pb(account))

    async def GetAccount(self, request: pb.GetAccountRequest, context: aio.ServicerContext) -> pb.GetAccountResponse:
        return pb.GetAccountResponse(account=account_pb(await self._service.get_account(request.account_id)))

    async def ListAccounts(self, request: pb.ListAccountsRequest, context: aio.ServicerContext) -> pb.ListAccountsResponse:
        v = Violations()
        page = self._pages.request(v, request.page_size, request.page_token, ("accounts", request.customer_id))
        v.raise_if_any()
        accounts, token = await self._service.list_accounts(request.customer_id, page)
        return pb.ListAccountsResponse(accounts=[account_pb(a) for a in accounts], next_page_token=token)

    async def CloseAccount(self, request: pb.CloseAccountRequest, context: aio.ServicerContext) -> pb.CloseAccountResponse:
        account = await self._service.close_account(request.account_id, idempotency_key(request, "CloseAccount"))
        return pb.CloseAccountResponse(account=account_pb(account))

    @gated(ADMIN, action="take cash deposits")
    async def Deposit(self, request: pb.DepositRequest, context: aio.ServicerContext) -> pb.DepositResponse:
        v = Violations()
        cash = InternalAccount.CASH.account_id(request.amount.currency_code)
        order = _order(v, cash, request.account_id, request.amount, request.description, credit_field="account_id")
        transfer = await self._service.deposit(v.valid(order), idempotency_key(request, "Deposit"))
        return pb.DepositResponse(transfer=transfer_pb(transfer))

    async def Withdraw(self, request: pb.WithdrawRequest, context: aio.ServicerContext) -> pb.WithdrawResponse:
        v = Violations()
        cash = InternalAccount.CASH.account_id(request.amount.currency_code)
        order = _order(v, request.account_id, cash, request.amount, request.description)
        transfer = await self._service.withdraw(v.valid(order), idempotency_key(request, "Withdraw"))
        return pb.WithdrawResponse(transfer=transfer_pb(transfer))

    async def Transfer(self, request: pb.TransferRequest, context: aio.ServicerContext) -> pb.TransferResponse:
        v = Violations()
        order = _order(v, request.debit_account_id, request.credit_account_id, request.amount, request.description)
        transfer = await self._service.transfer(v.valid(order), idempotency_key(request, "Transfer"))
        return pb.TransferResponse(transfer=transfer_pb(transfer))

    async def GetTransfer(self, request: pb.GetTransferRequest, context: aio.ServicerContext) -> pb.GetTransferResponse:
        return pb.GetTransferResponse(transfer=transfer_pb(await self._service.get_transfer(request.transfer_id)))

    async def ReverseTransfer(
        self, request: pb.ReverseTransferRequest, context: aio.ServicerContext
    ) -> pb.ReverseTransferResponse:
        reversal = await self._service.reverse(request.transfer_id, request.reason, idempotency_key(request, "ReverseTransfer"))
        return pb.ReverseTransferResponse(transfer=transfer_pb(reversal))

    async def PlaceHold(self, request: pb.PlaceHoldRequest, context: aio.ServicerContext) -> pb.PlaceHoldResponse:
        v = Violations()
        order = _order(v, request.debit_account_id, request.credit_account_id, request.amount, request.description, hold=request)
        hold = await self._service.place_hold(v.valid(order), idempotency_key(request, "PlaceHold"), capture=request.capture)
        return pb.PlaceHoldResponse(hold=hold_pb(hold))

    async def PlaceHolds(self, request: pb.PlaceHoldsRequest, context: aio.ServicerContext) -> pb.PlaceHoldsResponse:
        v = Violations()
        orders = [(_order(v, h.debit_account_id, h.credit_account_id, h.amount, h.description, hold=h), h) for h in request.holds]
        v.check(not any(h.capture for h in request.holds), "holds.capture", "PlaceHolds only reserves: capture each on its own")
        holds = await self._service.place_holds([(v.valid(o), idempotency_key(h, "PlaceHold")) for o, h in orders])
        return pb.PlaceHoldsResponse(holds=[hold_pb(h) for h in holds])

    async def CaptureHold(self, request: pb.CaptureHoldRequest, context: aio.ServicerContext) -> pb.CaptureHoldResponse:
        v = Violations()
        amount = requested_money(v, request.amount, "amount") if request.HasField("amount") else None
        v.raise_if_any()
        hold, transfer = await self._service.capture_hold(request.hold_id, amount, idempotency_key(request, "CaptureHold"))
        return pb.CaptureHoldResponse(hold=hold_pb(hold), transfer=transfer_pb(transfer))

    async def ReleaseHold(self, request: pb.ReleaseHoldRequest, context: aio.ServicerContext) -> pb.ReleaseHoldResponse:
        hold = await self._service.release_hold(request.hold_id, idempotency_key(request, "ReleaseHold"))
        return pb.ReleaseHoldResponse(hold=hold_pb(hold))

    async def GetHold(self, request: pb.GetHoldRequest, context: aio.ServicerContext) -> pb.GetHoldResponse:
        return pb.GetHoldResponse(hold=hold_pb(await self._service.get_hold(request.hold_id)))

    async def ListHolds(self, request: pb.ListHoldsRequest, context: aio.ServicerContext) -> pb.ListHoldsResponse:
        v = Violations()
        page = self._pages.request(v, request.page_size, request.page_token, ("holds", request.account_id))
        v.raise_if_any()
        holds, token = await self._service.holds(request.account_id, page)
        return pb.ListHoldsResponse(holds=[hold_pb(h) for h in holds], next_page_token=token)

    async def LookupHold(self, request: pb.LookupHoldRequest, context: aio.ServicerContext) -> pb.LookupHoldResponse:
        return pb.LookupHoldResponse(hold=hold_pb(await self._service.lookup_hold(request.request_id)))

    async def PostCharges(self, request: pb.PostChargesRequest, context: aio.ServicerContext) -> pb.PostChargesResponse:
        v = Violations()
        v.check(
            len({c.request_id for c in request.charges}) == len(request.charges),
            "charges",
            "each charge needs its own request_id",
        )
        orders = [(_charge(v, c, f"charges[{n}]"), idempotency_key(c, "PostCharges")) for n, c in enumerate(request.charges)]
        v.raise_if_any()
        charges = await self._service.post_charges([(v.valid(order), key) for order, key in orders])
        return pb.PostChargesResponse(charges=[charge_pb(c) for c in charges])

    async def LookupCharge(self, request: pb.LookupChargeRequest, context: aio.ServicerContext) -> pb.LookupChargeResponse:
        return pb.LookupChargeResponse(charge=charge_pb(await self._service.lookup_charge(request.request_id)))

    async def CheckAccountAccess(
        self, request: pb.CheckAccountAccessRequest, context: aio.ServicerContext
    ) -> pb.CheckAccountAccessResponse:
        v = Violations()
        v.check(
            request.access in _ACCESS, "access", "required: ACCOUNT_ACCESS_READ, ACCOUNT_ACCESS_DEBIT or ACCOUNT_ACCESS_CREDIT"
        )
        v.raise_if_any()
        currency = await self._service.check_access(request.account_id, _ACCESS[request.access])
        return pb.CheckAccountAccessResponse(account_id=request.account_id, currency_code=currency)

    @gated(ADMIN, action="post interest", or_started_by=BANKS_DAY)
    async def AccrueInterest(self, request: pb.AccrueInterestRequest, context: aio.ServicerContext) -> pb.AccrueInterestResponse:
        v = Violations()
        day = date_of(request.business_date)
        v.check(day is not None, "business_date", "required: a valid calendar date")
        v.check(request.currency_code in CURRENCY_EXPONENTS, "currency_code", "required: a supported currency")
        tiers = _tiers(v, request)
        chunk = await self._service.accrue_interest(
            v.valid(day),
            request.currency_code,
            v.valid(tiers),
            request.after_account_id,
            request.limit,
            idempotency_key(request, "AccrueInterest"),
        )
        posted = Money(request.currency_code, chunk.posted_minor)
        return pb.AccrueInterestResponse(
            processed=chunk.processed,
            interest_posted=money_pb(posted),
            last_account_id=chunk.last_account_id,
            done=chunk.done,
            eligible=chunk.eligible,
        )

    @gated(ADMIN, action="charge fees", or_started_by=BANKS_DAY)
    async def ChargeMonthlyFees(
        self, request: pb.ChargeMonthlyFeesRequest, context: aio.ServicerContext
    ) -> pb.ChargeMonthlyFeesResponse:
        v = Violations()
        month = calendar_date(request.month.year, request.month.month, 1)
        v.check(month is not None, "month", "required: a year and a month")
        v.check(request.currency_code in CURRENCY_EXPONENTS, "currency_code", "required: a supported currency")
        chunk = await self._service.charge_monthly_fees(
            v.valid(month),
            request.currency_code,
            request.after_account_id,
            request.limit,
            idempotency_key(request, "ChargeMonthlyFees"),
        )
        return pb.ChargeMonthlyFeesResponse(
            processed=chunk.processed,
            charged=chunk.charged,
            unpaid=chunk.unpaid,
            fees_charged=money_pb(Money(request.currency_code, chunk.charged_minor)),
            last_account_id=chunk.last_account_id,
            done=chunk.done,
        )

    async def GetInternalAccount(
        self, request: pb.GetInternalAccountRequest, context: aio.ServicerContext
    ) -> pb.GetInternalAccountResponse:
        v = Violations()
        kind = INTERNAL_ACCOUNT.of(request.internal_account)
        v.check(request.currency_code in CURRENCY_EXPONENTS, "currency_code", "required: a supported currency")
        account_id = self._service.internal_account(v.valid(kind), request.currency_code)
        return pb.GetInternalAccountResponse(account_id=account_id)

    async def ListEntries(self, request: pb.ListEntriesRequest, context: aio.ServicerContext) -> pb.ListEntriesResponse:
        v = Violations()
        page = self._pages.request(v, request.page_size, request.page_token, ("entries", request.account_id))
        v.raise_if_any()
        entries, token = await self._service.entries(request.account_id, page)
        return pb.ListEntriesResponse(entries=[entry_pb(e) for e in entries], next_page_token=token)

    async def GetStatement(self, request: pb.GetStatementRequest, context: aio.ServicerContext) -> pb.GetStatementResponse:
        v = Violations()
        first, last = _date_range(v, request.from_date, request.to_date)
        query = ("statement", request.account_id, str(first), str(last), request.newest_first)
        page = self._pages.request(v, request.page_size, request.page_token, query)
        return await self._statement(request.account_id, v.valid(first), v.valid(last), request.newest_first, page)

    async def ExportStatement(
        self, request: pb.ExportStatementRequest, context: aio.ServicerContext
    ) -> pb.ExportStatementResponse:
        v = Violations()
        first, last = _date_range(v, request.from_date, request.to_date)
        v.check(request.format in FORMATS, "format", "required: CSV or CAMT053")
        first, last = v.valid(first), v.valid(last)
        whole = PageRequest(None, MAX_EXPORTED_ENTRIES, ("export",), self._pages)
        statement = await self._statement(request.account_id, first, last, False, whole)
        if statement.next_page_token:
            raise ValidationFailed([FieldViolation("to_date", f"more than {MAX_EXPORTED_ENTRIES} entries: narrow the range")])
        content, kind, suffix = exported(statement, request.format, first, last, self._clock.now(), new_id("stm"))
        return pb.ExportStatementResponse(
            content=content,
            content_type=kind,
            file_name=f"{request.account_id}_{first}_{last}.{suffix}",
            opening_balance=statement.opening_balance,
            closing_balance=statement.closing_balance,
            entry_count=len(statement.entries),
        )

    async def _statement(
        self, account_id: str, first: date, last: date, newest_first: bool, page: PageRequest
    ) -> pb.GetStatementResponse:
        currency, within, entries, token = await self._service.statement(account_id, first, last, newest_first, page)
        return pb.GetStatementResponse(
            account_id=account_id,
            opening_balance=money_pb(Money(currency, within.opening_minor)),
            closing_balance=money_pb(Money(currency, within.closing_minor)),
            entries=[entry_pb(e) for e in entries],
            next_page_token=token,
            total_credits=money_pb(Money(currency, within.credits_minor)),
            total_debits=money_pb(Money(currency, within.debits_minor)),
            entry_count=within.count,
        )

    @gated(ADMIN, action="read the trial balance")
    async def GetTrialBalance(
        self, request: pb.GetTrialBalanceRequest, context: aio.ServicerContext
    ) -> pb.GetTrialBalanceResponse:
        v = Violations()
        currency = request.currency_code
        v.check(currency in CURRENCY_EXPONENTS, "currency_code", "required: a supported currency")
        page = self._pages.request(v, request.page_size, request.page_token, ("trial balance", currency))
        v.raise_if_any()
        lines, totals, token = await self._service.trial_balance(currency, page)
        return pb.GetTrialBalanceResponse(
            lines=[trial_line_pb(line, currency) for line in lines],
            next_page_token=token,
            account_count=totals.count,
            total_credit_balances=money_pb(Money(currency, totals.credit_balances_minor)),
            total_debit_balances=money_pb(Money(currency, totals.debit_balances_minor)),
            net=money_pb(Money(currency, totals.net_minor)),
        )


def _date_range(v: Violations, from_date: date_pb2.Date, to_date: date_pb2.Date) -> tuple[date | None, date | None]:
    first, last = date_of(from_date), date_of(to_date)
    v.check(first is not None, "from_date", "required: a valid calendar date")
    v.check(last is not None, "to_date", "required: a valid calendar date")
    v.check(first is None or last is None or first <= last, "to_date", "must not be before from_date")
    return first, last


def _tiers(v: Violations, request: pb.AccrueInterestRequest) -> tuple[InterestTier, ...]:
    """Ascending bounds, the last tier unbounded, rates between 0 and 1."""
    tiers: list[InterestTier] = []
    for i, tier in enumerate(request.tiers):
        field = f"tiers[{i}]"
        rate = decimal_fraction(v, tier.annual_rate, f"{field}.annual_rate", max_places=6, zero_allowed=True)
        bound = None
        if tier.HasField("up_to"):
            money = requested_money(v, tier.up_to, f"{field}.up_to")
            bound = money.minor if money else None
            v.check(not tiers or (tiers[-1].up_to_minor or 0) < (bound or 0), f"{field}.up_to", "bounds must ascend")
        tiers.append(InterestTier(bound, rate if rate is not None else Decimal(0)))  # invalid: refused below
    v.check(
        bool(tiers) and tiers[-1].up_to_minor is None and all(t.up_to_minor is not None for t in tiers[:-1]),
        "tiers",
        "one or more tiers, only the last without up_to",
    )
    return tuple(tiers)
