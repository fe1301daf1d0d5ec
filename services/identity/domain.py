"""Users and their credentials. Pure: hashing is computation, run off the loop by the service."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from common.errors import FieldRefused, FieldViolation, NotFound, PermissionDenied, PreconditionFailed
from common.net import address_holder
from common.security.context import ADMIN, CUSTOMER, USER_ROLES
from common.validation import Violations

_USERNAME = re.compile(r"[a-z0-9._-]{3,64}")
MIN_PASSWORD = 12
# argon2id at OWASP's password-storage parameters: 19 MiB, 2 passes, 1 lane (about 30 ms here).
_ARGON2 = PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1)
# scrypt (the former scheme, verified until each user's next login): 2^15 x 8 x 128 bytes = 32 MiB.
_SCRYPT_N, _SCRYPT_R, _SCRYPT_P = 2**15, 8, 1
_SCRYPT_MAXMEM = 64 * 1024 * 1024


@dataclass(frozen=True)
class User:
    user_id: str
    username: str
    roles: tuple[str, ...]
    customer_id: str
    password_hash: str
    created_at: datetime
    disabled: bool = False
    # Tokens carry the generation they were issued in; a change of the user's authority (roles,
    # link, password, revocation, disabling) starts a new one and the earlier tokens are refused.
    token_generation: int = 0
    updated_at: datetime | None = None

    def with_authority(self, roles: tuple[str, ...], customer_id: str, now: datetime) -> User:
        return replace(self.revoked(now), roles=roles, customer_id=customer_id)

    def with_password(self, password_hash: str, now: datetime) -> User:
        return replace(self.revoked(now), password_hash=password_hash)

    def with_disabled(self, disabled: bool, now: datetime) -> User:
        return replace(self.revoked(now), disabled=disabled)

    def revoked(self, now: datetime) -> User:
        """The user with a new token generation: every token issued so far is refused."""
        return replace(self, token_generation=self.token_generation + 1, updated_at=now)


@dataclass(frozen=True)
class TokenRevocation:
    """Tokens of `user_id` from a generation below `min_generation`, or all while disabled, are refused."""

    user_id: str
    min_generation: int
    disabled: bool


def revocation_of(user: User, now: datetime, token_lifetime: timedelta) -> TokenRevocation | None:
    """What verifiers must refuse of this user's tokens; None when nothing refused may still be alive."""
    if user.disabled or (user.updated_at is not None and user.token_generation > 0 and user.updated_at > now - token_lifetime):
        return TokenRevocation(user.user_id, user.token_generation, user.disabled)
    return None


def validate_new_user(v: Violations, username: str, password: str, roles: tuple[str, ...], customer_id: str) -> None:
    v.check(bool(_USERNAME.fullmatch(username)), "username", "required: 3..64 characters of [a-z0-9._-]")
    validate_password(v, password, "password")
    validate_roles(v, roles, customer_id)


def validate_password(v: Violations, password: str, field: str) -> None:
    v.check(MIN_PASSWORD <= len(password) <= 1024, field, f"{MIN_PASSWORD}..1024 characters")


def validate_roles(v: Violations, roles: tuple[str, ...], customer_id: str) -> None:
    """A user is staff or a customer, never both: the customer role goes with no other, and is the
    only one linked to a customer."""
    v.check(
        bool(roles) and all(r in USER_ROLES for r in roles) and len(set(roles)) == len(roles),
        "roles",
        f"one or more of {', '.join(USER_ROLES)}, each once (service identities belong to contexts, not to users)",
    )
    if CUSTOMER in roles:
        v.check(roles == (CUSTOMER,), "roles", "the customer role goes with no other role (a customer is not staff)")
        v.check(customer_id.startswith("cus_"), "customer_id", "required with the customer role: the customer's id")
    else:
        v.check(not customer_id, "customer_id", "only users with the customer role are linked to a customer")


def check_not_self_lockout(
    user: User, acting_user_id: str, roles: tuple[str, ...] | None = None, disabling: bool = False
) -> None:
    """An admin cannot disable themselves or drop their own admin role: the bank would be left
    with nobody to undo it."""
    if user.user_id != acting_user_id:
        return
    if disabling or (roles is not None and ADMIN in user.roles and ADMIN not in roles):
        raise PreconditionFailed(
            "SELF_LOCKOUT",
            "an admin cannot disable themselves or remove their own admin role; ask another admin",
            {"user_id": user.user_id},
        )


