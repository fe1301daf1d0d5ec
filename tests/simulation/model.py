"""Histories as data: a seeded generator of operations on the bank, each naming the resources it
touches symbolically (the 3rd account, the 2nd hold) so that a history replays, and shrinks, on a
fresh bank whose ids differ.

A history is a list of waves; the operations of a wave run at once. An operation is one request
sent by one principal in one of several ways: once; several identical copies racing; with a
deadline of 0.1 to 50 ms and then retried; cancelled in flight and then retried; or racing while
funds arrive in the account it debits. Some are sent again, the same request_id, some waves later,
once the state they were decided on has moved (a loan approved since, a run completed); a batch
run often races its identical copies and a rival request for the same day.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

# Who sends an operation, relative to the resources it names.
OWNER, OTHER, MANAGER, STRANGER, ADMIN, WARRING = "owner", "other", "manager", "stranger", "admin", "warring"
MODES = ("once", "race", "deadline", "cancel", "funds")
INTERNAL_KINDS = (
    "CASH",
    "TREASURY",
    "INTEREST_EXPENSE",
    "CLEARING",
    "FEE_INCOME",
    "LOAN_PRINCIPAL",
    "INTEREST_INCOME",
    "PENALTY_INCOME",
)


@dataclass(frozen=True)
class Op:
    n: int  # its place in the history; its request_id derives from it
    kind: str  # the RPC's method name
    actor: str
    args: dict[str, object] = field(default_factory=dict, hash=False)
    mode: str = "once"
    copies: int = 1
    deadline_ms: float = 0.0

    def describe(self) -> str:
        args = " ".join(f"{k}={v}" for k, v in self.args.items())
        extra = f" x{self.copies}" if self.copies > 1 else ""
        extra += f" deadline={self.deadline_ms:.1f}ms" if self.mode == "deadline" else ""
        return f"#{self.n} {self.kind} by {self.actor} [{self.mode}{extra}] {args}"


History = list[list[Op]]


def _amount(rng: random.Random) -> str:
    """Mostly small amounts, so that funds run short and refusals happen; sometimes large."""
    return rng.choice(["0.01", "1.00", "5.00", "12.34", "50.00", "99.99", "250.00", "700.00", "5000.00"])


def _actor(rng: random.Random, right: str) -> str:
    """Usually the principal the operation is for; sometimes anyone else."""
    return right if rng.random() < 0.8 else rng.choice([OWNER, OTHER, MANAGER, STRANGER, ADMIN])


def _money_op(rng: random.Random, kind: str) -> tuple[str, dict[str, object]]:
    account: object = rng.randrange(64) if rng.random() < 0.9 else f"internal:{rng.choice(INTERNAL_KINDS[1:])}"
    if kind == "Deposit":
        return ADMIN, {"account": account, "amount": _amount(rng)}
    if kind == "Withdraw":
        return _actor(rng, OWNER), {"account": account, "amount": _amount(rng)}
    to: object = rng.randrange(64) if rng.random() < 0.85 else f"internal:{rng.choice(INTERNAL_KINDS)}"
    args = {"account": account, "to": to, "amount": _amount(rng)}
    if kind == "PlaceHold":
        args["capture"] = rng.random() < 0.3
    return _actor(rng, OWNER), args


def _op_args(rng: random.Random, kind: str) -> tuple[str, dict[str, object]]:
    """The principal and symbolic arguments of one operation of `kind`."""
    if kind in ("Deposit", "Withdraw", "Transfer", "PlaceHold"):
        return _money_op(rng, kind)
    if kind in ("CaptureHold", "ReleaseHold"):
        args: dict[str, object] = {"hold": rng.randrange(64)}
        if kind == "CaptureHold" and rng.random() < 0.5:
            args["amount"] = _amount(rng)
        return _actor(rng, OWNER), args
    if kind == "ReverseTransfer":
        return _actor(rng, ADMIN), {"transfer": rng.randrange(64)}
    if kind in ("OpenAccount", "CloseAccount"):
        return _actor(rng, OWNER), {"customer": rng.randrange(8), "account": rng.randrange(64)}
    if kind == "CreatePayment":
        beneficiary: object = rng.choice(["external", rng.randrange(64), f"internal:{rng.choice(INTERNAL_KINDS)}"])
        payer: object = rng.randrange(64) if rng.random() < 0.9 else f"internal:{rng.choice(INTERNAL_KINDS)}"
        return _actor(rng, OWNER), {"account": payer, "to": beneficiary, "amount": _amount(rng)}
    if kind == "ApplyForLoan":
        return _actor(rng, OWNER), {"account": rng.randrange(64), "principal": rng.choice(["300.00", "1200.00", "20000.00"])}
    if kind == "ApproveLoan":
        return _actor(rng, rng.choice([ADMIN, WARRING])), {
            "loan": rng.randrange(16),
            "rate": rng.choice(["0.05", "0.050", "0.07"]),
        }
    if kind == "SubmitPaymentBatch":  # a few lines, inside and outside the bank; now and then miscounted
        lines = [(rng.choice(["external", rng.randrange(64)]), _amount(rng)) for _ in range(rng.randint(1, 4))]
        return _actor(rng, OWNER), {"account": rng.randrange(64), "lines": lines, "miscounted": rng.random() < 0.1}
    if kind in ("RetryPayment", "RefundPayment"):  # admins, now and then the two who act on each other
        return _actor(rng, rng.choice([ADMIN, WARRING])), {"payment": rng.randrange(64)}
    if kind == "DisburseLoan":
        return _actor(rng, ADMIN), {"loan": rng.randrange(16)}
    if kind in ("RetrySaga", "CompensateSaga"):  # a loan's saga: stopped for an operator, or (mostly) not
        return _actor(rng, rng.choice([ADMIN, WARRING])), {"loan": rng.randrange(16)}
    if kind in ("RepayLoan", "PayOffLoan"):
        return _actor(rng, OWNER), {"loan": rng.randrange(16), "amount": rng.choice(["0.01", "50.00", "103.27", "400.00"])}
    if kind in ("RunCollection", "RunDailyInterest", "ChargeMonthlyFees", "AccrueInterest"):
        return _actor(rng, ADMIN), {"days_ago": rng.choice([0, 1, 2, 31]), "far": rng.random() < 0.05}
    if kind == "CloseBusinessDay":  # now and then a currency with no calendar (refused)
        return _actor(rng, ADMIN), {"currency": rng.choice(["EUR", "EUR", "EUR", "USD", "XTS"])}
    if kind in ("ReplayDeadLetter", "DropDeadLetter"):  # the dead letters the driver made at the start
        return _actor(rng, ADMIN), {"letter": rng.randrange(4)}
    if kind in ("DisableUser", "EnableUser", "UpdateUser"):
        return WARRING, {"target": rng.randrange(2), "role": rng.choice(["ROLE_ADMIN", "ROLE_RELATIONSHIP_MANAGER"])}
    if kind == "ChangePassword":
        return OWNER, {"customer": rng.randrange(8), "new": rng.randrange(1000)}
    if kind == "UpdateNotificationPreferences":
        return _actor(rng, OWNER), {"customer": rng.randrange(8), "many": rng.choice([0, 1, 3, 2000])}
    return _actor(rng, ADMIN), {"customer": rng.randrange(8)}  # the customer context's and the rest


# How often each operation appears: money moves most.
WEIGHTS: dict[str, int] = {
    "Deposit": 5,
    "Withdraw": 5,
    "Transfer": 10,
    "PlaceHold": 6,
    "CaptureHold": 4,
    "ReleaseHold": 3,
    "ReverseTransfer": 2,
    "OpenAccount": 2,
    "CloseAccount": 1,
    "CreatePayment": 6,
    "SubmitPaymentBatch": 2,
    "RetryPayment": 1,
    "RefundPayment": 1,
    "ApplyForLoan": 3,
    "ApproveLoan": 5,
    "DisburseLoan": 5,
    "RetrySaga": 1,
    "CompensateSaga": 1,
    "RepayLoan": 8,
    "PayOffLoan": 3,
    "RunCollection": 1,
    "RunDailyInterest": 1,
    "ChargeMonthlyFees": 1,
    "AccrueInterest": 1,
    "CloseBusinessDay": 1,
    "DisableUser": 2,
    "EnableUser": 2,
    "UpdateUser": 2,
    "ChangePassword": 2,
    "RevokeTokens": 1,
    "UpdateNotificationPreferences": 1,
    "OnboardCustomer": 1,
    "UpdateCustomer": 1,
    "AssignRelationshipManager": 1,
    "ReviewKyc": 1,
    "CreateUser": 1,
    "LookupHold": 1,
    "LookupCharge": 1,
    "PostCharges": 1,
    "ReplayDeadLetter": 1,
    "DropDeadLetter": 1,
}
TIME_PASSES = "TimePasses"
REPLAY = "Replay"  # not an RPC: operation `of` sent again, its very request, some waves later
BATCHES = ("RunCollection", "RunDailyInterest", "ChargeMonthlyFees", "AccrueInterest", "CloseBusinessDay")
# Decided on a state that moves on: their replays come late often, others' now and then.
REPLAYED_OFTEN = ("ApproveLoan", "DisburseLoan", "RepayLoan", "PayOffLoan", "CloseAccount", *BATCHES)
REPLAY_N, RIVAL_N, EARLY_N = 1_000_000, 2_000_000, 3_000_000  # the numbers of added operations: op.n + this
# An operation that moves a loan on, and one on the same loan sent the wave before (too early: it
# is refused on the loan's state) and replayed a few waves after (when that state has moved).
TOO_EARLY = {
    "ApproveLoan": ("DisburseLoan", ADMIN, {}),
    "DisburseLoan": ("RepayLoan", OWNER, {"amount": "50.00"}),
}
# Calls whose work goes on after their caller stops waiting (a saga, a payment on the network).
LONG_CALLS = ("DisburseLoan", "CreatePayment")  # not an RPC: the bank's clock moves on by some days


def generate(seed: int, waves: int) -> History:
    """A history: `waves` waves of one to four operations each."""
    rng = random.Random(seed)
    kinds, weights = list(WEIGHTS), list(WEIGHTS.values())
    history: History = []
    n = 0
    for _ in range(waves):
        wave = []
        for _ in range(rng.choice([1, 1, 2, 3, 4])):
            if rng.random() < 0.04:
                wave.append(Op(n, TIME_PASSES, ADMIN, {"days": rng.choice([1, 15, 31, 45])}))
            else:
                kind = rng.choices(kinds, weights)[0]
                actor, args = _op_args(rng, kind)
                mode = rng.choice(MODES)
                deadline = rng.uniform(0.1, 50.0)
                if kind in LONG_CALLS and rng.random() < 0.5:  # cut off while its steps run on
                    mode, deadline = "deadline", rng.uniform(2.0, 30.0)
                copies = rng.randint(2, 8) if mode in ("race", "funds") else 1
                wave.append(Op(n, kind, actor, args, mode, copies, deadline))
                if kind == "ChangePassword":  # a rival change of the same password, with its own request_id
                    n += 1
                    wave.append(Op(n, kind, actor, args | {"new": rng.randrange(1000)}, "once"))
                if kind in ("DisableUser", "UpdateUser"):  # the other admin strikes back in the same breath
                    n += 1
                    wave.append(Op(n, kind, actor, args | {"target": 1 - int(str(args["target"]))}, "once"))
            n += 1
        history.append(wave)
    return _with_replays_and_rival_runs(history, random.Random(seed * 7919 + 17))


def _with_replays_and_rival_runs(history: History, rng: random.Random) -> History:
    """The history with its later replays and its batch runs' rivals added, drawn from their own
    generator: the operations a seed made before stay as they were."""
    added: list[list[Op]] = [[] for _ in history]
    for w, wave in enumerate(history):
        for op in wave:
            if op.kind == TIME_PASSES:
                continue
            if rng.random() < (0.6 if op.kind in REPLAYED_OFTEN else 0.08):
                later = min(len(history) - 1, w + rng.randint(1, 12))
                added[later].append(Op(op.n + REPLAY_N, REPLAY, op.actor, {"of": op.n}))
            if op.kind in TOO_EARLY and w > 0 and rng.random() < 0.6:
                kind, actor, args = TOO_EARLY[op.kind]
                early = Op(op.n + EARLY_N, kind, actor, {"loan": op.args["loan"], **args})
                added[w - 1].append(early)
                after = min(len(history) - 1, w + rng.randint(1, 3))
                added[after].append(Op(early.n + REPLAY_N, REPLAY, actor, {"of": early.n}))
            if op.kind in BATCHES and op.mode != "deadline" and rng.random() < 0.5:
                race = rng.randint(2, 8)
                added[w].append(Op(op.n + RIVAL_N, op.kind, op.actor, op.args, "race", rng.randint(2, 4)))
                wave[wave.index(op)] = Op(op.n, op.kind, op.actor, op.args, "race", race)
    return [wave + extra for wave, extra in zip(history, added, strict=True)]


def without(history: History, dropped: set[int]) -> History:
    """The history less the operations numbered in `dropped` (for shrinking)."""
    kept = [[op for op in wave if op.n not in dropped] for wave in history]
    return [wave for wave in kept if wave]
