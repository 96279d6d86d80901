"""Issue 12, state and fault items, against the real Worker in `wrangler dev`.

- 7: challenges are issued without any store write (a nonce is recorded only at its first use),
  refusals that carry a fresh nonce write nothing either, and the challenge endpoint is
  rate-limited per client address (429 `rate_limited` with `Retry-After`);
- 11: a JWKS copy planted in the Cache API (as another Worker on the zone could) is not used;
- 12: a slow origin is the gateway's 504 within `origin_timeout_secs` (5 s in the e2e gateway
  table); a trap answers every request in flight with the gateway's 503 at once.

`wrangler dev` sets `CF-Connecting-IP` only when the client did not, so each rate-limit scenario
uses its own documentation address and leaves 127.0.0.1's bucket to the other tests. The trap
scenarios reset the wasm instance, so they run last in this file.
"""

import json
import secrets
import sqlite3
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from joserfc import jwk

from nonce_support import (
    CHALLENGE_PATH,
    assert_fresh_attestation_nonce,
    assert_refused,
    attestation,
)
from servers import sign

FAULT = "/__attestgate/selftest/fault"
# servers.py waits this long before the headers; the gateway gives up after 5 s.
ORIGIN_TIMEOUT = 5


def store_rows(gateway) -> dict:
    """Rows per table over every nonce-store shard, read (read-only) from the local DO storage."""
    counts: dict = {}
    for path in (gateway.persist / "v3" / "do").glob("*NonceStore*/*.sqlite"):
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
        try:
            tables = [r[0] for r in db.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
                " AND name NOT LIKE '_cf_%'")]
            for table in tables:
                n = db.execute(f'SELECT COUNT(*) FROM "{table}"').fetchone()[0]
                counts[table] = counts.get(table, 0) + n
        finally:
            db.close()
    return counts


def wait_for_log(gateway, text: str, timeout: float = 5.0) -> bool:
    """wrangler writes the Worker's log lines with a little delay."""
    deadline = time.time() + timeout
    while text not in gateway.logs():
        if time.time() > deadline:
            return False
        time.sleep(0.2)
    return True


def challenge_from(gateway, address: str):
    return gateway.request("POST", CHALLENGE_PATH, {"cf-connecting-ip": address})


# ---- item 7: stateless issuance -------------------------------------------------------------

def test_200_challenges_and_nonce_refusals_write_nothing_to_the_store(gateway, servers, origin):
    before = store_rows(gateway)
    nonces = set()
    for _ in range(200):
        resp = challenge_from(gateway, "192.0.2.10")
        assert resp.status == 200, resp
        nonces.add(resp.json()["nonce"])
    assert len(nonces) == 200
    # Refusals that hand out a fresh nonce, before any single-use state is touched: a DPoP route
    # asked with a Bearer token (refused before the token is verified) and an attestation with a
    # forged nonce (refused after its signature verified, before anything is consumed).
    for _ in range(25):
        resp = gateway.request("GET", "/dpop/thing", {"authorization": "Bearer x.y.z"})
        assert_refused(resp, 401, "invalid_dpop_proof")
        assert resp.headers.get("dpop-nonce")
        resp = gateway.request("POST", "/nonce/attest",
                               {"attestation": attestation(servers, "A" * 56)})
        assert_refused(resp, 401, "use_attestation_challenge")
        assert_fresh_attestation_nonce(resp)
    assert origin.since() == []
    assert store_rows(gateway) == before, "issuing or refusing wrote to the nonce store"

    # A nonce is recorded at its first use, exactly once.
    nonce = next(iter(nonces))
    assert gateway.request("POST", "/nonce/attest",
                           {"attestation": attestation(servers, nonce)}).status == 200
    after = store_rows(gateway)
    assert after.get("used_nonces", 0) == before.get("used_nonces", 0) + 1, (before, after)
    resp = gateway.request("POST", "/nonce/attest", {"attestation": attestation(servers, nonce)})
    assert_refused(resp, 401, "use_attestation_challenge")
    assert store_rows(gateway) == after
    assert len(origin.since()) == 1


