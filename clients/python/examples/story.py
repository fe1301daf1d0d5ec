"""The README's story with ogpgy-client: onboard, an account by event, deposit, save, pay, borrow,
repay, and a refused request with its details. Prints what it saw as one JSON object.

Run: OGPGY_PASSWORD=... python story.py 127.0.0.1:50051 [--ca-file var/pki/ca.pem]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import uuid

from ogpgy_client import BankClient, BankError

from ogpgy.account.v1 import account_service_pb2 as account
from ogpgy.customer.v1 import customer_service_pb2 as customer
from ogpgy.lending.v1 import lending_service_pb2 as lending
from ogpgy.payment.v1 import payment_service_pb2 as payment
from ogpgy.type.v1 import address_pb2, date_pb2, money_pb2


def passport_number() -> str:
    """A passport number of the ICAO 9303 form, with its check digit: a new one on each run, since
    a document is onboarded once."""
    body = f"CL{secrets.randbelow(10**6):06d}"
    value = [int(c) if c.isdigit() else ord(c) - ord("A") + 10 for c in body]
    return body + str(sum(v * (7, 3, 1)[i % 3] for i, v in enumerate(value)) % 10)


def eur(amount: str) -> money_pb2.Money:
    return money_pb2.Money(currency_code="EUR", amount=amount)


async def default_account(bank: BankClient, customer_id: str) -> str:
    """The checking account the account context opens when it hears of the new customer."""
    for _ in range(100):
        found = (await bank.accounts.ListAccounts(account.ListAccountsRequest(customer_id=customer_id))).accounts
        if found:
            return found[0].account_id
        await asyncio.sleep(0.1)
    raise RuntimeError("no default account was opened")


async def story(bank: BankClient, tag: str) -> dict[str, object]:
    onboarded = await bank.customers.OnboardCustomer(
        customer.OnboardCustomerRequest(
            request_id=f"{tag}-1",
            given_name="Ada",
            family_name="Lovelace",
            email="ada@example.com",
            date_of_birth=date_pb2.Date(year=1990, month=12, day=10),
            document=customer.IdentityDocument(
                type=customer.DOCUMENT_TYPE_PASSPORT, number=passport_number(), issuing_country_code="GB"
            ),
            address=address_pb2.PostalAddress(lines=["12 St James Sq"], city="London", postal_code="SW1Y 4JH", country_code="GB"),
        )
    )
    customer_id = onboarded.customer.customer_id
    checking = await default_account(bank, customer_id)
    await bank.accounts.Deposit(account.DepositRequest(request_id=f"{tag}-3", account_id=checking, amount=eur("2000.00")))
    savings = (
        await bank.accounts.OpenAccount(
            account.OpenAccountRequest(
                request_id=f"{tag}-3b", customer_id=customer_id, type=account.ACCOUNT_TYPE_PERSONAL_SAVINGS, currency_code="EUR"
            )
        )
    ).account.account_id
    internal = await bank.payments.CreatePayment(
        payment.CreatePaymentRequest(
            request_id=f"{tag}-4",
            debtor_account_id=checking,
            internal=payment.InternalBeneficiary(account_id=savings),
            amount=eur("1500.00"),
        )
    )
    loan = (
        await bank.lending.ApplyForLoan(
            lending.ApplyForLoanRequest(
                request_id=f"{tag}-5", customer_id=customer_id, account_id=checking, principal=eur("5000.00"), term_months=24
            )
        )
    ).loan
    await bank.lending.ApproveLoan(
        lending.ApproveLoanRequest(request_id=f"{tag}-5b", loan_id=loan.loan_id, annual_interest_rate="0.059")
    )
    disbursed = (await bank.lending.DisburseLoan(lending.DisburseLoanRequest(request_id=f"{tag}-5c", loan_id=loan.loan_id))).loan
    repaid = await bank.lending.RepayLoan(
        lending.RepayLoanRequest(request_id=f"{tag}-5d", loan_id=loan.loan_id, amount=eur("100.00"))
    )
    try:
        await bank.customers.GetCustomer(customer.GetCustomerRequest(customer_id="42"))
        refused: dict[str, object] = {}
    except BankError as error:
        refused = {"code": error.code().name, "reason": error.reason, "fields": [v.field for v in error.field_violations]}
    balance = (await bank.accounts.GetAccount(account.GetAccountRequest(account_id=checking))).account.balance.amount
    return {
        "kyc": customer.KycStatus.Name(onboarded.customer.kyc.status),
        "payment": payment.PaymentStatus.Name(internal.payment.status),
        "loan": lending.LoanStatus.Name(disbursed.status),
        "repaid_interest": repaid.repayment.interest.amount,
        "checking_balance": balance,
        "refused": refused,
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("target", help="the bank's gRPC address, e.g. 127.0.0.1:50051")
    parser.add_argument("--username", default="admin")
    parser.add_argument("--ca-file", help="the bank's CA certificate (a bank started with --tls)")
    args = parser.parse_args()
    password = os.environ["OGPGY_PASSWORD"]  # never on the command line
    async with BankClient(args.target, username=args.username, password=password, ca_file=args.ca_file) as bank:
        print(json.dumps(await story(bank, f"story-{uuid.uuid4().hex[:8]}")))


if __name__ == "__main__":
    asyncio.run(main())
