"""ContextModuleBuilder: turns context declarations into built, initialised contexts.

The builder enforces the boundary at build time: a context sees another context's component only
if the other exports it and this one imports it. Everything is constructed eagerly, so that no
resolution happens while serving requests.
"""

from __future__ import annotations

import asyncio
import inspect
import typing
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from common.di.binding import RemoteImports, can_stand_for
from common.di.context import BuiltContexts, Context, ContextInfo, ContextSpec, ModuleContextImport, Provide, context_spec
from common.di.errors import (
    CycleError,
    DuplicateProviderError,
    ImportDeclarationError,
    LifecycleError,
    MissingProviderError,
    NotExportedError,
    NotImportedError,
    UnknownContextError,
)


def _name(t: object) -> str:
    return getattr(t, "__qualname__", repr(t))


@dataclass
class _Replacement:
    """A test double or a supplied value standing in for a type."""

    value: Any
    context: str | None

    @property
    def is_class(self) -> bool:
        return isinstance(self.value, type)


@dataclass
class _Build:
    """State of one build_contexts call."""

    specs: dict[str, ContextSpec]
    remote: dict[str, ContextSpec]
    contexts: dict[str, Context] = field(default_factory=dict)
    lifecycle: list[tuple[str, Any]] = field(default_factory=list)
    made: set[int] = field(default_factory=set)


