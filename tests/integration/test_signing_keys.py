"""Only the identity context's process holds the signing key: any other process verifies tokens
with the published key set, and cannot sign one."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from common.config import Settings
from common.grpc.client import bearer_channel
from common.security.component import Security
from common.security.context import ADMIN, SecurityContext
from common.security.tokens import issue, jwks
from mesh.embedded import start_process
from ogpgy.account.v1 import account_service_pb2 as apb
from ogpgy.account.v1 import account_service_pb2_grpc as agrpc
from services.account.module import AccountModule


async def test_a_process_without_identity_verifies_with_the_key_set_and_holds_no_signing_key(tmp_path: Path) -> None:
    key = Ed25519PrivateKey.generate()  # identity's, elsewhere: never written to this process's data directory
    settings = Settings(data_dir=tmp_path, port=0, signs_tokens=False, addresses={"customer": "127.0.0.1:1"})
    settings.public_keys_path().write_text(jwks([key.public_key()]))
    process = await start_process(settings, [AccountModule])
    try:
        token, _ = issue(
            key, process.contexts["infrastructure"].resolve(Security).token_settings, SecurityContext("usr_1", "ada", (ADMIN,))
        )
        async with bearer_channel(process.target, token) as channel:
            request = apb.GetInternalAccountRequest(internal_account=apb.INTERNAL_ACCOUNT_CASH, currency_code="EUR")
            answer = await agrpc.AccountServiceStub(channel).GetInternalAccount(request, timeout=5)
        assert answer.account_id
        with pytest.raises(PermissionError):
            process.contexts["infrastructure"].resolve(Security).private_key  # noqa: B018 - refuses to load
        assert not settings.key_path().exists()
    finally:
        await process.stop(1)
