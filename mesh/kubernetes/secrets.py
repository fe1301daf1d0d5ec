"""Which secret each process gets: one Secret per purpose, referenced only by the pods that use it.

A pod holding a secret it never reads is a pod whose compromise leaks it. So the token-signing key
and the first admin's password go to the process serving `identity` alone, the mail server's URL
to `notification`'s, the bank's key at the payment network to `payment`'s (and the simulator's in
dev), each process gets the DSN of its own database role; the page-token key and the Redis URL go
where a context declares the infrastructure export that reads them (PageTokens; EventBus, Caches).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from common.cache.registry import Caches
from common.di import context_spec
from common.events.bus import EventBus
from common.pagination import PageTokens
from mesh.config import ProcessSpec
from mesh.kubernetes.meta import CONFIG_DIR, SECRETS_DIR


@dataclass(frozen=True)
class SecretFile:
    """A Secret of one key, as the operator creates it: `secrets/<file>` beside the overlay's
    kustomization; `variable` is the environment variable it fills, or `path` the file it is
    mounted as (with `setting` naming that path to the process)."""

    name: str
    key: str
    variable: str = ""
    path: str = ""
    setting: str = ""


ADMIN = SecretFile("ogpgy-admin", "OGPGY_ADMIN_PASSWORD", variable="OGPGY_ADMIN_PASSWORD")
SIGNING_KEY = SecretFile(
    "ogpgy-signing-key",
    "identity-signing-key.pem",
    path=f"{CONFIG_DIR}/signing/identity-signing-key.pem",
    setting="OGPGY_SIGNING_KEY_PATH",
)
PAGE_KEY = SecretFile(
    "ogpgy-page-token-key", "page-token-key", path=f"{SECRETS_DIR}/page/page-token-key", setting="OGPGY_PAGE_KEY_FILE"
)
MEMBER_KEY = SecretFile(
    "ogpgy-network-member-key",
    "velocitypay-member-key",
    path=f"{SECRETS_DIR}/network/velocitypay-member-key",
    setting="OGPGY_NETWORK_MEMBER_KEY_PATH",
)
REDIS = SecretFile("ogpgy-redis", "OGPGY_REDIS_URL", variable="OGPGY_REDIS_URL")
SMTP = SecretFile("ogpgy-smtp", "OGPGY_SMTP_URL", variable="OGPGY_SMTP_URL")

# Read by a context's own code, not through an infrastructure export: named here, by context.
_BY_CONTEXT: dict[str, tuple[SecretFile, ...]] = {
    "identity": (ADMIN, SIGNING_KEY),  # bootstraps the admin; signs every token
    "notification": (SMTP,),  # services/notification/adapters.py
    "payment": (MEMBER_KEY,),  # services/payment/adapters.py VelocityPayGateway
    # The simulator checks the member's key; `ogpgy serve` asks every process for a Redis URL
    # (mesh/distributed.py serve_settings), so the simulator of dev gets dev's throw-away one.
    "velocitypay": (MEMBER_KEY, REDIS),
}
# Read by an infrastructure export a context declares it imports.
_BY_IMPORT: tuple[tuple[type, SecretFile], ...] = ((PageTokens, PAGE_KEY), (EventBus, REDIS), (Caches, REDIS))


def database_secret(process: str) -> SecretFile:
    """The DSN of the process's own PostgreSQL role (database.py)."""
    return SecretFile(f"ogpgy-db-{process}", "OGPGY_POSTGRES_DSN", variable="OGPGY_POSTGRES_DSN")


def secrets_of(spec: ProcessSpec, modules: Iterable[type]) -> list[SecretFile]:
    """Every Secret the pods of `spec` reference, each once, in a stable order."""
    served = [m for m in modules if context_spec(m).name in spec.contexts]
    wanted: list[SecretFile] = [database_secret(spec.name)]
    for context in spec.contexts:
        wanted += _BY_CONTEXT.get(context, ())
    for module in served:
        imported = {i.type for i in context_spec(module).imports}
        wanted += [secret for export, secret in _BY_IMPORT if export in imported]
    return list(dict.fromkeys(wanted))


def operator_files(processes: Iterable[ProcessSpec]) -> list[SecretFile]:
    """Every Secret of the bank's processes (the base), each once: what an overlay generates."""
    found: list[SecretFile] = [ADMIN, SIGNING_KEY, PAGE_KEY, MEMBER_KEY, REDIS, SMTP]
    found += [database_secret(p.name) for p in processes]
    return found
