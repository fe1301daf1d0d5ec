"""Each operation of a history as a request: the RPC's method, the principal who sends it and the
body (JSON field names, parsed into the message class the server's reflection gives), with the
symbolic resources of the operation resolved against what the history has made so far."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal
from typing import cast

from tests.simulation.model import ADMIN, MANAGER, OTHER, OWNER, STRANGER, WARRING, Op

MISSING = {
    "account": "acc_missing",
    "hold": "hld_missing",
    "transfer": "trf_missing",
    "loan": "lon_missing",
    "payment": "pay_missing",
}
EXTERNAL_IBAN = "DE89370400440532013000"
OPENED = ("PERSONAL_SAVINGS", "BUSINESS_CHECKING", "PERSONAL_CHECKING")  # savings earn interest, business pays fees
NOTIFICATION_KINDS = ["PAYMENT_COMPLETED", "PAYMENT_RECEIVED", "LOAN_REPAID", "WELCOME"]


@dataclass
class Made:
    """What the history has made so far, in the order it was made; each resource with the index
    of the customer who owns it."""

    customers: list[str] = field(default_factory=list)
    users: list[str] = field(default_factory=list)  # the customers' user ids
    accounts: list[tuple[str, int]] = field(default_factory=list)
    holds: list[tuple[str, int]] = field(default_factory=list)
    transfers: list[str] = field(default_factory=list)
    payments: list[str] = field(default_factory=list)
    loans: list[tuple[str, int]] = field(default_factory=list)
    war: list[str] = field(default_factory=list)  # the user ids of the two admins who act on each other
    letters: list[str] = field(default_factory=list)  # dead letters of the notification context, WAITING at the start
    passwords: dict[int, str] = field(default_factory=dict)  # customer index -> the password the driver last set
    today: date = date(2026, 3, 2)

    def account(self, i: object) -> tuple[str, int]:
        if isinstance(i, str) and i.startswith("internal:"):
            return f"acc_{i.removeprefix('internal:')}_EUR", -1
        return self.accounts[int(str(i)) % len(self.accounts)] if self.accounts else (MISSING["account"], 0)

    def hold(self, i: object) -> tuple[str, int]:
        return self.holds[int(str(i)) % len(self.holds)] if self.holds else (MISSING["hold"], 0)

    def loan(self, i: object) -> tuple[str, int]:
        return self.loans[int(str(i)) % len(self.loans)] if self.loans else (MISSING["loan"], 0)

    def transfer(self, i: object) -> str:
        return self.transfers[int(str(i)) % len(self.transfers)] if self.transfers else MISSING["transfer"]

    def payment(self, i: object) -> str:
        return self.payments[int(str(i)) % len(self.payments)] if self.payments else MISSING["payment"]

    def customer(self, i: object) -> int:
        return int(str(i)) % max(1, len(self.customers))


@dataclass(frozen=True)
class Request:
    method: str
    sender: str  # a principal's name: "admin", "stranger", "manager", "customer:<i>", "war:<i>"
    body: dict[str, object]
    debits: str = ""  # the account the request takes money from (funds arrive there mid-race)


def _eur(amount: object) -> dict[str, object]:
    return {"currency_code": "EUR", "amount": str(amount)}


def _sender(op: Op, owner: int, made: Made) -> str:
    """The principal who sends `op`, for a resource of customer `owner`."""
    if op.actor == OWNER:
        return f"customer:{owner}" if owner >= 0 else "admin"
    if op.actor == OTHER:
        return f"customer:{(max(owner, 0) + 1) % max(1, len(made.customers))}"
    return {ADMIN: "admin", MANAGER: "manager", STRANGER: "stranger", WARRING: "war:0"}.get(op.actor, "admin")


def _day(made: Made, op: Op) -> dict[str, int]:
    when = date(9999, 12, 31) if op.args.get("far") else made.today - timedelta(days=int(str(op.args.get("days_ago", 0))))
    return {"year": when.year, "month": when.month, "day": when.day}


def _money_moves(op: Op, made: Made) -> Request | None:
    a = op.args
    if op.kind not in ("Deposit", "Withdraw", "Transfer", "PlaceHold", "CreatePayment"):
        return None
    account, owner = made.account(a["account"])
    amount = _eur(a["amount"])
    if op.kind in ("Deposit", "Withdraw"):
        body: dict[str, object] = {"account_id": account, "amount": amount}
        return Request(op.kind, _sender(op, owner, made), body, account if op.kind == "Withdraw" else "")
    if op.kind == "CreatePayment":
        to = a["to"]
        beneficiary = {"external": {"iban": EXTERNAL_IBAN, "name": "Max"}} if to == "external" else {}
        beneficiary = beneficiary or {"internal": {"account_id": made.account(to)[0]}}
        body = {"debtor_account_id": account, "amount": amount, "reference": f"sim {op.n}", **beneficiary}
        return Request(op.kind, _sender(op, owner, made), body, account)
    body = {"debit_account_id": account, "credit_account_id": made.account(a["to"])[0], "amount": amount}
    if op.kind == "PlaceHold":
        body["capture"] = bool(a.get("capture"))
    return Request(op.kind, _sender(op, owner, made), body, account)


def _batch(op: Op, made: Made) -> Request | None:
    """A bulk payment in the contract's own form, its header counted and summed as a sender
    would (or miscounted: refused whole)."""
    if op.kind != "SubmitPaymentBatch":
        return None
    account, owner = made.account(op.args["account"])
    pairs = cast(list[tuple[object, str]], op.args["lines"])  # the model's (payee, amount) pairs
    lines: list[dict[str, object]] = []
    for n, (to, amount) in enumerate(pairs):
        payee = {"external": {"iban": EXTERNAL_IBAN, "name": "Max"}} if to == "external" else {}
        payee = payee or {"internal": {"account_id": made.account(to)[0]}}
        lines.append({"end_to_end_id": f"sim-{op.n}-{n}", "amount": _eur(amount), **payee})
    total = sum(Decimal(amount) for _, amount in pairs)
    header = {"number_of_transactions": len(lines) + int(bool(op.args["miscounted"])), "control_sum": f"{total:.2f}"}
    body = {"debtor_account_id": account, "lines": {"lines": lines, **header}}
    return Request(op.kind, _sender(op, owner, made), body, account)


def _holds_and_transfers(op: Op, made: Made) -> Request | None:
    if op.kind in ("CaptureHold", "ReleaseHold"):
        hold, owner = made.hold(op.args["hold"])
        body: dict[str, object] = {"hold_id": hold}
        if "amount" in op.args:
            body["amount"] = _eur(op.args["amount"])
        return Request(op.kind, _sender(op, owner, made), body)
    if op.kind == "ReverseTransfer":
        return Request(op.kind, _sender(op, -1, made), {"transfer_id": made.transfer(op.args["transfer"]), "reason": "sim"})
    if op.kind in ("RetryPayment", "RefundPayment"):  # an operator's, on a payment stopped for one (or not)
        return Request(op.kind, _sender(op, -1, made), {"payment_id": made.payment(op.args["payment"]), "reason": "sim"})
    if op.kind in ("LookupHold", "LookupCharge"):  # contexts only: every user is refused
        return Request(op.kind, _sender(op, 0, made), {})
    return None


def _accounts(op: Op, made: Made) -> Request | None:
    if op.kind == "OpenAccount":
        c = made.customer(op.args["customer"])
        body = {"customer_id": made.customers[c], "type": f"ACCOUNT_TYPE_{OPENED[op.n % len(OPENED)]}", "currency_code": "EUR"}
        return Request(op.kind, _sender(op, c, made), body)
    if op.kind == "CloseAccount":
        account, owner = made.account(op.args["account"])
        return Request(op.kind, _sender(op, owner, made), {"account_id": account})
    if op.kind == "PostCharges":  # for contexts: an admin's or a user's charge to the loan book is refused
        account, owner = made.account(op.args.get("customer", 0))
        line = {"internal_account": "INTERNAL_ACCOUNT_LOAN_PRINCIPAL", "amount": _eur("1.00")}
        charge = {"request_id": f"charge-{op.n}", "account_id": account, "lines": [line], "description": "sim"}
        return Request(op.kind, _sender(op, owner, made), {"charges": [charge]})
    return None


def _loans(op: Op, made: Made) -> Request | None:
    if op.kind == "ApplyForLoan":
        account, owner = made.account(op.args["account"])
        customer = made.customers[owner] if made.customers else "cus_missing"
        body = {"customer_id": customer, "account_id": account, "principal": _eur(op.args["principal"]), "term_months": 12}
        return Request(op.kind, _sender(op, owner, made), body)
    if op.kind not in ("ApproveLoan", "DisburseLoan", "RepayLoan", "PayOffLoan", "RetrySaga", "CompensateSaga"):
        return None
    loan, owner = made.loan(op.args["loan"])
    body: dict[str, object] = {"loan_id": loan}
    if op.kind in ("RetrySaga", "CompensateSaga"):  # an operator's action on the loan's disbursement saga
        body = {"saga_id": f"sag-{loan}", "reason": f"simulated operator {op.n}"}
    if op.kind == "ApproveLoan":
        body["annual_interest_rate"] = op.args["rate"]
    if op.kind in ("RepayLoan", "PayOffLoan"):
        body["amount"] = _eur(op.args["amount"])
    sender = _sender(op, owner, made)
    if op.actor == WARRING:
        sender = f"war:{op.n % 2}"
    return Request(op.kind, sender, body)


def _batches(op: Op, made: Made) -> Request | None:
    if op.kind in ("RunCollection", "RunDailyInterest"):
        body: dict[str, object] = {"business_date": _day(made, op)}
        if op.kind == "RunCollection":
            body["currency_code"] = "EUR"
        return Request(op.kind, _sender(op, -1, made), body)
    if op.kind == "ChargeMonthlyFees":
        month = _day(made, op) | {"day": 1}
        body = {"month": month, "currency_code": "EUR", "limit": (1, 100)[op.n % 2], "after_account_id": ""}
        body["after_account_id"] = made.account(op.n)[0] if op.n % 3 else ""
        return Request(op.kind, _sender(op, -1, made), body)
    if op.kind == "CloseBusinessDay":  # every business date due, in order: its interest, fees, collection
        return Request(op.kind, _sender(op, -1, made), {"currency_code": op.args["currency"]})
    if op.kind == "AccrueInterest":  # chunks of 1, 3 or 100 accounts, at rates that pay cents on small balances
        tiers = [{"up_to": _eur("1000.00"), "annual_rate": ("0.5", "0.05")[op.n % 2]}, {"annual_rate": "0.01"}]
        body = {"business_date": _day(made, op), "currency_code": "EUR", "tiers": tiers, "limit": (1, 3, 100)[op.n % 3]}
        body["after_account_id"] = made.account(op.n)[0] if op.n % 4 else ""  # resumed from an account on, or from the start
        return Request(op.kind, _sender(op, -1, made), body)
    return None


def _people(op: Op, made: Made) -> Request | None:
    a = op.args
    if op.kind in ("DisableUser", "EnableUser", "UpdateUser"):
        target = int(str(a["target"])) % 2
        body: dict[str, object] = {"user_id": made.war[target] if made.war else "usr_missing"}
        if op.kind == "UpdateUser":
            body["roles"] = [a["role"]]
        return Request(op.kind, f"war:{1 - target}", body)
    c = made.customer(a.get("customer", 0))
    customer = made.customers[c] if made.customers else "cus_missing"
    if op.kind == "ChangePassword":
        body = {
            "user_id": made.users[c],
            "current_password": made.passwords.get(c, ""),
            "new_password": f"new-password-{a['new']:04d}",
        }
        return Request(op.kind, f"customer:{c}", body)
    if op.kind == "RevokeTokens":
        return Request(op.kind, _sender(op, c, made), {"user_id": made.users[c] if made.users else "usr_missing"})
    if op.kind == "UpdateNotificationPreferences":
        kinds = (NOTIFICATION_KINDS * 500)[: int(str(a["many"]))]
        return Request(op.kind, _sender(op, c, made), {"customer_id": customer, "opted_out_kinds": kinds})
    if op.kind == "UpdateCustomer":
        body = {"customer_id": customer, "customer": {"email": f"sim{op.n}@example.com"}, "update_mask": "email"}
        return Request(op.kind, _sender(op, c, made), body)
    if op.kind == "AssignRelationshipManager":
        return Request(op.kind, _sender(op, c, made), {"customer_id": customer, "relationship_manager_id": "usr_missing"})
    if op.kind == "ReviewKyc":
        return Request(op.kind, _sender(op, c, made), {"customer_id": customer, "decision": "KYC_DECISION_CLEAR"})
    if op.kind == "CreateUser":
        body = {
            "username": f"sim-user-{op.n}",
            "password": "a-long-password-1",
            "roles": ["ROLE_CUSTOMER"],
            "customer_id": customer,
        }
        return Request(op.kind, _sender(op, c, made), body)
    return None


def _operations(op: Op, made: Made) -> Request | None:
    """An operator's replay or drop of one of the dead letters (racing, retried, replayed late)."""
    if op.kind not in ("ReplayDeadLetter", "DropDeadLetter"):
        return None
    i = int(str(op.args["letter"]))
    letter = made.letters[i % len(made.letters)] if made.letters else "dlq_missing"
    return Request(op.kind, _sender(op, -1, made), {"dead_letter_id": letter, "reason": f"simulated {op.n}"})


BUILDERS: tuple[Callable[[Op, Made], Request | None], ...] = (
    _operations,
    _money_moves,
    _batch,
    _holds_and_transfers,
    _accounts,
    _loans,
    _batches,
    _people,
)
ONBOARDING = "OnboardCustomer"  # built by the driver: it needs a fresh identity document


def request_for(op: Op, made: Made) -> Request:
    for build in BUILDERS:
        built = build(op, made)
        if built is not None:
            return built
    raise KeyError(f"no request for {op.kind}")
