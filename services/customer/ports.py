"""What the customer context needs from other contexts, in its own terms."""

from __future__ import annotations

from typing import Protocol

from services.customer.domain import SanctionsList


class Users(Protocol):
    """The bank's users (the identity context)."""

    async def roles_of(self, user_id: str) -> frozenset[str]:
        """The roles of a user (common.security.context names); NotFound("user") if none has the id."""


class SanctionsSource(Protocol):
    """The sanctions list applicants are screened against."""

    def load(self) -> SanctionsList: ...
