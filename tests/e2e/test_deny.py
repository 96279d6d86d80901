"""The deny list and the operator API (issue 16 items 1-3) in the real Worker (wrangler dev).

Operators authenticate with a token of the policy's `[operator]` provider (`dn_operator`, a local
stand-in IdP at /issuers/dn-idp), agents with `dn_agent` tokens (/issuers/dn-agents); every token
is minted by joserfc (servers.Issuer.mint). Routes (tests/e2e/policies/deny.toml):
`/dn/cached/**` checks the isolate's view (at most `propagation_secs` = 2 s old), `/dn/strict/**`
the store on every request, `/dn/off/**` not at all.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from jwstools import REALM, assert_refused, bearer, decision_line, remark

BASE = "/.well-known/attestgate/deny"
WHOAMI = "/.well-known/attestgate/operator/whoami"
BOUND = 2.0  # [deny] propagation_secs in deny.toml
OP_AUD = "https://gateway.dn.test"


def operator_token(servers, **claims) -> str:
    idp = servers.issuer_named("dn-idp")
    claims.setdefault("aud", OP_AUD)
    claims.setdefault("sub", "ops:alice")
    claims.setdefault("scope", "openid attestgate:admin")
    return idp.mint("dn-idp-es256", typ="JWT", **claims)


def agent_token(servers, agent: str, **claims) -> str:
    return servers.issuer_named("dn-agents").mint(
        "dn-agents-es256", act={"sub": agent}, **claims
    )


def op(gateway, servers, method, path, body=None, token=None):
    headers = {"authorization": f"Bearer {token or operator_token(servers)}"}
    data = None
    if body is not None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        headers["content-type"] = "application/json"
    return gateway.request(method, path, headers, data)


def add(gateway, servers, **entry):
    entry.setdefault("reason", "e2e")
    resp = op(gateway, servers, "POST", BASE, entry)
    assert resp.status == 201, resp
    return resp.json()


def fresh(name: str) -> str:
    return f"agent:{name}-{secrets.token_hex(4)}"


# ---- operator authentication ----------------------------------------------------------------


def test_the_operator_api_authenticates_with_the_admin_provider_and_scope(gateway, servers, origin):
    resp = op(gateway, servers, "GET", WHOAMI)
    assert resp.status == 200, resp
    assert resp.json() == {"iss": servers.issuer_named("dn-idp").issuer, "sub": "ops:alice"}
    assert resp.headers["cache-control"] == "no-store"

    resp = gateway.request("GET", WHOAMI)
    assert_refused(resp, 401, "missing_token", origin)

    resp = op(gateway, servers, "GET", WHOAMI, token=operator_token(servers, scope="openid"))
    assert resp.status == 403, resp
    assert resp.json()["error"] == "insufficient_scope"
    assert resp.headers["www-authenticate"] == (
        f'Bearer realm="{REALM}", error="insufficient_scope", scope="attestgate:admin", '
        f'resource_metadata="{gateway.base}/.well-known/oauth-protected-resource"'
    )
    # An agent's token, a token for another audience, a forged one: 401.
    forged = operator_token(servers)[:-4] + "AAAA"
    for token in [agent_token(servers, "agent:x"), operator_token(servers, aud="https://x"), forged]:
        resp = op(gateway, servers, "GET", WHOAMI, token=token)
        assert_refused(resp, 401, "invalid_token", origin)
    # Never a token in the URL.
    resp = gateway.request("GET", f"{BASE}?access_token={operator_token(servers)}")
    assert_refused(resp, 401, "missing_token", origin)
    # Nothing about the API is said before authentication.
    assert_refused(gateway.request("GET", "/.well-known/attestgate/nope"), 401, "missing_token", origin)
    assert op(gateway, servers, "GET", "/.well-known/attestgate/nope").status == 404
    # The challenge endpoint under the same prefix stays public.
    assert gateway.request("POST", "/.well-known/attestgate/challenge").status == 200


# ---- entries: add, look up, list, remove ------------------------------------------------------


def test_add_get_lookup_list_and_remove_record_the_operator(gateway, servers):
    agent = fresh("crud")
    entry = add(gateway, servers, kind="agent", value=agent, reason="compromised runtime")
    assert entry["kind"] == "agent" and entry["value"] == agent
    assert entry["source"] == "operator" and entry["fence"] is None
    assert entry["by"] == {"iss": servers.issuer_named("dn-idp").issuer, "sub": "ops:alice"}
    assert abs(entry["created"] - time.time()) < 60
    eid = entry["id"]

    got = op(gateway, servers, "GET", f"{BASE}/{eid}")
    assert got.status == 200 and got.json() == entry
    found = op(gateway, servers, "POST", f"{BASE}/lookup", {"kind": "agent", "value": agent})
    assert found.status == 200 and found.json() == {"entries": [entry]}
    none = op(gateway, servers, "POST", f"{BASE}/lookup", {"kind": "agent", "value": agent + "x"})
    assert none.json() == {"entries": []}

    # The list pages through every shard, by id.
    seen, after = [], None
    for _ in range(100):
        q = f"?limit=3&after={after}" if after else "?limit=3"
        page = op(gateway, servers, "GET", BASE + q)
        assert page.status == 200, page
        body = page.json()
        assert len(body["entries"]) <= 3
        seen += [e["id"] for e in body["entries"]]
        after = body["next"]
        if after is None:
            break
    assert eid in seen and seen == sorted(seen) and len(seen) == len(set(seen))

    removed = op(gateway, servers, "DELETE", f"{BASE}/{eid}")
    assert removed.status == 200 and removed.json() == entry
    assert op(gateway, servers, "GET", f"{BASE}/{eid}").status == 404
    assert op(gateway, servers, "DELETE", f"{BASE}/{eid}").status == 404


def test_every_change_is_a_decision_record_naming_operator_and_entry(gateway, servers):
    entry = add(gateway, servers, kind="device", value=f"dev-{secrets.token_hex(4)}")
    resp = op(gateway, servers, "DELETE", f"{BASE}/{entry['id']}")
    assert resp.status == 200
    # The answers carry no request id; find the lines by entry id.
    deadline = time.time() + 3
    lines = []
    while time.time() < deadline and len(lines) < 2:
        lines = [
            json.loads(l[l.index("{"):])
            for l in gateway.logs().splitlines()
            if entry["id"] in l and '"attestgate":"decision"' in l
        ]
        time.sleep(0.1)
    assert [(l["method"], l["verdict"], l["route"]) for l in lines] == [
        ("POST", "operator", "operator"),
        ("DELETE", "operator", "operator"),
    ], lines
    for l in lines:
        assert l["subject"] == "ops:alice" and l["deny_entry"] == entry["id"]


# ---- enforcement -------------------------------------------------------------------------------


def test_a_revoked_agent_is_refused_within_the_bound_and_never_reaches_the_origin(
    gateway, servers, origin
):
    agent = fresh("revoke")
    token = agent_token(servers, agent)
    for path in ["/dn/cached/x", "/dn/strict/x", "/dn/off/x"]:
        assert gateway.request("GET", path, bearer(token)).status == 200
    entry = add(gateway, servers, kind="agent", value=agent)
    acked = time.time()
    # Strict: at once.
    remark(origin, servers)
    resp = gateway.request("GET", "/dn/strict/x", bearer(token))
    body = assert_refused(resp, 401, "invalid_token", origin)
    assert body["error_description"] == "The token is no longer accepted."
    assert entry["id"] not in resp.body.decode() and agent not in resp.body.decode()
    line = json.loads(decision_line(gateway, body["request_id"]))
    assert line["deny_entry"] == entry["id"] and line["reason"] == "revoked"
    # Cached: refused no later than acknowledgement + bound.
    while True:
        started = time.time()
        resp = gateway.request("GET", "/dn/cached/x", bearer(token))
        if resp.status == 401:
            break
        assert resp.status == 200, resp
        assert started <= acked + BOUND, f"allowed {started - acked:.3f}s after the acknowledgement"
        time.sleep(0.05)
    print(f"\ncached route refused {time.time() - acked:.3f}s after the acknowledgement")
    remark(origin, servers)
    assert_refused(gateway.request("GET", "/dn/cached/x", bearer(token)), 401, "invalid_token", origin)
    # A route without the check is not affected; another agent is not affected.
    assert gateway.request("GET", "/dn/off/x", bearer(token)).status == 200
    assert gateway.request("GET", "/dn/cached/x", bearer(agent_token(servers, fresh("other")))).status == 200
    # Removal: allowed again after the bound.
    assert op(gateway, servers, "DELETE", f"{BASE}/{entry['id']}").status == 200
    assert gateway.request("GET", "/dn/strict/x", bearer(token)).status == 200
    time.sleep(BOUND + 0.2)
    assert gateway.request("GET", "/dn/cached/x", bearer(token)).status == 200


@pytest.mark.parametrize(
    "kind",
    ["user", "token", "issuer-of-other", "device"],
)
def test_every_key_kind_refuses_its_principal(gateway, servers, origin, kind):
    agents = servers.issuer_named("dn-agents")
    sub, jti, did = f"user:{secrets.token_hex(4)}", secrets.token_hex(8), f"dev-{secrets.token_hex(4)}"
    token = agent_token(servers, fresh("kinds"), sub=sub, jti=jti, did=did)
    entry = {
        "user": {"kind": "user", "iss": agents.issuer, "sub": sub},
        "token": {"kind": "token", "iss": agents.issuer, "jti": jti},
        "device": {"kind": "device", "value": did},
        "issuer-of-other": {"kind": "issuer", "value": agents.issuer + "/other"},
    }[kind]
    add(gateway, servers, **entry)
    resp = gateway.request("GET", "/dn/strict/k", bearer(token))
    if kind == "issuer-of-other":
        assert resp.status == 200, resp
    else:
        assert_refused(resp, 401, "invalid_token", origin)


def test_a_time_fence_allows_until_its_time_then_403(gateway, servers, origin):
    agent = fresh("fence")
    token = agent_token(servers, agent)
    add(gateway, servers, kind="agent", value=agent, fence=int(time.time()) + 3)
    assert gateway.request("GET", "/dn/strict/f", bearer(token)).status == 200
    time.sleep(3.2)
    remark(origin, servers)
    resp = gateway.request("GET", "/dn/strict/f", bearer(token))
    body = assert_refused(resp, 403, "invalid_token", origin)
    assert resp.headers["www-authenticate"] == (
        f'Bearer realm="{REALM}", error="invalid_token", resource_metadata='
        f'"{gateway.base}/.well-known/oauth-protected-resource/dn/strict"')
    remark(origin, servers)
    assert_refused(gateway.request("GET", "/dn/cached/f", bearer(token)), 403, "invalid_token", origin)
    assert body["error_description"] == "The token is no longer accepted for this principal."


def test_an_unreachable_deny_store_is_503_never_an_allow(gateway, servers, origin):
    agent = fresh("down")
    token = agent_token(servers, agent)
    assert gateway.request("GET", "/dn/cached/d", bearer(token)).status == 200
    assert gateway.request("POST", "/__attestgate/selftest/deny-store/down").status == 200
    try:
        remark(origin, servers)
        assert_refused(gateway.request("GET", "/dn/strict/d", bearer(token)), 503, "temporarily_unavailable", origin)
        time.sleep(BOUND + 0.1)
        remark(origin, servers)
        for _ in range(3):
            resp = gateway.request("GET", "/dn/cached/d", bearer(token))
            assert_refused(resp, 503, "temporarily_unavailable", origin)
        # The operator API fails closed too.
        assert op(gateway, servers, "POST", BASE, {"kind": "agent", "value": agent, "reason": "r"}).status == 503
        # Routes without the check do not depend on the store.
        assert gateway.request("GET", "/dn/off/d", bearer(token)).status == 200
    finally:
        assert gateway.request("POST", "/__attestgate/selftest/deny-store/up").status == 200
    assert gateway.request("GET", "/dn/cached/d", bearer(token)).status == 200


def test_200_concurrent_requests_during_a_revocation_none_after_ack_plus_bound(gateway, servers):
    agent = fresh("race")
    token = agent_token(servers, agent)
    assert gateway.request("GET", "/dn/cached/r", bearer(token)).status == 200
    results: list[tuple[float, int]] = []
    lock = threading.Lock()
    acked: list[float] = []
    stop_after = [float("inf")]

    def worker():
        while True:
            with lock:
                if len(results) >= 200 and time.time() > stop_after[0]:
                    return
            started = time.time()
            status = gateway.request("GET", "/dn/cached/r", bearer(token)).status
            with lock:
                results.append((started, status))

    with ThreadPoolExecutor(max_workers=12) as pool:
        futures = [pool.submit(worker) for _ in range(12)]
        time.sleep(0.5)
        add(gateway, servers, kind="agent", value=agent)
        acked.append(time.time())
        stop_after[0] = acked[0] + BOUND + 1.0
        for f in futures:
            f.result()
    assert len(results) >= 200
    assert {s for _, s in results} <= {200, 401}, {s for _, s in results}
    late = [(round(t - acked[0], 3), s) for t, s in results if t > acked[0] + BOUND and s != 401]
    assert late == [], late
    assert any(s == 200 for t, s in results if t < acked[0]), "no request passed before"
    after = [t - acked[0] for t, s in results if t > acked[0] + BOUND]
    assert after, "no request started after acknowledgement + bound"
    print(f"\n{len(results)} requests, {len(after)} after ack+bound, all refused")


# ---- bad input ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body, description",
    [
        (b"", "not one JSON object"),
        (b"[]", "not one JSON object"),
        (b'{"kind":"agent","value":"a","reason":"r"', "not one JSON object"),
        (b'{"kind":"agent","kind":"agent","value":"a","reason":"r"}', "not one JSON object"),
        (b'{"kind":"agent","value":"a","reason":"r","x":' + b"[" * 300 + b"]" * 300 + b"}", "not one JSON object"),
        (b'{"kind":"root","value":"a","reason":"r"}', "kind must be"),
        (b'{"kind":1,"value":"a","reason":"r"}', "kind must be"),
        (b'{"kind":"agent","value":7,"reason":"r"}', "key fields"),
        (b'{"kind":"user","sub":"a","reason":"r"}', "key fields"),
        (b'{"kind":"agent","value":"a"}', "reason must be"),
        (b'{"kind":"agent","value":"a","reason":"r","fence":"18:00"}', "fence must be"),
        (b'{"kind":"agent","value":"a","reason":"r","source":"status_list"}', "does not take"),
        (b'\xff\xfe', "not one JSON object"),
    ],
)
def test_bad_add_requests_are_400_and_store_nothing(gateway, servers, body, description):
    resp = op(gateway, servers, "POST", BASE, body)
    assert resp.status == 400, resp
    got = resp.json()
    assert got["error"] == "invalid_request" and description in got["error_description"], got


def test_huge_bodies_ids_and_queries(gateway, servers):
    resp = op(gateway, servers, "POST", BASE, b'{"kind":"agent","value":"' + b"a" * 20000 + b'","reason":"r"}')
    assert resp.status == 413 and resp.json()["error"] == "request_too_large", resp
    resp = op(gateway, servers, "POST", BASE, {"kind": "agent", "value": "a" * 1025, "reason": "r"})
    assert resp.status == 400
    for path in [f"{BASE}/not-an-id", f"{BASE}/99abcdef", f"{BASE}/00" + "a" * 100, f"{BASE}/../x"]:
        assert op(gateway, servers, "GET", path).status in (400, 404), path
    for q in ["?limit=0", "?limit=9999", "?limit=1&limit=2", "?after=../x", "?x=1", "?limit=-1"]:
        resp = op(gateway, servers, "GET", BASE + q)
        assert resp.status == 400, (q, resp)
    assert op(gateway, servers, "PUT", BASE, {}).status == 405
    assert op(gateway, servers, "GET", f"{BASE}/lookup").status == 405


def test_concurrent_adds_of_one_key_all_land_and_all_refuse(gateway, servers, origin):
    agent = fresh("concurrent")
    with ThreadPoolExecutor(max_workers=8) as pool:
        entries = list(pool.map(lambda _: add(gateway, servers, kind="agent", value=agent), range(8)))
    ids = {e["id"] for e in entries}
    assert len(ids) == 8
    found = op(gateway, servers, "POST", f"{BASE}/lookup", {"kind": "agent", "value": agent}).json()
    assert {e["id"] for e in found["entries"]} == ids
    assert_refused(gateway.request("GET", "/dn/strict/c", bearer(agent_token(servers, agent))), 401, "invalid_token", origin)


# ---- the command-line tool ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def cli():
    import subprocess

    from conftest import ROOT

    subprocess.run(["cargo", "build", "--quiet", "--bin", "attestgate"], cwd=ROOT, check=True, timeout=900)
    return ROOT / "target" / "debug" / "attestgate"


def test_the_cli_adds_lists_gets_and_removes_through_the_operator_api(gateway, servers, cli, tmp_path, origin):
    import os
    import subprocess

    token_file = tmp_path / "operator.jwt"
    token_file.write_text(operator_token(servers) + "\n")
    env = dict(os.environ, ATTESTGATE_GATEWAY=gateway.base)

    def run(*args, ok=True):
        r = subprocess.run([str(cli), "deny", *args, "--token-file", str(token_file)],
                           env=env, capture_output=True, text=True, timeout=60)
        assert (r.returncode == 0) == ok, (r.stdout, r.stderr)
        return r

    agent = fresh("cli")
    entry = json.loads(run("add", "--kind", "agent", "--value", agent, "--reason", "cli test").stdout)
    assert entry["value"] == agent and entry["by"]["sub"] == "ops:alice"
    assert_refused(gateway.request("GET", "/dn/strict/cli", bearer(agent_token(servers, agent))), 401, "invalid_token", origin)
    assert json.loads(run("get", entry["id"]).stdout) == entry
    listed = json.loads(run("list", "--limit", "500").stdout)
    assert isinstance(listed["entries"], list)
    assert json.loads(run("rm", entry["id"]).stdout)["id"] == entry["id"]
    assert "404" in run("get", entry["id"], ok=False).stderr
    # the token never on the command line; a bad one is the gateway's 401
    r = subprocess.run([str(cli), "deny", "list", "--token", "x"], env=env, capture_output=True, text=True)
    assert r.returncode != 0 and "never a command-line argument" in r.stderr
    token_file.write_text(operator_token(servers, scope="openid"))
    assert "403" in run("list", ok=False).stderr
