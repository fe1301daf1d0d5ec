"""Tokens name the key that signed them (kid); a verifier knows the bank's keys by kid, learns a
rotated one, keeps the retired one during the overlap, and refuses a token that lives longer
than the bank issues them for, whoever signed it."""

from __future__ import annotations

import json
import time

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from common.errors import Unauthenticated
from common.security.context import ADMIN, SecurityContext
from common.security.tokens import KeySet, TokenSettings, TokenVerifier, issue, jwks, key_id

SETTINGS = TokenSettings("ogpgy-bank", "ogpgy-identity", ttl_seconds=900)
ADA = SecurityContext("usr_ada", "ada", (ADMIN,))


def test_a_token_names_its_key_and_the_key_set_publishes_it() -> None:
    key = Ed25519PrivateKey.generate()
    token, _ = issue(key, SETTINGS, ADA)
    assert jwt.get_unverified_header(token)["kid"] == key_id(key.public_key())
    [published] = json.loads(jwks([key.public_key()]))["keys"]
    assert published["kid"] == key_id(key.public_key()) and published["alg"] == "EdDSA"
    assert KeySet.parse(jwks([key.public_key()]))[0].public_bytes_raw() == key.public_key().public_bytes_raw()


def test_a_rotated_key_is_learnt_when_published_and_the_retired_one_stays_valid() -> None:
    old, new = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    keys = KeySet([old.public_key()])
    verifier = TokenVerifier(keys, SETTINGS)
    before, _ = issue(old, SETTINGS, ADA)
    assert verifier.verify(before).user_id == "usr_ada"
    keys.replace([old.public_key(), new.public_key()])  # identity rotated: both keys published during the overlap
    after, _ = issue(new, SETTINGS, ADA)
    assert verifier.verify(after).user_id == "usr_ada"
    assert verifier.verify(before).user_id == "usr_ada"


@pytest.mark.parametrize("why", ["a 30-year token", "issued in the future", "no kid", "a stranger's key"])
def test_tokens_the_bank_would_not_issue_are_refused_even_when_signed(why: str) -> None:
    key = Ed25519PrivateKey.generate()
    verifier = TokenVerifier(key.public_key(), SETTINGS)
    now = int(time.time())
    claims = {"sub": "usr_ada", "name": "ada", "roles": [ADMIN], "aud": SETTINGS.audience, "iss": SETTINGS.issuer}
    kid = {"kid": key_id(key.public_key())}
    token = {
        "a 30-year token": jwt.encode({**claims, "iat": now, "exp": now + 30 * 365 * 86400}, key, "EdDSA", headers=kid),
        "issued in the future": jwt.encode({**claims, "iat": now + 3600, "exp": now + 3900}, key, "EdDSA", headers=kid),
        "no kid": jwt.encode({**claims, "iat": now, "exp": now + 60}, key, "EdDSA"),
        "a stranger's key": issue(Ed25519PrivateKey.generate(), SETTINGS, ADA)[0],
    }[why]
    with pytest.raises(Unauthenticated) as refused:
        verifier.verify(token)
    assert refused.value.reason == "TOKEN_INVALID"
