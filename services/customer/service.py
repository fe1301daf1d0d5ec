"""Use cases of the customer context: onboarding with KYC, reads, contact changes, the
relationship manager and KYC reviews. Input arrives validated (api.py); each use case authorizes,
lets the domain decide and stores the result with its events."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from common.cache.registry import Caches
from common.clock import Clock
from common.db.base import stored
from common.di import BaseComponent, og_component
from common.errors import Aborted, NotFound, PreconditionFailed
from common.idempotency import IdempotencyKey
from common.ids import new_id
from common.pagination import PageRequest
from common.security.context import ADMIN, CUSTOMER, RELATIONSHIP_MANAGER, SecurityContext, current_caller
from common.security.policy import may_read_pii, require_customer_access, require_role, unknown
from services.customer.domain import (
    CUSTOMER_ID_PREFIX,
    Application,
    ContactChange,
    Customer,
    CustomerEvent,
    CustomerKycReviewed,
    CustomerOnboarded,
    CustomerUpdated,
    KycStatus,
    SanctionsList,
    require_new_document,
    run_kyc,
    version_mismatch,
)
from services.customer.ports import SanctionsSource, Users
from services.customer.repository import CustomerCodec, CustomerFilter, CustomerUnit, CustomerUnits

_OPTIMISTIC_RETRIES = 3
READ = "access this customer's data"


@og_component()
class CustomerUseCases(BaseComponent):
    """Onboarding, reads and contact changes; every write idempotent by request_id."""

    def __init__(
        self,
        units: CustomerUnits,
        sanctions_source: SanctionsSource,
        clock: Clock,
        caches: Caches,
        users: Users,
    ) -> None:
        self._units = units
        self._users = users
        self._cache = caches.create("customer", CustomerCodec())
        self._sanctions_source = sanctions_source
        self._clock = clock
        self._sanctions = SanctionsList()

    async def initialize(self) -> None:
        self._sanctions = self._sanctions_source.load()
        self.logger.info("sanctions list loaded: %d names", len(self._sanctions.entries))

    async def onboard(self, application: Application, key: IdempotencyKey) -> Customer:
        """Registers the applicant and runs KYC; a rejected applicant is stored too (audit).
        Admins onboard customers (relationship managers read, they change nothing)."""
        require_role(ADMIN, action="onboard customers")
        kyc = run_kyc(application, self._sanctions, self._clock.now())
        customer = Customer.onboard(new_id(CUSTOMER_ID_PREFIX), application, kyc)

        async def add(uow: CustomerUnit) -> Customer:
            replayed = await uow.claim(key, customer.customer_id)  # a concurrent twin waits here, then replays
            if replayed is not None:
                return stored(await uow.customers.get(replayed), replayed)
            require_new_document(await uow.customers.document_holder(customer.document))
            await uow.customers.add(customer)
            await uow.publish([CustomerOnboarded(customer.customer_id, kyc.status, kyc.checked_at)])
            return customer

        return await self._units.write(add)

    async def _assigned(self, caller: SecurityContext, customer_id: str) -> bool:
        customer = await self._load(customer_id)
        return customer.relationship_manager_id == caller.user_id

    async def _load(self, customer_id: str) -> Customer:
        customer = await self._cache.get(customer_id, lambda: self._current(customer_id))
        if customer is None:
            raise unknown("customer", customer_id, READ)
        return customer

    async def get(self, customer_id: str) -> Customer:
        """The customer, if the caller may see them; personal data masked unless they may read it.
        An unknown customer answers a caller who may not read everyone as somebody else's does."""
        customer = await self._load(customer_id)
        caller = await require_customer_access(customer_id, assigned=self._assigned, action=READ)
        return customer if may_read_pii(caller, customer_id) else customer.masked()

    def visible(self, customers: list[Customer]) -> list[Customer]:
        caller = current_caller()
        return [c if may_read_pii(caller, c.customer_id) else c.masked() for c in customers]

    async def page(self, request: PageRequest, status: KycStatus | None) -> tuple[list[Customer], str]:
        """Admins list everyone; a relationship manager their customers; a customer themself."""
        only = self._listing_filter(current_caller(), status)
        page = await self._units.read(lambda uow: uow.customers.page(request.after_seq, request.limit, only))
        return self.visible(page.customers), request.next_token(page.next_after)

    @staticmethod
    def _listing_filter(caller: SecurityContext, status: KycStatus | None) -> CustomerFilter:
        if caller.has_role(ADMIN):
            return CustomerFilter(status)
        if caller.has_role(RELATIONSHIP_MANAGER):
            return CustomerFilter(status, relationship_manager_id=caller.user_id)
        if caller.has_role(CUSTOMER):
            return CustomerFilter(status, customer_id=caller.customer_id)
        return CustomerFilter(status, customer_id="")

    async def assign_relationship_manager(self, customer_id: str, manager_id: str, key: IdempotencyKey) -> Customer:
        require_role(ADMIN, action="assign relationship managers")
        if manager_id:
            try:
                await self._require_relationship_manager(manager_id)
            except PreconditionFailed as refused:  # the identity context's answer: kept as this request's
                return await self._refuse(key, customer_id, refused)
        return await self._change(
            customer_id, lambda c: c.with_relationship_manager(manager_id, self._clock.now()), ["relationship_manager_id"], 0, key
        )

    async def _require_relationship_manager(self, user_id: str) -> None:
        """Only a user with the relationship-manager role may be assigned (the identity context says)."""
        if RELATIONSHIP_MANAGER not in await self._users.roles_of(user_id):
            raise PreconditionFailed(
                "NOT_A_RELATIONSHIP_MANAGER",
                f"user {user_id} is not a relationship manager",
                {"relationship_manager_id": user_id},
            )

    async def update_contact(
        self, customer_id: str, change: ContactChange, expected_version: int, key: IdempotencyKey
    ) -> Customer:
        """Read-modify-write with optimistic concurrency; retried internally unless the caller
        pinned a version, in which case a stale version is the caller's to resolve."""
        await require_customer_access(customer_id, assigned=self._assigned, write=True, action="change this customer")
        changed = await self._change(
            customer_id, lambda c: c.with_contact(change, self._clock.now()), sorted(change.fields), expected_version, key
        )
        return changed if may_read_pii(current_caller(), customer_id) else changed.masked()

    async def review_kyc(self, customer_id: str, clear: bool, key: IdempotencyKey) -> Customer:
        """An admin's decision on a KYC in review (a possible sanctions match)."""
        require_role(ADMIN, action="decide KYC reviews")

        def reviewed(c: Customer) -> list[CustomerEvent]:
            return [CustomerKycReviewed(c.customer_id, c.kyc.status, c.kyc.checked_at)]

        return await self._change(customer_id, lambda c: c.reviewed(clear, self._clock.now()), ["kyc"], 0, key, reviewed)

    async def _change(
        self,
        customer_id: str,
        apply: Callable[[Customer], Customer],
        fields: list[str],
        expected_version: int,
        key: IdempotencyKey,
        announce: Callable[[Customer], list[CustomerEvent]] = lambda _: [],
    ) -> Customer:
        replayed = await self._units.read(lambda uow: _replayed(uow, key))
        if replayed is not None:
            return replayed
        for attempt in range(_OPTIMISTIC_RETRIES):
            current = await self._current(customer_id)
            if current is None:
                raise NotFound("customer", customer_id)
            try:
                if expected_version and current.version != expected_version:
                    raise version_mismatch(customer_id, current.version, expected_version)
                changed = apply(current)
            except PreconditionFailed as refused:  # decided on the customer as read: kept as the key's answer
                return await self._refuse(key, customer_id, refused)
            updated = CustomerUpdated(customer_id, changed.version, tuple(fields), changed.updated_at)
            try:
                events = [updated, *announce(changed)]
                saved = await self._units.write(_saved(changed, current.version, key, events, pinned=bool(expected_version)))
                await self._cache.invalidate(customer_id)
                return saved
            except Aborted:
                if expected_version or attempt == _OPTIMISTIC_RETRIES - 1:
                    raise
        raise AssertionError("unreachable")

    async def _current(self, customer_id: str) -> Customer | None:
        return await self._units.read(lambda uow: uow.customers.get(customer_id))

    async def _refuse(self, key: IdempotencyKey, customer_id: str, refused: PreconditionFailed) -> Customer:
        """Keeps `refused` (decided on the customer as read, or by another context) as the key's
        answer; where the key holds an answer already, that one (the customer it changed, or the
        refusal it kept) instead."""

        async def keep(uow: CustomerUnit) -> Customer:
            async def make() -> Customer:
                raise refused

            return await uow.once(key, customer_id, make, lambda done: _stored(uow, done))

        return await self._units.write(keep)


