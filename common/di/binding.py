"""What may be bound where: a class standing for a Protocol it was declared to provide, and the
port through which imports that cross a process boundary are bound (the DI core knows no gRPC)."""

from __future__ import annotations

import typing
from typing import Protocol

from common.di.context import ModuleContextImport


class RemoteImports(Protocol):
    """Satisfies imports that cross a process boundary (gRPC stubs) instead of sharing objects.

    The DI core knows nothing of gRPC; common.grpc provides the implementation.
    """

    def serves(self, exported: type, wanted: type) -> bool:
        """Whether an exported type (a servicer) answers imports of `wanted` (its stub)."""

    def methods_of(self, wanted: type) -> tuple[str, ...] | None:
        """The RPCs of the service `wanted` calls (a stub); None for types that are no stub."""

    def bind(self, imported: ModuleContextImport, importer: str, *, external: bool) -> object:
        """The object injected for an import of another context's service into `importer`: a
        stub offering only the imported methods, whose calls carry the importer's identity
        (none to an `external` context)."""

    async def close(self) -> None:
        """Releases what `bind` opened."""


def protocol_members(protocol: type) -> set[str]:
    """The public names a Protocol declares (methods and attributes), its Protocol bases' included."""
    declared: set[str] = set()
    for base in protocol.__mro__:
        if getattr(base, "_is_protocol", False) and base is not typing.Protocol:
            declared |= {name for name in (*vars(base), *getattr(base, "__annotations__", {})) if not name.startswith("_")}
    return declared


def can_stand_for(source: type, provides: type) -> bool:
    """Whether `source` may be bound to `provides`: a subclass, or, for a Protocol, a class that
    has every name the Protocol declares (mypy checks the signatures where the binding is used)."""
    if getattr(provides, "_is_protocol", False):
        return all(hasattr(source, name) or name in getattr(source, "__annotations__", {}) for name in protocol_members(provides))
    return issubclass(source, provides)
