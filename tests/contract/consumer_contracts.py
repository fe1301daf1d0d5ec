"""What each importing context expects of its providers: golden requests (proto3 JSON, with
{placeholders} the provider state fills in), the status it expects, and the response fields (or
the error reason) its code relies on. test_consumer_contracts.py replays them against the real
provider server, as the consumer calls (its own identity, acting for an admin), and checks that
every provider RPC a consumer imports has an interaction.

When a consumer starts relying on another field or another RPC, add it here: the provider's
change that would break it then fails the provider's build, not the consumer in production.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Interaction:
    consumer: str
    provider: str
    method: str  # "<Service>/<Rpc>" of the provider
    given: str  # the provider state the replay sets up first
    request: dict[str, object]
    expect: str = "OK"  # the status code name
    relies_on: tuple[str, ...] = ()  # dotted response fields that must be set (OK answers)
    reason: str = ""  # the google.rpc.ErrorInfo reason it branches on (error answers)


INTERACTIONS: tuple[Interaction, ...] = (
    # account -> customer: KYC status to open accounts; the relationship manager for access checks
    Interaction(
        "account",
        "customer",
        "CustomerService/GetCustomer",
        "a verified customer",
        {"customer_id": "{customer_id}"},
        relies_on=("customer.kyc.status", "customer.customer_id"),
    ),
    Interaction(
        "account",
        "customer",
        "CustomerService/GetCustomer",
        "a verified customer",
        {"customer_id": "cus_00000000000000000000000000"},
        expect="NOT_FOUND",
    ),
    Interaction(
        "account",
        "customer",
        "CustomerService/GetCustomer",
        "a verified customer",
        {"customer_id": "not-an-id"},
        expect="INVALID_ARGUMENT",
    ),
    # customer -> identity: only a relationship manager may be assigned to a customer
    Interaction(
        "customer",
        "identity",
        "IdentityService/GetUser",
        "a relationship manager",
        {"user_id": "{user_id}"},
        relies_on=("user.user_id", "user.roles"),
    ),
    Interaction(
        "customer",
        "identity",
        "IdentityService/GetUser",
        "nothing",
        {"user_id": "usr_00000000000000000000000000"},
        expect="NOT_FOUND",
    ),
    # payment -> account: whether the caller may debit (or read) the debtor account, before anything is written;
    # holds for every payment; a lost PlaceHold answer found (or closed) by request id; the clearing account's
    # entries for the reconciliation with the network
    Interaction(
        "payment",
        "account",
        "AccountService/CheckAccountAccess",
        "a funded account",
        {"account_id": "{account_id}", "access": "ACCOUNT_ACCESS_DEBIT"},
        relies_on=("account_id", "currency_code"),
    ),
    Interaction(
        "payment",
        "account",
        "AccountService/CheckAccountAccess",
        "a funded account",
        {"account_id": "acc_00000000000000000000000000", "access": "ACCOUNT_ACCESS_READ"},
        expect="NOT_FOUND",
    ),
    Interaction(  # where external payments are captured to, and what reconciliation reads
        "payment",
        "account",
        "AccountService/GetInternalAccount",
        "nothing",
        {"internal_account": "INTERNAL_ACCOUNT_CLEARING", "currency_code": "EUR"},
        relies_on=("account_id",),
    ),
    Interaction(  # the payee check of an internal payment
        "payment",
        "account",
        "AccountService/CheckAccountAccess",
        "a funded account",
        {"account_id": "{account_id}", "access": "ACCOUNT_ACCESS_CREDIT"},
        relies_on=("account_id", "currency_code"),
    ),
    Interaction(
        "payment",
        "account",
        "AccountService/CheckAccountAccess",
        "a funded account",
        {"account_id": "acc_00000000000000000000000000", "access": "ACCOUNT_ACCESS_CREDIT"},
        expect="NOT_FOUND",
    ),
    Interaction(
        "payment",
        "account",
        "AccountService/PlaceHold",
        "a funded account",
        {
            "request_id": "{key}-hold",
            "debit_account_id": "{account_id}",
            "credit_account_id": "acc_CLEARING_EUR",
            "amount": {"currency_code": "EUR", "amount": "10.00"},
            "description": "Payment to Max Muster",
            # the payee outside the bank and the reference, kept with the entries the capture posts
            "counterparty_name": "Max Muster",
            "counterparty_iban": "DE89370400440532013000",
            "reference": "Invoice 42",
        },
        relies_on=("hold.hold_id",),
    ),
    # a bulk payment's lines reserved together, all or none
    Interaction(
        "payment",
        "account",
        "AccountService/PlaceHolds",
        "a funded account",
        {
            "holds": [
                {
                    "request_id": "{key}-line-1",
                    "debit_account_id": "{account_id}",
                    "credit_account_id": "acc_CLEARING_EUR",
                    "amount": {"currency_code": "EUR", "amount": "3.00"},
                    "description": "Payment to Max Muster",
                    "counterparty_name": "Max Muster",
                    "counterparty_iban": "DE89370400440532013000",
                    "reference": "salary 1",
                },
                {
                    "request_id": "{key}-line-2",
                    "debit_account_id": "{account_id}",
                    "credit_account_id": "acc_CLEARING_EUR",
                    "amount": {"currency_code": "EUR", "amount": "4.00"},
                    "description": "salary 2",
                },
            ]
        },
        relies_on=("holds.hold_id",),
    ),
    Interaction(
        "payment",
        "account",
        "AccountService/PlaceHolds",
        "a funded account",
        {
            "holds": [
                {
                    "request_id": "{key}-lines-big",
                    "debit_account_id": "{account_id}",
                    "credit_account_id": "acc_CLEARING_EUR",
                    "amount": {"currency_code": "EUR", "amount": "1000000.00"},
                    "description": "salaries",
                }
            ]
        },
        expect="FAILED_PRECONDITION",
        reason="INSUFFICIENT_FUNDS",
    ),
    Interaction(
        "payment",
        "account",
        "AccountService/PlaceHold",
        "a funded account",
        {
            "request_id": "{key}-big",
            "debit_account_id": "{account_id}",
            "credit_account_id": "acc_CLEARING_EUR",
            "amount": {"currency_code": "EUR", "amount": "1000000.00"},
            "description": "payment",
        },
        expect="FAILED_PRECONDITION",
        reason="INSUFFICIENT_FUNDS",
    ),
    Interaction(
        "payment",
        "account",
        "AccountService/CaptureHold",
        "a hold",
        {"request_id": "{key}-capture", "hold_id": "{hold_id}"},
        relies_on=("transfer.transfer_id",),
    ),
    Interaction(
        "payment",
        "account",
        "AccountService/ReleaseHold",
        "a hold",
        {"request_id": "{key}-release", "hold_id": "{hold_id}"},
        relies_on=("hold.hold_id",),
    ),
    Interaction(
        "payment",
        "account",
        "AccountService/LookupHold",
        "a hold",
        {"request_id": "{key}-given"},
        relies_on=("hold.hold_id", "hold.status"),
    ),
    Interaction(
        "payment", "account", "AccountService/LookupHold", "nothing", {"request_id": "{key}-never-placed"}, expect="NOT_FOUND"
    ),
    Interaction(
        "payment",
        "account",
        "AccountService/ListEntries",
        "a captured hold",
        {"account_id": "acc_CLEARING_EUR", "page_size": 500},
        relies_on=("entries.transfer_id", "entries.amount.amount"),
    ),
    # lending -> account: the disbursement saga (hold on the loan book, capture, release to compensate)
    Interaction(  # where loans are paid from
        "lending",
        "account",
        "AccountService/GetInternalAccount",
        "nothing",
        {"internal_account": "INTERNAL_ACCOUNT_LOAN_PRINCIPAL", "currency_code": "EUR"},
        relies_on=("account_id",),
    ),
    Interaction(
        "lending",
        "account",
        "AccountService/GetAccount",
        "a funded account",
        {"account_id": "{account_id}"},
        relies_on=("account.customer_id", "account.balance.currency_code"),
    ),
    Interaction(
        "lending",
        "account",
        "AccountService/PlaceHold",
        "a funded account",
        {
            "request_id": "{key}-reserve",
            "debit_account_id": "acc_LOAN_PRINCIPAL_EUR",
            "credit_account_id": "{account_id}",
            "amount": {"currency_code": "EUR", "amount": "250.00"},
            "description": "loan",
        },
        relies_on=("hold.hold_id",),
    ),
    Interaction(
        "lending", "account", "AccountService/LookupHold", "a hold", {"request_id": "{key}-given"}, relies_on=("hold.hold_id",)
    ),
    Interaction(
        "lending", "account", "AccountService/LookupHold", "nothing", {"request_id": "{key}-never-reserved"}, expect="NOT_FOUND"
    ),
    Interaction(
        "lending",
        "account",
        "AccountService/GetHold",
        "a captured hold",
        {"hold_id": "{hold_id}"},
        relies_on=("hold.status", "hold.transfer_id"),
    ),
    Interaction(
        "lending",
        "account",
        "AccountService/CaptureHold",
        "a hold",
        {"request_id": "{key}-transfer", "hold_id": "{hold_id}"},
        relies_on=("transfer.transfer_id",),
    ),
    Interaction(
        "lending",
        "account",
        "AccountService/ReleaseHold",
        "a released hold",
        {"request_id": "{key}-undo", "hold_id": "{hold_id}"},
        expect="FAILED_PRECONDITION",
        reason="HOLD_ALREADY_RESOLVED",
    ),
    Interaction(
        "lending",
        "account",
        "AccountService/ReverseTransfer",
        "a captured hold",
        {"request_id": "{key}-reverse", "transfer_id": "{transfer_id}", "reason": "loan disbursement compensated"},
        relies_on=("transfer.transfer_id",),
    ),
    Interaction(
        "lending",
        "account",
        "AccountService/ReverseTransfer",
        "a reversed transfer",
        {"request_id": "{key}-reverse-again", "transfer_id": "{transfer_id}", "reason": "again"},
        expect="FAILED_PRECONDITION",
        reason="TRANSFER_ALREADY_REVERSED",
    ),
    # lending -> account: repayments and collections, charged to the bank's loan accounts
    Interaction(
        "lending",
        "account",
        "AccountService/PostCharges",
        "a funded account",
        {
            "charges": [
                {
                    "request_id": "{key}-too-much",
                    "account_id": "{account_id}",
                    "lines": [
                        {
                            "internal_account": "INTERNAL_ACCOUNT_LOAN_PRINCIPAL",
                            "amount": {"currency_code": "EUR", "amount": "9000.00"},
                        }
                    ],
                    "description": "loan collection",
                },
                {
                    "request_id": "{key}-repay",
                    "account_id": "{account_id}",
                    "lines": [
                        {
                            "internal_account": "INTERNAL_ACCOUNT_INTEREST_INCOME",
                            "amount": {"currency_code": "EUR", "amount": "1.25"},
                        },
                        {
                            "internal_account": "INTERNAL_ACCOUNT_LOAN_PRINCIPAL",
                            "amount": {"currency_code": "EUR", "amount": "10.00"},
                        },
                    ],
                    "description": "loan repayment",
                },
            ]
        },
        relies_on=("charges.request_id", "charges.status", "charges.rejection_reason"),  # of the first: rejected
    ),
    Interaction(
        "lending", "account", "AccountService/LookupCharge", "nothing", {"request_id": "{key}-never-charged"}, expect="NOT_FOUND"
    ),
    # lending -> customer: whether a customer whose loans are listed exists at all
    Interaction(
        "lending",
        "customer",
        "CustomerService/GetCustomer",
        "a verified customer",
        {"customer_id": "{customer_id}"},
        relies_on=("customer.customer_id",),
    ),
    Interaction(
        "lending",
        "customer",
        "CustomerService/GetCustomer",
        "nothing",
        {"customer_id": "cus_00000000000000000000000000"},
        expect="NOT_FOUND",
    ),
    # notification -> customer, account: who to write to, at which address
    Interaction(
        "notification",
        "customer",
        "CustomerService/GetCustomer",
        "a verified customer",
        {"customer_id": "{customer_id}"},
        relies_on=("customer.email",),
    ),
    Interaction(
        "notification",
        "account",
        "AccountService/GetAccount",
        "a funded account",
        {"account_id": "{account_id}"},
        relies_on=("account.customer_id",),
    ),
    # interest -> account: one chunk of the day's accrual
    Interaction(
        "interest",
        "account",
        "AccountService/AccrueInterest",
        "a funded savings account",
        {
            "request_id": "{key}-accrue",
            "business_date": {"year": 2026, "month": 6, "day": 15},
            "currency_code": "EUR",
            "tiers": [{"up_to": {"currency_code": "EUR", "amount": "1000.00"}, "annual_rate": "0.005"}, {"annual_rate": "0.025"}],
            "limit": 100,
        },
        relies_on=("processed", "interest_posted.amount", "last_account_id", "done", "eligible"),
    ),
    # interest -> account: one chunk of a month's fees, at the close of business after the month ended
    Interaction(
        "interest",
        "account",
        "AccountService/ChargeMonthlyFees",
        "nothing",
        {"request_id": "{key}-fees", "month": {"year": 2026, "month": 5, "day": 1}, "currency_code": "EUR", "limit": 100},
        relies_on=("done",),
    ),
    # interest -> lending: the date's collection, at the close of business (read to its end)
    Interaction(
        "interest",
        "lending",
        "LendingService/RunCollection",
        "nothing",
        {"request_id": "{key}-collect", "business_date": {"year": 2026, "month": 6, "day": 15}, "currency_code": "EUR"},
        relies_on=("run.status",),
    ),
    # interest -> lending: a date collected before is done, which the close of business branches on
    Interaction(
        "interest",
        "lending",
        "LendingService/RunCollection",
        "nothing",
        {"request_id": "{key}-collect-again", "business_date": {"year": 2026, "month": 6, "day": 15}, "currency_code": "EUR"},
        expect="FAILED_PRECONDITION",
        reason="COLLECTION_RUN_ALREADY_COMPLETED",
    ),
    # payment -> velocitypay (the outside world's contract, served by the simulator)
    Interaction(
        "payment",
        "velocitypay",
        "PaymentNetworkService/SubmitPayment",
        "nothing",
        {
            "payment_id": "{key}-pay",
            "beneficiary_iban": "DE89370400440532013000",
            "beneficiary_name": "Max Muster",
            "currency_code": "EUR",
            "amount": "10.00",
            "reference": "r",
        },
        relies_on=("status",),
    ),
    Interaction(
        "payment",
        "velocitypay",
        "PaymentNetworkService/ListSettlements",
        "a network settlement",
        {"page_size": 1000},
        relies_on=("settlements.payment_id", "settlements.status", "settlements.currency_code", "settlements.amount"),
    ),
)
