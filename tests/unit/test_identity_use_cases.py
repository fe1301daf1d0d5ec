"""The identity context's use cases (it depends on no other context): the first admin, users made
by admins only, tokens for the right password only, and the same answer for an unknown user."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from argon2 import PasswordHasher

from common.di.context import Context
from common.errors import AlreadyExists, NotFound, PermissionDenied, ResourceExhausted, Unauthenticated
from common.idempotency import IdempotencyKey
from common.resilience.bulkhead import Bulkhead
from common.security.context import ADMIN, CUSTOMER, SecurityContext, service_identity
from services.identity import service as identity_service
from services.identity.domain import hash_password, needs_rehash, password_matches, scrypt_hash
from services.identity.module import IdentityModule
from services.identity.repository import IdentityUnits
from services.identity.service import IdentityUseCases
from tests.unit.contexts import ADMIN_CALLER, FIRST_PAGE, acting_as, context_under_test, customer_caller


@pytest.fixture
async def context(tmp_path: Path) -> AsyncIterator[Context]:
    async with context_under_test(IdentityModule, tmp_path, {}, admin_password="first-admin-password") as context:
        identity = context.resolve(IdentityUseCases)
        for customer_id in ("cus_ada", "cus_bob"):  # as CustomerOnboarded would have told it
            await identity.learn_customer(customer_id)
        yield context


@pytest.fixture
def identity(context: Context) -> IdentityUseCases:
    return context.resolve(IdentityUseCases)


async def first_admin(units: IdentityUnits) -> SecurityContext:
    """The first admin as their token says: identity decides by the users table, so the caller
    acting as an admin must be one there."""
    admin = await units.read(lambda uow: uow.users.by_username("admin"))
    assert admin is not None
    return SecurityContext(admin.user_id, admin.username, admin.roles)


@pytest.fixture
async def admin_caller(context: Context) -> SecurityContext:
    return await first_admin(context.resolve(IdentityUnits))


def key(request_id: str, content: str = "") -> IdempotencyKey:
    return IdempotencyKey(request_id, "test", content or request_id, "usr_admin")


async def test_the_configured_first_admin_gets_a_token(identity: IdentityUseCases, admin_caller: SecurityContext) -> None:
    with acting_as(None):
        token, expires = await identity.issue_token("admin", "first-admin-password", "", "127.0.0.1")
    assert token.count(".") == 2 and expires > 0
    with acting_as(admin_caller):
        assert [(u.username, u.roles) for u in (await identity.page(FIRST_PAGE))[0]] == [("admin", (ADMIN,))]


async def test_an_admin_makes_users_once_per_request_id(identity: IdentityUseCases, admin_caller: SecurityContext) -> None:
    with acting_as(admin_caller):
        ada = await identity.create_user("ada", "a long enough password", (CUSTOMER,), "cus_ada", key("u1"))
        assert (await identity.create_user("ada", "a long enough password", (CUSTOMER,), "cus_ada", key("u1"))) == ada
        with pytest.raises(AlreadyExists):
            await identity.create_user("ada", "another password!", (CUSTOMER,), "cus_ada", key("u2"))
        assert (await identity.get(ada.user_id)).roles == (CUSTOMER,)
        with pytest.raises(NotFound):
            await identity.get("usr_nobody")


async def test_nobody_but_an_admin_makes_or_lists_users(identity: IdentityUseCases) -> None:
    with acting_as(customer_caller("cus_ada")):
        with pytest.raises(PermissionDenied):
            await identity.create_user("eve", "a long enough password", ("admin",), "", key("u1"))
        with pytest.raises(PermissionDenied):
            await identity.page(FIRST_PAGE)
    with acting_as(None), pytest.raises(Unauthenticated):
        await identity.issue_token("eve", "a long enough password", "", "127.0.0.1")


async def test_a_user_is_linked_only_to_a_customer_identity_knows(
    identity: IdentityUseCases, admin_caller: SecurityContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(identity_service, "CUSTOMER_ARRIVAL_SECONDS", 0.1)
    with acting_as(admin_caller), pytest.raises(NotFound) as unknown:
        await identity.create_user("eve", "a long enough password", (CUSTOMER,), "cus_nobody", key("u1"))
    assert "cus_nobody" in unknown.value.message


async def test_a_user_changes_only_their_own_password(identity: IdentityUseCases, admin_caller: SecurityContext) -> None:
    with acting_as(admin_caller):
        ada = await identity.create_user("ada", "adas long password", (CUSTOMER,), "cus_ada", key("u1"))
    with acting_as(customer_caller("cus_bob")), pytest.raises(PermissionDenied):
        await identity.change_password(ada.user_id, "", "bob chose this one", "127.0.0.1", key("p1"))
    with acting_as(None):
        assert (await identity.issue_token("ada", "adas long password", "", "127.0.0.1"))[0], "hers still works"


async def test_acting_on_another_user_is_refused_before_a_hash_or_a_write(
    identity: IdentityUseCases, admin_caller: SecurityContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A customer's PasswordChange or RevokeTokens for somebody else costs the bank no hashing and no
    transaction: the write's own check would refuse too, but only after that work."""
    with acting_as(admin_caller):
        ada = await identity.create_user("ada", "adas long password", (CUSTOMER,), "cus_ada", key("u1"))

    async def reached(*_: object, **__: object) -> None:
        raise AssertionError("work done for a caller who may not act")

    monkeypatch.setattr(identity._hashing, "run", reached)
    monkeypatch.setattr(identity._units, "write", reached)
    monkeypatch.setattr(identity._units, "read", reached)
    with acting_as(customer_caller("cus_bob")):
        for act in (
            identity.change_password(ada.user_id, "adas long password", "bob chose this one", "127.0.0.1", key("p1")),
            identity.revoke_tokens(ada.user_id, key("r1")),
        ):
            with pytest.raises(PermissionDenied):
                await act


