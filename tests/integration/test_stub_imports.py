"""Importing another context's generated stub: bound to a channel to that context's server."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest
from ogpgy.account.v1.account_service_pb2_grpc import AccountServiceStub
from ogpgy.customer.v1 import customer_service_pb2 as pb
from ogpgy.customer.v1.customer_service_pb2_grpc import CustomerServiceStub

from common.config import Settings
from common.di import ContextModuleBuilder, ModuleContextImport, NotExportedError, og_component, og_context
from common.grpc.channels import ChannelPool
from common.security.component import Security
from mesh.embedded import start_embedded
from services.customer.api import CustomerApi
from services.customer.module import CustomerModule
from services.identity.module import IdentityModule
from tests.conftest import onboarding


@og_component()
class Concierge:
    """A component of another context that knows customers only through their stub."""

    def __init__(self, customers: CustomerServiceStub) -> None:
        self.customers = customers


@og_context(
    name="concierge",
    imports=[ModuleContextImport(CustomerServiceStub, from_context="customer")],
    providers=[Concierge],
)
class ConciergeModule: ...


async def test_an_imported_stub_calls_the_exporting_context_over_grpc(tmp_path: Path) -> None:
    bank = await start_embedded(Settings(data_dir=tmp_path, port=0), modules=[IdentityModule, CustomerModule, ConciergeModule])
    try:
        concierge = bank.contexts["concierge"].resolve(Concierge)
        assert isinstance(concierge.customers, CustomerServiceStub)
        as_service = (("authorization", f"Bearer {bank.contexts['infrastructure'].resolve(Security).service_token('concierge')}"),)
        made = await concierge.customers.OnboardCustomer(onboarding("via-stub"), metadata=as_service)
        got = await concierge.customers.GetCustomer(pb.GetCustomerRequest(customer_id=made.customer.customer_id), metadata=as_service)
        assert got.customer.customer_id == made.customer.customer_id
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await concierge.customers.GetCustomer(pb.GetCustomerRequest(customer_id="cus_X"), metadata=as_service)
        assert err.value.code() == grpc.StatusCode.NOT_FOUND, "status codes cross the boundary intact"
    finally:
        await bank.stop(grace=1)


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
