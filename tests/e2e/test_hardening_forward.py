"""Issue 12, forwarding and credentials, end to end in workerd: what the origin sees of a request
the gateway allowed, bound tokens on a Bearer provider, and the challenges a client gets.

Policy: policies/hardening_forward.toml (routes `hf-*` under /hf/, providers `hf_*`, tokens from
the servers.py issuer /issuers/hf). Every token and proof is signed by joserfc.
"""

from __future__ import annotations

import pytest

from jwstools import last_reason
from nonce_support import assert_refused, challenge, dpop_proof, proof_key

REALM = "e2e.attestgate.test"
BEARER_AUD = "https://hf-bearer.example"
DPOP_AUD = "https://hf-dpop.example"
ALGS = "ES256 EdDSA Ed25519"
BEARER_CHALLENGE = f'Bearer realm="{REALM}"'
DPOP_CHALLENGE = f'DPoP realm="{REALM}", algs="{ALGS}"'


def rm(gateway, resource: str) -> str:
    """The `resource_metadata` parameter every challenge of the route of `resource` ends with."""
    url = f"http://127.0.0.1:{gateway.port}/.well-known/oauth-protected-resource{resource}"
    return f', resource_metadata="{url}"'

# The gateway sets these itself, from what it saw.
GATEWAY_SET = {"x-forwarded-host", "x-forwarded-proto", "x-forwarded-for"}

# What a client sends to make the origin act on a claim, method, path, host or client address
# the gateway never authorised. CGI-style servers read `_` as `-`.
SPOOFED = [
    ("x_verified_user", "mallory"),
    ("X_Verified-User", "mallory"),
    ("x-verified_tenant", "evil"),
    ("X-Verified-Tenant", "evil"),
    ("x_verified_route", "orders-create"),
    ("X-HTTP-Method-Override", "DELETE"),
    ("x_http_method_override", "DELETE"),
    ("X-HTTP-Method", "DELETE"),
    ("X-Method-Override", "DELETE"),
    ("X-Original-URL", "/admin"),
    ("X-Rewrite-URL", "/admin"),
    ("Forwarded", "for=192.0.2.66;host=evil.example;proto=https"),
    ("X-Forwarded-Host", "evil.example"),
    ("X-Forwarded-Proto", "https"),
    ("X-Forwarded-For", "192.0.2.66"),
    ("x_forwarded_for", "192.0.2.67"),
    ("X-Forwarded-Prefix", "/evil"),
    ("X-Forwarded-Port", "443"),
]
SPOOFED_VALUES = {v for _, v in SPOOFED}


def fold(name: str) -> str:
    """A header name as a CGI-style server reads it."""
    return name.lower().replace("_", "-")


def origin_headers(origin) -> list[tuple[str, str]]:
    seen = origin.since()
    assert len(seen) == 1, seen
    return seen[0]["headers"]


def assert_sanitised(gateway, headers, passed=()):
    """None of the client's spoofed headers reached the origin, in any spelling (except the
    exact names the route passes), and X-Forwarded-* are the gateway's."""
    folded = [(fold(n), n, v) for n, v in headers]
    spoofed = {fold(n) for n, _ in SPOOFED}
    for f, name, value in folded:
        if name in passed:
            continue
        if f in GATEWAY_SET:
            assert name == f, f"{name}: only the gateway's own spelling may reach the origin"
            continue
        if f in spoofed or f.startswith("x-forwarded-"):
            assert not (f.startswith("x-verified-") and value in SPOOFED_VALUES), (name, value)
            assert f.startswith("x-verified-"), f"{name}: {value!r} reached the origin"
    names = [n for n, _ in headers]
    for h in GATEWAY_SET - {"x-forwarded-for"}:
        assert names.count(h) == 1, (h, headers)
    got = dict(headers)
    assert got["x-forwarded-host"] == f"127.0.0.1:{gateway.port}", got
    assert got["x-forwarded-proto"] == "http", got
    # The runtime's client address (CF-Connecting-IP; wrangler dev says 127.0.0.1), never the
    # client's X-Forwarded-For.
    assert names.count("x-forwarded-for") == 1, headers
    assert got["x-forwarded-for"] == "127.0.0.1", got
    assert not any("192.0.2.6" in v for _, v in headers), headers
    return got


