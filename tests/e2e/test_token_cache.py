"""The verified-token cache (issue 19) in the real Worker: an agent presenting the same access
token for every call of its session pays the signature check once, and nothing else is skipped.

Tokens are minted by joserfc (servers.Issuer.mint). What the cache must never do, checked here
against the recording origin: accept a token that differs in one signature byte from a cached
one, or keep serving a token after its key left the issuer's JWKS.
"""

from __future__ import annotations

import base64
import time

import pytest

from jwstools import assert_refused, bearer, last_reason, remark


def flip_signature_byte(token: str, index: int = 10) -> str:
    head, sig = token.rsplit(".", 1)
    raw = bytearray(base64.urlsafe_b64decode(sig + "=" * (-len(sig) % 4)))
    raw[index] ^= 0x01
    return f"{head}.{base64.urlsafe_b64encode(bytes(raw)).rstrip(b'=').decode()}"


@pytest.mark.parametrize("kid", ["k-es256", "k-eddsa"])
def test_a_cached_token_with_one_flipped_signature_byte_is_refused(gateway, servers, origin, kid):
    token = servers.issuer.mint(kid, scope="orders:read")
    for _ in range(3):
        resp = gateway.request("GET", "/v1/orders/1", bearer(token))
        assert resp.status == 200, resp
    assert len(origin.since()) == 3
    remark(origin, servers)
    resp = gateway.request("GET", "/v1/orders/1", bearer(flip_signature_byte(token)))
    assert_refused(resp, 401, "invalid_token", origin)
    assert last_reason(gateway, resp.json()["request_id"]) == "bad_signature"
    # The original still passes: the forgery did not displace or poison its entry.
    assert gateway.request("GET", "/v1/orders/1", bearer(token)).status == 200


def test_a_cached_token_gets_every_route_check(gateway, servers, origin):
    # Cached once on a route it may use, then presented where its scope is not enough.
    token = servers.issuer.mint("k-es256", scope="orders:read")
    assert gateway.request("GET", "/v1/orders/1", bearer(token)).status == 200
    remark(origin, servers)
    resp = gateway.request("POST", "/v1/orders", bearer(token))
    assert resp.status in (401, 403), resp
    assert origin.since() == []


def test_a_cached_token_is_refused_once_its_key_leaves_the_jwks(gateway, servers, origin):
    iss = servers.issuer_named("tc")
    token = iss.mint("tc-es256")
    for _ in range(3):
        assert gateway.request("GET", "/tc/resource", bearer(token)).status == 200
    remark(origin, servers)
    with iss.lock:
        iss.published.remove("tc-es256")
    try:
        time.sleep(1.6)  # jwks_cache_secs = 1: the next request refetches the JWKS
        resp = gateway.request("GET", "/tc/resource", bearer(token))
        assert_refused(resp, 401, "invalid_token", origin)
        assert last_reason(gateway, resp.json()["request_id"]) == "unknown_key"
    finally:
        iss.publish("tc-es256")


def cache_stats(gateway) -> dict:
    resp = gateway.request("GET", "/__attestgate/selftest/token-cache")
    assert resp.status == 200, resp
    return resp.json()


@pytest.mark.parametrize("kid", ["k-es256", "k-eddsa"])
def test_the_workers_own_path_hits_the_cache_for_a_session_token(gateway, servers, origin, kid):
    """The Worker's path, not only the native tests, hits: one signature check for five uses of
    one token, none saved for unique tokens. (Counters of the self-test build; wrangler dev runs
    one isolate.)"""
    token = servers.issuer.mint(kid, scope="orders:read")
    before = cache_stats(gateway)
    for _ in range(5):
        assert gateway.request("GET", "/v1/orders/1", bearer(token)).status == 200
    after = cache_stats(gateway)
    assert after["misses"] - before["misses"] == 1, (before, after)
    assert after["hits"] - before["hits"] == 4, (before, after)
    for _ in range(3):
        fresh = servers.issuer.mint(kid, scope="orders:read")
        assert gateway.request("GET", "/v1/orders/1", bearer(fresh)).status == 200
    last = cache_stats(gateway)
    assert last["misses"] - after["misses"] == 3 and last["hits"] == after["hits"], (after, last)
    assert len(origin.since()) == 8
