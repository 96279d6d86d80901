"""DPoP (RFC 9449) end to end: proofs minted by joserfc with ES256 and EdDSA proof keys, access
tokens bound to the proof key by `cnf.jkt` (RFC 7638 thumbprint, computed by joserfc)."""

import time

import pytest

from nonce_support import assert_refused, challenge, dpop_proof, proof_key

PATH = "/dpop/resource"
OTHER = "/dpop/other"


class Client:
    """A DPoP client: one proof key, one access token bound to it."""

    def __init__(self, gateway, servers, alg, token_kid="k-es256", **claims):
        self.gateway = gateway
        self.alg = alg
        self.key = proof_key(alg)
        claims.setdefault("scope", "dpop:use")
        claims.setdefault("cnf", {"jkt": self.key.thumbprint()})
        self.token = servers.issuer.mint(token_kid, **claims)

    def url(self, path):
        # The URL the gateway sees: wrangler dev on loopback.
        return f"{self.gateway.base}{path}"

    def proof(self, method="GET", path=PATH, nonce=None, **overrides):
        return dpop_proof(self.key, self.alg, method, self.url(path), self.token, nonce, **overrides)

    def send(self, proof, method="GET", path=PATH, scheme="DPoP"):
        headers = {"authorization": f"{scheme} {self.token}"}
        if proof is not None:
            headers["dpop"] = proof
        return self.gateway.request(method, path, headers)


def assert_dpop_refusal(resp, code, origin=None):
    assert_refused(resp, 401, code, origin)
    assert resp.headers["www-authenticate"].startswith(
        f'DPoP realm="e2e.attestgate.test", error="{code}"'
    ), resp.headers
    nonce = resp.headers.get("dpop-nonce")
    assert nonce, "a DPoP refusal carries a fresh DPoP-Nonce"
    return nonce


@pytest.mark.parametrize("alg", ["ES256", "EdDSA"])
def test_dpop_full_flow(gateway, servers, origin, alg):
    c = Client(gateway, servers, alg)

    # 1. No nonce yet: use_dpop_nonce with one to use.
    first = c.proof()
    nonce = assert_dpop_refusal(c.send(first), "use_dpop_nonce", origin)

    # 2. Retry with the nonce: allowed; the answer carries the next nonce (RFC 9449 §8.2).
    proof = c.proof(nonce=nonce)
    resp = c.send(proof)
    assert resp.status == 200, resp
    assert resp.json()["verified"]["x-verified-user"] == "user:alice"
    forwarded = dict(origin.since()[0]["headers"])
    assert "dpop" not in forwarded and "authorization" not in forwarded
    next_nonce = resp.headers.get("dpop-nonce")
    assert next_nonce and next_nonce != nonce

    # 3. The same proof again is refused (its nonce is spent), with a fresh nonce.
    assert_dpop_refusal(c.send(proof), "use_dpop_nonce")

    # 4. A proof for another URL or another method is refused, nonce or not.
    fresh = challenge(gateway)
    assert_dpop_refusal(c.send(c.proof(path=OTHER, nonce=fresh)), "invalid_dpop_proof")
    assert_dpop_refusal(c.send(c.proof(method="POST", nonce=fresh)), "invalid_dpop_proof")
    assert_dpop_refusal(c.send(c.proof(nonce=fresh), path=OTHER), "invalid_dpop_proof")
    assert_dpop_refusal(c.send(c.proof(nonce=fresh), method="POST"), "invalid_dpop_proof")
    assert len(origin.since()) == 1

    # 5. Those refusals did not spend `fresh`; and the nonce from the 200 works too.
    assert c.send(c.proof(nonce=fresh)).status == 200
    assert c.send(c.proof(nonce=next_nonce)).status == 200
    # POST to the other resource with a matching proof is fine as well.
    n = challenge(gateway)
    assert c.send(c.proof(method="POST", path=OTHER, nonce=n), method="POST", path=OTHER).status == 200
    assert len(origin.since()) == 4


def test_dpop_token_bound_to_another_key_is_refused(gateway, servers, origin):
    c = Client(gateway, servers, "ES256", cnf={"jkt": proof_key("ES256").thumbprint()})
    resp = c.send(c.proof(nonce=challenge(gateway)))
    assert_dpop_refusal(resp, "invalid_dpop_proof", origin)


def test_dpop_token_without_cnf_is_refused(gateway, servers, origin):
    c = Client(gateway, servers, "EdDSA")
    c.token = servers.issuer.mint("k-es256", scope="dpop:use")
    assert_dpop_refusal(c.send(c.proof(nonce=challenge(gateway))), "invalid_dpop_proof", origin)


def test_dpop_request_without_proof_is_refused_with_a_nonce(gateway, servers, origin):
    c = Client(gateway, servers, "ES256")
    assert_dpop_refusal(c.send(None), "invalid_dpop_proof", origin)


def test_dpop_proof_checks(gateway, servers, origin):
    c = Client(gateway, servers, "EdDSA", token_kid="k-eddsa")
    nonce = challenge(gateway)
    now = int(time.time())
    bad = {
        "ath of another token": c.proof(nonce=nonce, ath="A" * 43),
        "no ath": c.proof(nonce=nonce, ath=None),
        "iat too old": c.proof(nonce=nonce, iat=now - 600),
        "iat in the future": c.proof(nonce=nonce, iat=now + 600),
        "no jti": c.proof(nonce=nonce, jti=None),
        "htu with another host": c.proof(nonce=nonce, htu="https://evil.example/dpop/resource"),
    }
    for what, proof in bad.items():
        resp = c.send(proof)
        assert resp.status == 401, (what, resp)
        assert_dpop_refusal(resp, "invalid_dpop_proof", origin)
    # The nonce survived all of that.
    assert c.send(c.proof(nonce=nonce)).status == 200


def test_dpop_bound_token_sent_as_bearer_gets_a_dpop_challenge(gateway, servers, origin):
    # RFC 9449 §7.1: refused with a DPoP challenge (and a fresh nonce), so the client learns
    # to use the DPoP scheme.
    c = Client(gateway, servers, "ES256")
    resp = c.send(c.proof(nonce=challenge(gateway)), scheme="Bearer")
    assert resp.status == 401, resp
    assert_dpop_refusal(resp, "invalid_dpop_proof", origin)
