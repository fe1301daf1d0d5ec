"""OpusGenie-style dependency injection: contexts, components, imports and exports."""

from common.di.binding import RemoteImports
from common.di.builder import ContextModuleBuilder
from common.di.component import BaseComponent, og_component
from common.di.context import (
    BuiltContexts,
    Context,
    ContextInfo,
    ContextSpec,
    ModuleContextImport,
    Provide,
    context_spec,
    og_context,
    provide,
)
from common.di.errors import (
    CycleError,
    DIError,
    DuplicateProviderError,
    ImportDeclarationError,
    LifecycleError,
    MissingProviderError,
    NotExportedError,
    NotImportedError,
    UnknownContextError,
)

__all__ = [
    "BaseComponent",
    "BuiltContexts",
    "Context",
    "ContextInfo",
    "ContextModuleBuilder",
    "ContextSpec",
    "CycleError",
    "DIError",
    "DuplicateProviderError",
    "ImportDeclarationError",
    "LifecycleError",
    "MissingProviderError",
    "ModuleContextImport",
    "NotExportedError",
    "NotImportedError",
    "Provide",
    "RemoteImports",
    "UnknownContextError",
    "context_spec",
    "og_component",
    "og_context",
    "provide",
]
