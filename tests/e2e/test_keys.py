"""Key-cache scenarios in the real Worker: rotation, refresh floods, issuer outage, and hostile or
broken JWKS documents (ATTACKS #9, #41-#44).

Each scenario has its own provider and issuer (tests/e2e/policies/keys.toml, servers.py
``/issuers/<name>``), because the gateway caches keys per provider and rate-limits unknown-kid
refreshes per provider (30 s).
"""

from __future__ import annotations

import json
import secrets
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from jwstools import assert_refused, b64u, bearer, jws, last_reason, remark


def test_key_rotation_is_picked_up_without_restart(gateway, servers, origin):
    iss = servers.issuer_named("rotation")
    resp = gateway.request("GET", "/keys/rotation", bearer(iss.mint("rotation-es256")))
    assert resp.status == 200, resp
    assert iss.jwks_fetches == 1

    # The issuer publishes a new key and starts using it: the first token naming it triggers one
    # refresh, right away (no restart, no waiting for the cache to expire).
    iss.add_key("ES256", "rotation-es256-v2")
    remark(origin, servers)
    resp = gateway.request("GET", "/keys/rotation", bearer(iss.mint("rotation-es256-v2", sub="user:v2")))
    assert resp.status == 200, resp
    assert dict(origin.since()[0]["headers"])["x-verified-user"] == "user:v2"
    assert iss.jwks_fetches == 2
    # The old key keeps working (it is still published and cached).
    resp = gateway.request("GET", "/keys/rotation", bearer(iss.mint("rotation-es256")))
    assert resp.status == 200, resp

    # Another new kid within the 30 s refresh cooldown: refused, and no fetch (ATTACKS #9).
    iss.add_key("EdDSA", "rotation-eddsa-v2")
    remark(origin, servers)
    resp = gateway.request("GET", "/keys/rotation", bearer(iss.mint("rotation-eddsa-v2")))
    assert_refused(resp, 401, "invalid_token", origin)
    assert last_reason(gateway, resp.json()["request_id"]) == "unknown_key"
    assert iss.jwks_fetches == 2


def test_a09_flood_of_unknown_kids_fetches_the_jwks_at_most_once(gateway, servers, origin):
    iss = servers.issuer_named("flood")
    resp = gateway.request("GET", "/keys/flood", bearer(iss.mint("flood-es256")))
    assert resp.status == 200, resp
    before = iss.jwks_fetches
    assert before == 1
    remark(origin, servers)

    key = iss.keys["flood-es256"]
    tokens = []
    for _ in range(50):
        kid = secrets.token_urlsafe(8)
        iss.keys[kid] = key  # signed with the real key, but the kid is not published
        tokens.append(iss.mint(kid))

    def send(token):
        return gateway.request("GET", "/keys/flood", bearer(token))

    with ThreadPoolExecutor(max_workers=10) as pool:
        responses = list(pool.map(send, tokens))
    for resp in responses:
        assert_refused(resp, 401, "invalid_token", origin)
    assert iss.jwks_fetches - before <= 1, f"{iss.jwks_fetches - before} JWKS fetches for 50 unknown kids"
    assert last_reason(gateway, responses[-1].json()["request_id"]) == "unknown_key"
    # The known key still works afterwards.
    assert gateway.request("GET", "/keys/flood", bearer(iss.mint("flood-es256"))).status == 200


def test_issuer_outage_stale_keys_then_503_then_recovery(gateway, servers, origin):
    """jwks_cache_secs = 2, jwks_max_stale_secs = 4: fresh for 2 s, then stale keys serve while
    the issuer is down for at most 4 s more, then 503 with Retry-After; back when the issuer is."""
    iss = servers.issuer_named("outage")
    token = iss.mint("outage-es256")
    sent = time.time()
    assert gateway.request("GET", "/keys/outage", bearer(token)).status == 200
    started = time.time()  # the keys were fetched between `sent` and now
    assert started - sent < 1.0, "first request too slow for the timings below"
    assert iss.jwks_fetches == 1

    iss.outage = True
    try:
        time.sleep(max(0.0, started + 3.2 - time.time()))
        remark(origin, servers)
        resp = gateway.request("GET", "/keys/outage", bearer(token))
        assert resp.status == 200, f"stale keys must serve during the outage: {resp!r}"
        assert iss.jwks_fetches == 2, "the expired keys must be refetched (and the fetch failed)"

        time.sleep(max(0.0, started + 8.5 - time.time()))
        remark(origin, servers)
        resp = gateway.request("GET", "/keys/outage", bearer(token))
        assert_refused(resp, 503, "temporarily_unavailable", origin)
        assert last_reason(gateway, resp.json()["request_id"]) == "keys_unavailable"
    finally:
        iss.outage = False

    deadline = time.time() + 10
    while True:
        remark(origin, servers)
        resp = gateway.request("GET", "/keys/outage", bearer(token))
        if resp.status == 200:
            break
        assert_refused(resp, 503, "temporarily_unavailable", origin)
        assert time.time() < deadline, "the gateway did not recover after the issuer came back"
        time.sleep(0.5)