async def test_token_revocations_are_read_by_contexts_and_admins_only(identity: IdentityUseCases) -> None:
    for caller in (service_identity("account"), ADMIN_CALLER):
        with acting_as(caller):
            assert await identity.list_revocations() == []
    with acting_as(customer_caller("cus_ada")), pytest.raises(PermissionDenied):
        await identity.list_revocations()


async def test_a_wrong_password_and_an_unknown_user_get_the_same_answer(identity: IdentityUseCases) -> None:
    answers = []
    for username, password in (("admin", "wrong password"), ("nobody", "first-admin-password")):
        with acting_as(None), pytest.raises(Unauthenticated) as refused:
            await identity.issue_token(username, password, "", "127.0.0.1")
        answers.append((refused.value.reason, refused.value.message))
    assert answers[0] == answers[1] == ("INVALID_CREDENTIALS", "unknown username or wrong password")


async def test_repeated_wrong_passwords_slow_the_username_from_that_address_and_no_one_else(
    identity: IdentityUseCases, admin_caller: SecurityContext
) -> None:
    with acting_as(admin_caller):
        await identity.create_user("bob", "bobs long password", (CUSTOMER,), "cus_bob", key("u1"))
    with acting_as(None):
        for _ in range(5):
            with pytest.raises(Unauthenticated):
                await identity.issue_token("admin", "wrong password!", "", "10.0.0.9")
        with pytest.raises(ResourceExhausted) as locked:  # even the right password waits now
            await identity.issue_token("admin", "first-admin-password", "", "10.0.0.9")
        assert locked.value.reason == "LOGIN_THROTTLED" and 0 < locked.value.retry_after <= 10.0  # the shortest window
        assert (await identity.issue_token("admin", "first-admin-password", "", "10.0.0.8"))[0]  # from elsewhere: not locked
        token, _ = await identity.issue_token("bob", "bobs long password", "", "10.0.0.9")  # same address, other user
        assert token


async def test_a_login_turned_away_busy_takes_no_try_from_its_address(identity: IdentityUseCases) -> None:
    """Logins refused BUSY (every hashing place taken, by strangers guessing other usernames) never
    had their password checked: they take none of the owner's tries at its address, which a
    success would not have cleared."""
    hashing = Bulkhead("password-hashing", workers=1, waiting=0)
    identity._hashing = hashing  # one place, held below: every login meanwhile is turned away BUSY
    release = threading.Event()
    holding = asyncio.ensure_future(hashing.run(release.wait, 30))
    await asyncio.sleep(0.05)
    with acting_as(None):
        for _ in range(8):
            with pytest.raises(ResourceExhausted) as busy:
                await identity.issue_token("admin", "first-admin-password", "", "10.0.0.7")
            assert busy.value.reason == "BUSY"
        release.set()
        await holding
        assert (await identity.issue_token("admin", "first-admin-password", "", "10.0.0.7"))[0]


async def test_a_password_stored_the_old_way_is_rehashed_with_argon2id_at_the_next_login(tmp_path: Path) -> None:
    async with context_under_test(IdentityModule, tmp_path, {}, admin_password="first-admin-password") as context:
        identity, units = context.resolve(IdentityUseCases), context.resolve(IdentityUnits)
        await identity.learn_customer("cus_bob")
        with acting_as(await first_admin(units)):
            bob = await identity.create_user("bob", "bobs long password", (CUSTOMER,), "cus_bob", key("u1"))
        assert bob.password_hash.startswith("$argon2id$v=19$m=19456,t=2,p=1$")
        scrypted = scrypt_hash("bobs long password", b"0123456789abcdef")
        assert await units.write(lambda uow: uow.users.rehash(bob.user_id, bob.password_hash, scrypted))
        with acting_as(None):
            assert (await identity.issue_token("bob", "bobs long password", "", "127.0.0.1"))[0]
        upgraded = await units.read(lambda uow: uow.users.get(bob.user_id))
        assert upgraded is not None and upgraded.password_hash.startswith("$argon2id$")
        with acting_as(None):
            assert (await identity.issue_token("bob", "bobs long password", "", "127.0.0.1"))[0]


def test_only_argon2id_at_the_current_parameters_needs_no_rehash() -> None:
    current = hash_password("a long enough password")
    assert password_matches("a long enough password", current) and not password_matches("another password!", current)
    assert not needs_rehash(current)
    weaker = PasswordHasher(time_cost=1, memory_cost=8 * 1024, parallelism=1).hash("a long enough password")
    assert password_matches("a long enough password", weaker) and needs_rehash(weaker)
    legacy = scrypt_hash("a long enough password", b"0123456789abcdef")
    assert password_matches("a long enough password", legacy) and needs_rehash(legacy)
    assert not password_matches("a long enough password", "$argon2id$garbage")