class ContextModuleBuilder:
    """Builds contexts from @og_context modules.

    Test contexts: `override(T, double)` replaces the provider bound to T (in one context or in
    all) with a class or an instance; `supply(obj, context=...)` adds a ready-made value as the
    provider of its own type. State lives on the builder, so nothing leaks into the next build.
    """

    def __init__(self, remote_imports: RemoteImports | None = None, *, shutdown_timeout: float = 10.0) -> None:
        self._remote_imports = remote_imports
        self.shutdown_timeout = shutdown_timeout
        self._overrides: dict[type, list[_Replacement]] = {}
        self._supplied: dict[str, list[Any]] = {}
        self._built: _Build | None = None

    def override(self, wanted: type, replacement: Any, *, context: str | None = None) -> ContextModuleBuilder:
        """Replaces whatever provides `wanted` (in `context`, or everywhere) by `replacement`."""
        self._overrides.setdefault(wanted, []).append(_Replacement(replacement, context))
        return self

    def supply(self, value: Any, *, context: str) -> ContextModuleBuilder:
        """Adds a ready-made instance as a provider of its own type in `context`."""
        self._supplied.setdefault(context, []).append(value)
        return self

    async def build_contexts(self, *modules: type, remote: Iterable[type] = ()) -> BuiltContexts:
        """Builds and initialises the contexts of `modules`.

        `remote` modules are declarations of contexts served elsewhere: importing their exported
        services is allowed (through RemoteImports), and their names count as known contexts.
        """
        build = _Build(specs=self._declared(modules), remote=self._declared(remote))
        self._check_imports(build)
        for name in self._context_order(build):
            self._build_context(build, build.specs[name])
        self._built = build
        await self._initialize(build)
        return BuiltContexts(build.contexts, self.shutdown)

    # --- declarations -------------------------------------------------------------------------

    @staticmethod
    def _declared(modules: Iterable[type]) -> dict[str, ContextSpec]:
        specs: dict[str, ContextSpec] = {}
        for module in modules:
            spec = context_spec(module)
            if spec.name in specs:
                raise DuplicateProviderError(
                    f"context '{spec.name}' is declared twice ({_name(specs[spec.name].module)} and "
                    f"{_name(module)}). Fix: give each @og_context a unique name."
                )
            ContextModuleBuilder._check_providers(spec)
            specs[spec.name] = spec
        return specs

    @staticmethod
    def _check_providers(spec: ContextSpec) -> None:
        """Each type is answered by one provider, each provider can stand for what it is bound to."""
        bound: dict[type, Provide] = {}
        for provider in spec.providers:
            other = bound.get(provider.provides)
            if other is not None and other.source is provider.source:
                raise DuplicateProviderError(
                    f"context '{spec.name}' lists {_name(provider.source)} twice in providers. Fix: list each provider once."
                )
            if other is not None:
                raise DuplicateProviderError(
                    f"context '{spec.name}': {_name(provider.provides)} is provided by both {_name(other.source)} and "
                    f"{_name(provider.source)}. Fix: keep one of them in providers, or override the choice in a test context."
                )
            if not can_stand_for(provider.source, provider.provides):
                raise ImportDeclarationError(
                    f"context '{spec.name}' binds {_name(provider.source)} to {_name(provider.provides)}, which it is "
                    f"not. Fix: bind it to a type it derives from or implements (a Protocol), or bind another class."
                )
            bound[provider.provides] = provider

    def _check_imports(self, build: _Build) -> None:
        known = {**build.remote, **build.specs}
        for spec in build.specs.values():
            for imp in spec.imports:
                source = known.get(imp.from_context)
                if source is None:
                    raise UnknownContextError(
                        f"context '{spec.name}' imports {_name(imp.type)} from '{imp.from_context}', "
                        f"which is not a known context (known: {', '.join(sorted(known))}). "
                        f"Fix: correct the name, or build the '{imp.from_context}' module too."
                    )
                if imp.type in source.exports:
                    where = "runs in another process" if source.name in build.remote else "serves it over gRPC"
                    raise NotExportedError(
                        f"context '{spec.name}' imports {_name(imp.type)} from '{source.name}', which {where}: "
                        "only its exported gRPC services can cross, through their generated stubs. "
                        "Fix: import the service's generated stub."
                    )
                if not self._exports(source, imp.type):
                    raise NotExportedError(
                        f"context '{spec.name}' imports {_name(imp.type)} from '{source.name}', but "
                        f"'{source.name}' does not export it ({self._offers(source)}). Fix: import "
                        f"one of those, or add {_name(imp.type)} to the exports of '{source.name}' (a servicer) "
                        "or to its shares (a component lent by reference)."
                    )
                if source.name in build.remote and not self._is_remote_service(source, imp.type):
                    raise NotExportedError(
                        f"context '{spec.name}' imports {_name(imp.type)} from '{source.name}', which "
                        "runs in another process: only its exported gRPC services can cross. "
                        f"Fix: import the service's generated stub, or build '{source.name}' here."
                    )
                self._check_methods(spec, imp)

    def _check_methods(self, spec: ContextSpec, imp: ModuleContextImport) -> None:
        """A service import names the RPCs it calls, each one an RPC of that service."""
        offered = self._remote_imports.methods_of(imp.type) if self._remote_imports is not None else None
        if offered is None:
            if imp.methods:
                raise ImportDeclarationError(
                    f"context '{spec.name}' imports {_name(imp.type)} from '{imp.from_context}' with methods=, "
                    "but it is no gRPC service. Fix: remove methods= (it applies to service stubs only)."
                )
            return
        if not imp.methods:
            raise ImportDeclarationError(
                f"context '{spec.name}' imports {_name(imp.type)} from '{imp.from_context}' without naming the "
                f"RPCs it calls. Fix: add methods=[...] with some of: {', '.join(offered)}."
            )
        unknown = [m for m in imp.methods if m not in offered]
        if unknown:
            raise ImportDeclarationError(
                f"context '{spec.name}' imports {', '.join(unknown)} of {_name(imp.type)} from "
                f"'{imp.from_context}', which has no such RPC. Fix: use some of: {', '.join(offered)}."
            )

    @staticmethod
    def _offers(source: ContextSpec) -> str:
        exports = ", ".join(_name(e) for e in source.exports) or "nothing"
        shares = ", ".join(_name(e) for e in source.shares)
        return f"it exports: {exports}" + (f"; it shares: {shares}" if shares else "")

    def _exports(self, source: ContextSpec, wanted: type) -> bool:
        return wanted in source.shares or self._is_remote_service(source, wanted)

    def _is_remote_service(self, source: ContextSpec, wanted: type) -> bool:
        return any(self._is_remote_service_of(export, wanted) for export in source.exports)

    def _is_remote_service_of(self, export: type, wanted: type) -> bool:
        return self._remote_imports is not None and self._remote_imports.serves(export, wanted)

    @staticmethod
    def _context_order(build: _Build) -> list[str]:
        """Contexts in dependency order (imported before importer); CycleError on a loop."""
        order: list[str] = []
        state: dict[str, str] = {}

        def visit(name: str, path: list[str]) -> None:
            if state.get(name) == "done":
                return
            if state.get(name) == "visiting":
                cycle = [*path[path.index(name) :], name]
                raise CycleError(
                    "context import",
                    cycle,
                    "contexts may not import each other in a loop; let one side react to the "
                    "other's events or move the shared part into a third context.",
                )
            state[name] = "visiting"
            for imp in build.specs[name].imports:
                if imp.from_context in build.specs:
                    visit(imp.from_context, [*path, name])
            state[name] = "done"
            order.append(name)

        for name in build.specs:
            visit(name, [])
        return order

    # --- construction -------------------------------------------------------------------------

    def _build_context(self, build: _Build, spec: ContextSpec) -> None:
        context = Context(spec)
        build.contexts[spec.name] = context
        context._register(ContextInfo, spec.info)
        for value in self._supplied.get(spec.name, []):
            context._register(type(value), value)
        for provider in spec.providers:
            self._instance_for(build, context, provider.provides, [provider.provides])
        for shared in spec.shares:
            if context._lookup(shared) is None:
                raise MissingProviderError(
                    f"context '{spec.name}' shares {_name(shared)}, which nothing in it provides. "
                    f"Fix: add {_name(shared)} to its providers, or supply it (ContextModuleBuilder.supply)."
                )

    def _replacement(self, context: str, wanted: type) -> _Replacement | None:
        candidates = self._overrides.get(wanted, [])
        scoped = [r for r in candidates if r.context == context]
        chosen = scoped or [r for r in candidates if r.context is None]
        return chosen[-1] if chosen else None

    def _instance_for(self, build: _Build, context: Context, wanted: type, path: list[type]) -> Any:
        """The instance of `context` that answers `wanted`, constructing it on first need."""
        replacement = self._replacement(context.name, wanted)
        if replacement is not None and not replacement.is_class:
            context._register(wanted, replacement.value)
            return replacement.value
        existing = context._lookup(wanted)
        if existing is not None:
            return existing
        bound = context.spec.provider_of(wanted)
        source = replacement.value if replacement else (bound.source if bound else None)
        if source is not None:
            return self._construct(build, context, wanted, source, path)
        return self._imported(build, context.spec, wanted, path)

    def _construct(self, build: _Build, context: Context, wanted: type, provider: type, path: list[type]) -> Any:
        kwargs = {}
        for param, annotation in self._dependencies(provider):
            if annotation in path:
                cycle = [_name(p) for p in path[path.index(annotation) :]] + [_name(annotation)]
                raise CycleError(
                    f"context '{context.name}': component",
                    cycle,
                    "components may not need each other in a loop; extract the shared part into a third component.",
                )
            kwargs[param] = self._instance_for(build, context, annotation, [*path, annotation])
        instance = provider(**kwargs)
        context._register(wanted, instance)
        if id(instance) not in build.made:
            build.made.add(id(instance))
            build.lifecycle.append((f"{context.name}.{_name(provider)}", instance))
        return instance

    @staticmethod
    def _dependencies(provider: type) -> list[tuple[str, type]]:
        """(parameter, type) pairs of the constructor, from its type hints."""
        init = provider.__init__  # type: ignore[misc]  # the constructor is inspected, not called
        if init is object.__init__:
            return []
        try:
            hints = typing.get_type_hints(init)
        except NameError as exc:
            raise MissingProviderError(
                f"{_name(provider)}.__init__ has an annotation that cannot be resolved ({exc}). "
                "Fix: define the annotated class at module level and import it outside TYPE_CHECKING."
            ) from exc
        deps = []
        for param in list(inspect.signature(init).parameters.values())[1:]:
            if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
                continue
            annotation = hints.get(param.name)
            if isinstance(annotation, type) and param.default is param.empty:
                deps.append((param.name, annotation))
            elif param.default is param.empty:
                raise MissingProviderError(
                    f"{_name(provider)}.__init__ parameter '{param.name}' has no class annotation. "
                    "Fix: annotate it with the type to inject, or give it a default."
                )
        return deps

    def _imported(self, build: _Build, spec: ContextSpec, wanted: type, path: list[type]) -> Any:
        imp = spec.imported_from(wanted)
        if imp is None:
            self._raise_unresolved(build, spec, wanted, path)
        source = build.contexts.get(imp.from_context)
        instance: Any
        if source is not None and self._provided_locally(source.spec, wanted):
            instance = source.resolve(wanted)
        else:
            instance = self._bind_remote(build, spec, imp)
        build.contexts[spec.name]._register(wanted, instance)
        return instance

    def _bind_remote(self, build: _Build, spec: ContextSpec, imp: ModuleContextImport) -> Any:
        if self._remote_imports is None:
            raise MissingProviderError(
                f"context '{spec.name}' imports {_name(imp.type)} from '{imp.from_context}', which "
                "can only be reached over gRPC, but the builder has no RemoteImports. "
                "Fix: pass remote_imports= to ContextModuleBuilder."
            )
        source = build.specs.get(imp.from_context) or build.remote[imp.from_context]
        return self._remote_imports.bind(imp, spec.name, external=source.external)

    @staticmethod
    def _provided_locally(spec: ContextSpec, wanted: type) -> bool:
        return wanted in spec.shares

    def _raise_unresolved(self, build: _Build, spec: ContextSpec, wanted: type, path: list[type]) -> typing.NoReturn:
        exporters = [other.name for other in {**build.remote, **build.specs}.values() if self._exports(other, wanted)]
        if exporters:
            raise NotImportedError(
                f"context '{spec.name}': {self._path(path)} needs {_name(wanted)}, which "
                f"'{exporters[0]}' exports, but '{spec.name}' does not import it. Fix: add "
                f"ModuleContextImport({_name(wanted)}, from_context='{exporters[0]}') to the "
                f"imports of '{spec.name}'."
            )
        raise MissingProviderError(
            f"context '{spec.name}': no provider for {_name(wanted)} (needed by {self._path(path)}). "
            f"Fix: add an implementation of {_name(wanted)} to the providers of '{spec.name}', "
            "or import it from the context that exports it."
        )

    @staticmethod
    def _path(path: list[type]) -> str:
        return " -> ".join(_name(p) for p in path)

    # --- lifecycle ----------------------------------------------------------------------------

    async def _initialize(self, build: _Build) -> None:
        started: list[tuple[str, Any]] = []
        for who, instance in build.lifecycle:
            init = getattr(instance, "initialize", None)
            if init is None:
                continue
            try:
                await init()
            except Exception as exc:
                build.lifecycle = started
                errors = [(who, exc)] + await self._shutdown_all(build)
                raise LifecycleError("initialize", errors) from exc
            started.append((who, instance))
        build.lifecycle = started
        for who, instance in started:
            start = getattr(instance, "start", None)
            if start is None:
                continue
            try:
                await start()
            except Exception as exc:
                errors = [(who, exc)] + await self._shutdown_all(build)
                raise LifecycleError("start", errors) from exc

    async def shutdown(self) -> None:
        """Shuts down what the last build started, newest first, every one even if some fail."""
        build, self._built = self._built, None
        if build is None:
            return
        errors = await self._shutdown_all(build)
        if errors:
            raise LifecycleError("shutdown", errors)

    async def _shutdown_all(self, build: _Build) -> list[tuple[str, BaseException]]:
        errors: list[tuple[str, BaseException]] = []
        for who, instance in reversed(build.lifecycle):
            try:
                # A component that hangs must not keep the others from shutting down.
                await asyncio.wait_for(instance.shutdown(), self.shutdown_timeout)
            except Exception as exc:  # noqa: BLE001 - collected, then raised together
                errors.append((who, exc))
        build.lifecycle = []
        if self._remote_imports is not None:
            try:
                await self._remote_imports.close()
            except Exception as exc:  # noqa: BLE001
                errors.append(("remote imports", exc))
        return errors
