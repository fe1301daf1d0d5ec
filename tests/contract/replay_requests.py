"""A valid request for every state-changing RPC, as the principal who may send it, and the
refusals decided on state that each one can meet (with, where there is one, the change of state
after which an identical new request would succeed): those that move money in replay_money.py,
those about customers, users, runs and preferences here. tests/contract/test_replays.py sends each
one, then the same request again, and compares the answers."""

from __future__ import annotations

from typing import Any

from google.protobuf import field_mask_pb2

from ogpgy.customer.v1 import customer_service_pb2 as cpb
from ogpgy.identity.v1 import identity_service_pb2 as ipb
from ogpgy.interest.v1 import interest_service_pb2 as inpb
from ogpgy.notification.v1 import notification_service_pb2 as npb
from tests.bank_helpers import fresh_document
from tests.conftest import document, onboarding
from tests.contract.replay_money import DONE, MONEY_CASES, NO_STATE, run_date, run_day, run_status
from tests.contract.replay_operations import OPERATIONS_CASES
from tests.contract.replay_operators import OPERATOR_CASES
from tests.contract.replay_world import PASSWORD, Case, Refused, ReplayWorld, Sent, rid


def _customer_id(r: Any) -> str:
    return str(r.customer.customer_id)


def _user_id(r: Any) -> str:
    return str(r.user.user_id)


# --- customer -----------------------------------------------------------------------------------


async def _onboard(w: ReplayWorld, tag: str) -> Sent:
    return Sent(w.admin, onboarding(rid(tag), document=document(fresh_document())))


async def _onboard_twice(w: ReplayWorld, tag: str) -> Refused:
    taken = document(fresh_document())
    await w.customers.OnboardCustomer(onboarding(f"{rid(tag)}-first", document=taken), metadata=await w.metadata(w.admin))
    return Refused(
        Sent(w.admin, onboarding(rid(tag), document=taken)), "CUSTOMER_ALREADY_EXISTS", final="customers are never removed"
    )


def _contact(tag: str, customer_id: str, version: int = 0) -> cpb.UpdateCustomerRequest:
    return cpb.UpdateCustomerRequest(
        request_id=rid(tag),
        customer_id=customer_id,
        customer=cpb.Customer(email=f"{tag}@example.com"),
        update_mask=field_mask_pb2.FieldMask(paths=["email"]),
        expected_version=version,
    )


async def _update(w: ReplayWorld, tag: str) -> Sent:
    return Sent(w.alice, _contact(tag, w.alice_customer))


async def _update_stale(w: ReplayWorld, tag: str) -> Refused:
    """Pinned to the version after the next change: refused until that change is made."""
    sent = Sent(w.alice, _contact(tag, w.alice_customer, await w.alice_version() + 1))

    async def changed() -> None:
        await w.customers.UpdateCustomer(_contact(f"{tag}-between", w.alice_customer), metadata=await w.metadata(w.admin))

    return Refused(sent, "VERSION_MISMATCH", changed)


async def _assign(w: ReplayWorld, tag: str) -> Sent:
    manager, _ = await w.user()
    request = cpb.AssignRelationshipManagerRequest(
        request_id=rid(tag), customer_id=w.bob_customer, relationship_manager_id=manager
    )
    return Sent(w.admin, request)


async def _assign_not_a_manager(w: ReplayWorld, tag: str) -> Refused:
    staff, _ = await w.user(ipb.ROLE_ADMIN)
    request = cpb.AssignRelationshipManagerRequest(request_id=rid(tag), customer_id=w.bob_customer, relationship_manager_id=staff)
    return Refused(
        Sent(w.admin, request), "NOT_A_RELATIONSHIP_MANAGER", lambda: w.set_roles(staff, ipb.ROLE_RELATIONSHIP_MANAGER)
    )


async def _review(w: ReplayWorld, tag: str) -> Sent:
    customer = await w.customer_in_review()
    return Sent(w.admin, cpb.ReviewKycRequest(request_id=rid(tag), customer_id=customer, decision=cpb.KYC_DECISION_CLEAR))


async def _review_decided(w: ReplayWorld, tag: str) -> Refused:
    request = cpb.ReviewKycRequest(request_id=rid(tag), customer_id=w.bob_customer, decision=cpb.KYC_DECISION_CLEAR)
    return Refused(Sent(w.admin, request), "KYC_NOT_IN_REVIEW", final="a decided KYC is never in review again")


# --- identity -----------------------------------------------------------------------------------


def _new_user(tag: str, username: str) -> ipb.CreateUserRequest:
    return ipb.CreateUserRequest(request_id=rid(tag), username=username, password=PASSWORD, roles=[ipb.ROLE_RELATIONSHIP_MANAGER])


async def _create_user(w: ReplayWorld, tag: str) -> Sent:
    return Sent(w.admin, _new_user(tag, rid(tag).lower()))


async def _create_taken(w: ReplayWorld, tag: str) -> Refused:
    return Refused(Sent(w.admin, _new_user(tag, "alice")), "USERNAME_TAKEN", final="users are never removed")


async def _update_user(w: ReplayWorld, tag: str) -> Sent:
    user_id, _ = await w.user()
    return Sent(w.admin, ipb.UpdateUserRequest(request_id=rid(tag), user_id=user_id, roles=[ipb.ROLE_ADMIN]))


