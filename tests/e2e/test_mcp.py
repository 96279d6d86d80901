"""Issue 14 item 5: an MCP client and server (the official TypeScript SDK,
`@modelcontextprotocol/sdk`) through the gateway, with RFC 9728 discovery.

- origin: `tests/e2e/mcp/server.mjs`, the SDK's McpServer over Streamable HTTP (sessions, SSE);
- authorization server: `tests/e2e/mcp/auth_server.mjs`, npm `oidc-provider` (a real one, not a
  stand-in), client_credentials, RFC 9068 JWT access tokens;
- client: `tests/e2e/mcp/client.mjs`, the SDK's Client with its own OAuth client
  (ClientCredentialsProvider). It is given the MCP endpoint and the issuer it trusts its client
  secret to, nothing else: the gateway's 401 names the metadata (`resource_metadata`), the
  metadata names the authorization server, the SDK discovers it, gets a token for the
  metadata's `resource` and retries.

The policy is `tests/e2e/policies/mcp.toml` (routes `mcp-tools`, `mcp-admin`, one resource
`/mcp`). Every refused request is checked to have never reached the MCP server.
"""

from __future__ import annotations

import json
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from jwstools import decision_line
from procs import stop_group

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
NODE = str(ROOT / "node_modules" / ".bin" / "node")
REALM = "e2e.attestgate.test"
CLIENT_ID = "mcp-agent"
CLIENT_SECRET = "mcp-agent-secret-for-the-e2e-test-only"
AUDIENCE = "https://mcp.e2e.attestgate.test"
WELL_KNOWN = "/.well-known/oauth-protected-resource"


def start_node(script: str, *args: str, log: Path) -> subprocess.Popen:
    """Start a node script in its own process group; wait for its first stdout line."""
    out = open(log, "ab")
    proc = subprocess.Popen(
        [NODE, str(HERE / "mcp" / script), *args],
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=out,
        start_new_session=True,
    )
    line = proc.stdout.readline()
    if not line:
        stop_group(proc)
        raise RuntimeError(f"{script} did not start: {log.read_text()[-3000:]}")
    json.loads(line)
    return proc


@pytest.fixture(scope="module")
def mcp(gateway, reserved_ports, workdir):
    """The MCP server and its authorization server on the ports the policy names."""
    as_port, mcp_port = reserved_ports["mcp-as"], reserved_ports["mcp-server"]
    resource = f"{gateway.base}/mcp"
    procs = [
        start_node("server.mjs", str(mcp_port), log=workdir / "mcp-server.log"),
        start_node(
            "auth_server.mjs", str(as_port), resource, AUDIENCE, log=workdir / "mcp-as.log"
        ),
    ]

    class Mcp:
        issuer = f"http://127.0.0.1:{as_port}"
        base = f"http://127.0.0.1:{mcp_port}"
        metadata_url = f"{gateway.base}{WELL_KNOWN}/mcp"

        def seen(self):
            with urllib.request.urlopen(f"{self.base}/__seen", timeout=10) as r:
                return json.loads(r.read())

    yield Mcp()
    for p in procs:
        stop_group(p)