def mint(servers, aud=BEARER_AUD, kid="hf-es256", **claims):
    return servers.issuer_named("hf").mint(kid, aud=aud, **claims)


def test_public_route_strips_every_spelling_and_sets_x_forwarded(gateway, origin):
    resp = gateway.request("GET", "/hf/public?q=1", SPOOFED + [("x-other", "kept")])
    assert resp.status == 200, resp
    got = assert_sanitised(gateway, origin_headers(origin))
    assert got["x-other"] == "kept"
    assert got["x-verified-route"] == "hf-public"
    assert not any(fold(n).startswith("x-verified-") and n != "x-verified-route" for n in got)


def test_protected_route_strips_underscore_claims_when_the_claim_is_absent(gateway, servers, origin):
    # The route forwards hf_bearer.tenant, which this token lacks: the client's
    # `x-verified_tenant` would otherwise be the only value a CGI-style origin reads.
    token = mint(servers, sub="user:alice")
    resp = gateway.request("GET", "/hf/bearer", SPOOFED + [("authorization", f"Bearer {token}")])
    assert resp.status == 200, resp
    got = assert_sanitised(gateway, origin_headers(origin))
    assert got["x-verified-user"] == "user:alice"
    assert got["x-verified-route"] == "hf-bearer"
    assert not any(fold(n) == "x-verified-tenant" for n in got), got
    assert "authorization" not in got


def test_pass_headers_lets_exactly_the_listed_names_through(gateway, origin):
    resp = gateway.request("GET", "/hf/pass", SPOOFED)
    assert resp.status == 200, resp
    headers = origin_headers(origin)
    passed = ("x-http-method-override", "x-forwarded-prefix")
    assert_sanitised(gateway, headers, passed=passed)
    got = dict(headers)
    assert got["x-http-method-override"] == "DELETE"
    assert got["x-forwarded-prefix"] == "/evil"
    # Only those exact names: the underscore spelling and the other overrides are gone.
    assert "x_http_method_override" not in got
    for name in ("x-http-method", "x-method-override", "x-original-url", "forwarded"):
        assert name not in got, name


def test_x_forwarded_for_is_the_runtimes_client_address(gateway, origin):
    # X-Forwarded-For is what the runtime hands the Worker as CF-Connecting-IP. On Cloudflare
    # the edge sets that header itself; wrangler dev sets 127.0.0.1 but lets a client's own
    # CF-Connecting-IP stand (local development only). The runtime never passes the inbound
    # CF-Connecting-IP on to the origin itself.
    resp = gateway.request("GET", "/hf/public", [("CF-Connecting-IP", "192.0.2.10"), ("X-Forwarded-For", "192.0.2.66")])
    assert resp.status == 200, resp
    got = dict(origin_headers(origin))
    assert got["x-forwarded-for"] == "192.0.2.10", got
    assert "cf-connecting-ip" not in got
    # A client address that is not an IP literal is not forwarded at all.
    origin.mark += 1
    resp = gateway.request("GET", "/hf/public", [("CF-Connecting-IP", "evil, 1.2.3.4"), ("X-Forwarded-For", "192.0.2.66")])
    assert resp.status == 200, resp
    headers = origin_headers(origin)
    assert not any(fold(n) == "x-forwarded-for" for n, _ in headers), headers
    assert not any("evil" in v or "192.0.2.66" in v for _, v in headers), headers


