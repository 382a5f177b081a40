"""Access-token verification and the cache of already-verified tokens."""

from __future__ import annotations

import time

import pytest

from gateway.auth.keys import TokenKeys
from gateway.auth.principal import ROLE_SCOPES, Principal, Role
from gateway.auth.tokens import VerifiedTokens, issue_access_token, verify_access_token
from profiles.outcomes import FhirError

ISSUER = "http://gateway.test"
GP = Principal("demo-gp", "A81001", Role.REFERRER, frozenset(ROLE_SCOPES[Role.REFERRER]))


def test_a_cached_token_is_still_refused_once_its_key_leaves_the_ring(tmp_path) -> None:
    keys, cache = TokenKeys(tmp_path), VerifiedTokens()
    token = issue_access_token(keys, GP, issuer=ISSUER, ttl=300)
    assert verify_access_token(keys, token, issuer=ISSUER, cache=cache) == GP
    keys.rotate()
    assert verify_access_token(keys, token, issuer=ISSUER, cache=cache) == GP  # previous key still verifies
    keys.rotate()
    with pytest.raises(FhirError) as refused:
        verify_access_token(keys, token, issuer=ISSUER, cache=cache)
    assert refused.value.status == 401


def test_the_cache_forgets_expired_tokens_and_keeps_issuers_apart(tmp_path) -> None:
    keys, cache = TokenKeys(tmp_path), VerifiedTokens(capacity=2)
    cache.put(ISSUER, "t1", GP, int(time.time()) - 1, keys.current.kid)
    kids = frozenset({str(keys.current.kid)})
    assert cache.get(ISSUER, "t1", kids) is None
    cache.put(ISSUER, "t2", GP, int(time.time()) + 60, keys.current.kid)
    assert cache.get(ISSUER, "t2", kids) == GP
    assert cache.get("http://elsewhere", "t2", kids) is None
    cache.put(ISSUER, "t3", GP, int(time.time()) + 60, keys.current.kid)
    cache.put(ISSUER, "t4", GP, int(time.time()) + 60, keys.current.kid)
    assert cache.get(ISSUER, "t2", kids) is None  # the oldest went when the capacity was passed


def test_a_token_for_another_issuer_is_refused_even_after_it_was_cached_for_its_own(tmp_path) -> None:
    keys, cache = TokenKeys(tmp_path), VerifiedTokens()
    token = issue_access_token(keys, GP, issuer=ISSUER, ttl=300)
    verify_access_token(keys, token, issuer=ISSUER, cache=cache)
    with pytest.raises(FhirError):
        verify_access_token(keys, token, issuer="http://elsewhere", cache=cache)
