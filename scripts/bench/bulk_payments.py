"""A pain.001 batch of N lines beside N single CreatePayment calls on the same data, in one run and
one bank: lines paid per second each way, and their ratio (the singles are the baseline).

Usage: .venv/bin/python scripts/bench/bulk_payments.py [--lines 5000] [--in-flight 16] [--external 0.5]
The bank runs as `ogpgy up` (SQLite, VelocityPay simulator beside it, no faults), with fraud rules
a load does not hit. Two payers with the same balance pay the same lines to the same payees: one
as one batch (SubmitPaymentBatch, timed from the request to the stream's last answer, every line
final), the other as N CreatePayment calls, `--in-flight` at once (timed until the last answers).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(ROOT / "gen")]

from ogpgy.payment.v1 import bulk_payment_service_pb2 as bpb  # noqa: E402
from ogpgy.payment.v1 import bulk_payment_service_pb2_grpc as bgrpc  # noqa: E402
from ogpgy.payment.v1 import payment_service_pb2 as ppb  # noqa: E402
from ogpgy.payment.v1 import payment_service_pb2_grpc as pgrpc  # noqa: E402
from scripts.bench.harness import bank_process  # noqa: E402
from tests.bank_helpers import Bank, admin_channel, eur, generous_fraud_rules  # noqa: E402
from tests.pain001 import Line, pain001  # noqa: E402

IBAN = "DE89370400440532013000"


def _lines(count: int, payees: list[str], external: float) -> list[Line]:
    rng = random.Random(7)
    return [
        Line(
            f"L{i}",
            f"{rng.randint(1, 999)}.{rng.randint(0, 99):02d}",
            iban=IBAN if rng.random() < external else "",
            account_id=rng.choice(payees),
        )
        for i in range(count)
    ]


def _single(rid: str, debtor: str, line: Line) -> ppb.CreatePaymentRequest:
    if line.iban:
        beneficiary = {"external": ppb.ExternalBeneficiary(iban=line.iban, name=line.name)}
    else:
        beneficiary = {"internal": ppb.InternalBeneficiary(account_id=line.account_id)}
    return ppb.CreatePaymentRequest(request_id=rid, debtor_account_id=debtor, amount=eur(line.amount), **beneficiary)


async def run(target: str, count: int, in_flight: int, external: float) -> tuple[float, float, str]:
    async with admin_channel(target) as channel:
        client = Bank(channel)
        accounts = [(await client.default_account(await client.verified_customer(f"bb-{i}"))).account_id for i in range(6)]
        batch_payer, single_payer, payees = accounts[0], accounts[1], accounts[2:]
        for n, payer in enumerate((batch_payer, single_payer)):
            await client.deposit(payer, "9000000.00", f"bb-{n}")
        lines = _lines(count, payees, external)

        singles = pgrpc.PaymentServiceStub(channel)
        gate = asyncio.Semaphore(in_flight)

        async def one(i: int, line: Line) -> int:
            async with gate:
                answer = await singles.CreatePayment(_single(f"single-{i}", single_payer, line))
                return int(answer.payment.status == ppb.PAYMENT_STATUS_COMPLETED)

        started = time.perf_counter()
        completed_singles = sum(await asyncio.gather(*(one(i, line) for i, line in enumerate(lines))))
        single_seconds = time.perf_counter() - started

        batches = bgrpc.BulkPaymentServiceStub(channel)
        data = pain001(lines, message_id="BENCH-1")
        started = time.perf_counter()
        request = bpb.SubmitPaymentBatchRequest(request_id="bench-batch", debtor_account_id=batch_payer, pain001=data)
        answers = [a.batch async for a in batches.SubmitPaymentBatch(request, timeout=600)]
        batch_seconds = time.perf_counter() - started
        final = answers[-1]
        check = f"singles completed {completed_singles}/{count}; batch {bpb.PaymentBatchStatus.Name(final.status)}, {final.completed}/{final.line_count} completed, {len(data)} bytes of pain.001"
        return count / batch_seconds, count / single_seconds, check


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=5000)
    parser.add_argument("--in-flight", type=int, default=16)
    parser.add_argument("--external", type=float, default=0.5, help="share of lines paid to other banks")
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory() as data_dir,
        bank_process(data_dir, "--fraud-rules", str(generous_fraud_rules(Path(data_dir)))) as target,
    ):
        batch, single, check = asyncio.run(run(target, args.lines, args.in_flight, args.external))
    print(f"{'payments of the same ' + str(args.lines) + ' lines':<44} {'lines/s':>10} {'vs singles':>11}")
    print(f"{f'{args.lines} x CreatePayment ({args.in_flight} in flight)':<44} {single:>10.0f} {1.0:>10.2f}x")
    print(f"{'one SubmitPaymentBatch (pain.001)':<44} {batch:>10.0f} {batch / single:>10.2f}x")
    print(check)


if __name__ == "__main__":
    main()
