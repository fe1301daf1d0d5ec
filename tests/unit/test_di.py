"""The DI framework: resolution, boundaries, every error with its fix, lifecycle, test contexts."""

from __future__ import annotations

import asyncio
from collections.abc import Collection
from typing import ClassVar, Protocol

import pytest

from common.di import (
    BaseComponent,
    ContextInfo,
    ContextModuleBuilder,
    CycleError,
    DuplicateProviderError,
    ImportDeclarationError,
    LifecycleError,
    MissingProviderError,
    ModuleContextImport,
    NotExportedError,
    NotImportedError,
    UnknownContextError,
    og_component,
    og_context,
    provide,
)

# --- a small world of components ------------------------------------------------------------


class Greeter(Protocol):
    def greet(self, name: str) -> str: ...


@og_component()
class PoliteGreeter(Greeter):
    def greet(self, name: str) -> str:
        return f"Good day, {name}"


@og_component()
class Config:
    currency = "EUR"


@og_component()
class Welcome:
    def __init__(self, greeter: Greeter, config: Config) -> None:
        self.greeter = greeter
        self.config = config


@og_context(name="shared", providers=[Config], shares=[Config])
class SharedModule: ...


@og_context(
    name="front",
    imports=[ModuleContextImport(Config, from_context="shared")],
    providers=[provide(PoliteGreeter, provides=Greeter), Welcome],
    shares=[Welcome],
)
class FrontModule: ...


async def test_constructor_injection_binds_protocol_and_import() -> None:
    contexts = await ContextModuleBuilder().build_contexts(SharedModule, FrontModule)
    welcome = contexts["front"].resolve(Welcome)
    assert welcome.greeter.greet("Ada") == "Good day, Ada"
    assert welcome.config is contexts["shared"].resolve(Config), "an import is the exporter's instance"
    assert contexts["front"].resolve(Greeter) is welcome.greeter, "a Protocol resolves to its implementation"
    assert set(contexts) == {"shared", "front"}
    await contexts.shutdown()


@og_component()
class Scratch: ...


@og_component()
class UserA:
    def __init__(self, scratch: Scratch, config: Config) -> None:
        self.scratch, self.config = scratch, config


@og_component()
class UserB:
    def __init__(self, scratch: Scratch, config: Config) -> None:
        self.scratch, self.config = scratch, config


class CurtGreeter(Greeter):
    def greet(self, name: str) -> str:
        return name


class Chicken:
    def __init__(self, egg: Egg) -> None: ...


class Egg:
    def __init__(self, chicken: Chicken) -> None: ...


async def test_one_instance_per_context() -> None:
    @og_context(name="solo", providers=[Config, Scratch, UserA, UserB])
    class Solo: ...

    contexts = await ContextModuleBuilder().build_contexts(Solo)
    a, b = contexts["solo"].resolve(UserA), contexts["solo"].resolve(UserB)
    assert a.config is b.config and a.scratch is b.scratch


# --- errors, each with the context path and the fix -----------------------------------------


async def test_missing_provider_names_the_path_and_the_fix() -> None:
    @og_context(name="broken", providers=[Welcome, Config])
    class Broken: ...

    with pytest.raises(MissingProviderError) as err:
        await ContextModuleBuilder().build_contexts(Broken)
    message = str(err.value)
    assert "context 'broken'" in message and "Greeter" in message
    assert "Welcome -> Greeter" in message
    assert "Fix: add an implementation of Greeter to the providers of 'broken'" in message


async def test_not_exported_is_refused() -> None:
    @og_context(name="private", providers=[Config])
    class Private: ...

    @og_context(name="nosy", imports=[ModuleContextImport(Config, from_context="private")], providers=[PoliteGreeter])
    class Nosy: ...

    with pytest.raises(NotExportedError) as err:
        await ContextModuleBuilder().build_contexts(Private, Nosy)
    message = str(err.value)
    assert "'nosy' imports Config from 'private', but 'private' does not export it" in message
    assert "Fix:" in message and "add Config to the exports of 'private'" in message


async def test_not_imported_says_which_import_to_add() -> None:
    @og_context(name="front2", providers=[provide(PoliteGreeter, provides=Greeter), Welcome])
    class Front2: ...

    with pytest.raises(NotImportedError) as err:
        await ContextModuleBuilder().build_contexts(SharedModule, Front2)
    assert "ModuleContextImport(Config, from_context='shared') to the imports of 'front2'" in str(err.value)


async def test_unknown_context_lists_the_known_ones() -> None:
    @og_context(name="lost", imports=[ModuleContextImport(Config, from_context="shraed")])
    class Lost: ...

    with pytest.raises(UnknownContextError) as err:
        await ContextModuleBuilder().build_contexts(SharedModule, Lost)
    assert "'shraed', which is not a known context (known: lost, shared)" in str(err.value)


