"""Helpers for the nonce, DPoP and Approov scenarios (issue 6): challenges, refusals, bursts.

Everything that signs uses joserfc (servers.sign), never the gateway's own code.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import threading
import time
import tomllib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from joserfc import jwk

from servers import sign

HERE = Path(__file__).resolve().parent
GATEWAY = tomllib.loads((HERE / "policies" / "gateway.toml").read_text().replace("{{ORIGIN}}", "x"))[
    "gateway"
]
CHALLENGE_PATH = GATEWAY.get("challenge_path", "/.well-known/attestgate/challenge")
TTL = int(GATEWAY.get("challenge_ttl_secs", 120))
AUD = "https://api.example.com"


def challenge(gateway) -> str:
    """POST the challenge endpoint; check the contract; return the nonce."""
    resp = gateway.request("POST", CHALLENGE_PATH)
    assert resp.status == 200, resp
    body = resp.json()
    assert set(body) == {"nonce", "expires_in"}, body
    assert body["expires_in"] == TTL
    assert resp.headers["dpop-nonce"] == body["nonce"]
    assert resp.headers["cache-control"] == "no-store"
    return body["nonce"]


def assert_refused(resp, status, code, origin_view=None):
    """A refusal per SPEC §4; optionally also: the origin saw nothing."""
    assert resp.status == status, resp
    body = resp.json()
    assert body["error"] == code, body
    assert body["request_id"] and body["error_description"]
    assert resp.headers.get("cache-control") == "no-store"
    if origin_view is not None:
        assert origin_view.since() == [], "a refused request reached the origin"
    return body


def assert_fresh_attestation_nonce(resp) -> str:
    """`use_attestation_challenge` refusals carry a fresh nonce in both headers."""
    nonce = resp.headers.get("dpop-nonce")
    assert nonce, resp.headers
    assert resp.headers.get("oauth-client-attestation-challenge") == nonce
    return nonce


def attestation(servers, nonce, kid="k-es256", **claims) -> str:
    """A client attestation (typ JWT) from the local issuer, carrying `nonce`."""
    if nonce is not None:
        claims["nonce"] = nonce
    claims.setdefault("sub", "app:e2e")
    return servers.issuer.mint(kid, typ="JWT", **claims)


def wait_until(deadline: float):
    remaining = deadline - time.time()
    if remaining > 0:
        time.sleep(remaining)


def burst(gateway, requests, workers=200):
    """Send all `requests` ((method, path, headers) tuples) at once; return the responses.

    Each request has its own connection; a barrier releases them together so that they really
    are concurrent at the gateway.
    """
    barrier = threading.Barrier(len(requests))

    def one(req):
        method, path, headers = req
        barrier.wait(timeout=60)
        return gateway.request(method, path, headers)

    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(one, requests))


# ---- DPoP ---------------------------------------------------------------------------------------

def proof_key(alg: str):
    if alg == "ES256":
        return jwk.ECKey.generate_key("P-256", private=True)
    if alg == "EdDSA":
        return jwk.OKPKey.generate_key("Ed25519", private=True)
    raise ValueError(alg)


def dpop_proof(key, alg, method, url, access_token=None, nonce=None, **overrides) -> str:
    """An RFC 9449 proof signed by joserfc with the key it embeds."""
    claims = {
        "jti": secrets.token_urlsafe(16),
        "htm": method,
        "htu": url,
        "iat": int(time.time()),
    }
    if access_token is not None:
        claims["ath"] = b64url(hashlib.sha256(access_token.encode()).digest())
    if nonce is not None:
        claims["nonce"] = nonce
    for name, value in overrides.items():
        if value is None:
            claims.pop(name, None)
        else:
            claims[name] = value
    header = {"typ": "dpop+jwt", "alg": alg, "jwk": key.as_dict(private=False)}
    return sign(header, claims, key)


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
