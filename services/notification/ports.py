"""What the notification context needs from others, in its own terms."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from services.notification.domain import Kind, Letter


class Recipients(Protocol):
    """Who a customer is to write to (the customer and account contexts, read as this context)."""

    async def customer_of_account(self, account_id: str) -> str:
        """The customer who owns the account."""

    async def address_of(self, customer_id: str) -> str:
        """The customer's e-mail address now ("" when they gave none); NotFound for no customer."""


class MailUnavailable(Exception):
    """No answer from the mail server, or a 4xx one: try again later."""


class MailRefused(Exception):
    """The mail server refused the message for good (a 5xx answer)."""


class Mailer(Protocol):
    def accepts_calls(self) -> bool:
        """Whether a message would be attempted now (the circuit to the mail server is not open)."""

    async def send(self, to: str, letter: Letter, message_id: str) -> None:
        """Hands the message to the mail server; MailUnavailable or MailRefused when it did not take it."""


class Templates(Protocol):
    def render(self, kind: Kind, values: Mapping[str, str]) -> Letter: ...