async def test_duplicate_provider_listed_twice() -> None:
    @og_context(name="twice", providers=[Config, Config])
    class Twice: ...

    with pytest.raises(DuplicateProviderError, match="lists Config twice"):
        await ContextModuleBuilder().build_contexts(Twice)


async def test_two_providers_for_one_type_are_ambiguous() -> None:
    @og_context(
        name="ambiguous",
        providers=[provide(PoliteGreeter, provides=Greeter), provide(CurtGreeter, provides=Greeter), Config, Welcome],
    )
    class Ambiguous: ...

    with pytest.raises(DuplicateProviderError, match="Greeter is provided by both PoliteGreeter and CurtGreeter"):
        await ContextModuleBuilder().build_contexts(Ambiguous)


async def test_context_import_cycle_prints_the_whole_cycle() -> None:
    @og_context(
        name="account", imports=[ModuleContextImport(Welcome, from_context="customer")], shares=[Config], providers=[Config]
    )
    class Account: ...

    @og_context(
        name="customer",
        imports=[ModuleContextImport(Config, from_context="account")],
        shares=[Welcome],
        providers=[provide(PoliteGreeter, provides=Greeter), Welcome],
    )
    class Customer: ...

    with pytest.raises(CycleError) as err:
        await ContextModuleBuilder().build_contexts(Account, Customer)
    assert "account -> customer -> account" in str(err.value)
    assert err.value.cycle == ["account", "customer", "account"]
    assert "Fix:" in str(err.value)


async def test_component_cycle_inside_a_context() -> None:
    @og_context(name="farm", providers=[Chicken, Egg])
    class Farm: ...

    with pytest.raises(CycleError, match="Chicken -> Egg -> Chicken"):
        await ContextModuleBuilder().build_contexts(Farm)


# --- lifecycle --------------------------------------------------------------------------------


class Recorded(BaseComponent):
    """Writes its lifecycle into a shared journal; fails where told to."""

    name = ""
    journal: ClassVar[list[str]] = []
    fail_init: ClassVar[set[str]] = set()
    fail_shutdown: ClassVar[set[str]] = set()

    async def initialize(self) -> None:
        self.journal.append(f"init {self.name}")
        if self.name in self.fail_init:
            raise RuntimeError(f"{self.name} cannot start")

    async def start(self) -> None:
        self.journal.append(f"start {self.name}")

    async def shutdown(self) -> None:
        self.journal.append(f"stop {self.name}")
        if self.name in self.fail_shutdown:
            raise RuntimeError(f"{self.name} cannot stop")


class Pool(Recorded):
    name = "pool"


class Repo(Recorded):
    name = "repo"

    def __init__(self, pool: Pool) -> None: ...


class Api(Recorded):
    name = "api"

    def __init__(self, repo: Repo) -> None: ...


class Reporter(Recorded):
    name = "reporter"

    def __init__(self, api: Api) -> None: ...


@og_context(name="infra", providers=[Pool], shares=[Pool])
class Infra: ...


@og_context(name="biz", imports=[ModuleContextImport(Pool, from_context="infra")], providers=[Api, Repo], shares=[Api])
class Biz: ...


@og_context(name="report", imports=[ModuleContextImport(Api, from_context="biz")], providers=[Reporter])
class Report: ...


def _lifecycle_world(
    journal: list[str], fail_shutdown: Collection[str] = (), fail_init: Collection[str] = ()
) -> tuple[type, ...]:
    Recorded.journal, Recorded.fail_init, Recorded.fail_shutdown = journal, set(fail_init), set(fail_shutdown)
    return Infra, Biz, Report


async def test_initialise_in_dependency_order_and_shut_down_in_reverse() -> None:
    journal: list[str] = []
    modules = _lifecycle_world(journal)
    contexts = await ContextModuleBuilder().build_contexts(*reversed(modules))
    assert journal == [
        "init pool",
        "init repo",
        "init api",
        "init reporter",
        "start pool",
        "start repo",
        "start api",
        "start reporter",
    ], "start only once all are initialised"
    journal.clear()
    await contexts.shutdown()
    assert journal == ["stop reporter", "stop api", "stop repo", "stop pool"]


async def test_shutdown_continues_past_failures_and_reports_all() -> None:
    journal: list[str] = []
    contexts = await ContextModuleBuilder().build_contexts(*_lifecycle_world(journal, fail_shutdown={"api", "pool"}))
    journal.clear()
    with pytest.raises(LifecycleError) as err:
        await contexts.shutdown()
    assert journal == ["stop reporter", "stop api", "stop repo", "stop pool"]
    assert [who for who, _ in err.value.errors] == ["biz.Api", "infra.Pool"]
    assert "api cannot stop" in str(err.value) and "pool cannot stop" in str(err.value)


