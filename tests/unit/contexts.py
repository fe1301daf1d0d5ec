"""One context built for a unit test: its real module, use cases, domain and repository (an SQLite
file in the test's directory), every port to another context replaced by a fake, nothing served.

Built by the same ContextModuleBuilder as the bank, with a ChannelPool that knows no address: a
port left unfaked fails the test at its first call ("no address configured for context ...")
instead of reaching a server.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from common.clock import Clock, FixedClock
from common.config import Settings
from common.di import ContextModuleBuilder, context_spec
from common.di.context import Context
from common.grpc.channels import ChannelPool
from common.pagination import PageRequest, PageTokens
from common.security.component import Security
from common.security.context import ADMIN, CUSTOMER, SecurityContext, caller_var
from mesh.embedded import ALL_MODULES
from mesh.infrastructure import InfrastructureModule

NOW = datetime(2026, 6, 15, 12, tzinfo=UTC)
ADMIN_CALLER = SecurityContext("usr_admin", "admin", (ADMIN,))
FIRST_PAGE = PageRequest(None, 10, "unit", PageTokens(b"unit tests"))


def customer_caller(customer_id: str) -> SecurityContext:
    return SecurityContext(f"usr_{customer_id}", customer_id, (CUSTOMER,), customer_id=customer_id)


@asynccontextmanager
async def context_under_test(module: type, data_dir: Path, fakes: Mapping[type, Any], **settings_: Any) -> AsyncIterator[Context]:
    """The context of `module`, built and initialised with `fakes` ({port: fake}) in place of its
    adapters; `settings_` override the defaults."""
    # Background workers poll rarely: a test runs them itself (e.g. StoreAndForward.forward_once).
    defaults: dict[str, Any] = {"port": 0, "admin_password": "unit-tests", "queue_poll_seconds": 3600}
    settings = Settings(data_dir=data_dir, **{**defaults, **settings_})
    builder = ContextModuleBuilder(ChannelPool({}))
    builder.supply(settings, context="infrastructure").supply(Security(settings), context="infrastructure")
    builder.override(Clock, FixedClock(NOW))
    name = context_spec(module).name
    for port, fake in fakes.items():
        builder.override(port, fake, context=name)
    others = [m for m in ALL_MODULES if m is not module]
    async with await builder.build_contexts(InfrastructureModule, module, remote=others) as built:
        yield built[name]


@contextmanager
def acting_as(caller: SecurityContext | None) -> Iterator[None]:
    """Runs the block as `caller` (None: as the context itself), as the server's interceptor would."""
    token = caller_var.set(caller)
    try:
        yield
    finally:
        caller_var.reset(token)
