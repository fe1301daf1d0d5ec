"""The notification context's side of its contracts: the customer and account contexts behind
Recipients, an SMTP server behind Mailer (a circuit breaker; a 4xx answer or silence is passing,
a 5xx one final), and Jinja templates behind Templates."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from email.message import EmailMessage
from email.utils import formatdate
from pathlib import Path
from urllib.parse import urlsplit

import aiosmtplib
import jinja2

from common.config import Settings
from common.di import BaseComponent, og_component
from common.resilience.breaker import BreakerPolicy, CircuitBreaker, CircuitOpenError
from kernel.accounts import AccountCalls
from kernel.customers import CustomerCalls
from ogpgy.account.v1.account_service_pb2_grpc import AccountServiceStub
from ogpgy.customer.v1.customer_service_pb2_grpc import CustomerServiceStub
from services.notification.domain import Kind, Letter
from services.notification.ports import Mailer, MailRefused, MailUnavailable, Recipients, Templates

TEMPLATES = Path(__file__).parent / "templates"
MAIL_DOMAIN = "ogpgy.bank"
_OWNERS_KEPT = 10_000


@og_component()
class CustomerDirectory(BaseComponent, Recipients):
    """Owners are kept (an account never changes hands); addresses are asked each time (they change)."""

    def __init__(self, customers: CustomerServiceStub, accounts: AccountServiceStub) -> None:
        self._customers = CustomerCalls(customers)
        self._accounts = AccountCalls(accounts)
        self._owners: OrderedDict[str, str] = OrderedDict()

    async def customer_of_account(self, account_id: str) -> str:
        if account_id not in self._owners:
            self._owners[account_id] = (await self._accounts.get_account(account_id)).customer_id
            if len(self._owners) > _OWNERS_KEPT:
                self._owners.popitem(last=False)
        return self._owners[account_id]

    async def address_of(self, customer_id: str) -> str:
        return (await self._customers.get(customer_id)).email


def _answers(refused: aiosmtplib.SMTPRecipientsRefused) -> str:
    return "; ".join(f"{r.code} {r.message}" for r in refused.recipients)


class _Passing(ConnectionError):
    """A 4xx answer: the mail server is there but not taking mail now (counts for the breaker)."""


@og_component()
class SmtpMailer(BaseComponent, Mailer):
    """One SMTP session per message (plain SMTP to the configured server: smtp://host:port)."""

    def __init__(self, settings: Settings) -> None:
        target = urlsplit(settings.smtp_url)
        self._host, self._port = target.hostname or "127.0.0.1", target.port or 25
        self._sender = settings.mail_sender
        self._timeout = settings.mail_timeout_seconds
        self.breaker = CircuitBreaker(
            "smtp",
            # silence and 4xx answers open it (a 4xx is _Passing, a ConnectionError); a 5xx does not
            BreakerPolicy(fail_max=settings.breaker_fail_max, reset_timeout=settings.breaker_reset_seconds),
        )

    def accepts_calls(self) -> bool:
        return self.breaker.allows_calls()

    async def send(self, to: str, letter: Letter, message_id: str) -> None:
        try:
            message = self._message(to, letter, message_id)
        except ValueError as malformed:  # e.g. an address no header may carry: no server would take it
            raise MailRefused(f"INVALID_MESSAGE: {malformed}") from malformed
        try:
            await self.breaker.call(self._send, message)
        except CircuitOpenError as open_circuit:
            raise MailUnavailable("the circuit to the mail server is open") from open_circuit
        except aiosmtplib.SMTPRecipientsRefused as refused:
            raise MailRefused(_answers(refused)) from refused
        except aiosmtplib.SMTPResponseException as answer:
            raise MailRefused(f"{answer.code} {answer.message}") from answer
        except (_Passing, aiosmtplib.SMTPException, OSError) as passing:
            raise MailUnavailable(str(passing) or type(passing).__name__) from passing

    async def _send(self, message: EmailMessage) -> None:
        try:
            await aiosmtplib.send(message, hostname=self._host, port=self._port, timeout=self._timeout, start_tls=False)
        except aiosmtplib.SMTPRecipientsRefused as refused:
            if all(r.code < 500 for r in refused.recipients):
                raise _Passing(_answers(refused)) from refused
            raise
        except aiosmtplib.SMTPResponseException as answer:
            if answer.code < 500:
                raise _Passing(f"{answer.code} {answer.message}") from answer
            raise

    def _message(self, to: str, letter: Letter, message_id: str) -> EmailMessage:
        message = EmailMessage()
        message["From"] = self._sender
        message["To"] = to
        message["Subject"] = letter.subject
        message["Date"] = formatdate(localtime=False)
        message["Message-ID"] = f"<{message_id}@{MAIL_DOMAIN}>"  # the same for every attempt: mailboxes fold repeats
        message.set_content(letter.body)
        return message


@og_component()
class JinjaTemplates(BaseComponent, Templates):
    """templates/<KIND>.txt: the subject, a line '---', the body. Every kind has one (checked at start)."""

    def __init__(self) -> None:
        self._environment = jinja2.Environment(
            loader=jinja2.FileSystemLoader(TEMPLATES),
            undefined=jinja2.StrictUndefined,  # a value the event did not give is a bug, not a blank
            autoescape=False,  # plain text mail
            keep_trailing_newline=True,
        )
        self._templates: dict[Kind, jinja2.Template] = {}

    async def initialize(self) -> None:
        self._templates = {kind: self._environment.get_template(f"{kind.value}.txt") for kind in Kind}

    def render(self, kind: Kind, values: Mapping[str, str]) -> Letter:
        subject, _, body = self._templates[kind].render(values).partition("\n---\n")
        return Letter(subject.strip(), body.strip() + "\n")