async def _stored(uow: CustomerUnit, customer_id: str) -> Customer:
    return stored(await uow.customers.get(customer_id), customer_id)


async def _replayed(uow: CustomerUnit, key: IdempotencyKey) -> Customer | None:
    """The customer an earlier request with this key produced, if any."""
    replayed = await uow.replayed(key)
    return await uow.customers.get(replayed) if replayed else None


def _saved(
    changed: Customer, expected_version: int, key: IdempotencyKey, events: list[CustomerEvent], *, pinned: bool
) -> Callable[[CustomerUnit], Awaitable[Customer]]:
    """The unit that stores a change and its events, once for `key`, if the stored version is
    still `expected_version`; else Aborted (read again and retry), or, when the caller pinned that
    version, VERSION_MISMATCH kept as the key's answer."""

    async def save(uow: CustomerUnit) -> Customer:
        async def make() -> Customer:
            if not await uow.customers.update(changed, expected_version):
                if pinned:
                    now = await _stored(uow, changed.customer_id)
                    raise version_mismatch(changed.customer_id, now.version, expected_version)
                raise Aborted(
                    "CONCURRENT_MODIFICATION",
                    "the customer changed meanwhile; read it again and retry",
                    {"customer_id": changed.customer_id},
                )
            await uow.publish(events)
            return changed

        return await uow.once(key, changed.customer_id, make, lambda done: _stored(uow, done))

    return save