# Decide inside the write: every check below takes the users as the database has them in the
# transaction that writes the change (locked there), never as a token said when the call began. A
# token says who is calling; whether they may, the admin count, and which password is current are
# read where the change is written, so that two concurrent changes cannot both rely on a state
# that the other one ends.


def is_enabled_admin(user: User | None) -> bool:
    return user is not None and not user.disabled and ADMIN in user.roles


def check_acting_admin(actor: User | None, action: str) -> None:
    """The actor is, now, an enabled admin: an admin demoted or disabled a moment ago (by another
    admin, concurrently) changes nothing more, whatever their token still says."""
    if not is_enabled_admin(actor):
        raise _not_now(actor, action)


def check_acting_self_or_admin(actor: User | None, user_id: str, action: str) -> None:
    """The actor is, now, the user themself (still enabled) or an enabled admin."""
    if actor is not None and actor.user_id == user_id and not actor.disabled:
        return
    check_acting_admin(actor, action)


def _not_now(actor: User | None, action: str) -> PermissionDenied:
    return PermissionDenied(
        "ACCESS_DENIED",
        f"may not {action}: the caller is not an enabled admin (as the users are now)",
        {"user_id": actor.user_id if actor else ""},
    )


def drops_admin(before: User, after: User) -> bool:
    """Whether a change takes an enabled admin away (demoted or disabled)."""
    return is_enabled_admin(before) and not is_enabled_admin(after)


def check_an_admin_remains(user: User, enabled_admins_after: int) -> None:
    """The bank always keeps an enabled admin: nobody else could enable or promote anyone.

    With the acting admin locked, enabled and never their own target, an admin always remains;
    this is the same rule said on the count, so that no later path (a service acting, a bulk
    change) can break it unnoticed."""
    if enabled_admins_after < 1:
        raise PreconditionFailed("LAST_ADMIN", "the last enabled admin cannot be demoted or disabled", {"user_id": user.user_id})


Authorize = Callable[[User | None], None]  # given the actor as the database has them now; raises to refuse
Change = Callable[[User], User]


def decided_change(users: Mapping[str, User], actor_id: str, user_id: str, change: Change, authorize: Authorize) -> User:
    """The user as `change` leaves them, decided on `users` as the unit locked them (the actor,
    the user and, for a change of another, every enabled admin): the actor may still act, the
    user exists, and an enabled admin remains afterwards."""
    authorize(users.get(actor_id))
    user = users.get(user_id)
    if user is None:
        raise NotFound("user", user_id)
    changed = change(user)
    if drops_admin(user, changed):  # counted among the locked rows: all enabled admins, or (own change) the user alone
        check_an_admin_remains(user, sum(is_enabled_admin(u) for u in users.values()) - 1)
    return changed


def check_password_unchanged(user: User, checked_hash: str) -> None:
    """The password a user's current one was checked against is still theirs: of concurrent
    changes that each proved the same current password, one is made and the others refused."""
    if not hmac.compare_digest(user.password_hash, checked_hash):
        raise PreconditionFailed(
            "PASSWORD_CHANGED",
            "the password changed while this change was checked; log in with the current password and try again",
            {"user_id": user.user_id},
        )


def check_current_password(user: User, checked_hash: str, matched: bool) -> None:
    """A user's own change proves their current password, decided on the hash the write sees: the
    one it was checked against is still stored (else PASSWORD_CHANGED), and it matched (else the
    field is refused; kept on the request's key, so a replay once the password is the one named,
    after an admin's reset, is refused again rather than made)."""
    check_password_unchanged(user, checked_hash)
    if not matched:
        raise FieldRefused([FieldViolation("current_password", "does not match the current password")])


def hash_password(password: str) -> str:
    """argon2id at the current parameters, salt included in the encoded hash."""
    return _ARGON2.hash(password)