def test_cache_api_copy_never_extends_the_configured_freshness(gateway, servers, origin):
    """jwks_cache_secs = 45. A restarted Worker (a new isolate, same local Cache API) reuses the
    copy the first isolate shared, but only until the first isolate's freshness ends: keys are
    never fresh for longer than jwks_cache_secs after they were fetched from the issuer (before
    the fix, each isolate that read the copy restarted the full 45 s)."""
    iss = servers.issuer_named("shared")
    token = iss.mint("shared-es256")
    fetched_at = time.time()
    assert gateway.request("GET", "/keys/shared", bearer(token)).status == 200
    assert iss.jwks_fetches == 1
    gateway.restart()
    time.sleep(max(0.0, fetched_at + 8 - time.time()))
    assert time.time() - fetched_at < 12, "restart too slow for this scenario"
    assert gateway.request("GET", "/keys/shared", bearer(token)).status == 200
    assert iss.jwks_fetches == 1, "the new isolate should have used the shared copy"
    # Fresh until fetched_at + 45 (not fetched_at + 8 + 45).
    time.sleep(max(0.0, fetched_at + 48 - time.time()))
    remark(origin, servers)
    assert gateway.request("GET", "/keys/shared", bearer(token)).status == 200
    assert iss.jwks_fetches == 2, "keys from the shared copy outlived jwks_cache_secs"


def jwk_of(iss, kid: str, **extra) -> dict:
    return {**iss.keys[kid].as_dict(private=False), **extra}


@pytest.mark.parametrize(
    "name, extra",
    [("doc-use-enc", {"use": "enc"}), ("doc-key-ops", {"key_ops": ["encrypt"]}),
     ("doc-alg-mismatch", {"alg": "RS256"})],
)
def test_a41_keys_not_meant_for_signatures_are_not_used(gateway, servers, origin, name, extra):
    iss = servers.issuer_named(name)
    iss.body = json.dumps({"keys": [jwk_of(iss, f"{name}-es256", **extra)]}).encode()
    resp = gateway.request("GET", f"/keys/{name}", bearer(iss.mint(f"{name}-es256")))
    assert_refused(resp, 401, "invalid_token", origin)
    assert last_reason(gateway, resp.json()["request_id"]) == "unknown_key"


def test_a42_private_key_in_jwks_is_refused_and_alerted(gateway, servers, origin):
    iss = servers.issuer_named("doc-private")
    leaked = iss.keys["doc-private-es256"].as_dict(private=True)
    assert "d" in leaked
    iss.body = json.dumps({"keys": [leaked]}).encode()
    resp = gateway.request("GET", "/keys/doc-private", bearer(iss.mint("doc-private-es256")))
    assert_refused(resp, 401, "invalid_token", origin)
    deadline = time.time() + 3
    while '"attestgate":"jwks_private_key"' not in gateway.logs():
        assert time.time() < deadline, "no alert in the log for a JWKS that leaks a private key"
        time.sleep(0.05)
    alert = next(line for line in gateway.logs().splitlines() if '"jwks_private_key"' in line)
    assert '"doc-private"' in alert and leaked["d"] not in gateway.logs()


