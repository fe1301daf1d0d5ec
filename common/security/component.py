"""The Security component of the infrastructure context: the key pair, the token verifier and the
service identities of the contexts a process serves."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
import time

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from common.config import Settings
from common.di import BaseComponent, og_component
from common.security.keyring import KeyRing
from common.security.secrets import secret_file
from common.security.tokens import CLOCK_SKEW_SECONDS, KeySet, Revocations, TokenSettings, TokenVerifier, issue_service


@og_component()
class Security(BaseComponent):
    """Loads the signing key (made on first start in embedded mode) on first use, and verifies
    tokens with its public half. Only the identity context signs user tokens.

    The composition root makes it before the contexts are built and hands `service_token` to
    the channels, so that a context's calls carry its identity from the first one on.
    """

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self.token_settings = TokenSettings(
            settings.jwt_audience, settings.jwt_issuer, settings.token_ttl_seconds, settings.token_max_lifetime_seconds
        )
        self._ring: KeyRing | None = None
        self._verifier: TokenVerifier | None = None
        self.key_set: KeySet | None = None
        # Filled by identity where it runs, by a feed from identity everywhere else (mesh/trust.py).
        self.revocations = Revocations()
        self._service_tokens: dict[str, tuple[str, int]] = {}

    async def initialize(self) -> None:
        self.verifier  # noqa: B018 - a missing or broken key fails the start, not the first call

    @property
    def private_key(self) -> Ed25519PrivateKey:
        """The key that signs now: only a process that signs tokens (identity's, or the embedded
        bank) loads the keys."""
        return self._keys().signing()

    def _keys(self) -> KeyRing:
        if not self._settings.signs_tokens:
            raise PermissionError("this process verifies tokens only: the identity context signs them")
        if self._ring is None:
            lifetime = self.token_settings.lifetime_bound + CLOCK_SKEW_SECONDS
            self._ring = KeyRing(
                self._settings.key_path(), self._settings.rotated_keys_dir(), self._settings.key_publish_seconds, lifetime
            )
        return self._ring

    def public_keys(self) -> list[Ed25519PublicKey]:
        """What GetSigningKeys publishes: the signing key, the next, and the recently retired."""
        return self._keys().published()

    async def reload_keys(self) -> None:
        """Reads the keys again (a rotation; off the event loop, it lists a folder) and verifies
        with what is published now (keys also start signing and retire as time passes)."""
        ring = self._keys()
        await asyncio.to_thread(ring.reload)
        if self.key_set is not None:
            self.key_set.replace(ring.published())

    @property
    def verifier(self) -> TokenVerifier:
        if self._verifier is None:
            self.key_set = self._key_set()
            self._verifier = TokenVerifier(self.key_set, self.token_settings, self.revocations)
        return self._verifier

    def _key_set(self) -> KeySet:
        """The signer verifies with its own key; every other process with the published key set:
        the one written beside the data when the mesh started, then what GetSigningKeys says."""
        if self._settings.signs_tokens:
            return KeySet(self.public_keys())
        path = self._settings.public_keys_path()
        return KeySet(KeySet.parse(path.read_text()) if path.exists() else [])

    def derived_key(self, purpose: str) -> bytes:
        """A key for `purpose` (e.g. signing page tokens), the same in every process of the bank
        and useless for anything else: an HMAC of the purpose under the page-token secret (which
        grants no authority, unlike the signing key)."""
        secret = secret_file(self._settings.page_key_path(), lambda: secrets.token_bytes(32))
        return hmac.new(secret, purpose.encode(), hashlib.sha256).digest()

    def service_token(self, context: str) -> str:
        """The token of `context`'s service identity: it names the context and holds no role.
        Renewed well before it expires."""
        token, expires = self._service_tokens.get(context, ("", 0))
        if expires - time.time() < self.token_settings.ttl_seconds / 2:
            token, expires = issue_service(self.private_key, self.token_settings, context)
            self._service_tokens[context] = (token, expires)
        return token
