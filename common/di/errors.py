"""Errors of the DI framework. Each names the context path and says how to fix it."""

from __future__ import annotations


class DIError(Exception):
    """Base of every error the builder raises while assembling contexts."""


class UnknownContextError(DIError):
    """An import names a context that is not part of the build."""


class NotExportedError(DIError):
    """An import asks a context for something it keeps private."""


class NotImportedError(DIError):
    """A component needs another context's export without declaring the import."""


class ImportDeclarationError(DIError):
    """An import of another context's service names no RPC, or one that service does not have."""


class MissingProviderError(DIError):
    """Nothing in the context, its imports or the whole build provides a needed type."""


class DuplicateProviderError(DIError):
    """A provider is listed twice, or two providers answer the same type."""


class CycleError(DIError):
    """Contexts import each other in a loop, or components need each other in a loop."""

    def __init__(self, kind: str, cycle: list[str], fix: str) -> None:
        self.cycle = cycle
        super().__init__(f"{kind} cycle: {' -> '.join(cycle)}. Fix: {fix}")


class LifecycleError(DIError):
    """Initialisation or shutdown of components failed; every failure is kept in `errors`."""

    def __init__(self, phase: str, errors: list[tuple[str, BaseException]]) -> None:
        self.errors = errors
        listing = "; ".join(f"{who}: {type(exc).__name__}: {exc}" for who, exc in errors)
        super().__init__(f"{phase} failed for {len(errors)} component(s): {listing}")
