"""The Security component of the infrastructure context: the key pair, the token verifier and the
service identities of the contexts a process serves."""

from __future__ import annotations

import hashlib
import hmac
import time

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

from common.config import Settings
from common.di import BaseComponent, og_component
from common.security.tokens import TokenSettings, TokenVerifier, issue_service, load_or_create_private_key


@og_component()
class Security(BaseComponent):
    """Loads the signing key (made on first start in embedded mode) on first use, and verifies
    tokens with its public half. Only the identity context signs user tokens.

    The composition root makes it before the contexts are built and hands `service_token` to
    the channels, so that a context's calls carry its identity from the first one on.
    """

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self.token_settings = TokenSettings(settings.jwt_audience, settings.jwt_issuer, settings.token_ttl_seconds)
        self._private_key: Ed25519PrivateKey | None = None
        self._verifier: TokenVerifier | None = None
        self._service_tokens: dict[str, tuple[str, int]] = {}

    async def initialize(self) -> None:
        self.private_key  # noqa: B018 - a missing or broken key fails the start, not the first call

    @property
    def private_key(self) -> Ed25519PrivateKey:
        if self._private_key is None:
            self._private_key = load_or_create_private_key(self._settings.key_path())
        return self._private_key

    @property
    def verifier(self) -> TokenVerifier:
        if self._verifier is None:
            self._verifier = TokenVerifier(self.private_key.public_key(), self.token_settings)
        return self._verifier

    def derived_key(self, purpose: str) -> bytes:
        """A key for `purpose` (e.g. signing page tokens), the same in every process of the bank
        and useless for anything else: an HMAC of the purpose under the signing key."""
        secret = self.private_key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
        return hmac.new(secret, purpose.encode(), hashlib.sha256).digest()

    def service_token(self, context: str) -> str:
        """The token of `context`'s service identity: it names the context and holds no role.
        Renewed well before it expires."""
        token, expires = self._service_tokens.get(context, ("", 0))
        if expires - time.time() < self.token_settings.ttl_seconds / 2:
            token, expires = issue_service(self.private_key, self.token_settings, context)
            self._service_tokens[context] = (token, expires)
        return token
