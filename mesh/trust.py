"""What a process that does not serve identity learns from it: the token revocations every call's
token check applies and, where the process only verifies, the public signing keys. Asked again
every `revocation_refresh_seconds`: that is the bound within which a disabled user's token, or
one issued before their roles changed, is refused everywhere (while identity answers).

It is platform work, done under the identity of a context of this process; identity lets every
context ask it (IdentityApi.MESH_METHODS)."""

from __future__ import annotations

import logging
from typing import cast

from common.background import Background, every
from common.di import ModuleContextImport
from common.grpc.channels import ChannelPool
from common.security.component import Security
from common.security.tokens import KeySet
from ogpgy.identity.v1 import identity_service_pb2 as pb
from ogpgy.identity.v1.identity_service_pb2_grpc import IdentityServiceStub

log = logging.getLogger("ogpgy.trust")

FEED = ModuleContextImport(IdentityServiceStub, from_context="identity", methods=["GetTokenRevocations", "GetSigningKeys"])


class TrustFeed:
    """Refreshes `security`'s revocations (and key set, unless this process signs) from identity."""

    def __init__(self, pool: ChannelPool, security: Security, importer: str, period: float, fetches_keys: bool) -> None:
        # The bound stub offers the imported methods of IdentityServiceStub, carrying `importer`'s identity.
        self._stub = cast(IdentityServiceStub, pool.bind(FEED, importer))
        self._security = security
        self._timeout = max(period, 1.0)
        self._fetches_keys = fetches_keys
        self._rounds = Background("refreshing token revocations from identity", self.refresh, every(period), log)

    async def start(self) -> None:
        await self._rounds.round()
        self._rounds.start(rest_first=True)

    async def stop(self) -> None:
        await self._rounds.stop()

    async def refresh(self) -> None:
        answer = await self._stub.GetTokenRevocations(pb.GetTokenRevocationsRequest(), timeout=self._timeout)
        self._security.revocations.replace((r.user_id, r.min_generation, r.disabled) for r in answer.revocations)
        if not self._fetches_keys:  # this process signs: it reads the keys itself
            await self._security.reload_keys()
        elif self._security.key_set is not None:
            keys = await self._stub.GetSigningKeys(pb.GetSigningKeysRequest(), timeout=self._timeout)
            self._security.key_set.replace(KeySet.parse(keys.jwks_json))
