"""The customer context's side of its contracts: the identity context behind the Users port, and
its events as the messages it publishes."""

from __future__ import annotations

import csv
from datetime import date
from pathlib import Path

from common.di import BaseComponent, og_component
from common.grpc.remote import call
from ogpgy.identity.v1 import identity_service_pb2 as ipb
from ogpgy.identity.v1.identity_service_pb2_grpc import IdentityServiceStub
from services.customer.domain import SanctionsEntry, SanctionsList
from services.customer.ports import SanctionsSource, Users

IDENTITY_CALL_TIMEOUT = 5.0


@og_component()
class IdentityUsers(BaseComponent, Users):
    """Users, as the identity context answers GetUser (with this context's authority: a lookup)."""

    def __init__(self, identity: IdentityServiceStub) -> None:
        self._identity = identity

    async def roles_of(self, user_id: str) -> frozenset[str]:
        answer = await call(
            self._identity.GetUser,
            ipb.GetUserRequest(user_id=user_id),
            within=IDENTITY_CALL_TIMEOUT,
            unavailable="IDENTITY_UNAVAILABLE",
            silence="cannot check the user",
        )
        return frozenset(ipb.Role.Name(role).removeprefix("ROLE_").lower() for role in answer.user.roles)


SANCTIONS_FILE = Path(__file__).parent / "data" / "sanctions.csv"


@og_component()
class CsvSanctionsSource(SanctionsSource):
    """The sanctions list shipped with the context as a data file."""

    def __init__(self) -> None:
        self.path = SANCTIONS_FILE

    def load(self) -> SanctionsList:
        with self.path.open(encoding="utf-8", newline="") as handle:
            rows = list(csv.DictReader(handle))
        return SanctionsList.of(
            SanctionsEntry(
                full_name=row["full_name"],
                date_of_birth=date.fromisoformat(row["date_of_birth"]) if row["date_of_birth"] else None,
            )
            for row in rows
        )
