"""Importing another context's generated stub: bound to a channel to that context's server."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest

from common.config import Settings
from common.di import (
    ContextModuleBuilder,
    ImportDeclarationError,
    ModuleContextImport,
    NotExportedError,
    og_component,
    og_context,
)
from common.grpc.channels import ChannelPool
from common.security.component import Security
from common.security.context import caller_var
from mesh.embedded import start_embedded
from ogpgy.account.v1.account_service_pb2_grpc import AccountServiceStub
from ogpgy.customer.v1 import customer_service_pb2 as pb
from ogpgy.customer.v1.customer_service_pb2_grpc import CustomerServiceStub
from services.customer.api import CustomerApi
from services.customer.module import CustomerModule
from services.identity.module import IdentityModule
from tests.conftest import ADMIN_PASSWORD, issue_token, onboarding
from tests.grpc_assert import error_reason


@og_component()
class Concierge:
    """A component of another context that knows customers only through their stub."""

    def __init__(self, customers: CustomerServiceStub) -> None:
        self.customers = customers


@og_context(
    name="concierge",
    imports=[ModuleContextImport(CustomerServiceStub, from_context="customer", methods=["OnboardCustomer", "GetCustomer"])],
    providers=[Concierge],
)
class ConciergeModule: ...


async def test_an_imported_stub_calls_the_exporting_context_over_grpc(tmp_path: Path) -> None:
    bank = await start_embedded(
        Settings(data_dir=tmp_path, port=0, admin_password=ADMIN_PASSWORD),
        modules=[IdentityModule, CustomerModule, ConciergeModule],
    )
    try:
        concierge = bank.contexts["concierge"].resolve(Concierge)
        assert isinstance(concierge.customers, CustomerServiceStub)
        verifier = bank.contexts["infrastructure"].resolve(Security).verifier
        caller_var.set(verifier.verify(await issue_token(bank.target)))  # as a handler serving the admin would
        made = await concierge.customers.OnboardCustomer(onboarding("via-stub"))
        got = await concierge.customers.GetCustomer(pb.GetCustomerRequest(customer_id=made.customer.customer_id))
        assert got.customer.customer_id == made.customer.customer_id
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await concierge.customers.GetCustomer(pb.GetCustomerRequest(customer_id="cus_X"))
        assert err.value.code() == grpc.StatusCode.NOT_FOUND, "status codes cross the boundary intact"
        caller_var.set(None)  # the concierge alone: it may read, never onboard
        denied = await error_reason(concierge.customers.OnboardCustomer(onboarding("alone")), grpc.StatusCode.PERMISSION_DENIED)
        assert denied.reason == "ACCESS_DENIED"
        with pytest.raises(AttributeError, match=r"did not import CustomerServiceStub\.UpdateCustomer"):
            concierge.customers.UpdateCustomer  # noqa: B018 - only the imported RPCs are offered
    finally:
        await bank.stop(grace=1)


async def test_an_import_names_real_rpcs_of_the_service() -> None:
    @og_context(name="vague", imports=[ModuleContextImport(CustomerServiceStub, from_context="customer")])
    class Vague: ...

    @og_context(name="wrong", imports=[ModuleContextImport(CustomerServiceStub, from_context="customer", methods=["Deposit"])])
    class Wrong: ...

    for module, message in ((Vague, "without naming the RPCs it calls"), (Wrong, "imports Deposit of CustomerServiceStub")):
        with pytest.raises(ImportDeclarationError, match=message):
            await ContextModuleBuilder(ChannelPool({"customer": "127.0.0.1:1"})).build_contexts(module, remote=[CustomerModule])


async def test_a_stub_of_a_service_the_context_does_not_export_is_refused() -> None:
    @og_context(name="nosy", imports=[ModuleContextImport(AccountServiceStub, from_context="customer")])
    class Nosy: ...

    builder = ContextModuleBuilder(ChannelPool({"customer": "127.0.0.1:1"}))
    with pytest.raises(NotExportedError, match="'customer' does not export it \\(it exports: CustomerApi\\)"):
        await builder.build_contexts(Nosy, remote=[CustomerModule])


async def test_a_remote_context_is_reached_by_its_configured_address() -> None:
    """Declared but not built here (another process): only its gRPC services can be imported."""
    pool = ChannelPool({"customer": "127.0.0.1:1"})
    contexts = await ContextModuleBuilder(pool).build_contexts(ConciergeModule, remote=[CustomerModule])
    assert set(contexts) == {"concierge"}
    stub = contexts["concierge"].resolve(Concierge).customers
    assert isinstance(stub, CustomerServiceStub)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.GetCustomer(pb.GetCustomerRequest(customer_id="cus_X"), timeout=2)
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE, "nobody listens on port 1"
    await contexts.shutdown()

    @og_context(name="greedy", imports=[ModuleContextImport(CustomerApi, from_context="customer")])
    class Greedy: ...

    with pytest.raises(NotExportedError, match="runs in another process"):
        await ContextModuleBuilder(pool).build_contexts(Greedy, remote=[CustomerModule])
