"""Signed access tokens: EdDSA (Ed25519) JWTs with expiry, audience and issuer.

Verification pins the algorithm (so `alg: none` and key-confusion tricks fail) and requires every
claim it relies on. Verified tokens are remembered until they expire, so the signature is checked
once per token, not once per call.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import jwt
from cachetools import TTLCache
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from common.errors import Unauthenticated
from common.security.context import USER_ROLES, SecurityContext, service_identity
from common.security.secrets import secret_file

ALGORITHM = "EdDSA"
REQUIRED_CLAIMS = ["exp", "iat", "sub", "aud", "iss"]


@dataclass(frozen=True)
class TokenSettings:
    audience: str
    issuer: str
    ttl_seconds: int = 3600


def load_or_create_private_key(path: Path) -> Ed25519PrivateKey:
    """The signing key at `path`, generated (mode 0600) when absent: embedded mode's first start."""
    key = serialization.load_pem_private_key(secret_file(path, _new_private_pem), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError(f"{path} is not an Ed25519 private key")
    return key


def _new_private_pem() -> bytes:
    key = Ed25519PrivateKey.generate()
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


def public_pem(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def jwks(key: Ed25519PublicKey) -> str:
    """The public key as a JWK set (what GetSigningKeys returns)."""
    jwk = json.loads(jwt.algorithms.OKPAlgorithm.to_jwk(key))
    return json.dumps({"keys": [{**jwk, "use": "sig", "alg": ALGORITHM}]})


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
    return jwt.encode(claims, key, algorithm=ALGORITHM), expires


def issue(key: Ed25519PrivateKey, settings: TokenSettings, caller: SecurityContext, audience: str = "") -> tuple[str, int]:
    """A signed token for the user `caller`; returns it with its expiry (epoch seconds)."""
    claims: dict[str, object] = {
        "sub": caller.user_id,
        "name": caller.username,
        "roles": list(caller.roles),
        "cid": caller.customer_id,
    }
    return _sign(key, settings, claims, audience)


def issue_service(key: Ed25519PrivateKey, settings: TokenSettings, context: str) -> tuple[str, int]:
    """A token of the service identity of `context` (claim `ctx`): it names the calling context
    and carries no role; what it may call is the context's import declaration."""
    return _sign(key, settings, {"sub": f"svc_{context}", "name": f"service-{context}", "roles": [], "ctx": context})


class TokenVerifier:
    """Checks bearer tokens against one public key."""

    def __init__(self, public_key: Ed25519PublicKey, settings: TokenSettings) -> None:
        self._key = public_key
        self._settings = settings
        self._verified: TTLCache[str, tuple[float, SecurityContext]] = TTLCache(maxsize=50_000, ttl=300)

    def verify(self, token: str) -> SecurityContext:
        remembered = self._verified.get(token)
        if remembered is not None and remembered[0] > time.time():
            return remembered[1]
        try:
            claims = jwt.decode(
                token,
                self._key,
                algorithms=[ALGORITHM],
                audience=self._settings.audience,
                issuer=self._settings.issuer,
                options={"require": REQUIRED_CLAIMS},
            )
        except jwt.ExpiredSignatureError as exc:
            raise Unauthenticated("TOKEN_EXPIRED", "the access token has expired; request a new one") from exc
        except jwt.InvalidTokenError as exc:
            raise Unauthenticated("TOKEN_INVALID", "the access token is not valid for this bank") from exc
        caller = _caller(claims, token)
        self._verified[token] = (float(claims["exp"]), caller)
        return caller

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
