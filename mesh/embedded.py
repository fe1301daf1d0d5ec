"""One process of the bank: some contexts behind one gRPC server, the others reached remotely.

Embedded mode is the process that serves every context (SQLite under data_dir, in-memory bus);
a distributed mesh (mesh/distributed.py) runs several, each serving its share of the contexts.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import resources

import grpc

from common.config import Settings
from common.di import BuiltContexts, ContextModuleBuilder, context_spec
from common.grpc.channels import ChannelPool
from common.grpc.http_gateway import Document, HttpGateway
from common.grpc.http_limits import HttpLimits
from common.grpc.identity import BearerAuthenticator, CertificateAuthenticator, allowed_importers, is_gateway
from common.grpc.inprocess import InProcessChannel, LocalHandlers
from common.grpc.server import GrpcServer
from common.grpc.tls import ServerCertificate, channel_credentials
from common.net import bare_host, host_port, is_wildcard
from common.observability.tracing import setup_tracing
from common.security.component import Security
from common.security.pki import CertificateAuthority
from mesh.infrastructure import InfrastructureModule
from mesh.mail_simulator import MailSimulator
from mesh.pki import MutualTls, mutual_tls
from mesh.readiness import Readiness, readiness_checks
from mesh.trust import TrustFeed
from ogpgy.identity.v1.identity_service_pb2 import GetSigningKeysRequest
from ogpgy.identity.v1.identity_service_pb2_grpc import IdentityServiceStub
from services.account.module import AccountModule
from services.customer.module import CustomerModule
from services.identity.module import IdentityModule
from services.interest.module import InterestModule
from services.lending.module import LendingModule
from services.notification.module import NotificationModule
from services.payment.module import PaymentModule
from services.velocitypay.module import VelocityPayModule

log = logging.getLogger("ogpgy.mesh")

# Business contexts in the order they were built; each later issue adds its module here.
BUSINESS_MODULES: tuple[type, ...] = (
    IdentityModule,
    CustomerModule,
    AccountModule,
    PaymentModule,
    LendingModule,
    InterestModule,
    NotificationModule,
)
# The outside world: served beside the bank in embedded mode unless an address is configured.
EXTERNAL_MODULES: tuple[type, ...] = (VelocityPayModule,)
ALL_MODULES: tuple[type, ...] = (*BUSINESS_MODULES, *EXTERNAL_MODULES)
CONTEXT_NAMES: tuple[str, ...] = tuple(context_spec(m).name for m in ALL_MODULES)
EXTERNAL_CONTEXTS: tuple[str, ...] = tuple(context_spec(m).name for m in EXTERNAL_MODULES)


@dataclass
class RunningBank:
    """A started embedded bank: its server, its contexts, and where to reach it."""

    server: GrpcServer
    contexts: BuiltContexts
    target: str
    tls: ServerTls | MutualTls | None = None  # None: plaintext (loopback)
    trust: TrustFeed | None = None  # where identity is served elsewhere
    mail: MailSimulator | None = None  # the mail server served beside the bank, when none is configured
    readiness: Readiness | None = None
    http: HttpGateway | None = None  # the Connect and gRPC-Web port, when settings.http_port asks for one

    async def stop(self, grace: float = 5.0) -> None:
        """Stops taking calls (NOT_SERVING, drain), then shuts every component down."""
        if self.readiness is not None:
            await self.readiness.stop()
        if self.http is not None:
            await self.http.stop()
        await self.server.stop(grace)
        if self.trust is not None:
            await self.trust.stop()
        await self.contexts.shutdown()
        if self.mail is not None:
            await self.mail.stop()


def contract_descriptors() -> bytes:
    """The contracts' descriptors with their comments (scripts/gen_protos.py writes them beside the
    generated code, in the ogpgy package)."""
    return (resources.files("ogpgy") / "descriptors.binpb").read_bytes()


def _local_target(host: str, port: int) -> str:
    """How this process reaches its own server (a wildcard bind is reached on loopback)."""
    return host_port("127.0.0.1" if is_wildcard(host) else host, port)


async def start_embedded(
    settings: Settings,
    *,
    modules: Sequence[type] = BUSINESS_MODULES,
    customize: Callable[[ContextModuleBuilder], object] | None = None,
) -> RunningBank:
    """Every context in this process; the outside world beside it unless an address is configured.

    `customize` may add test overrides to the builder before the contexts are built.
    """
    local = [*modules, *(m for m in EXTERNAL_MODULES if context_spec(m).name not in settings.addresses)]
    mail = None
    if not settings.smtp_url and NotificationModule in local:
        mail = MailSimulator("127.0.0.1" if is_wildcard(settings.host) else settings.host)
        await mail.start()
        log.info("mail simulator serving SMTP on %s (no mail server configured)", mail.url)
        settings = settings.model_copy(update={"smtp_url": mail.url})
    try:
        bank = await start_process(settings, local, customize=customize)
    except BaseException:
        if mail is not None:
            await mail.stop()
        raise
    bank.mail = mail
    return bank


async def start_process(
    settings: Settings,
    modules: Sequence[type],
    *,
    customize: Callable[[ContextModuleBuilder], object] | None = None,
) -> RunningBank:
    """Serves `modules` in this process; every other context is reached at settings.addresses.

    Binds the server first so that every context's stub can target it, then builds, then serves.
    The contexts served here call each other in-process (colocated) unless
    settings.colocated_calls is off, in which case they call through this server's socket.
    """
    names = [context_spec(m).name for m in modules]
    if all(context_spec(m).external for m in modules):  # the outside world alone, on a port of its own
        settings = settings.model_copy(update={"control_plane_open": True})
    setup_tracing("ogpgy-" + "+".join(names) if len(names) < len(ALL_MODULES) else "ogpgy")
    server = GrpcServer(descriptors=contract_descriptors())
    tls = mutual_tls(settings.pki_path(), settings.process) if settings.mtls else server_tls(settings) if settings.tls else None
    port = server.bind(host_port(settings.host, settings.port), tls.server if tls else None)
    if settings.health_port is not None:
        server.bind_health(host_port(settings.host, settings.health_port))
    http = _http_gateway(settings, server, names, tls)  # bound now: a port taken is refused before anything starts
    target = _local_target(settings.host, port)
    addresses = dict(settings.addresses) | {name: target for name in names}
    colocated = names if settings.colocated_calls else []
    security = Security(settings)  # before the build: every context's calls carry its identity
    pool = ChannelPool(
        addresses,
        local=server.local_handlers,
        colocated=colocated,
        credentials=None if settings.mtls else security.service_token,  # with mutual TLS, certificates say who calls
        tls=tls.channels_of if tls else None,
    )
    builder = ContextModuleBuilder(pool)
    builder.supply(settings, context="infrastructure")
    builder.supply(security, context="infrastructure")
    if customize is not None:
        customize(builder)
    remote = [m for m in ALL_MODULES if m not in modules]
    contexts = await builder.build_contexts(InfrastructureModule, *modules, remote=remote)
    try:
        server.require_authentication(
            CertificateAuthenticator(security.verifier) if settings.mtls else BearerAuthenticator(security.verifier)
        )
        server.allow_importers(allowed_importers(context_spec(m) for m in {*ALL_MODULES, *modules}))
        server.add_contexts(contexts)
        await server.start()
        if http is not None:
            await http.start()
        trust = await _trust_feed(settings, pool, security, names)
    except BaseException:
        if http is not None:
            await http.stop()
        await contexts.shutdown()
        raise
    imported = {i.from_context for m in modules for i in context_spec(m).imports} & {context_spec(m).name for m in remote}
    checks = readiness_checks(
        contexts, pool, names, sorted(imported), learns_keys=trust is not None and not settings.signs_tokens
    )
    readiness = Readiness(server, checks)
    await readiness.check()  # ready as soon as it can be, and never before
    readiness.start()
    return RunningBank(server, contexts, target, tls, trust, readiness=readiness, http=http)


def _http_gateway(
    settings: Settings, server: GrpcServer, names: list[str], grpc_tls: MutualTls | ServerTls | None
) -> HttpGateway | None:
    """The HTTP port, when asked for: every method this process serves, the public key set at
    /.well-known/jwks.json where identity is served, TLS as the gRPC port has it (in a mesh with
    mutual TLS, a client certificate of the mesh's CA: the front door's)."""
    if settings.http_port is None:
        return None
    documents = {JWKS_PATH: _jwks(server.local_handlers)} if "identity" in names else {}
    tls = None
    if isinstance(grpc_tls, MutualTls):
        tls = grpc_tls.http_certificate().ssl_context(client_ca=grpc_tls.ca_certificate)
    elif settings.tls:
        tls = server_certificate(settings).ssl_context()
    limits = HttpLimits(
        max_body_bytes=settings.http_max_body_bytes,
        header_timeout=settings.http_header_timeout_seconds,
        body_timeout=settings.http_body_timeout_seconds,
        idle_timeout=settings.http_idle_timeout_seconds,
        max_connections=settings.http_max_connections,
        connections_per_address=settings.http_connections_per_address,
    )
    # A mesh process's Connect port admits the front door's certificate alone (a context calls
    # over gRPC; a person's shell goes through the door): so the address it passes on is believed.
    door = isinstance(grpc_tls, MutualTls)
    admit = is_gateway if door else None
    return HttpGateway(
        server.local_handlers, settings.host, settings.http_port, documents, tls, limits, forwarded=door, admit=admit
    )


JWKS_PATH = "/.well-known/jwks.json"


def _jwks(handlers: LocalHandlers) -> Document:
    """The signing keys' JWK set, as identity's GetSigningKeys answers it (public, no token)."""
    keys = IdentityServiceStub(InProcessChannel(handlers))

    async def document() -> bytes:
        jwks: str = (await keys.GetSigningKeys(GetSigningKeysRequest())).jwks_json
        return jwks.encode()

    return document


async def _trust_feed(settings: Settings, pool: ChannelPool, security: Security, names: list[str]) -> TrustFeed | None:
    """A process that does not serve identity learns revocations (and keys) from it."""
    if "identity" in names or "identity" not in settings.addresses or all(n in EXTERNAL_CONTEXTS for n in names):
        return None
    feed = TrustFeed(pool, security, names[0], settings.revocation_refresh_seconds, fetches_keys=not settings.signs_tokens)
    await feed.start()
    return feed


@dataclass(frozen=True)
class ServerTls:
    """A process's TLS: the credentials its server presents, those its channels trust."""

    server: grpc.ServerCredentials
    channels: grpc.ChannelCredentials
    certificate: ServerCertificate

    def channels_of(self, importer: str) -> grpc.ChannelCredentials:
        """Every context's channels trust the bank's CA and present no certificate (tokens say who calls)."""
        return self.channels


def server_tls(settings: Settings) -> ServerTls:
    """TLS with the bank's CA (made in settings.pki_path() on first use): a certificate for the
    host the server binds, renewed before it expires; clients present none (tokens say who they are)."""
    certificate = server_certificate(settings)
    return ServerTls(
        certificate.credentials(require_client_certificate=False),
        channel_credentials(certificate.authority.certificate_pem),
        certificate,
    )


def server_certificate(settings: Settings) -> ServerCertificate:
    """A certificate from the bank's CA for the host the server binds (each port gets its own, renewed on its own)."""
    authority = CertificateAuthority.open(settings.pki_path())
    hosts = [] if is_wildcard(settings.host) else [bare_host(settings.host)]
    return ServerCertificate(authority, None, hosts=[*hosts, socket.gethostname()])


def module_named(name: str) -> type:
    """The module of context `name`, for configuration that names contexts."""
    for module in ALL_MODULES:
        if context_spec(module).name == name:
            return module
    raise LookupError(f"no context '{name}' (contexts: {', '.join(CONTEXT_NAMES)})")
