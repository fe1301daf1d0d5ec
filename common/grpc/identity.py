"""How authority crosses the wire between contexts, and how a server reads it.

A call from one context to another carries three things:
- `authorization: Bearer <token of the calling context's service identity>`: who makes the hop;
- `x-ogpgy-subject: <the end user's token>`, when the call acts for a user: whose authority it is;
- `x-ogpgy-via: a,b`, the contexts the call came through before the calling one.
The callee authenticates both tokens, appends the calling context to the chain, checks the RPC
against what the calling context imported (the allow-list), and lets the use case judge the
subject's right to the resource. A context acting alone (a worker) sends no subject and so holds
no user's authority. A user calling directly sends only their own token.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from common.di import ContextSpec
from common.errors import PermissionDenied, Unauthenticated
from common.grpc.services import service_of_stub
from common.security.context import SecurityContext, caller_var, service_identity
from common.security.pki import identity_of
from common.security.tokens import TokenVerifier

AUTHORIZATION = "authorization"
SUBJECT_HEADER = "x-ogpgy-subject"
VIA_HEADER = "x-ogpgy-via"
_CONTEXT_NAME = re.compile(r"[a-z][a-z0-9_-]{0,39}")
MAX_VIA = 8
GATEWAY = "gateway"  # the kind of a front door's SPIFFE id (spiffe://ogpgy.bank/gateway/<name>)
Metadata = Sequence[tuple[str, str | bytes]]


def header(metadata: Metadata, name: str) -> str | None:
    """The text value of header `name`, if sent."""
    for key, value in metadata:
        if key == name and isinstance(value, str):
            return value
    return None


def _bearer(metadata: Metadata) -> str:
    value = header(metadata, AUTHORIZATION)
    if value is None:
        raise Unauthenticated("TOKEN_MISSING", "this call needs 'authorization: Bearer <token>' (see IssueToken)")
    scheme, _, token = value.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated("TOKEN_INVALID", "authorization must be 'Bearer <token>'")
    return token.strip()


def _via(value: str | None) -> tuple[str, ...]:
    if not value:
        return ()
    chain = tuple(value.split(","))
    if len(chain) >= MAX_VIA or not all(_CONTEXT_NAME.fullmatch(c) for c in chain):
        raise Unauthenticated("VIA_INVALID", f"{VIA_HEADER} must list at most {MAX_VIA - 1} context names")
    return chain


def _hop(verifier: TokenVerifier, context: SecurityContext, metadata: Metadata) -> SecurityContext:
    """A call made by `context`: on its own (no subject), or relaying the user it serves."""
    chain = (*_via(header(metadata, VIA_HEADER)), context.service)
    subject = header(metadata, SUBJECT_HEADER)
    if subject is None:
        return replace(context, via=chain)
    return replace(verifier.verify_subject(subject), service=context.service, via=chain)


def _user(caller: SecurityContext, metadata: Metadata) -> SecurityContext:
    if header(metadata, SUBJECT_HEADER) is not None or header(metadata, VIA_HEADER) is not None:
        raise PermissionDenied("RELAY_NOT_ALLOWED", "only a context may act on behalf of a user")
    return caller


class BearerAuthenticator:
    """The caller of a call: a user with their token, or a context with its service token and,
    when it relays, the user it acts for (one process, or a mesh without certificates)."""

    reads_peer = False

    def __init__(self, verifier: TokenVerifier) -> None:
        self._verifier = verifier

    def authenticate(self, metadata: Metadata, peer: str | None = None) -> SecurityContext:
        caller = self._verifier.verify(_bearer(metadata))
        return _hop(self._verifier, caller, metadata) if caller.service else _user(caller, metadata)


class CertificateAuthenticator:
    """The caller of a call in a mesh with mutual TLS: a context is who its verified certificate
    (or, colocated, its in-process channel) says it is, never who a token says; a user is their
    token. A token of a service identity is refused: no process can mint one that counts."""

    reads_peer = True

    def __init__(self, verifier: TokenVerifier) -> None:
        self._verifier = verifier

    def authenticate(self, metadata: Metadata, peer: str | None = None) -> SecurityContext:
        if peer is not None:
            return _hop(self._verifier, service_identity(peer), metadata)
        caller = self._verifier.verify(_bearer(metadata))
        if caller.service:
            raise Unauthenticated(
                "SERVICE_TOKEN_REFUSED", "contexts are identified by their certificates in this mesh, not by tokens"
            )
        return _user(caller, metadata)


def check_importer(caller: SecurityContext | None, method: str, importers: frozenset[str] | None) -> None:
    """A context may call only the RPCs it imported (its identity names it; users are judged by
    the use cases)."""
    if caller is not None and caller.service and importers is not None and caller.service not in importers:
        raise PermissionDenied(
            "RPC_NOT_IMPORTED",
            f"context '{caller.service}' does not import {method}",
            {"context": caller.service, "method": method},
        )


def is_gateway(peer: str | None) -> bool:
    """Whether a verified peer certificate names a front door."""
    return peer is not None and identity_of(peer, GATEWAY) is not None


def check_gateway(peer: str | None, method: str, importers: frozenset[str] | None) -> None:
    """A front door (its certificate names a gateway) passes users' calls on, to the public RPCs
    only: the mesh's own, which every context may call (importers None), are not its to reach.
    The users it carries are judged by their tokens, as anywhere."""
    if importers is None and is_gateway(peer):
        raise PermissionDenied("NOT_PUBLIC", f"{method} is the mesh's own: the front door does not reach it", {"method": method})


def identity_metadata(token: str | None, metadata: Metadata | None) -> tuple[tuple[str, str | bytes], ...]:
    """The headers of a call a context makes: its identity (its token; none where its
    certificate says who it is), and the subject and chain of the call it is serving (none when
    it acts alone)."""
    headers: list[tuple[str, str | bytes]] = [
        (k, v) for k, v in metadata or () if k not in (AUTHORIZATION, SUBJECT_HEADER, VIA_HEADER)
    ]
    if token is not None:
        headers.append((AUTHORIZATION, f"Bearer {token}"))
    caller = caller_var.get()
    if caller is not None:
        if caller.has_subject and caller.token:
            headers.append((SUBJECT_HEADER, caller.token))
        if caller.via:
            headers.append((VIA_HEADER, ",".join(caller.via)))
    return tuple(headers)


class _Identified:
    """One imported RPC of a stub: each call carries the importing context's identity."""

    def __init__(self, call: Callable[..., Any], token: Callable[[], str] | None) -> None:
        self._call = call
        self._token = token

    def __call__(self, request: Any, *, metadata: Metadata | None = None, **kwargs: Any) -> Any:
        token = self._token() if self._token is not None else None
        return self._call(request, metadata=identity_metadata(token, metadata), **kwargs)


