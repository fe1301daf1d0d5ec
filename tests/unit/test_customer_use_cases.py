"""The customer context's use cases over a fake identity context: who onboards and sees whom, who
may be a relationship manager, what a replay answers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from common.errors import AlreadyExists, NotFound, PermissionDenied, PreconditionFailed
from common.idempotency import IdempotencyKey
from common.security.context import RELATIONSHIP_MANAGER, SecurityContext
from services.customer.domain import DocumentType, IdentityDocument, KycStatus
from services.customer.module import CustomerModule
from services.customer.ports import Users
from services.customer.service import CustomerUseCases
from tests.unit.contexts import ADMIN_CALLER, FIRST_PAGE, acting_as, context_under_test, customer_caller
from tests.unit.test_customer_domain import application

MANAGER = SecurityContext("usr_rm", "rm", (RELATIONSHIP_MANAGER,))
BOBS_PASSPORT = IdentityDocument(DocumentType.PASSPORT, "ZX9876543", "GB")


@dataclass
class FakeUsers(Users):
    """The identity context as a table of roles."""

    roles: dict[str, frozenset[str]] = field(default_factory=dict)

    async def roles_of(self, user_id: str) -> frozenset[str]:
        found = self.roles.get(user_id)
        if found is None:
            raise NotFound("user", user_id)
        return found


@pytest.fixture
async def customers(tmp_path: Path) -> AsyncIterator[CustomerUseCases]:
    users = FakeUsers({"usr_rm": frozenset({RELATIONSHIP_MANAGER}), "usr_teller": frozenset({"customer"})})
    async with context_under_test(CustomerModule, tmp_path, {Users: users}) as context:
        yield context.resolve(CustomerUseCases)


def key(request_id: str) -> IdempotencyKey:
    return IdempotencyKey(request_id, "test", request_id, "usr_admin")


async def test_an_admin_onboards_and_a_replay_answers_the_same_customer(customers: CustomerUseCases) -> None:
    with acting_as(ADMIN_CALLER):
        ada = await customers.onboard(application(), key("on-1"))
        assert ada.kyc.status is KycStatus.VERIFIED
        assert (await customers.onboard(application(), key("on-1"))).customer_id == ada.customer_id
        assert [c.customer_id for c in (await customers.page(FIRST_PAGE, None))[0]] == [ada.customer_id]
        with pytest.raises(AlreadyExists) as again:  # the same identity document under another request_id
            await customers.onboard(application(), key("on-2"))
        assert (again.value.reason, again.value.metadata["customer_id"]) == ("CUSTOMER_ALREADY_EXISTS", ada.customer_id)
        assert len((await customers.page(FIRST_PAGE, None))[0]) == 1


async def test_nobody_but_an_admin_onboards_and_a_refusal_stores_nothing(customers: CustomerUseCases) -> None:
    with acting_as(MANAGER), pytest.raises(PermissionDenied):
        await customers.onboard(application(), key("on-1"))
    with acting_as(ADMIN_CALLER):
        assert (await customers.page(FIRST_PAGE, None))[0] == []


async def test_a_customer_sees_herself_whole_and_nobody_else(customers: CustomerUseCases) -> None:
    with acting_as(ADMIN_CALLER):
        ada = await customers.onboard(application(), key("on-1"))
        bob = await customers.onboard(application(given_name="Bob", email="bob@example.com", document=BOBS_PASSPORT), key("on-2"))
    with acting_as(customer_caller(ada.customer_id)):
        assert (await customers.get(ada.customer_id)).email == "ada@example.com"
        with pytest.raises(PermissionDenied):
            await customers.get(bob.customer_id)
        with pytest.raises(PermissionDenied):  # an unknown id looks like somebody else's
            await customers.get("cus_unknown")


async def test_only_a_relationship_manager_is_assigned_and_then_sees_the_customer(customers: CustomerUseCases) -> None:
    with acting_as(ADMIN_CALLER):
        ada = await customers.onboard(application(), key("on-1"))
        with pytest.raises(PreconditionFailed) as refused:
            await customers.assign_relationship_manager(ada.customer_id, "usr_teller", key("rm-1"))
        assert refused.value.reason == "NOT_A_RELATIONSHIP_MANAGER"
        with pytest.raises(NotFound):
            await customers.assign_relationship_manager(ada.customer_id, "usr_nobody", key("rm-2"))
    with acting_as(MANAGER), pytest.raises(PermissionDenied):
        await customers.get(ada.customer_id)
    with acting_as(ADMIN_CALLER):
        assigned = await customers.assign_relationship_manager(ada.customer_id, "usr_rm", key("rm-3"))
        assert assigned.relationship_manager_id == "usr_rm" and assigned.version == ada.version + 1
    with acting_as(MANAGER):
        assert (await customers.get(ada.customer_id)).customer_id == ada.customer_id
        assert [c.customer_id for c in (await customers.page(FIRST_PAGE, None))[0]] == [ada.customer_id]
