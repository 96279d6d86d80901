"""Token scenarios in the real Worker: every algorithm, route requirements, forwarding rules.

Tokens are minted with joserfc (servers.Issuer.mint, servers.sign); refusals are checked against
SPEC §4 (status, `error`, `WWW-Authenticate`) and against the origin's request log: a refused
request must never reach the origin.
"""

from __future__ import annotations

import json
import time

import pytest

from jwstools import AUDIENCE, assert_refused, bearer, decision_line, last_reason, remark
from servers import hmac_key, sign


def forwarded(origin) -> dict:
    """The headers of the one request the origin received since the mark."""
    seen = origin.since()
    assert len(seen) == 1, seen
    return dict(seen[0]["headers"])


def device_token(secret: bytes, **claims) -> str:
    """An Approov-style HS256 attestation, signed by joserfc with an OctKey. The device provider
    has no issuer or audience configured, so the token carries neither."""
    now = int(time.time())
    body = {"did": "device-1", "iat": now, "exp": now + 300}
    body.update(claims)
    body = {k: v for k, v in body.items() if v is not None}
    return sign({"alg": "HS256", "typ": "JWT"}, body, hmac_key(secret))


# ---- algorithms ---------------------------------------------------------------------------------

@pytest.mark.parametrize(
    "kid, alg",
    [("k-es256", "ES256"), ("k-eddsa", "EdDSA"), ("k-eddsa", "Ed25519"), ("k-rs256", "RS256")],
)
def test_public_key_algorithms_are_allowed(gateway, servers, origin, kid, alg):
    token = servers.issuer.mint(kid, alg=alg, scope="orders:read", sub=f"user:{alg}")
    resp = gateway.request("GET", "/v1/orders/1", bearer(token))
    assert resp.status == 200, resp
    headers = forwarded(origin)
    assert headers["x-verified-user"] == f"user:{alg}"
    assert headers["x-verified-route"] == "orders-read"
    assert "authorization" not in headers


def test_hs256_device_attestation_is_allowed(gateway, origin, approov_secret):
    resp = gateway.request("GET", "/files/report.pdf", {"approov-token": device_token(approov_secret)})
    assert resp.status == 200, resp
    headers = forwarded(origin)
    assert headers["x-verified-route"] == "files"
    assert "approov-token" not in headers, "the consumed attestation must not reach the origin"


def test_hs256_with_another_secret_is_refused(gateway, origin):
    token = device_token(b"\x01" * 32)
    resp = gateway.request("GET", "/files/a", {"approov-token": token})
    assert_refused(resp, 401, "invalid_token", origin)


# ---- route requirements -------------------------------------------------------------------------

def test_require_any(gateway, servers, origin, approov_secret):
    agent = servers.issuer.mint("k-es256")
    device = device_token(approov_secret)
    assert_refused(gateway.request("GET", "/files/a"), 401, "missing_token", origin)
    for headers in (bearer(agent), {"approov-token": device},
                    {**bearer(agent), "approov-token": device}):
        remark(origin, servers)
        resp = gateway.request("GET", "/files/a", headers)
        assert resp.status == 200, (headers.keys(), resp)
        assert len(origin.since()) == 1
    # Every token presented must be valid, even when another one would satisfy `any`.
    remark(origin, servers)
    bad_device = device_token(b"\x02" * 32)  # signed with another secret
    resp = gateway.request("GET", "/files/a", {**bearer(agent), "approov-token": bad_device})
    assert_refused(resp, 401, "invalid_token", origin)


def test_missing_scope_is_403(gateway, servers, origin):
    token = servers.issuer.mint("k-es256", scope="orders:write profile")
    resp = gateway.request("GET", "/v1/orders/1", bearer(token))
    assert_refused(resp, 403, "insufficient_scope", origin)
    assert last_reason(gateway, resp.json()["request_id"]) == "scope_missing"


def act_chain(*subs):
    act = None
    for sub in reversed(subs):
        act = {"sub": sub, **({"act": act} if act else {})}
    return act


