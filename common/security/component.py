"""The Security component of the infrastructure context: the key pair and the token verifier."""

from __future__ import annotations

import time

from common.config import Settings
from common.di import BaseComponent, og_component
from common.security.context import SERVICE, SecurityContext
from common.security.tokens import TokenSettings, TokenVerifier, issue, load_or_create_private_key


@og_component()
class Security(BaseComponent):
    """Loads the signing key (made on first start in embedded mode) and verifies tokens with its
    public half. Only the identity context uses the private key; every server uses the verifier."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self.token_settings = TokenSettings(settings.jwt_audience, settings.jwt_issuer, settings.token_ttl_seconds)

    async def initialize(self) -> None:
        self.private_key = load_or_create_private_key(self._settings.key_path())
        self.verifier = TokenVerifier(self.private_key.public_key(), self.token_settings)
        self._service_tokens: dict[str, tuple[str, int]] = {}

    def service_token(self, context: str) -> str:
        """A token of the service account of `context`, for calls a context makes on its own
        behalf (not a caller's). Renewed well before it expires."""
        token, expires = self._service_tokens.get(context, ("", 0))
        if expires - time.time() < self.token_settings.ttl_seconds / 2:
            identity = SecurityContext(f"svc_{context}", f"service-{context}", (SERVICE,))
            token, expires = issue(self.private_key, self.token_settings, identity)
            self._service_tokens[context] = (token, expires)
        return token