def test_cnf_bound_token_on_a_bearer_provider_is_refused(gateway, servers, origin):
    # RFC 9449 §7.2: a DPoP-bound token presented as a bearer token is refused, even though its
    # signature, issuer and audience are good for this Bearer-only provider.
    key = proof_key("ES256")
    for cnf in ({"jkt": key.thumbprint()}, {"x5t#S256": "bwcK0esc3ACC3DB2Y5_lESsXE8o9ltc05O89jdN-dg2"}):
        token = mint(servers, cnf=cnf)
        resp = gateway.request("GET", "/hf/bearer", {"authorization": f"Bearer {token}"})
        assert_refused(resp, 401, "invalid_token", origin)
        assert resp.headers["www-authenticate"] == (
            f'{BEARER_CHALLENGE}, error="invalid_token"{rm(gateway, "/hf/bearer")}'
        )
        assert last_reason(gateway, resp.json()["request_id"]) == "sender_constrained_token"
    # The same token without cnf passes.
    ok = gateway.request("GET", "/hf/bearer", {"authorization": f"Bearer {mint(servers)}"})
    assert ok.status == 200, ok
    assert len(origin.since()) == 1


@pytest.mark.parametrize(
    "path, expected",
    [
        ("/hf/dpop", f"{DPOP_CHALLENGE}{{rm}}"),
        ("/hf/bearer", f"{BEARER_CHALLENGE}{{rm}}"),
        ("/hf/mixed", f"{BEARER_CHALLENGE}{{rm}}, {DPOP_CHALLENGE}{{rm}}"),
    ],
)
def test_missing_token_challenge_names_the_schemes_the_route_accepts(gateway, origin, path, expected):
    resp = gateway.request("GET", path)
    assert_refused(resp, 401, "missing_token", origin)
    assert resp.headers["www-authenticate"] == expected.format(rm=rm(gateway, path))


class DpopClient:
    def __init__(self, gateway, servers, path, alg="ES256", key_alg=None, aud=DPOP_AUD):
        self.gateway = gateway
        self.path = path
        self.alg = alg
        self.key = proof_key(key_alg or alg)
        self.token = mint(servers, aud=aud, sub="user:dpop", cnf={"jkt": self.key.thumbprint()})

    def send(self, nonce, scheme="DPoP"):
        url = f"http://127.0.0.1:{self.gateway.port}{self.path}"
        proof = dpop_proof(self.key, self.alg, "GET", url, self.token, nonce)
        headers = {"authorization": f"{scheme} {self.token}", "dpop": proof}
        return self.gateway.request("GET", self.path, headers)


@pytest.mark.parametrize("alg, key_alg", [("ES256", None), ("EdDSA", None), ("Ed25519", "EdDSA")])
def test_every_alg_the_dpop_challenge_lists_is_accepted(gateway, servers, origin, alg, key_alg):
    c = DpopClient(gateway, servers, "/hf/dpop", alg, key_alg)
    first = c.send(None)
    assert_refused(first, 401, "use_dpop_nonce", origin)
    assert first.headers["www-authenticate"] == (
        f'DPoP realm="{REALM}", error="use_dpop_nonce", algs="{ALGS}"{rm(gateway, "/hf/dpop")}'
    )
    resp = c.send(first.headers["dpop-nonce"])
    assert resp.status == 200, resp
    assert dict(origin_headers(origin))["x-verified-user"] == "user:dpop"


def test_mixed_route_takes_both_schemes_and_refuses_a_bound_token_as_bearer(gateway, servers, origin):
    bearer = gateway.request("GET", "/hf/mixed", {"authorization": f"Bearer {mint(servers)}"})
    assert bearer.status == 200, bearer
    # A token for both providers' audiences: only the proof decides how it may be used.
    c = DpopClient(gateway, servers, "/hf/mixed", aud=[BEARER_AUD, DPOP_AUD])
    assert c.send(challenge(gateway)).status == 200
    assert len(origin.since()) == 2
    origin.mark += 2

    # The DPoP-bound token sent as a bearer token: the Bearer provider refuses it.
    resp = gateway.request("GET", "/hf/mixed", {"authorization": f"Bearer {c.token}"})
    assert_refused(resp, 401, "invalid_token", origin)
    assert last_reason(gateway, resp.json()["request_id"]) == "sender_constrained_token"
    mixed = rm(gateway, "/hf/mixed")
    assert resp.headers["www-authenticate"] == (
        f'{BEARER_CHALLENGE}, error="invalid_token"{mixed}, DPoP realm="{REALM}", error="invalid_token", algs="{ALGS}"{mixed}'
    )
