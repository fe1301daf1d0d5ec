"""What the account context needs from other contexts, in its own terms."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class CustomerStanding:
    """What the account context needs to know of a customer."""

    kyc_verified: bool
    relationship_manager_id: str  # "" when none is assigned


class Customers(Protocol):
    """The bank's customers (the customer context)."""

    async def standing(self, customer_id: str) -> CustomerStanding:
        """Asked with the caller's authority: NotFound or PermissionDenied as the customer context answers."""

    async def relationship_manager(self, customer_id: str) -> str | None:
        """Asked as this context itself (access checks need it for any caller); None for an unknown customer."""