def password_matches(password: str, stored: str) -> bool:
    """Constant-time check against a stored hash: argon2id (its own parameters), or the scrypt of
    users who have not logged in since argon2id replaced it."""
    if stored.startswith("$argon2"):
        try:
            return _ARGON2.verify(stored, password)
        except (VerifyMismatchError, InvalidHashError, VerificationError):
            return False
    return _scrypt_matches(password, stored)


def needs_rehash(stored: str) -> bool:
    """Whether a hash is of an older kind or weaker parameters: replaced at the next login."""
    return not stored.startswith("$argon2id$") or _ARGON2.check_needs_rehash(stored)


def scrypt_hash(password: str, salt: bytes) -> str:
    """The former scheme, kept to verify (and rehash) what was stored with it."""
    digest = hashlib.scrypt(password.encode(), salt=salt, n=_SCRYPT_N, r=_SCRYPT_R, p=_SCRYPT_P, maxmem=_SCRYPT_MAXMEM)
    encoded = base64.b64encode
    return f"scrypt${_SCRYPT_N}${_SCRYPT_R}${_SCRYPT_P}${encoded(salt).decode()}${encoded(digest).decode()}"


def _scrypt_matches(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
    except ValueError:
        return False
    if scheme != "scrypt":
        return False
    candidate = hashlib.scrypt(
        password.encode(), salt=base64.b64decode(salt), n=int(n), r=int(r), p=int(p), maxmem=_SCRYPT_MAXMEM
    )
    return hmac.compare_digest(candidate, base64.b64decode(digest))


# What a password check is counted against, before anything is hashed. Throttling, not lockout
# (OWASP's authentication guidance: a lockout any stranger can trigger is a denial of service):
USERNAME_AT_ADDRESS = "username-at-address"  # every try, in flight included: a few quick ones (typos), then
# slower; a success clears it. The one that stops a burst of guesses at one user from one place
ADDRESS = "address"  # the failures of one address across usernames (one password tried on every user)
USERNAME = "username"  # the tries at one username from every address it has not logged in from lately
# (many addresses guessing one user), a ceiling no success lifts. Full, it does not shut the door
# (strangers could keep it shut on the owner) but slows to the trickle below:
USERNAME_OVERFLOW = "username-overflow"  # one more try at the username now and then, in all,
USERNAME_OVERFLOW_AT_ADDRESS = "username-overflow-at-address"  # of which each address gets a few:
# strangers at a handful of addresses cannot take every turn, so the owner at a new one gets one soon
KNOWN_ADDRESS = "known-address"  # an address the username logged in from lately: exempt from USERNAME
# (its own USERNAME_AT_ADDRESS still bounds it), so strangers elsewhere never slow the owner there

Subject = tuple[str, tuple[str, ...]]  # a rule's name and what it counts (a username, an address, both)


def login_subjects(username: str, peer: str, *, known: bool = False) -> list[Subject]:
    """The (rule, subject) pairs one password check counts against: what a guess from `peer` at
    `username` costs that address, that username from that address, and (unless the username
    logged in from that address lately: `known`) that username."""
    name, address = username.lower(), address_holder(peer)
    subjects = [(USERNAME_AT_ADDRESS, (name, address)), (ADDRESS, (address,))]
    return subjects if known else [*subjects, (USERNAME, (name,))]


def username_overflow(username: str, peer: str) -> list[Subject]:
    """What a check takes once USERNAME is full: a turn of the username's, and of it from `peer`."""
    name, address = username.lower(), address_holder(peer)
    return [(USERNAME_OVERFLOW, (name,)), (USERNAME_OVERFLOW_AT_ADDRESS, (name, address))]


def known_address(username: str, peer: str) -> Subject:
    """The address `peer` as one `username` logged in from."""
    return KNOWN_ADDRESS, (username.lower(), address_holder(peer))


@dataclass(frozen=True)
class AuditEvent:
    """A state change of some context, as it recorded it."""

    audit_event_id: str
    time: datetime
    context: str
    operation: str
    resource: str
    actor: str
    on_behalf_of: tuple[str, ...]
    request_id: str
    service: str
    reason: str = ""  # what the person said, for a change that asks for it


@dataclass(frozen=True)
class AuditQuery:
    """Which changes to list: each field set narrows it."""

    actor: str = ""
    resource: str = ""
    start: datetime | None = None
    end: datetime | None = None