def test_challenge_endpoint_is_rate_limited_per_client_address(gateway, origin):
    """500 at once per address (per isolate), then 20 per second: far above what a client that
    takes one challenge per request needs."""
    address = "198.51.100.23"
    started = time.time()
    statuses, limited = [], []
    with ThreadPoolExecutor(max_workers=16) as pool:
        while not limited and len(statuses) < 3000:
            batch = list(pool.map(lambda _: challenge_from(gateway, address), range(100)))
            statuses += [r.status for r in batch]
            limited += [r for r in batch if r.status == 429]
    elapsed = time.time() - started
    allowed = statuses.count(200)
    assert set(statuses) == {200, 429}, set(statuses)
    assert allowed >= 500, allowed
    assert allowed <= 500 + 20 * elapsed + 2, (allowed, elapsed)
    for r in limited:
        body = assert_refused(r, 429, "rate_limited")
        assert body["error_description"] == "Too many requests; retry later."
        assert 1 <= int(r.headers["retry-after"]) <= 2, r.headers
        assert "dpop-nonce" not in r.headers and "www-authenticate" not in r.headers
    # Another address is not affected.
    assert challenge_from(gateway, "198.51.100.24").status == 200
    # After Retry-After, the address is served again.
    time.sleep(int(limited[-1].headers["retry-after"]) + 0.2)
    assert challenge_from(gateway, address).status == 200
    assert origin.since() == []


# ---- item 11: Cache API copies --------------------------------------------------------------

def test_a_planted_jwks_copy_is_not_used(gateway, servers, origin):
    """Another Worker on the zone puts a JWKS with its own key under the provider's jwks_uri (as
    a fresh copy, with a made-up MAC). The gateway must not use it: it fetches the issuer's own
    document, and a token signed with the planted key is refused."""
    iss = servers.issuer_named("hs-planted")
    uri = servers.jwks_uri_of("hs-planted")
    attacker = jwk.ECKey.generate_key("P-256", parameters={"kid": "hs-planted-es256"},
                                      private=True)
    planted = json.dumps({"keys": [attacker.as_dict(private=False)]})
    resp = gateway.request("POST", f"{FAULT}/plant-cache", body=json.dumps({
        "url": uri,
        "body": planted,
        "headers": {
            "content-type": "application/json",
            "cache-control": "max-age=3000",
            "x-attestgate-fresh-until": str(int(time.time()) + 3000),
            "x-attestgate-copy-mac": secrets.token_urlsafe(32),
        },
    }).encode())
    assert resp.status == 200 and resp.body == b"planted", resp
    assert iss.jwks_fetches == 0

    forged = sign({"alg": "ES256", "kid": "hs-planted-es256", "typ": "at+jwt"},
                  iss.claims(sub="user:mallory"), attacker)
    resp = gateway.request("GET", "/hs/planted", {"hs-token": forged})
    assert_refused(resp, 401, "invalid_token", origin)
    assert iss.jwks_fetches >= 1, "the gateway should have fetched the issuer's own JWKS"
    assert wait_for_log(gateway, "jwks_copy_refused")

    resp = gateway.request("GET", "/hs/planted", {"hs-token": iss.mint("hs-planted-es256")})
    assert resp.status == 200, resp
    assert resp.json()["verified"]["x-verified-user"] == "user:alice"


# ---- item 12: timeouts and traps ------------------------------------------------------------

def test_a_slow_origin_is_the_gateways_504_within_the_origin_timeout(gateway, origin):
    assert gateway.request("GET", "/hs/slow?origin_sleep_ms=500").status == 200
    started = time.time()
    resp = gateway.request("GET", f"/hs/slow?origin_sleep_ms={(ORIGIN_TIMEOUT + 10) * 1000}")
    elapsed = time.time() - started
    body = assert_refused(resp, 504, "gateway_timeout")
    assert body["error_description"] == "The origin did not answer in time."
    assert ORIGIN_TIMEOUT - 0.5 <= elapsed <= ORIGIN_TIMEOUT + 3, elapsed
    assert wait_for_log(gateway, f'"attestgate":"origin_timeout","request_id":"{body["request_id"]}"')
    # The gateway is fine afterwards.
    assert gateway.request("GET", "/hs/slow").status == 200