def run_client(gateway, mcp, path: str, scope: str, *extra: str) -> dict:
    result = subprocess.run(
        [
            NODE,
            str(HERE / "mcp" / "client.mjs"),
            f"{gateway.base}{path}",
            mcp.issuer,
            CLIENT_ID,
            CLIENT_SECRET,
            scope,
            *extra,
        ],
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr.decode(errors="replace")[-3000:]
    return json.loads(result.stdout.decode().strip().splitlines()[-1])


def gateway_calls(out: dict, gateway, path: str) -> list[dict]:
    return [e for e in out["exchanges"] if e["url"] == f"{gateway.base}{path}"]


def challenge(gateway, error: str | None = None, scope: str | None = None) -> str:
    params = f'realm="{REALM}"'
    if error:
        params += f', error="{error}"'
    if scope:
        params += f', scope="{scope}"'
    return f'Bearer {params}, resource_metadata="{gateway.base}{WELL_KNOWN}/mcp"'


# ---- the metadata documents and the challenges ---------------------------------------------


def test_the_mcp_resource_has_its_rfc_9728_metadata(gateway, mcp, origin):
    before = len(mcp.seen())
    resp = gateway.request("GET", f"{WELL_KNOWN}/mcp")
    assert resp.status == 200, resp
    assert resp.headers["content-type"] == "application/json"
    assert resp.headers["cache-control"] == "max-age=300"
    assert resp.json() == {
        "resource": f"{gateway.base}/mcp",
        "authorization_servers": [mcp.issuer],
        "bearer_methods_supported": ["header"],
        "scopes_supported": ["mcp:tools", "mcp:admin"],
        "attestgate_challenge_endpoint": f"{gateway.base}/.well-known/attestgate/challenge",
    }
    # The root document: the gateway as a whole (every protected route), resource = the origin.
    root = gateway.request("GET", WELL_KNOWN)
    assert root.status == 200, root
    doc = root.json()
    assert doc["resource"] == gateway.base
    assert mcp.issuer in doc["authorization_servers"]
    assert {"mcp:tools", "mcp:admin", "orders:read"} <= set(doc["scopes_supported"])
    assert "dpop_signing_alg_values_supported" in doc  # the e2e policies have DPoP routes too
    # A route is not a resource (the MCP SDK tries this path first, then the challenge's or
    # the root's), and only GET/HEAD are answered.
    for path in ("/mcp/tools", "/mcp/", "/MCP", "/nothing"):
        miss = gateway.request("GET", f"{WELL_KNOWN}{path}")
        assert miss.status == 404, (path, miss)
        assert miss.json()["error"] == "not_found"
        assert miss.headers["cache-control"] == "no-store"
    post = gateway.request("POST", f"{WELL_KNOWN}/mcp", body=b"{}")
    assert post.status == 405, post
    assert post.headers["allow"] == "GET, HEAD"
    head = gateway.request("HEAD", f"{WELL_KNOWN}/mcp")
    assert (head.status, head.body, head.headers["cache-control"]) == (200, b"", "max-age=300")
    # The decision log names the endpoint in place of a route.
    line = json.loads(decision_line(gateway, miss.json()["request_id"]))
    assert (line["route"], line["verdict"], line["reason"], line["status"]) == (
        "resource-metadata", "deny", "no_route", 404,
    ), line
    # The gateway answered all of it itself.
    assert origin.since() == []
    assert len(mcp.seen()) == before


def test_every_challenge_names_the_metadata_and_insufficient_scope_the_scopes(gateway, mcp, origin):
    before = len(mcp.seen())
    resp = gateway.request("POST", "/mcp/tools", {"content-type": "application/json"}, b"{}")
    assert resp.status == 401, resp
    assert resp.json()["error"] == "missing_token"
    assert resp.headers["www-authenticate"] == challenge(gateway)
    # Nothing from the request is echoed: not its path, query or Host-like headers.
    resp = gateway.request("GET", "/mcp/admin?x=%22y", {"authorization": "Bearer a.b.c"})
    assert resp.status == 401, resp
    assert resp.headers["www-authenticate"] == challenge(gateway, "invalid_token")
    assert len(mcp.seen()) == before
    assert origin.since() == []


# ---- the SDK client through the gateway -----------------------------------------------------


def test_sdk_client_discovers_gets_a_token_and_calls_tools(gateway, mcp):
    before = len(mcp.seen())
    out = run_client(gateway, mcp, "/mcp/tools", "mcp:tools")
    assert out["ok"], out
    ex = out["exchanges"]
    # 1. the first request carries no token and is refused, naming the metadata;
    assert (ex[0]["method"], ex[0]["url"], ex[0]["status"], ex[0]["sent_token"]) == (
        "POST", f"{gateway.base}/mcp/tools", 401, False,
    ), ex[0]
    assert ex[0]["www_authenticate"] == challenge(gateway)
    # 2. the SDK reads exactly that metadata document, 3. the authorization server's metadata,
    # 4. the token, 5. retries with it.
    assert ex[1]["url"] == mcp.metadata_url and ex[1]["status"] == 200, ex[1]
    discovery = [e for e in ex[2:] if e["url"].startswith(mcp.issuer + "/.well-known/")]
    assert discovery and discovery[-1]["status"] == 200, ex
    token = [e for e in ex if e["url"] == f"{mcp.issuer}/token"]
    assert [e["status"] for e in token] == [200], ex
    assert out["token_scopes"] == ["mcp:tools"]
    # Nothing the client sent went to the gateway as an authorization server.
    assert all(
        e["url"].startswith(mcp.issuer) or e["url"].startswith(f"{gateway.base}/mcp/") or e["url"] == mcp.metadata_url
        for e in ex
    ), ex
    calls = gateway_calls(out, gateway, "/mcp/tools")
    assert [c["status"] for c in calls if c["sent_token"]] and all(
        c["status"] in (200, 202) for c in calls if c["sent_token"]
    ), calls
    # The SSE responses and the session id came through the gateway.
    assert any(c["content_type"] == "text/event-stream" for c in calls), calls
    assert out["session"] and any(c["session"] == out["session"] for c in calls)
    assert out["tools"] == ["echo", "whoami"]
    assert out["call"]["content"] == [{"type": "text", "text": "echo: through the gateway"}]
    whoami = json.loads(out["whoami"]["content"][0]["text"])
    assert whoami == {
        "x-verified-client": CLIENT_ID,
        "x-verified-route": "mcp-tools",
        "x-verified-scope": "mcp:tools",
    }, whoami

    # The MCP server saw only the authorized requests, each verified, never the token.
    seen = mcp.seen()[before:]
    authorized = [c for c in calls if c["sent_token"]]
    assert len(seen) == len(authorized), (seen, calls)
    assert all(s["verified"].get("x-verified-route") == "mcp-tools" for s in seen), seen
    assert all(s["authorization"] is None for s in seen), seen
    rpcs = [s["rpc"] for s in seen if s["method"] == "POST"]
    assert rpcs[0] == "initialize" and {"tools/list", "tools/call"} <= set(rpcs), rpcs
    assert "DELETE" in [s["method"] for s in seen], seen
    assert all(s["session"] == out["session"] for s in seen[1:]), seen


def test_a_token_without_the_admin_scope_gets_insufficient_scope_then_steps_up(gateway, mcp):
    before = len(mcp.seen())
    want = challenge(gateway, "insufficient_scope", "mcp:tools mcp:admin")
    # Without step-up: the SDK gets its token, is refused with 403 insufficient_scope naming
    # the scopes, retries once with the same scopes and gives up.
    out = run_client(gateway, mcp, "/mcp/admin", "mcp:tools")
    assert not out["ok"], out
    refusals = [e for e in gateway_calls(out, gateway, "/mcp/admin") if e["status"] == 403]
    assert refusals, out
    for r in refusals:
        assert r["www_authenticate"] == want
        # what the SDK itself reads from the challenge (extractWWWAuthenticateParams)
        assert r["parsed"] == {
            "error": "insufficient_scope",
            "scope": "mcp:tools mcp:admin",
            "resourceMetadataUrl": mcp.metadata_url,
        }, r
    assert out["token_scopes"] and set(out["token_scopes"]) == {"mcp:tools"}
    assert mcp.seen()[before:] == [], "a refused request reached the MCP server"

    # With step-up: the client asks for the scopes the challenge named, and the retry passes.
    out = run_client(gateway, mcp, "/mcp/admin", "mcp:tools", "--step-up", "--tool", "admin_stats")
    assert out["ok"], out
    assert out["token_scopes"] == ["mcp:tools", "mcp:tools mcp:admin"], out
    statuses = [e["status"] for e in gateway_calls(out, gateway, "/mcp/admin")]
    assert statuses[:3] == [401, 403, 200], statuses
    assert out["tools"] == ["admin_stats", "echo", "whoami"]
    assert out["call"]["content"][0]["text"].startswith("requests: ")
    seen = mcp.seen()[before:]
    assert seen and all(
        s["path"] == "/mcp/admin"
        and s["verified"]["x-verified-route"] == "mcp-admin"
        and s["verified"]["x-verified-scope"] == "mcp:tools mcp:admin"
        for s in seen
    ), seen


def test_a_token_for_another_audience_is_refused_before_the_mcp_server(gateway, mcp, servers):
    before = len(mcp.seen())
    # A token from the e2e issuer (another issuer, another audience) is not the MCP AS's.
    token = servers.issuer.mint("k-es256", scope="mcp:tools mcp:admin")
    resp = gateway.request("POST", "/mcp/tools", {"authorization": f"Bearer {token}"}, b"{}")
    assert resp.status == 401, resp
    assert resp.headers["www-authenticate"] == challenge(gateway, "invalid_token")
    time.sleep(0.1)
    assert len(mcp.seen()) == before


# ---- `attestgate explain` shows what the Worker answers -------------------------------------

from test_cli import NOW, cli, explain, run, token, world  # noqa: E402,F401 (fixtures)


def test_cli_explain_prints_the_workers_challenge_and_the_metadata_document(cli, world):
    folder, key = world
    jwks = f"agent={folder / 'jwks.json'}"
    out = explain(cli, folder, token(key, scope="profile"), "--jwks", jwks)
    assert "verdict   403 insufficient_scope (scope_missing)" in out, out
    assert (
        '  WWW-Authenticate: Bearer realm="cli.attestgate.test", error="insufficient_scope", '
        'scope="orders:read", resource_metadata='
        '"https://api.example/.well-known/oauth-protected-resource/v1/orders"\n'
    ) in out, out
    out = run(
        cli, "explain", "GET", "https://api.example/.well-known/oauth-protected-resource/v1/orders",
        "--dir", str(folder), "--now", str(NOW),
    ).stdout
    assert "verdict   200 RFC 9728 protected-resource metadata" in out, out
    doc = json.loads(out.strip().splitlines()[-1])
    assert doc == {
        "resource": "https://api.example/v1/orders",
        "authorization_servers": ["https://idp.example"],
        "bearer_methods_supported": ["header"],
        "scopes_supported": ["orders:read"],
        "attestgate_challenge_endpoint": "https://api.example/.well-known/attestgate/challenge",
    }