def test_a42_symmetric_key_in_jwks_is_never_an_hmac_key(gateway, servers, origin):
    iss = servers.issuer_named("doc-oct")
    secret = secrets.token_bytes(32)
    iss.body = json.dumps({"keys": [
        {"kty": "oct", "k": b64u(secret), "kid": "oct", "alg": "HS256"},
        jwk_of(iss, "doc-oct-es256"),
    ]}).encode()
    iss.keys["oct"] = secret
    now = int(time.time())
    claims = iss.claims(iat=now, exp=now + 300)
    token = jws({"alg": "HS256", "kid": "oct", "typ": "at+jwt"}, claims, secret)
    resp = gateway.request("GET", "/keys/doc-oct", bearer(token))
    assert_refused(resp, 401, "invalid_token", origin)
    # The usable key next to it still works.
    assert gateway.request("GET", "/keys/doc-oct", bearer(iss.mint("doc-oct-es256"))).status == 200


def deep(n: int) -> str:
    return "[" * n + "]" * n


@pytest.mark.parametrize(
    "name, body, chunked",
    [
        ("doc-huge", None, False),
        ("doc-huge-chunked", None, True),
        ("doc-deep", "deep", False),
        ("doc-too-many-keys", "many", False),
        ("doc-html", "html", False),
    ],
)
def test_a43_a44_unusable_documents_on_a_cold_cache_are_503(gateway, servers, origin, name, body, chunked):
    """No usable document and no keys cached: 503, never a request to the origin."""
    iss = servers.issuer_named(name)
    good = jwk_of(iss, f"{name}-es256")
    if body is None:  # > 256 KiB, with content-length, or chunked without one
        iss.body = json.dumps({"keys": [good], "padding": "x" * (300 * 1024)}).encode()
    elif body == "deep":
        iss.body = ('{"keys":[' + json.dumps(good) + '],"x":' + deep(5000) + "}").encode()
    elif body == "many":
        iss.body = json.dumps({"keys": [good] * 101}).encode()
    else:
        iss.body, iss.status = b"<html><body>502 Bad Gateway</body></html>", 502
    iss.chunked = chunked
    resp = gateway.request("GET", f"/keys/{name}", bearer(iss.mint(f"{name}-es256")))
    assert_refused(resp, 503, "temporarily_unavailable", origin)
    assert iss.jwks_fetches >= 1


def test_a44_empty_set_on_a_cold_cache_means_no_keys(gateway, servers, origin):
    iss = servers.issuer_named("doc-empty")
    iss.body = b'{"keys":[]}'
    resp = gateway.request("GET", "/keys/doc-empty", bearer(iss.mint("doc-empty-es256")))
    assert_refused(resp, 401, "invalid_token", origin)


def test_a44_unknown_key_types_are_skipped_and_the_rest_kept(gateway, servers, origin):
    iss = servers.issuer_named("doc-mixed")
    iss.body = json.dumps({"keys": [
        {"kty": "foo", "kid": "doc-mixed-es256"},
        {"kty": "EC", "crv": "P-521", "kid": "p521", "x": "AA", "y": "AA"},
        jwk_of(iss, "doc-mixed-es256"),
    ]}).encode()
    resp = gateway.request("GET", "/keys/doc-mixed", bearer(iss.mint("doc-mixed-es256")))
    assert resp.status == 200, resp


LAST_GOOD = {
    "lastgood-empty": (200, b'{"keys":[]}'),
    "lastgood-html": (502, b"<html><body>502 Bad Gateway</body></html>"),
    "lastgood-truncated": (200, b'{"keys":[{"kty":"EC","crv":"P-256","x":"'),
    "lastgood-not-keys": (200, b'{"keys":{"kty":"EC"}}'),
    "lastgood-huge": (200, b'{"keys":[],"padding":"' + b"x" * (300 * 1024) + b'"}'),
}


@pytest.mark.parametrize("name", list(LAST_GOOD))
def test_a44_a_bad_document_never_replaces_the_last_good_set(gateway, servers, origin, name):
    iss = servers.issuer_named(name)
    token = iss.mint(f"{name}-es256")
    assert gateway.request("GET", f"/keys/{name}", bearer(token)).status == 200
    assert iss.jwks_fetches == 1
    iss.status, iss.body = LAST_GOOD[name]
    time.sleep(1.3)  # jwks_cache_secs = 1: the keys are no longer fresh
    remark(origin, servers)
    resp = gateway.request("GET", f"/keys/{name}", bearer(token))
    assert resp.status == 200, resp
    assert iss.jwks_fetches == 2, "the gateway must have tried (and refused) the new document"