def start(gateway, method, path, headers=None):
    """Send a request in the background; returns (thread, result dict with status/body/at)."""
    result: dict = {}

    def run():
        try:
            resp = gateway.request(method, path, headers)
            result.update(status=resp.status, body=resp.body, headers=resp.headers)
        except Exception as e:  # noqa: BLE001 - reported by the test
            result.update(error=repr(e))
        result["at"] = time.time()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, result


def assert_reset_answer(result):
    """The gateway's 503 for a request its trapped instance could not finish."""
    assert result.get("status") == 503, result
    body = json.loads(result["body"])
    assert body == {
        "error": "temporarily_unavailable",
        "error_description": "The gateway is restarting; retry shortly.",
        "request_id": body["request_id"],
    }, body
    assert body["request_id"]
    assert result["headers"]["retry-after"] == "5"
    assert result["headers"]["cache-control"] == "no-store"


def test_a_trap_answers_every_request_in_flight(gateway):
    # Requests waiting (100 ms timer slices, like the key cache's wait for another fetch).
    waiting = [start(gateway, "GET", f"{FAULT}/wait?ms=15000") for _ in range(3)]
    time.sleep(1.0)
    assert all(not r for _, r in waiting), "the waits should still be pending"
    trapped_at = time.time()
    resp = gateway.request("POST", f"{FAULT}/trap")
    assert resp.status == 500, resp  # the trapping request itself: the runtime's own answer
    # The next request gets a fresh instance.
    assert gateway.request("GET", "/hs/slow").status == 200
    for thread, result in waiting:
        thread.join(timeout=5)
        assert result, "a request in flight was never answered after the trap"
        assert_reset_answer(result)
        assert result["at"] - trapped_at < 3, result["at"] - trapped_at
    assert wait_for_log(gateway, '"attestgate":"instance_reset"')
    assert wait_for_log(gateway, "Reinitializing Wasm application")


def test_a_request_waiting_on_a_subrequest_is_answered_when_the_instance_traps(gateway, servers,
                                                                               origin):
    """The JWKS answers after 10 s; the gateway waits at most 3 s for it. A trap meanwhile (and a
    new instance serving the next request) must not leave the waiting request unanswered: it
    gets the gateway's 503 when its fetch times out, not the runtime's "hung" 500."""
    iss = servers.issuer_named("hs-slow-keys")
    iss.delay = 10.0
    try:
        started = time.time()
        thread, result = start(gateway, "GET", "/hs/slow-keys",
                               {"hs-token": iss.mint("hs-slow-keys-es256")})
        time.sleep(1.0)
        assert gateway.request("POST", f"{FAULT}/trap").status == 500
        assert gateway.request("GET", "/hs/slow").status == 200
        thread.join(timeout=10)
        assert result, "the request waiting on the JWKS fetch was never answered"
        assert_reset_answer(result)
        assert result["at"] - started < 5, result["at"] - started
        assert origin.since() == [r for r in origin.since() if r["path"] == "/hs/slow"]
    finally:
        iss.delay = 0.0


def test_a_trap_inside_the_executor_answers_every_request_in_flight(gateway):
    waiting = [start(gateway, "GET", f"{FAULT}/wait?ms=15000") for _ in range(2)]
    time.sleep(1.0)
    trapped_at = time.time()
    # This one waits 50 ms, then traps in a promise reaction (outside the entry's try/catch).
    thread, trapping = start(gateway, "POST", f"{FAULT}/trap-later")
    thread.join(timeout=5)
    assert_reset_answer(trapping)
    for thread, result in waiting:
        thread.join(timeout=5)
        assert result, "a request in flight was never answered after the trap"
        assert_reset_answer(result)
        assert result["at"] - trapped_at < 3
    # The instance is re-initialised for the next request, which works.
    assert gateway.request("GET", "/hs/slow").status == 200
    resp = gateway.request("GET", f"{FAULT}/wait?ms=10")
    assert resp.status == 200 and resp.body == b"waited"
