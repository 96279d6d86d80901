"""Issue 14 items 1-2 end to end: upstreams and credential injection, in workerd.

The authorization server is the real npm `oidc-provider` (features.clientCredentials), started
here on 127.0.0.1 (tests/e2e/as/oidc_as.mjs); the tokens it issues are its own, and the tests
check them through its introspection endpoint. oidc-provider has no RFC 8693 token exchange:
the exchange grant is a STAND-IN registered on it (`registerGrantType`, in oidc_as.mjs), which
verifies the subject and actor tokens with npm `jose` and issues through oidc-provider's token
model. Agent tokens are minted by joserfc (servers.py); the gateway's own JWTs are verified here
by joserfc against the gateway's published JWKS.
The recording origin (servers.py) shows what each upstream received.
"""

from __future__ import annotations

import base64
import http.client
import json
import subprocess
import threading
import time

import pytest

from conftest import INJECT_AS_PORT, INJECT_SECRETS, ROOT
from procs import stop_group
from test_foundation import assert_refusal

AS_BASE = f"http://127.0.0.1:{INJECT_AS_PORT}"


def as_request(method: str, path: str, body: bytes | None = None, headers=None):
    conn = http.client.HTTPConnection("127.0.0.1", INJECT_AS_PORT, timeout=10)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


