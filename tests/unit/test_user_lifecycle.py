"""A user's lifecycle in the identity context: roles and links change, users are disabled and
enabled, passwords change, tokens are revoked; each change makes the user's earlier tokens
refused by the process's token check at once, and each is recorded for the audit trail."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Coroutine
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from common.errors import NotFound, PermissionDenied, PreconditionFailed, Unauthenticated, ValidationFailed
from common.idempotency import IdempotencyKey
from common.pagination import PageRequest, PageTokens
from common.security.component import Security
from common.security.context import ADMIN, CUSTOMER, RELATIONSHIP_MANAGER, SecurityContext
from common.validation import Violations
from services.identity import service as identity_service
from services.identity.domain import AuditEvent, AuditQuery, User, check_an_admin_remains, drops_admin, validate_roles
from services.identity.module import IdentityModule
from services.identity.service import IdentityUseCases
from tests.unit.contexts import NOW, acting_as, context_under_test

TOKENS = PageTokens(b"unit tests")
PAGE = PageRequest(None, 2, "unit", TOKENS)


@dataclass
class Bank:
    identity: IdentityUseCases
    security: Security
    admin: SecurityContext


@pytest.fixture
async def bank(tmp_path: Path) -> AsyncIterator[Bank]:
    async with context_under_test(IdentityModule, tmp_path, {}, admin_password="first-admin-password") as context:
        identity = context.resolve(IdentityUseCases)
        await identity.learn_customer("cus_ada")
        security = context.resolve(Security)
        admin = security.verifier.verify((await _login(identity, "admin", "first-admin-password"))[0])
        yield Bank(identity, security, admin)


async def _login(identity: IdentityUseCases, username: str, password: str) -> tuple[str, int]:
    with acting_as(None):
        return await identity.issue_token(username, password, "", "127.0.0.1")


def key(request_id: str, content: str = "", scope: str = "usr:admin") -> IdempotencyKey:
    return IdempotencyKey(request_id, "test", content or request_id, scope)


async def _ada(bank: Bank) -> tuple[User, str]:
    with acting_as(bank.admin):
        ada = await bank.identity.create_user("ada", "adas long password", (CUSTOMER,), "cus_ada", key("make-ada"))
    token, _ = await _login(bank.identity, "ada", "adas long password")
    return ada, token


def _refused(bank: Bank, token: str) -> str:
    with pytest.raises(Unauthenticated) as refused:
        bank.security.verifier.verify(token)
    return refused.value.reason


async def test_disabling_a_user_refuses_their_live_token_and_their_logins_until_enabled(bank: Bank) -> None:
    ada, token = await _ada(bank)
    assert bank.security.verifier.verify(token).user_id == ada.user_id
    with acting_as(bank.admin):
        disabled = await bank.identity.set_disabled(ada.user_id, True, key("off"))
        assert disabled.disabled and await bank.identity.set_disabled(ada.user_id, True, key("off")) == disabled  # a replay
    assert _refused(bank, token) == "TOKEN_REVOKED"
    with pytest.raises(PermissionDenied) as login:
        await _login(bank.identity, "ada", "adas long password")
    assert login.value.reason == "USER_DISABLED"
    with acting_as(bank.admin):
        await bank.identity.set_disabled(ada.user_id, False, key("on"))
    assert _refused(bank, token) == "TOKEN_REVOKED"  # what was issued before stays refused
    fresh, _ = await _login(bank.identity, "ada", "adas long password")
    assert bank.security.verifier.verify(fresh).user_id == ada.user_id


async def test_a_change_of_roles_refuses_tokens_issued_before_it(bank: Bank) -> None:
    with acting_as(bank.admin):
        rm = await bank.identity.create_user("rita", "ritas long password", (RELATIONSHIP_MANAGER,), "", key("make-rita"))
    token, _ = await _login(bank.identity, "rita", "ritas long password")
    with acting_as(bank.admin):
        changed = await bank.identity.update_user(rm.user_id, (ADMIN,), "", key("promote"))
    assert changed.roles == (ADMIN,) and changed.token_generation == rm.token_generation + 1
    assert _refused(bank, token) == "TOKEN_REVOKED"
    fresh, _ = await _login(bank.identity, "rita", "ritas long password")
    assert bank.security.verifier.verify(fresh).roles == (ADMIN,)


async def test_odd_role_combinations_and_links_are_refused(bank: Bank, monkeypatch: pytest.MonkeyPatch) -> None:
    for roles, customer_id, field in (
        ((CUSTOMER, ADMIN), "cus_ada", "roles"),
        ((CUSTOMER,), "", "customer_id"),
        ((ADMIN,), "cus_ada", "customer_id"),
        ((ADMIN, ADMIN), "", "roles"),
        ((), "", "roles"),
    ):
        v = Violations()
        validate_roles(v, roles, customer_id)
        with pytest.raises(ValidationFailed) as refused:
            v.raise_if_any()
        assert field in {f.field for f in refused.value.violations}, (roles, customer_id)
    ada, _ = await _ada(bank)
    monkeypatch.setattr(identity_service, "CUSTOMER_ARRIVAL_SECONDS", 0.1)
    with acting_as(bank.admin), pytest.raises(NotFound) as unknown:
        await bank.identity.update_user(ada.user_id, (CUSTOMER,), "cus_nobody", key("relink"))
    assert "cus_nobody" in unknown.value.message
    with acting_as(bank.admin), pytest.raises(NotFound):
        await bank.identity.update_user("usr_nobody", (ADMIN,), "", key("ghost"))
    with acting_as(bank.admin):
        assert (await bank.identity.get(ada.user_id)) == ada  # nothing changed by the refusals


async def test_an_admin_cannot_lock_themselves_out_and_others_cannot_manage_users(bank: Bank) -> None:
    with acting_as(bank.admin):
        for change in (
            bank.identity.set_disabled(bank.admin.user_id, True, key("self-off")),
            bank.identity.update_user(bank.admin.user_id, (RELATIONSHIP_MANAGER,), "", key("self-demote")),
        ):
            with pytest.raises(PreconditionFailed) as refused:
                await change
            assert refused.value.reason == "SELF_LOCKOUT"
    ada, ada_token = await _ada(bank)
    ada_caller = bank.security.verifier.verify(ada_token)
    with acting_as(ada_caller):
        for change in (
            bank.identity.set_disabled(bank.admin.user_id, True, key("coup", scope="usr:ada")),
            bank.identity.update_user(ada.user_id, (ADMIN,), "", key("escalate", scope="usr:ada")),
            bank.identity.revoke_tokens(bank.admin.user_id, key("revoke-admin", scope="usr:ada")),
        ):
            with pytest.raises(PermissionDenied):
                await change
    assert bank.security.verifier.verify(ada_token) == ada_caller  # nothing happened to anyone


async def test_a_user_changes_their_password_with_the_current_one_and_an_admin_without(bank: Bank) -> None:
    ada, token = await _ada(bank)
    ada_caller = bank.security.verifier.verify(token)
    with acting_as(ada_caller), pytest.raises(ValidationFailed) as wrong:
        await bank.identity.change_password(ada.user_id, "not my password", "a brand new password", "10.0.0.1", key("p0"))
    assert [f.field for f in wrong.value.violations] == ["current_password"]
    with acting_as(ada_caller):
        changed = await bank.identity.change_password(
            ada.user_id, "adas long password", "a brand new password", "10.0.0.1", key("p1", scope="usr:ada")
        )
        replayed = await bank.identity.change_password(
            ada.user_id, "adas long password", "a brand new password", "10.0.0.1", key("p1", scope="usr:ada")
        )
    assert replayed == changed  # a retry answers the same, though the old password no longer matches
    assert _refused(bank, token) == "TOKEN_REVOKED"
    with pytest.raises(Unauthenticated):
        await _login(bank.identity, "ada", "adas long password")
    await _login(bank.identity, "ada", "a brand new password")
    with acting_as(bank.admin):
        await bank.identity.change_password(ada.user_id, "", "reset by the admin", "10.0.0.2", key("reset"))
    await _login(bank.identity, "ada", "reset by the admin")


async def test_a_user_revokes_their_own_tokens(bank: Bank) -> None:
    ada, token = await _ada(bank)
    with acting_as(bank.security.verifier.verify(token)):
        await bank.identity.revoke_tokens(ada.user_id, key("lost-phone", scope="usr:ada"))
    assert _refused(bank, token) == "TOKEN_REVOKED"
    assert [r.user_id for r in await bank.identity.revocations()] == [ada.user_id]


async def test_the_audit_trail_lists_newest_first_by_actor_resource_and_time(bank: Bank) -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    await bank.identity.record(
        [
            AuditEvent(
                f"aud_{n}",
                start + timedelta(minutes=n),
                "account",
                "Transfer",
                f"trf_{n % 2}",
                f"usr_{n % 2}",
                ("payment",),
                f"r{n}",
                "payment",
            )
            for n in range(5)
        ]
    )
    redelivered = AuditEvent("aud_0", start, "account", "Transfer", "trf_0", "usr_0", (), "r0", "")
    await bank.identity.record([redelivered, redelivered])  # again, and twice in one batch: kept once
    with acting_as(bank.admin):
        first, token = await bank.identity.audit_page(AuditQuery(actor="usr_0"), PAGE)
        assert [e.audit_event_id for e in first] == ["aud_4", "aud_2"] and token
        rest, end = await bank.identity.audit_page(AuditQuery(actor="usr_0"), TOKENS.request(Violations(), 2, token, "unit"))
        assert [e.audit_event_id for e in rest] == ["aud_0"] and not end and rest[0].on_behalf_of == ("payment",)
        window = AuditQuery(start=start + timedelta(minutes=1), end=start + timedelta(minutes=3))
        assert [e.audit_event_id for e in (await bank.identity.audit_page(window, PAGE))[0]] == ["aud_2", "aud_1"]
        assert [e.resource for e in (await bank.identity.audit_page(AuditQuery(resource="trf_1"), PAGE))[0]] == ["trf_1", "trf_1"]
    with acting_as(bank.security.verifier.verify((await _ada(bank))[1])), pytest.raises(PermissionDenied):
        await bank.identity.audit_page(AuditQuery(), PAGE)


def _as(caller: SecurityContext, change: Coroutine[Any, Any, User]) -> asyncio.Task[User]:
    """`change` started as `caller` (a task keeps the caller it was created under)."""
    with acting_as(caller):
        return asyncio.create_task(change)


async def _enabled_admins(bank: Bank, caller: SecurityContext) -> list[str]:
    with acting_as(caller):
        users, _ = await bank.identity.page(PageRequest(None, 100, "unit", TOKENS))
    return [u.username for u in users if ADMIN in u.roles and not u.disabled]


def _take_away(bank: Bank, how: str, actor: SecurityContext, target: str, request_id: str) -> asyncio.Task[User]:
    """`actor` disables or demotes `target`."""
    if how == "disable":
        return _as(actor, bank.identity.set_disabled(target, True, key(request_id, scope=actor.user_id)))
    return _as(actor, bank.identity.update_user(target, (RELATIONSHIP_MANAGER,), "", key(request_id, scope=actor.user_id)))


async def test_two_admins_demoting_or_disabling_each_other_at_once_leave_exactly_one(bank: Bank) -> None:
    """Both calls pass the token's check; the write decides, with both rows locked, that the
    second actor is no longer an enabled admin. Each round starts with two admins only."""
    survivor = bank.admin
    rounds = (("disable", "disable"), ("demote", "demote"), ("demote", "disable"), ("disable", "demote"))
    for n, (first, second) in enumerate(rounds):
        with acting_as(survivor):
            other = await bank.identity.create_user(f"admin{n}", "a long admin password", (ADMIN,), "", key(f"admin{n}"))
        other_caller = SecurityContext(other.user_id, other.username, other.roles)

        answers = await asyncio.gather(
            _take_away(bank, first, survivor, other.user_id, f"a{n}"),
            _take_away(bank, second, other_caller, survivor.user_id, f"b{n}"),
            return_exceptions=True,
        )
        refused = [a for a in answers if isinstance(a, BaseException)]
        assert len(refused) == 1, f"round {n} ({first}/{second}): {answers}"
        assert isinstance(refused[0], PermissionDenied) and refused[0].reason == "ACCESS_DENIED"
        survivor = survivor if isinstance(answers[0], User) else other_caller
        assert await _enabled_admins(bank, survivor) == [survivor.username]


async def test_an_admin_demoted_meanwhile_changes_nothing_whatever_their_token_says(bank: Bank) -> None:
    with acting_as(bank.admin):
        rita = await bank.identity.create_user("rita", "ritas long password", (ADMIN,), "", key("make-rita"))
        await bank.identity.update_user(rita.user_id, (RELATIONSHIP_MANAGER,), "", key("demote-rita"))
    stale = SecurityContext(rita.user_id, rita.username, (ADMIN,))  # what her earlier token still says
    with acting_as(stale):
        for change in (
            bank.identity.create_user("eve", "eves long password", (ADMIN,), "", key("eve", scope="rita")),
            bank.identity.update_user(rita.user_id, (ADMIN,), "", key("back", scope="rita")),
            bank.identity.set_disabled(bank.admin.user_id, True, key("coup", scope="rita")),
            bank.identity.change_password(bank.admin.user_id, "", "taken over at last", "10.0.0.1", key("pw", scope="rita")),
        ):
            with pytest.raises(PermissionDenied):
                await change
    assert await _enabled_admins(bank, bank.admin) == ["admin"]


def test_the_last_enabled_admin_is_never_taken_away() -> None:
    admin = User("usr_1", "admin", (ADMIN,), "", "hash", NOW)
    assert drops_admin(admin, admin.with_disabled(True, NOW))
    assert drops_admin(admin, admin.with_authority((RELATIONSHIP_MANAGER,), "", NOW))
    assert not drops_admin(admin, admin.revoked(NOW))
    check_an_admin_remains(admin, 1)
    with pytest.raises(PreconditionFailed) as refused:
        check_an_admin_remains(admin, 0)
    assert refused.value.reason == "LAST_ADMIN"


async def test_of_concurrent_password_changes_with_the_right_current_password_exactly_one_wins(bank: Bank) -> None:
    ada, token = await _ada(bank)
    ada_caller = bank.security.verifier.verify(token)
    new = [f"ada's new password {i}" for i in range(5)]
    answers = await asyncio.gather(
        *(
            _as(ada_caller, bank.identity.change_password(ada.user_id, "adas long password", p, "10.0.0.1", key(p, scope="ada")))
            for p in new
        ),
        return_exceptions=True,
    )
    assert sum(isinstance(a, User) for a in answers) == 1, answers
    for refused in (a for a in answers if not isinstance(a, User)):
        # checked against the password the winner replaced, or against the new one
        assert (isinstance(refused, PreconditionFailed) and refused.reason == "PASSWORD_CHANGED") or isinstance(
            refused, ValidationFailed
        ), refused
    works = []
    for password in new:
        try:
            await _login(bank.identity, "ada", password)
            works.append(password)
        except Unauthenticated:
            pass
    assert works == [new[next(i for i, a in enumerate(answers) if isinstance(a, User))]]
