"""Signed access tokens: EdDSA (Ed25519) JWTs with expiry, audience and issuer.

Verification pins the algorithm (so `alg: none` and key-confusion tricks fail) and requires every
claim it relies on. Verified tokens are remembered until they expire, so the signature is checked
once per token, not once per call.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from cachetools import TTLCache
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from common.errors import Unauthenticated
from common.security.context import USER_ROLES, SecurityContext, service_identity
from common.security.secrets import secret_file

ALGORITHM = "EdDSA"
REQUIRED_CLAIMS = ["exp", "iat", "sub", "aud", "iss"]


CLOCK_SKEW_SECONDS = 60  # a token issued this far in the future is still believed


@dataclass(frozen=True)
class TokenSettings:
    audience: str
    issuer: str
    ttl_seconds: int = 3600
    max_lifetime_seconds: int = 0  # exp - iat above this is refused; 0: ttl_seconds

    @property
    def lifetime_bound(self) -> int:
        return self.max_lifetime_seconds or self.ttl_seconds


def load_or_create_private_key(path: Path) -> Ed25519PrivateKey:
    """The signing key at `path`, generated (mode 0600) when absent: embedded mode's first start."""
    key = serialization.load_pem_private_key(secret_file(path, new_private_pem), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError(f"{path} is not an Ed25519 private key")
    return key


def new_private_pem() -> bytes:
    key = Ed25519PrivateKey.generate()
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


def public_pem(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def _jwk(key: Ed25519PublicKey) -> dict[str, str]:
    return dict(json.loads(jwt.algorithms.OKPAlgorithm.to_jwk(key)))


def key_id(key: Ed25519PublicKey) -> str:
    """The key's RFC 7638 thumbprint: the same for the same key in every process, nothing to keep."""
    jwk = _jwk(key)
    canonical = json.dumps({"crv": jwk["crv"], "kty": jwk["kty"], "x": jwk["x"]}, separators=(",", ":"), sort_keys=True)
    return base64.urlsafe_b64encode(hashlib.sha256(canonical.encode()).digest()).rstrip(b"=").decode()


def jwks(keys: Iterable[Ed25519PublicKey]) -> str:
    """The public keys as a JWK set, each with its kid (what GetSigningKeys returns)."""
    return json.dumps({"keys": [{**_jwk(k), "kid": key_id(k), "use": "sig", "alg": ALGORITHM} for k in keys]})


class KeySet:
    """The public keys a token may be signed with, by kid: the signing key, the next one, and
    retired ones while tokens they signed may still be alive. Replaced whole when the published
    set changes (a rotation), without a restart."""

    def __init__(self, keys: Iterable[Ed25519PublicKey]) -> None:
        self.replace(keys)

    def replace(self, keys: Iterable[Ed25519PublicKey]) -> None:
        self._keys = {key_id(k): k for k in keys}

    def get(self, kid: str) -> Ed25519PublicKey | None:
        return self._keys.get(kid)

    def __len__(self) -> int:
        return len(self._keys)

    @staticmethod
    def parse(text: str) -> list[Ed25519PublicKey]:
        """The Ed25519 keys of a JWK set (others are ignored)."""
        keys = []
        for jwk in json.loads(text).get("keys", []):
            key = jwt.algorithms.OKPAlgorithm.from_jwk(json.dumps(jwk))
            if isinstance(key, Ed25519PublicKey):
                keys.append(key)
        return keys


def _sign(key: Ed25519PrivateKey, settings: TokenSettings, claims: dict[str, object], audience: str = "") -> tuple[str, int]:
    now = int(time.time())
    expires = now + settings.ttl_seconds
    claims |= {
        "aud": audience or settings.audience,
        "iss": settings.issuer,
        "iat": now,
        "exp": expires,
        "jti": hashlib.sha256(os.urandom(16)).hexdigest()[:16],
    }
    return jwt.encode(claims, key, algorithm=ALGORITHM, headers={"kid": key_id(key.public_key())}), expires


def issue(
    key: Ed25519PrivateKey, settings: TokenSettings, caller: SecurityContext, audience: str = "", generation: int = 0
) -> tuple[str, int]:
    """A signed token for the user `caller`, of the user's current token `generation`; returns it
    with its expiry (epoch seconds)."""
    claims: dict[str, object] = {
        "sub": caller.user_id,
        "name": caller.username,
        "roles": list(caller.roles),
        "cid": caller.customer_id,
        "gen": generation,
    }
    return _sign(key, settings, claims, audience)


def issue_service(key: Ed25519PrivateKey, settings: TokenSettings, context: str) -> tuple[str, int]:
    """A token of the service identity of `context` (claim `ctx`): it names the calling context
    and carries no role; what it may call is the context's import declaration."""
    return _sign(key, settings, {"sub": f"svc_{context}", "name": f"service-{context}", "roles": [], "ctx": context})


class Revocations:
    """The users some of whose tokens are refused, as the identity context last said: tokens of a
    generation below the user's minimum, or every token of a disabled user. Replaced whole at
    each refresh; a lookup is one dict access, made on every call."""

    def __init__(self) -> None:
        self._users: dict[str, tuple[int, bool]] = {}

    def replace(self, revocations: Iterable[tuple[str, int, bool]]) -> None:
        self._users = {user_id: (generation, disabled) for user_id, generation, disabled in revocations}

    def refuses(self, user_id: str, generation: int) -> bool:
        found = self._users.get(user_id)
        return found is not None and (found[1] or generation < found[0])


class TokenVerifier:
    """Checks bearer tokens against the bank's public keys (the one their kid names), and against
    the revocations identity publishes."""

    def __init__(self, keys: KeySet | Ed25519PublicKey, settings: TokenSettings, revocations: Revocations | None = None) -> None:
        self._keys = keys if isinstance(keys, KeySet) else KeySet([keys])
        self._settings = settings
        self.revocations = revocations or Revocations()
        self._verified: TTLCache[str, tuple[float, SecurityContext, int]] = TTLCache(maxsize=50_000, ttl=300)

    def verify(self, token: str) -> SecurityContext:
        remembered = self._verified.get(token)
        if remembered is None or remembered[0] <= time.time():
            remembered = self._verify_signed(token)
            self._verified[token] = remembered
        _, caller, generation = remembered
        if caller.user_id and self.revocations.refuses(caller.user_id, generation):
            raise Unauthenticated(
                "TOKEN_REVOKED",
                "the access token was revoked (the user was disabled, or their roles, password or tokens changed); "
                "request a new one",
            )
        return caller

    def _verify_signed(self, token: str) -> tuple[float, SecurityContext, int]:
        try:
            claims = jwt.decode(
                token,
                self._signing_key(token),
                algorithms=[ALGORITHM],
                audience=self._settings.audience,
                issuer=self._settings.issuer,
                options={"require": REQUIRED_CLAIMS},
            )
        except jwt.ExpiredSignatureError as exc:
            raise Unauthenticated("TOKEN_EXPIRED", "the access token has expired; request a new one") from exc
        except jwt.InvalidTokenError as exc:
            raise Unauthenticated("TOKEN_INVALID", "the access token is not valid for this bank") from exc
        self._check_lifetime(claims)
        generation = claims.get("gen", 0)
        return float(claims["exp"]), _caller(claims, token), generation if isinstance(generation, int) else 0

    def _signing_key(self, token: str) -> Ed25519PublicKey:
        try:
            kid = jwt.get_unverified_header(token).get("kid")
        except jwt.InvalidTokenError as exc:
            raise Unauthenticated("TOKEN_INVALID", "the access token is not valid for this bank") from exc
        key = self._keys.get(kid) if isinstance(kid, str) else None
        if key is None:
            raise Unauthenticated("TOKEN_INVALID", "the access token was not signed by a key of this bank")
        return key

    def _check_lifetime(self, claims: dict[str, Any]) -> None:
        """However it was signed, a token lives no longer than the bank issues them for."""
        issued_at, expires = int(claims["iat"]), int(claims["exp"])
        if issued_at > time.time() + CLOCK_SKEW_SECONDS or expires - issued_at > self._settings.lifetime_bound:
            raise Unauthenticated(
                "TOKEN_INVALID", f"the access token may live at most {self._settings.lifetime_bound} s from when it was issued"
            )

    def verify_subject(self, token: str) -> SecurityContext:
        """The end user a context relays a call for: a user's token, never a service's."""
        subject = self.verify(token)
        if subject.service:
            raise Unauthenticated("SUBJECT_INVALID", "the subject of a relayed call must be a user's token")
        return subject


def _caller(claims: dict[str, object], token: str) -> SecurityContext:
    context = claims.get("ctx")
    if isinstance(context, str) and context:
        return service_identity(context)
    roles = claims.get("roles", [])
    return SecurityContext(
        user_id=str(claims["sub"]),
        username=str(claims.get("name", "")),
        roles=tuple(str(r) for r in roles if r in USER_ROLES) if isinstance(roles, list) else (),
        customer_id=str(claims.get("cid", "")),
        token=token,
    )
