"""What a generated servicer or stub class says about its proto service.

Generated code is never edited; this reads the conventions grpcio-tools follows:
`<Name>Servicer` and `<Name>Stub` in `<file>_pb2_grpc`, `add_<Name>Servicer_to_server` beside
them, and the service descriptor in the sibling `<file>_pb2` module.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from google.protobuf.descriptor import ServiceDescriptor


@dataclass(frozen=True)
class ServiceBinding:
    """One proto service as seen from Python."""

    descriptor: ServiceDescriptor
    servicer_base: type
    stub: type
    add_to_server: Callable[[Any, Any], None]

    @property
    def full_name(self) -> str:
        return self.descriptor.full_name


def _grpc_module(cls: type) -> ModuleType | None:
    module = sys.modules.get(cls.__module__)
    return module if module and cls.__module__.endswith("_pb2_grpc") else None


def _binding(module: ModuleType, service: str) -> ServiceBinding | None:
    servicer_base = getattr(module, f"{service}Servicer", None)
    stub = getattr(module, f"{service}Stub", None)
    add = getattr(module, f"add_{service}Servicer_to_server", None)
    if servicer_base is None or stub is None or add is None:
        return None
    messages = importlib.import_module(module.__name__.removesuffix("_grpc"))
    descriptor = messages.DESCRIPTOR.services_by_name.get(service)
    return ServiceBinding(descriptor, servicer_base, stub, add) if descriptor else None


def services_of_servicer(servicer_cls: type) -> list[ServiceBinding]:
    """Proto services a servicer class implements (through its generated base classes)."""
    found = []
    for base in servicer_cls.__mro__:
        module = _grpc_module(base)
        if module is not None and base.__name__.endswith("Servicer"):
            binding = _binding(module, base.__name__.removesuffix("Servicer"))
            if binding is not None and binding.servicer_base is base:
                found.append(binding)
    return found


def service_of_stub(stub_cls: type) -> ServiceBinding | None:
    """The proto service a generated stub class calls, or None for other classes."""
    module = _grpc_module(stub_cls)
    if module is None or not stub_cls.__name__.endswith("Stub"):
        return None
    binding = _binding(module, stub_cls.__name__.removesuffix("Stub"))
    return binding if binding is not None and binding.stub is stub_cls else None
