"""Challenge nonces and replay protection on Durable Objects (issue 6), against `wrangler dev`.

The gateway table of the e2e policy sets a short `challenge_ttl_secs` and 4 nonce shards; the
routes and providers are in policies/nonces.toml. Tokens are minted with joserfc.
"""

import base64
import secrets
import sqlite3
import time

from nonce_support import (
    CHALLENGE_PATH,
    TTL,
    assert_fresh_attestation_nonce,
    assert_refused,
    attestation,
    burst,
    challenge,
    wait_until,
)

ATTEST = "/nonce/attest"
ONCE = "/nonce/once"


def store_id(nonce: str) -> str:
    """The store key of a nonce: base64url of its 16 random bytes (docs/nonces.md)."""
    raw = base64.urlsafe_b64decode(nonce + "=" * (-len(nonce) % 4))
    return base64.urlsafe_b64encode(raw[10:26]).rstrip(b"=").decode()


def stored_nonce_ids(gateway) -> set:
    """Every used nonce id in every nonce-store shard, read (read-only) from the local DO storage.
    Nonces are recorded at their first use, not when issued (docs/nonces.md)."""
    ids = set()
    for path in (gateway.persist / "v3" / "do").glob("*NonceStore*/*.sqlite"):
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
        try:
            ids.update(row[0] for row in db.execute("SELECT id FROM used_nonces"))
        except sqlite3.OperationalError:
            pass  # not a shard database (or not created yet)
        finally:
            db.close()
    return ids


def send_attestation(gateway, token):
    return gateway.request("POST", ATTEST, {"attestation": token})


# ---- the challenge endpoint -------------------------------------------------------------------

def test_challenge_endpoint_issues_fresh_unpredictable_nonces(gateway):
    nonces = {challenge(gateway) for _ in range(5)}
    assert len(nonces) == 5
    for n in nonces:
        assert len(n) == 56 and all(c.isalnum() or c in "-_" for c in n), n


def test_challenge_endpoint_is_post_only(gateway, origin):
    for method in ("GET", "PUT", "DELETE"):
        resp = gateway.request(method, CHALLENGE_PATH)
        assert_refused(resp, 405, "method_not_allowed", origin)
        assert resp.headers.get("allow") == "POST"
        assert "dpop-nonce" not in resp.headers


# ---- single use -----------------------------------------------------------------------------

def test_nonce_works_once_then_refused_with_a_fresh_nonce(gateway, servers, origin):
    nonce = challenge(gateway)
    resp = send_attestation(gateway, attestation(servers, nonce))
    assert resp.status == 200, resp
    assert resp.json()["verified"]["x-verified-app"] == "app:e2e"
    assert len(origin.since()) == 1

    # Same nonce, newly signed token: refused, and the refusal carries a fresh nonce.
    seen = len(origin.since())
    resp = send_attestation(gateway, attestation(servers, nonce))
    assert_refused(resp, 401, "use_attestation_challenge")
    assert resp.headers["www-authenticate"] == (
        'Bearer realm="e2e.attestgate.test", error="use_attestation_challenge", resource_metadata='
        f'"http://127.0.0.1:{gateway.port}/.well-known/oauth-protected-resource{ATTEST}"'
    )
    fresh = assert_fresh_attestation_nonce(resp)
    assert fresh != nonce
    assert len(origin.since()) == seen, "a refused request reached the origin"

    # The fresh nonce from the refusal is a real one: it works, once.
    assert send_attestation(gateway, attestation(servers, fresh)).status == 200
    assert_refused(send_attestation(gateway, attestation(servers, fresh)), 401,
                   "use_attestation_challenge")
    assert len(origin.since()) == seen + 1


def test_missing_or_forged_nonce_is_refused_and_never_reaches_origin(gateway, servers, origin):
    real = challenge(gateway)
    flipped = real[:30] + ("A" if real[30] != "A" else "B") + real[31:]
    for nonce in (None, "not-a-nonce", "A" * 56, flipped, 42):
        resp = send_attestation(gateway, attestation(servers, nonce))
        assert_refused(resp, 401, "use_attestation_challenge", origin)
        assert_fresh_attestation_nonce(resp)
    # None of those touched the real nonce.
    assert send_attestation(gateway, attestation(servers, real)).status == 200


def test_bad_signature_never_burns_the_nonce(gateway, servers, origin):
    nonce = challenge(gateway)
    token = attestation(servers, nonce)
    head, payload, sig = token.split(".")
    tampered = f"{head}.{payload}.{sig[:-4]}AAAA"
    assert_refused(send_attestation(gateway, tampered), 401, "invalid_token", origin)
    assert send_attestation(gateway, token).status == 200