async def test_failed_initialise_shuts_down_what_started() -> None:
    journal: list[str] = []
    with pytest.raises(LifecycleError, match="repo cannot start"):
        await ContextModuleBuilder().build_contexts(*_lifecycle_world(journal, fail_init={"repo"}))
    assert journal == ["init pool", "init repo", "stop pool"], "nothing starts when initialisation failed"


# --- test contexts ----------------------------------------------------------------------------


class EchoGreeter(Greeter):
    def greet(self, name: str) -> str:
        return f"echo {name}"


async def test_test_context_swaps_a_provider_for_a_double() -> None:
    builder = ContextModuleBuilder().override(Greeter, EchoGreeter)
    contexts = await builder.build_contexts(SharedModule, FrontModule)
    assert contexts["front"].resolve(Welcome).greeter.greet("Ada") == "echo Ada"


async def test_an_instance_double_scoped_to_one_context() -> None:
    double = EchoGreeter()
    contexts = await ContextModuleBuilder().override(Greeter, double, context="front").build_contexts(SharedModule, FrontModule)
    assert contexts["front"].resolve(Welcome).greeter is double


async def test_the_next_build_is_unaffected_by_an_earlier_override() -> None:
    await ContextModuleBuilder().override(Greeter, EchoGreeter).build_contexts(SharedModule, FrontModule)
    contexts = await ContextModuleBuilder().build_contexts(SharedModule, FrontModule)
    assert contexts["front"].resolve(Welcome).greeter.greet("Ada") == "Good day, Ada"
    assert isinstance(contexts["front"].resolve(Greeter), PoliteGreeter)


class Hangs(BaseComponent):
    async def shutdown(self) -> None:
        await asyncio.Event().wait()


class StopsFine(BaseComponent):
    stopped = False

    def __init__(self, hangs: Hangs) -> None: ...

    async def shutdown(self) -> None:
        StopsFine.stopped = True


class AfterHang(BaseComponent):
    stopped = False

    async def shutdown(self) -> None:
        AfterHang.stopped = True


async def test_a_hanging_shutdown_is_cut_off_and_the_rest_still_stop() -> None:
    @og_context(name="hang", providers=[AfterHang, Hangs, StopsFine])
    class Hang: ...

    builder = ContextModuleBuilder(shutdown_timeout=0.05)
    contexts = await builder.build_contexts(Hang)
    with pytest.raises(LifecycleError) as err:
        await contexts.shutdown()
    assert [who for who, _ in err.value.errors] == ["hang.Hangs"]
    assert StopsFine.stopped and AfterHang.stopped


# --- explicit bindings and what a context knows of itself -------------------------------------


class Database:
    pass


@og_component()
class LedgerDatabase(Database):
    pass


@og_component()
class Relay:
    def __init__(self, db: Database, context: ContextInfo) -> None:
        self.db, self.context = db, context


async def test_a_provider_answers_only_the_type_it_is_bound_to() -> None:
    @og_context(name="unbound", providers=[LedgerDatabase, Relay])
    class Unbound: ...

    with pytest.raises(MissingProviderError, match="Database"):
        await ContextModuleBuilder().build_contexts(Unbound)

    @og_context(name="bound", providers=[provide(LedgerDatabase, provides=Database), Relay])
    class Bound: ...

    contexts = await ContextModuleBuilder().build_contexts(Bound)
    assert isinstance(contexts["bound"].resolve(Relay).db, LedgerDatabase)
    await contexts.shutdown()


async def test_a_binding_to_a_type_the_provider_is_not_is_refused_with_the_fix() -> None:
    @og_context(name="wrong", providers=[provide(Config, provides=Greeter)])
    class Wrong: ...

    with pytest.raises(ImportDeclarationError, match=r"binds Config to Greeter, which it is not\. Fix:"):
        await ContextModuleBuilder().build_contexts(Wrong)


async def test_a_component_is_told_the_name_and_package_of_its_context() -> None:
    @og_context(name="ledger", providers=[provide(LedgerDatabase, provides=Database), Relay])
    class LedgerModule: ...

    contexts = await ContextModuleBuilder().build_contexts(LedgerModule)
    info = contexts["ledger"].resolve(Relay).context
    assert (info.name, info.package) == ("ledger", "tests.unit")
    await contexts.shutdown()


async def test_only_shared_components_cross_by_reference() -> None:
    @og_context(name="owner", providers=[Config])
    class Owner: ...

    @og_context(name="borrower", imports=[ModuleContextImport(Config, from_context="owner")], providers=[Welcome])
    class Borrower: ...

    with pytest.raises(NotExportedError, match="or to its shares"):
        await ContextModuleBuilder().build_contexts(Owner, Borrower)