@pytest.fixture(scope="module")
def auth_server(gateway, servers):
    env = {
        "AS_SUBJECT_ISSUER": servers.issuer_named("ij").issuer,
        "AS_SUBJECT_JWKS": servers.jwks_uri_of("ij"),
        "AS_GATEWAY_JWKS": f"{gateway.base}/.well-known/attestgate/jwks.json",
        "AS_PORT": str(INJECT_AS_PORT),
        "AS_CLIENT_ID": INJECT_SECRETS["IJ_CLIENT_ID"],
        "AS_CLIENT_SECRET": INJECT_SECRETS["IJ_CLIENT_SECRET"],
        "PATH": str(ROOT / "node_modules" / ".bin"),
    }
    proc = subprocess.Popen(
        [str(ROOT / "node_modules" / ".bin" / "node"), str(ROOT / "tests/e2e/as/oidc_as.mjs")],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    deadline = time.time() + 30
    while True:
        try:
            status, _ = as_request("GET", "/.well-known/openid-configuration")
            if status == 200:
                break
        except OSError:
            pass
        if proc.poll() is not None or time.time() > deadline:
            out = proc.stdout.read().decode(errors="replace") if proc.stdout else ""
            stop_group(proc)
            pytest.fail(f"oidc-provider did not start: {out[-2000:]}")
        time.sleep(0.2)
    yield proc
    stop_group(proc)


def stats(member: str = "counts"):
    status, body = as_request("GET", "/stats")
    assert status == 200
    return json.loads(body)[member]


def introspect(token: str) -> dict:
    basic = base64.b64encode(
        f'{INJECT_SECRETS["IJ_CLIENT_ID"]}:{INJECT_SECRETS["IJ_CLIENT_SECRET"]}'.encode()
    ).decode()
    status, body = as_request(
        "POST",
        "/token/introspection",
        body=f"token={token}".encode(),
        headers={
            "authorization": f"Basic {basic}",
            "content-type": "application/x-www-form-urlencoded",
        },
    )
    assert status == 200, body
    return json.loads(body)


def inject_log(gateway, request_id: str, timeout: float = 10.0) -> list[dict]:
    """The `inject_failed` log lines of one request (the runtime writes its console lines a
    little after the response)."""
    deadline = time.time() + timeout
    while True:
        lines = [
            json.JSONDecoder().raw_decode(line[line.index("{"):])[0]
            for line in gateway.logs().splitlines()
            if '"inject_failed"' in line and request_id in line
        ]
        if lines or time.time() > deadline:
            return lines
        time.sleep(0.1)


def agent_token(servers, **claims) -> str:
    return servers.issuer_named("ij").mint("ij-es256", **claims)


def seen_headers(entry) -> dict:
    out: dict[str, list[str]] = {}
    for name, value in entry["headers"]:
        out.setdefault(name, []).append(value)
    return out


# Everything a client could send that is the gateway's, another upstream's credential, or a
# forged claim, in several spellings.
HOSTILE = [
    ("dpop", "eyJhbGciOiJFUzI1NiJ9.e30.sig"),
    ("approov-token", "stolen-attestation"),
    ("Approov_Token", "stolen-attestation"),
    ("x-firebase-appcheck", "stolen-appcheck"),
    ("oauth-client-attestation", "stolen-attestation"),
    ("oauth-client-attestation-pop", "stolen-pop"),
    ("signature", "sig1=:AAAA:"),
    ("signature-input", 'sig1=("@method");keyid="k"'),
    ("attestgate-receipt", "forged.receipt.jws"),
    ("Attestgate_Receipt", "forged.receipt.jws"),
    ("x-api-key", "stolen-api-key"),
    ("x_api_key", "stolen-api-key"),
    ("x-verified-user", "user:mallory"),
    ("x_verified_user", "user:mallory"),
    ("x-verified-route", "admin"),
]


def assert_no_hostile(headers: dict, allowed: dict[str, str]):
    """None of HOSTILE reached the upstream, except the headers in `allowed` with exactly the
    gateway's value."""
    for name, value in HOSTILE:
        low = name.lower().replace("_", "-")
        for got in headers.get(low, []) + headers.get(name.lower(), []):
            assert allowed.get(low) == got, f"{name}: {got!r} reached the upstream"
            assert got != value


def test_static_credential_replaces_everything_the_client_sent(gateway, servers, origin):
    token = agent_token(servers)
    resp = gateway.request(
        "GET",
        "/ij/static/items?x=1",
        [("authorization", f"Bearer {token}"), ("cookie", "session=kept-here"), *HOSTILE],
    )
    assert resp.status == 200, resp
    seen = origin.since()
    assert len(seen) == 1
    assert seen[0]["path"] == "/up/static/ij/static/items?x=1"
    headers = seen_headers(seen[0])
    key = INJECT_SECRETS["IJ_STATIC_KEY"]
    assert headers["x-api-key"] == [key], "exactly the gateway's credential, once"
    assert "authorization" not in headers, "the agent's token never reaches the upstream"
    assert_no_hostile(
        headers,
        {"x-api-key": key, "x-verified-user": "user:alice", "x-verified-route": "ij-static"},
    )
    assert headers["x-verified-user"] == ["user:alice"]
    # The credential is never echoed or logged.
    assert key.encode() not in resp.body
    assert key not in gateway.logs()


def test_static_credential_in_authorization_with_its_scheme(gateway, servers, origin):
    token = agent_token(servers)
    resp = gateway.request("GET", "/ij/bearer/x", {"authorization": f"Bearer {token}"})
    assert resp.status == 200, resp
    headers = seen_headers(origin.since()[0])
    assert headers["authorization"] == [f'Bearer {INJECT_SECRETS["IJ_STATIC_KEY"]}']
    assert token not in json.dumps(headers)


def test_client_credentials_token_from_oidc_provider_is_cached_per_upstream(
    gateway, servers, origin, auth_server
):
    before = stats().get("/token", 0)
    tokens = []
    for i in range(3):
        resp = gateway.request(
            "GET", f"/ij/cc/r{i}", {"authorization": f"Bearer {agent_token(servers)}"}
        )
        assert resp.status == 200, resp
    seen = origin.since()
    assert len(seen) == 3
    for entry in seen:
        auth = seen_headers(entry)["authorization"]
        assert len(auth) == 1 and auth[0].startswith("Bearer ")
        tokens.append(auth[0][len("Bearer "):])
    # One token request for three forwards: cached until expires_in minus the margin.
    assert stats().get("/token", 0) - before == 1
    assert len(set(tokens)) == 1
    # A real token of the authorization server, for the gateway's client and the scope asked.
    info = introspect(tokens[0])
    assert info["active"] is True, info
    assert info["client_id"] == INJECT_SECRETS["IJ_CLIENT_ID"]
    assert info["scope"] == "ij:read"
    # Another upstream with the same client gets its own token, never this one; the static
    # upstream's routes see neither.
    mark = len(servers.recorder.snapshot())
    resp = gateway.request("GET", "/ij/cc2/x", {"authorization": f"Bearer {agent_token(servers)}"})
    assert resp.status == 200, resp
    resp = gateway.request(
        "GET", "/ij/static/x", {"authorization": f"Bearer {agent_token(servers)}"}
    )
    assert resp.status == 200, resp
    other, static = servers.recorder.snapshot()[mark:]
    other_auth = seen_headers(other)["authorization"][0]
    assert other_auth.startswith("Bearer ") and other_auth != f"Bearer {tokens[0]}"
    assert "authorization" not in seen_headers(static)
    assert tokens[0] not in json.dumps(static) and tokens[0] not in json.dumps(other)
    # Neither the token nor the client secret is logged.
    logs = gateway.logs()
    assert tokens[0] not in logs
    assert INJECT_SECRETS["IJ_CLIENT_SECRET"] not in logs


def test_concurrent_requests_fetch_the_token_once(gateway, servers, origin, auth_server):
    before = stats().get("/delay/token", 0)
    results: list[int] = []

    def one(i):
        r = gateway.request(
            "GET", f"/ij/flight/{i}", {"authorization": f"Bearer {agent_token(servers)}"}
        )
        results.append(r.status)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [200] * 6, results
    assert stats().get("/delay/token", 0) - before == 1, "single flight"
    auths = {seen_headers(e)["authorization"][0] for e in origin.since()}
    assert len(auths) == 1


@pytest.mark.parametrize(
    "path,reason",
    [
        ("/ij/badsecret/x", "token_endpoint_status_401"),
        ("/ij/slow/x", "token_endpoint_timeout"),
        ("/ij/garbage/x", "token_endpoint_not_json"),
        ("/ij/down/x", "token_endpoint_unreachable"),
    ],
)
def test_token_endpoint_faults_are_503_and_nothing_is_forwarded(
    gateway, servers, origin, auth_server, path, reason
):
    resp = gateway.request("GET", path, {"authorization": f"Bearer {agent_token(servers)}"})
    body = assert_refusal(resp, 503, "temporarily_unavailable", origin)
    assert resp.headers.get("retry-after") == "5"
    lines = inject_log(gateway, body["request_id"])
    assert lines and lines[0]["reason"] == reason, lines
    assert INJECT_SECRETS["IJ_WRONG_SECRET"] not in gateway.logs()


def test_a_missing_credential_secret_is_503_and_logged_by_name(gateway, servers, origin):
    resp = gateway.request(
        "GET", "/ij/missing/x", {"authorization": f"Bearer {agent_token(servers)}"}
    )
    body = assert_refusal(resp, 503, "temporarily_unavailable", origin)
    lines = inject_log(gateway, body["request_id"])
    assert lines and lines[0]["reason"] == "secret_missing", lines
    assert lines[0]["secret"] == "IJ_NOT_SET"


def test_a_bad_agent_token_never_reaches_the_token_endpoint(gateway, servers, origin, auth_server):
    before = stats()
    resp = gateway.request("GET", "/ij/flight/x", {"authorization": "Bearer a.b.c"})
    assert_refusal(resp, 401, "invalid_token", origin)
    assert stats() == {**before, "/stats": before.get("/stats", 0) + 1}


def test_an_upstream_without_auth_strips_owned_headers_and_cookies(gateway, origin):
    resp = gateway.request(
        "GET",
        "/ij/plain/x",
        [("authorization", "Bearer client-token"), ("cookie", "session=abc"), *HOSTILE],
    )
    assert resp.status == 200, resp
    headers = seen_headers(origin.since()[0])
    assert "authorization" not in headers
    assert "cookie" not in headers
    assert_no_hostile(headers, {"x-verified-route": "ij-plain"})


def gateway_keys(gateway):
    from joserfc.jwk import KeySet

    resp = gateway.request("GET", "/.well-known/attestgate/jwks.json")
    assert resp.status == 200, resp
    return KeySet.import_key_set(resp.json())


def test_token_exchange_at_the_stand_in_grant_per_principal(gateway, servers, origin, auth_server):
    """RFC 8693 through oidc-provider with the STAND-IN exchange grant of oidc_as.mjs."""
    before = stats().get("/te/token", 0)
    planner = {"sub": "agent:planner"}

    def call(sub, act, path):
        token = agent_token(servers, sub=sub, act=act, scope="ij:read")
        resp = gateway.request("GET", path, {"authorization": f"Bearer {token}"})
        assert resp.status == 200, resp
        entry = servers.recorder.snapshot()[-1]
        auth = seen_headers(entry)["authorization"]
        assert len(auth) == 1 and auth[0].startswith("Bearer ")
        assert token not in json.dumps(entry), "the agent's token never reaches the upstream"
        return auth[0][len("Bearer "):]

    alice = call("user:alice", planner, "/ij/te/a")
    info = introspect(alice)
    assert info["active"] is True, info
    assert info["sub"] == "user:alice"
    # The act chain: the gateway (its assertion, verified by the AS against the gateway's
    # JWKS), then the agent of the subject token.
    assert info["act"] == {"sub": gateway.base, "act": planner}, info
    assert info["aud"] == "https://te-upstream.example"
    assert info["scope"] == "ij:read"
    # A second token of the same principal and chain: the cached exchange, no new request.
    assert call("user:alice", planner, "/ij/te/b") == alice
    assert stats().get("/te/token", 0) - before == 1
    # Another principal, another chain: their own exchanges, never alice's token.
    bob = call("user:bob", planner, "/ij/te/c")
    buyer = call("user:alice", {"sub": "agent:buyer"}, "/ij/te/d")
    assert len({alice, bob, buyer}) == 3
    assert stats().get("/te/token", 0) - before == 3
    assert introspect(bob)["sub"] == "user:bob"
    assert introspect(buyer)["act"] == {"sub": gateway.base, "act": {"sub": "agent:buyer"}}
    logs = gateway.logs()
    assert alice not in logs and bob not in logs


def test_gateway_jwt_is_signed_for_the_upstream_with_the_verified_chain(gateway, servers, origin):
    from joserfc import jwt

    act = {"sub": "agent:planner", "act": {"sub": "agent:root"}}
    token = agent_token(servers, sub="user:alice", act=act)
    resp = gateway.request("GET", "/ij/jwt/x", {"authorization": f"Bearer {token}"})
    assert resp.status == 200, resp
    auth = seen_headers(origin.since()[0])["authorization"]
    assert len(auth) == 1 and auth[0].startswith("Bearer ")
    minted = auth[0][len("Bearer "):]
    assert minted != token
    decoded = jwt.decode(minted, gateway_keys(gateway), algorithms=["ES256"])
    assert decoded.header["typ"] == "attestgate-upstream+jwt"
    assert decoded.header["kid"] == "gw-e2e-2"
    c = decoded.claims
    assert c["aud"] == "https://jwt-upstream.example"
    assert c["iss"] == gateway.base
    assert c["sub"] == "user:alice"
    assert c["act"] == act
    assert c["subject_issuer"] == servers.issuer_named("ij").issuer
    assert c["exp"] - c["iat"] == 60
    assert abs(c["iat"] - time.time()) < 30
    assert minted not in gateway.logs()
    # One per request: a second request gets another jti.
    gateway.request("GET", "/ij/jwt/y", {"authorization": f"Bearer {agent_token(servers)}"})
    second = seen_headers(servers.recorder.snapshot()[-1])["authorization"][0][len("Bearer "):]
    assert jwt.decode(second, gateway_keys(gateway), algorithms=["ES256"]).claims["jti"] != c["jti"]


CLI_POLICY = """
[gateway]
origin = "https://origin.example"

[provider.agent]
issuer = "https://idp.example"
audiences = ["https://api.example"]
algorithms = ["ES256"]
jwks_uri = "https://idp.example/jwks.json"

[upstreams.billing]
url = "https://billing.internal.example"
auth = { kind = "static", secret = "BILLING_API_KEY", header = "x-api-key" }

[upstreams.ledger]
url = "https://ledger.internal.example"
auth = { kind = "client_credentials", token_url = "https://as.example/token", secrets = { client_id = "LEDGER_ID", client_secret = "LEDGER_SECRET" }, scope = "ledger:read" }

[[route]]
id = "billing"
path = "/billing/**"
upstream = "billing"
require = { all = ["agent"] }

[[route]]
id = "ledger"
path = "/ledger/**"
upstream = "ledger"
require = { all = ["agent"] }
"""


def test_explain_shows_what_a_route_injects_and_never_a_secret(tmp_path, monkeypatch):
    from joserfc import jwk as jjwk
    from servers import sign

    subprocess.run(
        ["cargo", "build", "--quiet", "--bin", "attestgate"], cwd=ROOT, check=True, timeout=900
    )
    cli = ROOT / "target" / "debug" / "attestgate"
    (tmp_path / "policy.toml").write_text(CLI_POLICY)
    key = jjwk.ECKey.generate_key("P-256", parameters={"kid": "k1"}, private=True)
    (tmp_path / "jwks.json").write_text(json.dumps({"keys": [key.as_dict(private=False)]}))
    now = int(time.time())
    token = sign(
        {"alg": "ES256", "kid": "k1", "typ": "at+jwt"},
        {"iss": "https://idp.example", "aud": "https://api.example", "sub": "user:alice",
         "iat": now, "exp": now + 300},
        key,
    )
    # Even with the secret in the environment, explain never reads or shows it.
    monkeypatch.setenv("BILLING_API_KEY", "sk-must-never-appear")

    def explain(path):
        out = subprocess.run(
            [str(cli), "explain", "GET", f"https://api.example{path}", "--dir", str(tmp_path),
             "--token", f"agent={token}", "--jwks", f"agent={tmp_path / 'jwks.json'}"],
            capture_output=True, text=True, timeout=60,
        )
        assert out.returncode == 0, out.stderr
        return out.stdout

    billing = explain("/billing/x")
    assert "upstream  billing (" in billing and "https://billing.internal.example" in billing
    assert "inject  static into x-api-key: <the secret's value>" in billing
    assert "Worker secrets read: BILLING_API_KEY (values never shown)" in billing
    assert "inject  static into x-api-key (obtained by the Worker; never shown)" in billing
    assert "authorization" in billing.split("strip", 1)[1]
    assert "sk-must-never-appear" not in billing
    ledger = explain("/ledger/x")
    assert "inject  client_credentials into authorization: Bearer <an access token from https://as.example/token" in ledger
    assert "Worker secrets read: LEDGER_ID, LEDGER_SECRET" in ledger