def _not_imported(stub_type: type, importer: str, methods: Iterable[str]) -> type:
    """A subclass of the generated stub whose missing methods say how to import them."""

    def missing(self: Any, name: str) -> Any:
        raise AttributeError(
            f"context '{importer}' did not import {stub_type.__name__}.{name} (it imports: {', '.join(methods)}). "
            f"Fix: add '{name}' to methods=[...] of its ModuleContextImport."
        )

    return type(stub_type.__name__, (stub_type,), {"__getattr__": missing, "__module__": stub_type.__module__})


_RESTRICTED: dict[tuple[type, str, tuple[str, ...]], type] = {}


def bind_stub(
    stub_type: type,
    channel: Any,
    methods: Sequence[str],
    importer: str,
    token: Callable[[], str] | None,
    *,
    relay: bool = True,
) -> Any:
    """The stub a context imported: only `methods` (when named), each call carrying the
    importer's token (when given) and the user and chain it serves (`relay`; never to a
    context outside the bank)."""
    stub = stub_type(channel)
    if not methods:
        return stub
    key = (stub_type, importer, tuple(methods))
    cls = _RESTRICTED.get(key) or _RESTRICTED.setdefault(key, _not_imported(stub_type, importer, methods))
    bound: Any = object.__new__(cls)
    for name in methods:
        call = getattr(stub, name)
        setattr(bound, name, _Identified(call, token) if relay else call)
    return bound


def allowed_importers(specs: Iterable[ContextSpec]) -> Mapping[str, frozenset[str]]:
    """{"/pkg.Service/Method": contexts that import it}, from the contexts' import declarations:
    the wire allow-list is the same declaration the builder enforces."""
    allowed: dict[str, set[str]] = {}
    for spec in specs:
        for imported in spec.imports:
            binding = service_of_stub(imported.type)
            if binding is None:
                continue
            for method in imported.methods:
                allowed.setdefault(f"/{binding.full_name}/{method}", set()).add(spec.name)
    return {path: frozenset(contexts) for path, contexts in allowed.items()}
