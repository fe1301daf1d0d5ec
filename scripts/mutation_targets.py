"""What the mutation profile mutates, with which tests, and why a survivor is no gap.

Each target is one module and the smallest test selection that covers it (killers first: -x
ends a run at the first failure). Its mutants are those scripts/mutants.py makes of it (every
operator on every statement; for a use-case module, its authorization only) and the NAMED ones:
mutants written out by hand as a snippet of the source and its replacement, the ones a review
found the suite blind to (issue 27). A named snippet that no longer occurs in the source (the
code moved on) is reported as unmatched, never skipped silently.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from mutants import Mutant, module_mutants, snippet_mutant, unparsed

# The authorization of a use case: the require_* calls, refusals, role and caller checks.
AUTHORIZATION = re.compile(
    r"require_|denied\(|unknown\(|has_role|reads_everything|\.service\b|\.roles\b|\bADMIN\b|\bCUSTOMER\b"
    r"|RELATIONSHIP_MANAGER|write=|may_read_pii|_scope\(|_hold_for\(|_payable\(|await self\.get\(|check_access"
    r"|owner_context|resolved_only_by_owner|caller\.|approver|applied_by|_four_eyes|account\.customer_id"
)
# Functions that are authorization through and through (every statement of theirs is mutated).
AUTHORIZATION_FUNCTIONS = re.compile(
    r"_assigned|_manages|_manager_of|_ownership|_require_account|_require_debtor|_require_self_or_admin|_scope"
    r"|_hold_for|_listing_filter|check_access|lookup_hold|lookup_charge|_second_approval"
)

UNIT = "tests/unit"
ACCESS = "tests/integration/test_access.py"
AUTHORITY = "tests/adversarial/test_authority_matrix.py"
GATES = f"{UNIT}/test_role_gates.py"  # fast, and kills every removed leading require_role


@dataclass(frozen=True)
class Named:
    """A mutant written by hand: `original` (exactly once in the module) becomes `replacement`."""

    name: str
    original: str
    replacement: str


@dataclass(frozen=True)
class Target:
    name: str
    path: str
    tests: tuple[str, ...]
    authorization_only: bool = False
    named: tuple[Named, ...] = ()

    def mutants(self, root: Path) -> tuple[list[Mutant], list[str]]:
        """The mutants (generated, then named; a generated one equal to a named one is left out)
        and what could not be made: each unmatched named mutant, said why."""
        source = (root / self.path).read_text()
        generated = (
            module_mutants(source, AUTHORIZATION, AUTHORIZATION_FUNCTIONS) if self.authorization_only else module_mutants(source)
        )
        named, unmatched = [], []
        for n in self.named:
            made = snippet_mutant(source, n.name, n.original, n.replacement)
            if isinstance(made, str):
                unmatched.append(f"{self.name}: named mutant '{n.name}' not made: {made}")
            else:
                named.append(made)
        by_name = {m.source for m in named}
        kept = [m for m in generated if m.source not in by_name]
        numbered = [m.numbered(i) for i, m in enumerate(kept + named)]
        return numbered, unmatched

    def baseline(self, root: Path) -> str:
        return unparsed((root / self.path).read_text())


_ISSUE = "issue 27"

TARGETS = (
    Target(
        "ledger",
        "services/account/domain.py",
        (
            f"{UNIT}/test_account_domain.py",
            f"{UNIT}/test_internal_accounts_rules.py",
            f"{UNIT}/test_account_use_cases.py",
            "tests/integration/test_ledger_limits.py",
        ),
        named=(
            Named(
                f"{_ISSUE}: a credit to the limit itself refused",
                "self.balance + amount.minor > MAX_MINOR",
                "self.balance + amount.minor >= MAX_MINOR",
            ),
            Named(f"{_ISSUE}: a debit to minus the limit refused", "balance < -MAX_MINOR", "balance <= -MAX_MINOR"),
            Named(
                f"{_ISSUE}: a hold to the limit refused",
                "self.held + amount.minor > MAX_MINOR",
                "self.held + amount.minor >= MAX_MINOR",
            ),
        ),
    ),
    Target(
        "ledger.movements",
        "services/account/movements.py",
        (
            f"{UNIT}/test_ledger_units.py",
            f"{UNIT}/test_account_use_cases.py",
            f"{UNIT}/test_account_authority.py",
            "tests/integration/test_ledger_invariants.py",
            "tests/integration/test_ledger_limits.py",
            "tests/integration/test_fees.py",
        ),
    ),
    Target("interest", "kernel/interest.py", (f"{UNIT}/test_interest_rules.py",)),
    Target(
        "idempotency",
        "common/db/idempotency.py",
        (f"{UNIT}/test_idempotency.py", f"{UNIT}/test_account_use_cases.py", f"{UNIT}/test_payment_use_cases.py"),
        named=(
            Named(
                f"{_ISSUE}: a key's operation not compared",
                'if row["operation"] != key.operation or row["fingerprint"] != key.fingerprint:',
                'if row["fingerprint"] != key.fingerprint:',
            ),
        ),
    ),
    Target(
        "money",
        "common/money.py",
        (f"{UNIT}/test_money.py", f"{UNIT}/test_account_domain.py"),
        named=(
            Named(
                f"{_ISSUE}: an amount parsed by its prefix (12.50abc, 1e5)", "_AMOUNT.fullmatch(amount)", "_AMOUNT.match(amount)"
            ),
            Named(f"{_ISSUE}: the ledger's limit itself refused", "abs(minor) > MAX_MINOR", "abs(minor) >= MAX_MINOR"),
        ),
    ),
    Target("convert", "kernel/convert.py", (f"{UNIT}/test_money.py", f"{UNIT}/test_convert.py")),
    Target(
        "loan.servicing",
        "services/lending/servicing.py",
        (f"{UNIT}/test_loan_servicing.py", f"{UNIT}/test_lending_use_cases.py", "tests/integration/test_loan_servicing.py"),
        named=(
            Named(f"{_ISSUE}: payoff interest rounded half-up", "rounding=ROUND_HALF_EVEN", 'rounding="ROUND_HALF_UP"'),
            Named(
                f"{_ISSUE}: 30/360 without the 31st rule",
                "+ min(end.day, 30) - min(start.day, 30)",
                "+ end.day - start.day",
            ),
            Named(f"{_ISSUE}: 30/360 without the 31st rule at the end", "+ min(end.day, 30)", "+ end.day"),
        ),
    ),
    Target("loan.schedule", "services/lending/schedule.py", (f"{UNIT}/test_loan_schedule.py", f"{UNIT}/test_loan_servicing.py")),
    Target("loan.domain", "services/lending/domain.py", (f"{UNIT}/test_loan_domain.py", f"{UNIT}/test_lending_use_cases.py")),
    Target(
        "policy",
        "common/security/policy.py",
        (
            f"{UNIT}/test_account_use_cases.py",
            f"{UNIT}/test_customer_use_cases.py",
            f"{UNIT}/test_lending_use_cases.py",
            ACCESS,
            AUTHORITY,
        ),
    ),
    Target(
        "authz.account",
        "services/account/service.py",
        (GATES, f"{UNIT}/test_account_authority.py", f"{UNIT}/test_account_use_cases.py", ACCESS, AUTHORITY),
        authorization_only=True,
        named=(
            Named(
                f"{_ISSUE}: GetTransfer reads any transfer",
                'raise unknown("transfer", transfer_id, "read this transfer")\n',
                'raise unknown("transfer", transfer_id, "read this transfer")\n        return transfer\n',
            ),
            Named(
                f"{_ISSUE}: PostCharges without its per-account check",
                'await asyncio.gather(*(self._require_account(a, write=True, action="charge this account") for a in accounts))',
                "pass",
            ),
        ),
    ),
    Target(
        "authz.payment",
        "services/payment/service.py",
        (GATES, f"{UNIT}/test_payment_use_cases.py", ACCESS, AUTHORITY),
        authorization_only=True,
        named=(
            Named(
                f"{_ISSUE}: GetPayment reads any payment",
                'await self._require_debtor(payment.debtor_account_id, debit=False, action="read this payment")',
                "pass",
            ),
            Named(
                f"{_ISSUE}: ReconcileNetwork without its admin check",
                'require_role(ADMIN, action="reconcile with the payment network")',
                "pass",
            ),
        ),
    ),
    Target(
        "authz.lending",
        "services/lending/service.py",
        (GATES, f"{UNIT}/test_lending_use_cases.py", ACCESS, "tests/integration/test_loan_servicing.py"),
        authorization_only=True,
    ),
    Target("authz.customer", "services/customer/service.py", (GATES, f"{UNIT}/test_customer_use_cases.py", ACCESS), True),
    Target(
        "authz.identity",
        "services/identity/service.py",
        (GATES, f"{UNIT}/test_identity_use_cases.py", f"{UNIT}/test_user_lifecycle.py", ACCESS),
        True,
    ),
    Target("authz.interest", "services/interest/service.py", (GATES, f"{UNIT}/test_interest_use_cases.py"), True),
    Target("authz.notification", "services/notification/service.py", ("tests/integration/test_notifications.py",), True),
)

# Survivors that are not gaps in the tests, each with why no behaviour changes: (target, function,
# label) -> why. A label names the source changed, so an entry stops applying when the code does.
_NO_SUCH_CALLER = "no caller reaches it with a different answer"
_LOCK_SCOPE = (
    "which rows a hold locks, not what is decided or written: the same checks and guarded writes run either "
    "way; it shows only as waiting under concurrency (a reservation that locked the clearing account too "
    "would queue every payment out on its row), which no single-threaded test sees"
)
EXPLAINED: dict[tuple[str, str, str], str] = {
    (
        "ledger.movements",
        "place_hold.place",
        "branch removed: `if capture: accounts = await uow.accounts.locked([order.debit_account_id, "
        "order.credit_account_id]) else: p...` -> `if False: accounts = await uow.accounts.locked([order.debit_account_id, "
        "order.credit_account_id]) else: pay...`",
    ): _LOCK_SCOPE,
    (
        "ledger.movements",
        "place_hold.place",
        "condition negated: `if capture: accounts = await uow.accounts.locked([order.debit_account_id, "
        "order.credit_account_id]) else: p...` -> `if not capture: accounts = await uow.accounts.locked([order.debit_account_id, "
        "order.credit_account_id]) els...`",
    ): _LOCK_SCOPE,
    ("ledger.movements", "post_charges", "constant: `o[0]` -> `o[1]`"): (
        "the second o[0] of the sort key: an order's key carries the order's own request_id (the api builds one "
        "from the other), so sorting by either is one order"
    ),
    ("ledger.movements", "_credit_lines", "constant: `strict=True` -> `strict=False`"): (
        "a charge's transfer ids are made one per line in _debit: the two always have one length; strict only asserts it"
    ),
    ("interest", "daily_interest", "comparison: `balance_minor <= 0` -> `balance_minor < 0`"): (
        "a zero balance earns 0 by the formula itself (0 x rate / 365); the guard only spares the arithmetic"
    ),
    ("interest", "daily_interest", "constant: `balance_minor <= 0` -> `balance_minor <= 1`"): (
        "one minor unit earns 1 x rate / 365 < 0.5 for every rate a tier may have (below 1): 0 either way"
    ),
    ("idempotency", "claim_new", "branch removed: `if not claims: return` -> `if False: return`"): (
        "for no claims, executemany of no rows and a loop over no operations do nothing either: the guard saves a call"
    ),
    ("idempotency", "resource_or_void", "branch removed: `if closed == 1: return None` -> `if False: return None`"): (
        "the key just closed is read back by the next statement with fingerprint VOID, which answers None too: "
        "the early return saves a read"
    ),
    ("idempotency", "resource_or_void", "constant: `closed == 1` -> `closed == 2`"): (
        "as the branch removed: the row just closed is read back as VOID and answers None"
    ),
    (
        "idempotency",
        "resource_or_void",
        "operand dropped: `row is None or row['operation'] != operation or row['fingerprint'] == VOID or row['refusal']` -> "
        "`row['operation'] != operation or row['fingerprint'] == VOID or row['refusal']`",
    ): (
        "after INSERT ... ON CONFLICT DO NOTHING in the same transaction the row exists (inserted or already "
        "there): it is never None"
    ),
    ("idempotency", "once", "statement removed: `await tx.execute('RELEASE SAVEPOINT once')` -> `pass`"): (
        "a savepoint left open is released by the unit's COMMIT (SQLite and PostgreSQL alike) and nothing in the "
        "unit names it again: the release only ends it early"
    ),
    (
        "loan.servicing",
        "_accrued",
        "bound dropped: `max(0, min(DAYS_PER_MONTH, days_30_360(installment.starts_on, today)))` -> "
        "`min(DAYS_PER_MONTH, days_30_360(installment.starts_on, today))`",
    ): (
        "only the current installment is accrued, and its period began on or before today (the previous due "
        "date, or the schedule's start on the approval day): its days are never negative"
    ),
    ("loan.servicing", "payoff", "constant: `current_seen = True` -> `current_seen = False`"): (
        "a later installment's period begins after today, so its accrual is clamped to 0 days: max(earned, 0) "
        "is what it earned, as without the accrual"
    ),
    ("loan.servicing", "Part", "constant: `penalty: int = 0` -> `penalty: int = 1`"): (
        "a default never used: servicing builds every Part with its late fee, interest and principal, and the "
        "repository reads all five fields back"
    ),
    ("loan.servicing", "Part", "constant: `interest: int = 0` -> `interest: int = 1`"): "as Part's penalty default",
    ("loan.servicing", "Part", "constant: `principal: int = 0` -> `principal: int = 1`"): "as Part's penalty default",
    (
        "loan.servicing",
        "_settle",
        "constant: `min(budget, installment.owed_penalty) if penalty else 0` -> "
        "`min(budget, installment.owed_penalty) if penalty else 1`",
    ): "no caller passes penalty=False: " + _NO_SUCH_CALLER,
    ("loan.servicing", "payoff", "comparison: `installment.due_date > today` -> `installment.due_date >= today`"): (
        "NOT EQUIVALENT: it exposes a defect, left for the lending context. A period is taken to start a month "
        "before its due date, so the period due 28 February starts 28 January and overlaps the one due 31 "
        "January: a payoff on 31 January charges 2 days of February's interest besides January's (0.37 on "
        "1,200.00 at 6 %; 0.37 again after January is paid). The mutant, taking the installment due today as "
        "the current period, charges none, as the rule says. No test asserts the overcharge; elsewhere "
        "(3,000 random histories) the two agree"
    ),
    (
        "loan.servicing",
        "payoff",
        "arithmetic: `installment.paid_interest + installment.waived_interest` -> "
        "`installment.paid_interest - installment.waived_interest`",
    ): (
        "interest is waived only on installments a payoff settles (and given back if its debit is refused): on "
        "the open installments payoff reads, waived_interest is 0"
    ),
    (
        "loan.servicing",
        "payoff",
        "arithmetic: `earned - installment.paid_interest - installment.waived_interest` -> "
        "`earned - installment.paid_interest + installment.waived_interest`",
    ): "as the earned arithmetic: waived_interest is 0 on every open installment",
    (
        "loan.servicing",
        "payoff",
        "bound dropped: `max(earned, _accrued(installment, today))` -> `_accrued(installment, today)`",
    ): (
        "the next line keeps max(0, earned - paid - waived): with or without this max, the current period owes "
        "max(0, accrued - paid - waived)"
    ),
    (
        "loan.servicing",
        "payoff",
        "bound dropped: `max(0, earned - installment.paid_interest - installment.waived_interest)` -> "
        "`earned - installment.paid_interest - installment.waived_interest`",
    ): "the max above already makes earned >= paid + waived: the difference is never negative",
    ("loan.servicing", "allocate", "branch removed: `if not left: break` -> `if False: break`"): (
        "once the payment is spent each further installment gets a part of 0, and parts of 0 are dropped: the same allocation"
    ),
    ("loan.servicing", "allocate", "loop: `break` -> `continue`"): "as the branch removed: the parts of 0 are dropped",
    ("loan.schedule", "level_payment", "constant: `exact.prec = 50` -> `exact.prec = 49`"): (
        "the payment is rounded down to the minor unit: 49 or 51 significant digits change it only for an "
        "exact annuity within 1e-40 of a whole minor unit (28, Decimal's default, was too few at 480 months)"
    ),
    ("loan.schedule", "level_payment", "constant: `exact.prec = 50` -> `exact.prec = 51`"): "as 49 digits",
    ("policy", "may_access_customer", "constant: `write=False` -> `write=True`"): (
        "a default never used: require_customer_access, its only caller, always passes write"
    ),
    ("policy", "may_access_customer", "operand dropped: `bool(caller.service) and (not write)` -> `not write`"): (
        "differs only for a caller with neither a user nor a context: the server refuses such a call "
        "(UNAUTHENTICATED) before any use case"
    ),
    (
        "policy",
        "may_access_customer",
        "operand dropped: `caller.has_role(CUSTOMER) and caller.customer_id == customer_id` -> "
        "`caller.customer_id == customer_id`",
    ): "only customer users carry a customer_id (identity refuses one for any other role): " + _NO_SUCH_CALLER,
    (
        "policy",
        "may_access_customer",
        "operand dropped: `caller.has_role(RELATIONSHIP_MANAGER) and (not write)` -> `not write`",
    ): (
        "a customer reading another customer's data is then asked whether they manage that customer: never "
        "(only relationship managers may be assigned): denied either way"
    ),
    (
        "policy",
        "may_read_pii",
        "boolean: `caller.has_role(CUSTOMER) and caller.customer_id == customer_id` -> "
        "`caller.has_role(CUSTOMER) or caller.customer_id == customer_id`",
    ): (
        "asked only after the caller passed the access check for this customer: a customer then is that "
        "customer, and only customers carry a customer_id: " + _NO_SUCH_CALLER
    ),
    (
        "policy",
        "may_read_pii",
        "operand dropped: `caller.has_role(CUSTOMER) and caller.customer_id == customer_id` -> "
        "`caller.customer_id == customer_id`",
    ): "as the boolean mutant of may_read_pii: only customers carry a customer_id",
    (
        "policy",
        "may_read_pii",
        "operand dropped: `caller.has_role(CUSTOMER) and caller.customer_id == customer_id` -> `caller.has_role(CUSTOMER)`",
    ): "as the boolean mutant of may_read_pii: a customer past the access check is the customer read",
    (
        "authz.account",
        "AccountUseCases._assigned",
        "operand dropped: `bool(manager) and manager == caller.user_id` -> `manager == caller.user_id`",
    ): 'a customer without a manager has "" (or None), and no caller judged here has an empty user id',
    (
        "authz.notification",
        "NotificationUseCases._scope",
        "operand dropped: `caller.has_role(CUSTOMER) and caller.customer_id and (customer_id in ('', caller.customer_id))` "
        "-> `caller.has_role(CUSTOMER) and customer_id in ('', caller.customer_id)`",
    ): "identity gives the customer role only with a customer (validate_roles): no customer user lacks a customer_id",
    (
        "authz.notification",
        "NotificationUseCases._scope",
        "operand dropped: `caller.has_role(CUSTOMER) and caller.customer_id and (customer_id in ('', caller.customer_id))` "
        "-> `caller.customer_id and customer_id in ('', caller.customer_id)`",
    ): "only customer users carry a customer_id (identity refuses one for any other role): " + _NO_SUCH_CALLER,
    (
        "authz.account",
        "AccountUseCases.reverse",
        "operand dropped: `transfer is not None and (not caller.service)` -> `transfer is not None`",
    ): (
        "the mutant also judges an admin relayed by a context; a context reaches ReverseTransfer only if it "
        "imported it, and only lending does, to reverse its own captures to the loan book, which MOVED_BY gives "
        "it: " + _NO_SUCH_CALLER
    ),
}
