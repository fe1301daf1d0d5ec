"""The account context over real gRPC, on SQLite and on PostgreSQL."""

from __future__ import annotations

import grpc
import pytest
from grpc import aio

from ogpgy.account.v1 import account_service_pb2 as apb
from tests.bank_helpers import Bank, eur
from tests.conftest import document, onboarding
from tests.grpc_assert import error_reason, field_violations, rpc_error


@pytest.fixture
def client(channel: aio.Channel) -> Bank:
    return Bank(channel)


async def test_verified_customer_gets_a_default_account_by_event(client: Bank) -> None:
    customer = await client.verified_customer("dflt")
    account = await client.default_account(customer)
    assert account.type == apb.ACCOUNT_TYPE_PERSONAL_CHECKING and account.status == apb.ACCOUNT_STATUS_OPEN
    assert account.balance.amount == "0.00" and account.available_balance.amount == "500.00", "overdraft 500 from products.toml"
    assert account.features.overdraft_protection and not account.features.interest_bearing


async def test_open_account_needs_a_verified_customer(client: Bank) -> None:
    rejected = (await client.customers.OnboardCustomer(onboarding("minor", document=document("AB1234560")))).customer
    open_rejected = apb.OpenAccountRequest(
        request_id="o-1", customer_id=rejected.customer_id, type=apb.ACCOUNT_TYPE_PERSONAL_SAVINGS, currency_code="EUR"
    )
    info = await error_reason(client.accounts.OpenAccount(open_rejected), grpc.StatusCode.FAILED_PRECONDITION)
    assert info.reason == "CUSTOMER_NOT_VERIFIED"
    unknown = apb.OpenAccountRequest(
        request_id="o-2", customer_id="cus_NOPE", type=apb.ACCOUNT_TYPE_PERSONAL_SAVINGS, currency_code="EUR"
    )
    await rpc_error(client.accounts.OpenAccount(unknown), grpc.StatusCode.NOT_FOUND)


async def test_each_product_gets_its_configured_features(client: Bank) -> None:
    customer = await client.verified_customer("prod")
    business = await client.open(customer, "biz", apb.ACCOUNT_TYPE_BUSINESS_CHECKING)
    account = (await client.accounts.GetAccount(apb.GetAccountRequest(account_id=business))).account
    assert account.features.overdraft_limit.amount == "5000.00" and account.features.monthly_fee.amount == "15.00"
    assert account.features.free_transactions_per_month == 200 and account.features.annual_interest_rate == "0.005"
    bad = apb.OpenAccountRequest(request_id="o-x", customer_id=customer, type=apb.ACCOUNT_TYPE_INTERNAL, currency_code="EUR")
    assert "type" in await field_violations(client.accounts.OpenAccount(bad))


async def test_overdraft_edges(client: Bank) -> None:
    checking = (await client.default_account(await client.verified_customer("od"))).account_id
    await client.deposit(checking, "100.00", "od-1")
    to_limit = apb.WithdrawRequest(request_id="w-1", account_id=checking, amount=eur("600.00"))
    await client.accounts.Withdraw(to_limit)
    assert await client.balance(checking) == ("-500.00", "0.00")
    one_cent = apb.WithdrawRequest(request_id="w-2", account_id=checking, amount=eur("0.01"))
    info = await error_reason(client.accounts.Withdraw(one_cent), grpc.StatusCode.FAILED_PRECONDITION)
    assert info.reason == "INSUFFICIENT_FUNDS" and info.metadata["available"] == "0.00"
    savings = await client.open(await client.verified_customer("od2"), "sav")
    nothing = apb.TransferRequest(request_id="t-0", debit_account_id=savings, credit_account_id=checking, amount=eur("0.01"))
    assert (
        await error_reason(client.accounts.Transfer(nothing), grpc.StatusCode.FAILED_PRECONDITION)
    ).reason == "INSUFFICIENT_FUNDS"


async def test_transfer_is_idempotent_and_posts_two_entries(client: Bank) -> None:
    a = (await client.default_account(await client.verified_customer("ta"))).account_id
    b = (await client.default_account(await client.verified_customer("tb"))).account_id
    await client.deposit(a, "250.00", "ta")
    move = apb.TransferRequest(
        request_id="move-1", debit_account_id=a, credit_account_id=b, amount=eur("80.25"), description="rent"
    )
    first = (await client.accounts.Transfer(move)).transfer
    again = (await client.accounts.Transfer(move)).transfer
    assert first == again
    assert (await client.balance(a))[0] == "169.75" and (await client.balance(b))[0] == "80.25"
    changed = apb.TransferRequest(request_id="move-1", debit_account_id=a, credit_account_id=b, amount=eur("1.00"))
    assert (
        await error_reason(client.accounts.Transfer(changed), grpc.StatusCode.ALREADY_EXISTS)
    ).reason == "IDEMPOTENCY_KEY_REUSED"
    statement = (await client.accounts.ListEntries(apb.ListEntriesRequest(account_id=b))).entries
    assert [(e.amount.amount, e.balance_after.amount, e.counterparty_account_id) for e in statement] == [("80.25", "80.25", a)]


