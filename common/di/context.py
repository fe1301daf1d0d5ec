"""Context declarations (@og_context) and the built Context that resolves components."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

from google.protobuf.message import Message

from common.di.errors import MissingProviderError

T = TypeVar("T")
C = TypeVar("C", bound=type)


@dataclass(frozen=True)
class ModuleContextImport:
    """Declares that a context uses `type` exported by `from_context`.

    For another context's service (its generated stub), `methods` names the RPCs this context
    calls: the bound stub offers only those, the callee refuses the others from this context's
    identity, and the context map shows them. One declaration, three enforcements.
    """

    type: type
    from_context: str
    methods: Sequence[str] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "methods", tuple(self.methods))  # hashable, and a list cannot change under us


@dataclass(frozen=True)
class Provide:
    """A provider of a context: `source` is built to answer `provides`."""

    source: type
    provides: type


def provide(source: type, *, provides: type | None = None) -> Provide:
    """Binds `source` to the type components ask for (a Protocol, a port), explicitly: a provider
    answers only the type it is bound to, never one it merely inherits from."""
    return Provide(source, provides if provides is not None else source)


@dataclass(frozen=True)
class ContextInfo:
    """What a context knows of itself, injected into any of its components that asks for it: the
    name written once in @og_context, its package (where its migrations and data files live) and
    the events it declared."""

    name: str
    package: str
    publishes: tuple[type[Message], ...] = ()
    consumes: tuple[type[Message], ...] = ()


@dataclass(frozen=True)
class ContextSpec:
    """The declaration of a bounded context: what it builds, what it shows, what it needs."""

    name: str
    description: str = ""
    business_owner: str = ""
    providers: tuple[Provide, ...] = ()
    exports: tuple[type, ...] = ()  # servicers: their gRPC services are what other contexts may call
    shares: tuple[type, ...] = ()  # components lent by reference to contexts of the same process
    imports: tuple[ModuleContextImport, ...] = ()
    publishes: tuple[type[Message], ...] = ()  # event messages this context puts in its outbox
    consumes: tuple[type[Message], ...] = ()  # event messages of other contexts it subscribes to
    external: bool = False  # outside the bank's trust domain: callers send it no identity
    module: type | None = field(default=None, compare=False)

    def imported_from(self, wanted: type) -> ModuleContextImport | None:
        """The import declaration that brings `wanted` into this context, if any."""
        return next((imp for imp in self.imports if imp.type is wanted), None)

    def provider_of(self, wanted: type) -> Provide | None:
        """The provider bound to `wanted`, if this context has one."""
        return next((p for p in self.providers if p.provides is wanted), None)

    @property
    def info(self) -> ContextInfo:
        package = self.module.__module__.rpartition(".")[0] if self.module is not None else ""
        return ContextInfo(self.name, package, self.publishes, self.consumes)


_SPEC_ATTR = "__og_context__"


def og_context(
    name: str,
    description: str = "",
    business_owner: str = "",
    providers: Sequence[type | Provide] = (),
    exports: Sequence[type] = (),
    shares: Sequence[type] = (),
    imports: Sequence[ModuleContextImport] = (),
    publishes: Sequence[type[Message]] = (),
    consumes: Sequence[type[Message]] = (),
    external: bool = False,
) -> Callable[[C], C]:
    """Declares a bounded context on a module class. Declaration only: nothing is built here.

    `providers`: classes (each answers its own type) or `provide(Impl, provides=Port)`.
    `exports`: servicers, whose gRPC services other contexts reach through generated stubs.
    `shares`: components other contexts of the same process use by reference (infrastructure).
    """

    def declare(module: C) -> C:
        spec = ContextSpec(
            name=name,
            description=description,
            business_owner=business_owner,
            providers=tuple(p if isinstance(p, Provide) else provide(p) for p in providers),
            exports=tuple(exports),
            shares=tuple(shares),
            imports=tuple(imports),
            publishes=tuple(publishes),
            consumes=tuple(consumes),
            external=external,
            module=module,
        )
        setattr(module, _SPEC_ATTR, spec)
        return module

    return declare


def context_spec(module: type) -> ContextSpec:
    """The declaration of a module class; TypeError for classes without @og_context."""
    spec = module.__dict__.get(_SPEC_ATTR)
    if not isinstance(spec, ContextSpec):
        raise TypeError(f"{module.__qualname__} is not decorated with @og_context")
    return spec


class Context:
    """A built context: every component already constructed (no resolution on the hot path)."""

    def __init__(self, spec: ContextSpec) -> None:
        self.spec = spec
        self._instances: dict[type, Any] = {}

    @property
    def name(self) -> str:
        return self.spec.name

    def _register(self, key: type, instance: Any) -> None:
        self._instances[key] = instance

    def _lookup(self, wanted: type) -> Any | None:
        """The instance registered for exactly `wanted`."""
        return self._instances.get(wanted)

    def resolve(self, wanted: type[T]) -> T:
        """The component of this context bound to `wanted` (a class or a Protocol)."""
        found = self._lookup(wanted)
        if found is None:
            raise MissingProviderError(
                f"context '{self.name}': nothing provides {wanted.__qualname__}. "
                f"Fix: add it to the providers of '{self.name}' or to its imports."
            )
        return cast(T, found)  # bound to `wanted` by the context's own declaration

    def exported_instances(self) -> list[Any]:
        """The instances of this context's exports, in declaration order."""
        return [self.resolve(export) for export in self.spec.exports]


class BuiltContexts(Mapping[str, Context]):
    """{name: context} plus the lifecycle handle that shuts them down in reverse order."""

    def __init__(self, contexts: dict[str, Context], shutdown: Callable[[], Any]) -> None:
        self._contexts = contexts
        self._shutdown = shutdown

    def __getitem__(self, name: str) -> Context:
        return self._contexts[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._contexts)

    def __len__(self) -> int:
        return len(self._contexts)

    async def shutdown(self) -> None:
        """Shuts down every component in reverse init order; raises LifecycleError after all ran."""
        await self._shutdown()

    async def __aenter__(self) -> BuiltContexts:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.shutdown()