@pytest.mark.parametrize(
    "act, status, reason",
    [
        (act_chain("agent:planner"), 200, None),
        (act_chain("agent:buyer-7"), 200, None),
        (act_chain("agent:planner", "agent:sub-agent"), 200, None),
        (act_chain("agent:evil"), 403, "claim_constraint"),
        (None, 403, "claim_constraint"),
        (act_chain("agent:planner", "agent:b", "agent:c"), 403, "delegation_too_deep"),
    ],
    ids=["planner", "buyer-wildcard", "depth-2", "unknown-agent", "no-act", "depth-3"],
)
def test_claim_constraints_and_delegation_depth(gateway, servers, origin, approov_secret, act, status, reason):
    agent = servers.issuer.mint("k-es256", scope="orders:write", act=act)
    headers = {**bearer(agent), "approov-token": device_token(approov_secret), "content-type": "application/json"}
    resp = gateway.request("POST", "/v1/orders", headers, b'{"item": 1}')
    if status == 200:
        assert resp.status == 200, resp
        got = forwarded(origin)
        assert got["x-verified-agent"] == act["sub"]
        assert got["x-verified-device"] == "device-1"
        assert "approov-token" not in got and "authorization" not in got
        assert origin.since()[0]["body"] == '{"item": 1}'
    else:
        assert_refused(resp, status, "insufficient_scope", origin)
        assert last_reason(gateway, resp.json()["request_id"]) == reason


# ---- forwarding ---------------------------------------------------------------------------------

UNFORWARDABLE = {
    "crlf-header": "user-1\r\nX-Admin: true",
    "lf": "user-1\nX-Admin: true",
    "cr": "user-1\rX-Admin: true",
    "nul": "user-1\u0000admin",
    "del": "user-1\u007f",
    "obs-fold": "user-1\r\n\tadmin",
    "tab": "user-1\tadmin",
    "non-ascii": "jörg",
    "u2028": "user\u20281",
    "fullwidth": "ａｄｍｉｎ",
    "rtl-override": "user\u202e1",
    "leading-space": " admin",
    "1025-bytes": "a" * 1025,
    "2000-bytes": "b" * 2000,
}


@pytest.mark.parametrize("sub", list(UNFORWARDABLE.values()), ids=list(UNFORWARDABLE))
def test_claim_that_cannot_be_a_header_is_refused(gateway, servers, origin, sub):
    token = servers.issuer.mint("k-es256", scope="orders:read", sub=sub)
    resp = gateway.request("GET", "/v1/orders/1", bearer(token))
    assert_refused(resp, 401, "invalid_token", origin)
    line = decision_line(gateway, resp.json()["request_id"])
    assert json.loads(line)["reason"] == "unforwardable_claim"
    # The subject is logged, escaped: the line is ASCII, so no claim can split or forge it
    # (U+2028 is a line break to JavaScript and Python's splitlines).
    assert line.isascii() and len(line.splitlines()) == 1, line
    assert json.loads(line)["subject"] == sub[:256] or len(sub) > 256


def test_forwardable_edge_values_pass_verbatim(gateway, servers, origin):
    for sub in ("a" * 1024, 'a@b.example"; role=admin', "user 1"):
        remark(origin, servers)
        token = servers.issuer.mint("k-es256", scope="orders:read", sub=sub)
        resp = gateway.request("GET", "/v1/orders/1", bearer(token))
        assert resp.status == 200, resp
        assert forwarded(origin)["x-verified-user"] == sub


def test_unforwardable_act_sub_is_refused_too(gateway, servers, origin):
    token = servers.issuer.mint("k-es256", scope="orders:read", act={"sub": "agent\r\nx: y"})
    resp = gateway.request("GET", "/v1/orders/1", bearer(token))
    assert_refused(resp, 401, "invalid_token", origin)


SPOOFED = [
    ("x-verified-user", "mallory"),
    ("X-Verified-Agent", "agent:root"),
    ("X-VERIFIED-DEVICE", "trusted-device"),
    ("x-verified-route", "admin"),
    ("x-verified-anything", "1"),
    ("x-other", "kept"),
]


def test_spoofed_claim_headers_are_stripped_on_protected_routes(gateway, servers, origin):
    token = servers.issuer.mint("k-es256", scope="orders:read", sub="user:alice")
    resp = gateway.request("GET", "/v1/orders/9", [*bearer(token).items(), *SPOOFED])
    assert resp.status == 200, resp
    headers = forwarded(origin)
    verified = {k: v for k, v in headers.items() if k.startswith("x-verified-")}
    # Exactly the plan: the route's forward headers with claims present, and the route id.
    assert verified == {"x-verified-user": "user:alice", "x-verified-route": "orders-read"}
    assert headers["x-other"] == "kept"