async def _demote_self(w: ReplayWorld, tag: str) -> Refused:
    request = ipb.UpdateUserRequest(request_id=rid(tag), user_id=w.admin_id, roles=[ipb.ROLE_RELATIONSHIP_MANAGER])
    return Refused(Sent(w.admin, request), "SELF_LOCKOUT", final="an admin demoting themself is refused whatever the state")


async def _disable(w: ReplayWorld, tag: str) -> Sent:
    user_id, _ = await w.user()
    return Sent(w.admin, ipb.DisableUserRequest(request_id=rid(tag), user_id=user_id))


async def _disable_self(w: ReplayWorld, tag: str) -> Refused:
    request = ipb.DisableUserRequest(request_id=rid(tag), user_id=w.admin_id)
    return Refused(Sent(w.admin, request), "SELF_LOCKOUT", final="an admin disabling themself is refused whatever the state")


async def _enable(w: ReplayWorld, tag: str) -> Sent:
    return Sent(w.admin, ipb.EnableUserRequest(request_id=rid(tag), user_id=await w.disabled_user()))


async def _change_password(w: ReplayWorld, tag: str) -> Sent:
    """The user's own change: their next login (the replay's) is with the new password, or with
    the old one where the change was never made."""
    user_id, who = await w.user()
    new = f"new-password-{tag}"
    who.passwords.append(new)
    return Sent(who, ipb.ChangePasswordRequest(request_id=rid(tag), user_id=user_id, current_password=PASSWORD, new_password=new))


async def _change_password_wrong(w: ReplayWorld, tag: str) -> Refused:
    """A wrong current password; then an admin sets the user's password to the one it named."""
    user_id, who = await w.user()
    named = f"named-password-{tag}"
    request = ipb.ChangePasswordRequest(
        request_id=rid(tag), user_id=user_id, current_password=named, new_password=f"next-password-{tag}"
    )
    return Refused(Sent(who, request), "current_password", lambda: w.reset_password(user_id, who, named))


async def _revoke(w: ReplayWorld, tag: str) -> Sent:
    user_id, _ = await w.user()
    return Sent(w.admin, ipb.RevokeTokensRequest(request_id=rid(tag), user_id=user_id))


# --- interest, notification ----------------------------------------------------------------------


async def _run_interest(w: ReplayWorld, tag: str) -> Sent:
    return Sent(w.admin, inpb.RunDailyInterestRequest(request_id=rid(tag), business_date=run_day()))


async def _run_interest_again(w: ReplayWorld, tag: str) -> Refused:
    first = inpb.RunDailyInterestRequest(request_id=f"{rid(tag)}-first", business_date=DONE)
    _ = [r async for r in w.interest.RunDailyInterest(first, metadata=await w.metadata(w.admin))]
    request = inpb.RunDailyInterestRequest(request_id=rid(tag), business_date=DONE)
    return Refused(Sent(w.admin, request), "INTEREST_RUN_ALREADY_COMPLETED", final="a completed run is never run again")


async def _close_day(w: ReplayWorld, tag: str) -> Sent:
    """In US dollars: the EUR days' interest and collection are the other cases' (a run per date and currency)."""
    return Sent(w.admin, inpb.CloseBusinessDayRequest(request_id=rid(tag), currency_code="USD"))


def _closed_date(closes: Any) -> str:
    day = closes[-1].close.business_date
    return f"{day.year}-{day.month:02}-{day.day:02}"


async def _preferences(w: ReplayWorld, tag: str) -> Sent:
    request = npb.UpdateNotificationPreferencesRequest(request_id=rid(tag), opted_out_kinds=["PAYMENT_COMPLETED"])
    return Sent(w.alice, request)


CASES: dict[str, Case] = {
    **MONEY_CASES,
    **OPERATOR_CASES,
    **OPERATIONS_CASES,
    "OnboardCustomer": Case(_customer_id, _onboard, (_onboard_twice,)),
    "UpdateCustomer": Case(_customer_id, _update, (_update_stale,)),
    "AssignRelationshipManager": Case(_customer_id, _assign, (_assign_not_a_manager,)),
    "ReviewKyc": Case(_customer_id, _review, (_review_decided,)),
    "CreateUser": Case(_user_id, _create_user, (_create_taken,)),
    "UpdateUser": Case(_user_id, _update_user, (_demote_self,)),
    "DisableUser": Case(_user_id, _disable, (_disable_self,)),
    "EnableUser": Case(_user_id, _enable, no_refusal=NO_STATE),
    "ChangePassword": Case(_user_id, _change_password, (_change_password_wrong,)),
    "RevokeTokens": Case(_user_id, _revoke, no_refusal=NO_STATE),
    "RunDailyInterest": Case(run_date, _run_interest, (_run_interest_again,), outcome=run_status),
    "CloseBusinessDay": Case(
        _closed_date,
        _close_day,
        no_refusal="it closes what is due and answers what was closed: refused only a currency without a calendar or a caller",
        outcome=lambda closes: str(closes[-1].close.completed),
    ),
    "UpdateNotificationPreferences": Case(lambda r: str(r.preferences.customer_id), _preferences, no_refusal=NO_STATE),
}