def test_200_concurrent_requests_with_one_nonce_exactly_one_succeeds(gateway, servers, origin):
    nonce = challenge(gateway)
    # 200 different tokens (own jti each), all carrying the same nonce.
    requests = [("POST", ATTEST, {"attestation": attestation(servers, nonce)}) for _ in range(200)]
    started = time.time()
    responses = burst(gateway, requests)
    elapsed = time.time() - started
    assert elapsed < TTL, f"the burst took {elapsed:.1f}s, longer than the nonce lives"
    statuses = [r.status for r in responses]
    assert statuses.count(200) == 1, sorted(set(statuses))
    refused = [r for r in responses if r.status != 200]
    assert len(refused) == 199
    for r in refused:
        assert_refused(r, 401, "use_attestation_challenge")
    assert len(origin.since()) == 1


def test_200_concurrent_requests_with_one_jti_exactly_one_succeeds(gateway, servers, origin):
    token = servers.issuer.mint("k-eddsa", jti=secrets.token_urlsafe(16))
    responses = burst(gateway, [("GET", ONCE, {"once-token": token})] * 200)
    statuses = [r.status for r in responses]
    assert statuses.count(200) == 1, sorted(set(statuses))
    for r in responses:
        if r.status != 200:
            assert_refused(r, 401, "invalid_token")
    assert len(origin.since()) == 1


def test_replay_jti_provider_accepts_each_jti_once(gateway, servers, origin):
    token = servers.issuer.mint("k-es256")
    assert gateway.request("GET", ONCE, {"once-token": token}).status == 200
    resp = gateway.request("GET", ONCE, {"once-token": token})
    assert_refused(resp, 401, "invalid_token")
    assert resp.headers["www-authenticate"] == (
        'Bearer realm="e2e.attestgate.test", error="invalid_token", resource_metadata='
        f'"http://127.0.0.1:{gateway.port}/.well-known/oauth-protected-resource{ONCE}"'
    )
    # A new jti from the same issuer is independent.
    assert gateway.request("GET", ONCE, {"once-token": servers.issuer.mint("k-es256")}).status == 200
    assert len(origin.since()) == 2


# ---- expiry and restarts ----------------------------------------------------------------------

def test_used_nonces_are_recorded_until_they_expire_then_swept(gateway, servers, origin):
    issued = time.time()
    nonce = challenge(gateway)
    never_used = [challenge(gateway) for _ in range(10)]
    assert not {store_id(n) for n in never_used + [nonce]} & stored_nonce_ids(gateway), (
        "issuing a nonce must store nothing")
    used = [challenge(gateway) for _ in range(3)]
    for n in used:
        assert send_attestation(gateway, attestation(servers, n)).status == 200
    ids = {store_id(n) for n in used}
    assert ids <= stored_nonce_ids(gateway), "a used nonce is recorded in its shard"

    wait_until(issued + TTL + 2)
    seen = len(origin.since())
    resp = send_attestation(gateway, attestation(servers, nonce))
    assert_refused(resp, 401, "use_attestation_challenge")
    assert len(origin.since()) == seen, "a refused request reached the origin"
    # The refusal's fresh nonce is live.
    fresh = assert_fresh_attestation_nonce(resp)
    assert send_attestation(gateway, attestation(servers, fresh)).status == 200

    # Bounded storage: the alarm sweeps ended records (due the 10 s clock margin + 1 s + 5 s
    # slack after the nonce's expiry, src/gate/store.rs).
    deadline = issued + TTL + 40
    while ids & stored_nonce_ids(gateway) and time.time() < deadline:
        time.sleep(1)
    assert not ids & stored_nonce_ids(gateway), "expired nonce records were not swept"


def test_nonce_issued_before_restart_works_once_after_it_until_it_expires(gateway, servers, origin):
    issued = time.time()
    used_after_restart = challenge(gateway)
    left_to_expire = challenge(gateway)
    old_port = gateway.port
    gateway.restart()  # same --persist-to: Durable Object storage survives
    assert gateway.port != old_port
    restarted_in = time.time() - issued
    assert restarted_in < TTL - 1, f"restart took {restarted_in:.1f}s; TTL {TTL}s is too short"

    resp = send_attestation(gateway, attestation(servers, used_after_restart))
    assert resp.status == 200, resp
    resp = send_attestation(gateway, attestation(servers, used_after_restart))
    assert_refused(resp, 401, "use_attestation_challenge")

    wait_until(issued + TTL + 2)
    resp = send_attestation(gateway, attestation(servers, left_to_expire))
    assert_refused(resp, 401, "use_attestation_challenge")
    assert len(origin.since()) == 1