def test_spoofed_claim_headers_are_stripped_on_public_routes(gateway, origin):
    resp = gateway.request("GET", "/healthz", SPOOFED)
    assert resp.status == 200, resp
    headers = forwarded(origin)
    verified = {k: v for k, v in headers.items() if k.startswith("x-verified-")}
    assert verified == {"x-verified-route": "health"}
    assert headers["x-other"] == "kept"


def test_forward_tokens_controls_the_token_header(gateway, servers, origin):
    token = servers.issuer.mint("k-es256")
    resp = gateway.request("GET", "/attacks/agent", bearer(token))
    assert resp.status == 200, resp
    assert "authorization" not in forwarded(origin), "forward_tokens = false (the default)"
    remark(origin, servers)
    resp = gateway.request("GET", "/attacks/forward-tokens", bearer(token))
    assert resp.status == 200, resp
    assert forwarded(origin)["authorization"] == f"Bearer {token}", "forward_tokens = true"


def test_query_and_body_reach_the_origin_unchanged(gateway, servers, origin, approov_secret):
    token = servers.issuer.mint("k-es256")
    resp = gateway.request("PUT", "/files/a/b.txt?x=1&y=%2F", bearer(token), b"payload \x00\xff")
    assert resp.status == 200, resp
    seen = origin.since()
    assert len(seen) == 1 and seen[0]["method"] == "PUT"
    assert seen[0]["path"] == "/files/a/b.txt?x=1&y=%2F"
    assert resp.json()["body_bytes"] == 10


def test_audience_is_required_and_exact(gateway, servers, origin):
    for aud, ok in ((AUDIENCE, True), ([AUDIENCE], True), (["x", AUDIENCE], True),
                    (AUDIENCE + "/", False), ([], False)):
        remark(origin, servers)
        token = servers.issuer.mint("k-es256", aud=aud)
        resp = gateway.request("GET", "/attacks/agent", bearer(token))
        if ok:
            assert resp.status == 200, (aud, resp)
        else:
            assert_refused(resp, 401, "invalid_token", origin, reason_hint=str(aud))


# ---- paths --------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    "sent, seen",
    [("/attacks/x/../agent", "/attacks/agent"), ("/attacks/./agent", "/attacks/agent"),
     ("/attacks/%2e%2e/attacks/agent", "/attacks/agent"), ("/attacks\\agent", "/attacks/agent")],
    ids=["dot-dot", "dot", "encoded-dot-dot", "backslash"],
)
def test_runtime_resolved_paths_are_forwarded_exactly_as_matched(gateway, servers, origin, sent, seen):
    """workerd parses the request URL (WHATWG) before the Worker runs: `.`/`..` segments (also
    percent-encoded) and `\\` are resolved there, so the gateway never sees them and cannot refuse
    them with 400. What it matches is what it forwards: the origin gets the resolved path."""
    token = servers.issuer.mint("k-es256")
    resp = gateway.request("GET", sent, bearer(token))
    assert resp.status == 200, resp
    got = origin.since()
    assert len(got) == 1 and got[0]["path"] == seen, got
    assert dict(got[0]["headers"])["x-verified-route"] == "attacks-agent"


@pytest.mark.parametrize(
    "sent", ["/attacks//agent", "/attacks/agent%2Fx", "/attacks/%61gent", "/attacks/agent%5Cx",
             "/attacks/;x/agent", "/attacks/agent%00"],
    ids=["double-slash", "encoded-slash", "encoded-unreserved", "encoded-backslash", "empty-with-param",
         "encoded-nul"],
)
def test_unnormalised_paths_that_reach_the_worker_are_400(gateway, servers, origin, sent):
    token = servers.issuer.mint("k-es256")
    resp = gateway.request("GET", sent, bearer(token))
    assert_refused(resp, 400, "invalid_request", origin)
    assert last_reason(gateway, resp.json()["request_id"]) == "unnormalised_path"