async def test_holds_capture_partly_release_and_resolve_once(client: Bank) -> None:
    payer = (await client.default_account(await client.verified_customer("hp"))).account_id
    payee = (await client.default_account(await client.verified_customer("hq"))).account_id
    await client.deposit(payer, "100.00", "hp")
    hold = (
        await client.accounts.PlaceHold(
            apb.PlaceHoldRequest(request_id="h-1", debit_account_id=payer, credit_account_id=payee, amount=eur("60.00"))
        )
    ).hold
    assert hold.status == apb.HOLD_STATUS_PLACED and await client.balance(payer) == ("100.00", "540.00")
    captured = await client.accounts.CaptureHold(
        apb.CaptureHoldRequest(request_id="c-1", hold_id=hold.hold_id, amount=eur("45.50"))
    )
    assert captured.hold.status == apb.HOLD_STATUS_CAPTURED and captured.transfer.amount.amount == "45.50"
    assert await client.balance(payer) == ("54.50", "554.50"), "the uncaptured rest is released"
    twice = apb.ReleaseHoldRequest(request_id="r-1", hold_id=hold.hold_id)
    assert (
        await error_reason(client.accounts.ReleaseHold(twice), grpc.StatusCode.FAILED_PRECONDITION)
    ).reason == "HOLD_ALREADY_RESOLVED"
    second = (
        await client.accounts.PlaceHold(
            apb.PlaceHoldRequest(request_id="h-2", debit_account_id=payer, credit_account_id=payee, amount=eur("20.00"))
        )
    ).hold
    too_much = apb.CaptureHoldRequest(request_id="c-2", hold_id=second.hold_id, amount=eur("20.01"))
    assert (
        await error_reason(client.accounts.CaptureHold(too_much), grpc.StatusCode.FAILED_PRECONDITION)
    ).reason == "CAPTURE_EXCEEDS_HOLD"
    released = (await client.accounts.ReleaseHold(apb.ReleaseHoldRequest(request_id="r-2", hold_id=second.hold_id))).hold
    assert released.status == apb.HOLD_STATUS_RELEASED and await client.balance(payer) == ("54.50", "554.50")
    over = apb.PlaceHoldRequest(request_id="h-3", debit_account_id=payer, credit_account_id=payee, amount=eur("554.51"))
    assert (
        await error_reason(client.accounts.PlaceHold(over), grpc.StatusCode.FAILED_PRECONDITION)
    ).reason == "INSUFFICIENT_FUNDS"


async def test_a_hold_captured_as_it_is_placed_moves_the_money_once(client: Bank) -> None:
    payer = (await client.default_account(await client.verified_customer("ha"))).account_id
    payee = (await client.default_account(await client.verified_customer("hb"))).account_id
    await client.deposit(payer, "100.00", "ha")
    at_once = apb.PlaceHoldRequest(
        request_id="h-now", debit_account_id=payer, credit_account_id=payee, amount=eur("30.00"), capture=True
    )
    hold = (await client.accounts.PlaceHold(at_once)).hold
    assert hold.status == apb.HOLD_STATUS_CAPTURED and hold.captured_amount.amount == "30.00" and hold.transfer_id
    assert (await client.accounts.PlaceHold(at_once)).hold == hold, "a retry answers the same hold"
    assert await client.balance(payer) == ("70.00", "570.00") and (await client.balance(payee))[0] == "30.00"
    transfer = (await client.accounts.GetTransfer(apb.GetTransferRequest(transfer_id=hold.transfer_id))).transfer
    assert transfer.hold_id == hold.hold_id and transfer.amount.amount == "30.00"
    placed_only = apb.PlaceHoldRequest(request_id="h-now", debit_account_id=payer, credit_account_id=payee, amount=eur("30.00"))
    assert (
        await error_reason(client.accounts.PlaceHold(placed_only), grpc.StatusCode.ALREADY_EXISTS)
    ).reason == "IDEMPOTENCY_KEY_REUSED"
    too_much = apb.PlaceHoldRequest(
        request_id="h-over", debit_account_id=payer, credit_account_id=payee, amount=eur("570.01"), capture=True
    )
    assert (
        await error_reason(client.accounts.PlaceHold(too_much), grpc.StatusCode.FAILED_PRECONDITION)
    ).reason == "INSUFFICIENT_FUNDS"
    assert await client.balance(payer) == ("70.00", "570.00"), "a refused capture-at-once changes nothing"


async def test_reverse_once_and_close_only_at_zero(client: Bank) -> None:
    customer = await client.verified_customer("rv")
    a = (await client.default_account(customer)).account_id
    b = await client.open(customer, "rv-b")
    await client.deposit(a, "30.00", "rv")
    moved = (
        await client.accounts.Transfer(
            apb.TransferRequest(request_id="rv-t", debit_account_id=a, credit_account_id=b, amount=eur("30.00"))
        )
    ).transfer
    refused = apb.CloseAccountRequest(request_id="cl-1", account_id=b)
    assert (
        await error_reason(client.accounts.CloseAccount(refused), grpc.StatusCode.FAILED_PRECONDITION)
    ).reason == "ACCOUNT_BALANCE_NOT_ZERO"
    reversal = (
        await client.accounts.ReverseTransfer(
            apb.ReverseTransferRequest(request_id="rv-1", transfer_id=moved.transfer_id, reason="mistake")
        )
    ).transfer
    assert reversal.reverses_transfer_id == moved.transfer_id and reversal.debit_account_id == b
    again = apb.ReverseTransferRequest(request_id="rv-2", transfer_id=moved.transfer_id)
    assert (
        await error_reason(client.accounts.ReverseTransfer(again), grpc.StatusCode.FAILED_PRECONDITION)
    ).reason == "TRANSFER_ALREADY_REVERSED"
    closed = (await client.accounts.CloseAccount(apb.CloseAccountRequest(request_id="cl-2", account_id=b))).account
    assert closed.status == apb.ACCOUNT_STATUS_CLOSED
    into_closed = apb.TransferRequest(request_id="rv-3", debit_account_id=a, credit_account_id=b, amount=eur("1.00"))
    assert (
        await error_reason(client.accounts.Transfer(into_closed), grpc.StatusCode.FAILED_PRECONDITION)
    ).reason == "ACCOUNT_CLOSED"


async def test_statement_pages(client: Bank) -> None:
    account = (await client.default_account(await client.verified_customer("st"))).account_id
    for i in range(5):
        await client.deposit(account, f"{i + 1}.00", f"st-{i}")
    seen, token = [], ""
    while True:
        page = await client.accounts.ListEntries(apb.ListEntriesRequest(account_id=account, page_size=2, page_token=token))
        seen += [e.balance_after.amount for e in page.entries]
        if not (token := page.next_page_token):
            break
    assert seen == ["1.00", "3.00", "6.00", "10.00", "15.00"]


BAD_INPUT = [
    # The contract's rules first (tests/integration/test_contract_rules.py), then the domain's
    ("OpenAccount", apb.OpenAccountRequest(), {"request_id", "customer_id"}),
    ("OpenAccount", apb.OpenAccountRequest(request_id="o", customer_id="cus_1"), {"type", "currency_code"}),
    ("GetAccount", apb.GetAccountRequest(account_id="x"), {"account_id"}),
    ("ListAccounts", apb.ListAccountsRequest(page_size=-1), {"customer_id", "page_size"}),
    ("CloseAccount", apb.CloseAccountRequest(), {"request_id", "account_id"}),
    ("Deposit", apb.DepositRequest(account_id="acc_1", amount=eur("-5")), {"request_id"}),
    ("Deposit", apb.DepositRequest(request_id="d", account_id="acc_1", amount=eur("-5")), {"amount.amount"}),
    ("Withdraw", apb.WithdrawRequest(request_id="w", amount=eur("1.001")), {"account_id"}),
    ("Withdraw", apb.WithdrawRequest(request_id="w", account_id="acc_1", amount=eur("1.001")), {"amount.amount"}),
    (
        "Transfer",
        apb.TransferRequest(request_id="t", debit_account_id="acc_1", credit_account_id="acc_1", amount=eur("1")),
        {"credit_account_id"},
    ),
    (
        "Transfer",
        apb.TransferRequest(request_id="t", amount=apb.Transfer().amount),
        {"debit_account_id", "credit_account_id"},
    ),
    (
        "Transfer",
        apb.TransferRequest(request_id="t", debit_account_id="acc_1", credit_account_id="acc_2", amount=apb.Transfer().amount),
        {"amount.currency_code"},
    ),
    ("GetTransfer", apb.GetTransferRequest(), {"transfer_id"}),
    ("ReverseTransfer", apb.ReverseTransferRequest(request_id="r", transfer_id="trf_1", reason="x" * 141), {"reason"}),
    (
        "PlaceHold",
        apb.PlaceHoldRequest(request_id="h", debit_account_id="acc_1", credit_account_id="acc_2", amount=eur("0")),
        {"amount.amount"},
    ),
    ("CaptureHold", apb.CaptureHoldRequest(request_id="c", hold_id="nope"), {"hold_id"}),
    ("ReleaseHold", apb.ReleaseHoldRequest(hold_id="hld_1"), {"request_id"}),
    ("ListEntries", apb.ListEntriesRequest(account_id="acc_1", page_token="zz"), {"page_token"}),
]


@pytest.mark.parametrize(("method", "request_", "fields"), BAD_INPUT, ids=[f"{m}-{i}" for i, (m, _, _) in enumerate(BAD_INPUT)])
async def test_bad_input_is_invalid_argument(client: Bank, method: str, request_: object, fields: set[str]) -> None:
    assert set(await field_violations(getattr(client.accounts, method)(request_))) == fields
