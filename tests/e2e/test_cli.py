"""The `attestgate` command-line tool: `check` and `explain`, run as a user runs them, on tokens
minted by joserfc (an independent JOSE library). `explain` with keys runs the gateway's own
pipeline, so its verdicts must be the Worker's: a good token is allowed with the verified
headers, a token with one flipped signature byte is `bad_signature`, an expired one `expired`.
Needs no Worker: it builds the native binary only."""

from __future__ import annotations

import json
import subprocess
import time

import pytest
from joserfc import jwk

from conftest import ROOT
from servers import sign

POLICY = """
[gateway]
origin = "https://origin.example"
realm = "cli.attestgate.test"

[provider.agent]
issuer = "https://idp.example"
audiences = ["https://api.example"]
algorithms = ["ES256"]
token_types = ["at+jwt"]
jwks_uri = "https://idp.example/jwks.json"
max_lifetime_secs = 3600
required_claims = ["sub"]

[[route]]
id = "orders-read"
methods = ["GET"]
path = "/v1/orders/{id}"
require = { all = ["agent"] }
scopes = ["orders:read"]
forward = { "x-verified-user" = "agent.sub", "x-verified-agent" = "agent.act.sub" }
"""

NOW = 1_900_000_000


@pytest.fixture(scope="module")
def cli():
    subprocess.run(["cargo", "build", "--quiet", "--bin", "attestgate"], cwd=ROOT, check=True, timeout=900)
    return ROOT / "target" / "debug" / "attestgate"


@pytest.fixture(scope="module")
def world(tmp_path_factory, cli):
    folder = tmp_path_factory.mktemp("cli")
    (folder / "policy.toml").write_text(POLICY)
    key = jwk.ECKey.generate_key("P-256", parameters={"kid": "k1"}, private=True)
    (folder / "jwks.json").write_text(json.dumps({"keys": [key.as_dict(private=False)]}))
    return folder, key


def token(key, **over):
    claims = {
        "iss": "https://idp.example",
        "aud": "https://api.example",
        "sub": "user:alice",
        "act": {"sub": "agent:planner"},
        "scope": "orders:read",
        "iat": NOW - 10,
        "exp": NOW + 300,
    }
    claims.update(over)
    return sign({"alg": "ES256", "kid": "k1", "typ": "at+jwt"}, claims, key)


def run(cli, *args, ok=True):
    result = subprocess.run([str(cli), *args], capture_output=True, text=True, timeout=60)
    if ok:
        assert result.returncode == 0, result.stderr
    return result


def explain(cli, folder, tok, *extra):
    return run(
        cli, "explain", "GET", "https://api.example/v1/orders/7", "--dir", str(folder),
        "--token", f"agent={tok}", "--now", str(NOW), *extra,
    ).stdout


def test_check_lists_routes_and_fails_naming_file_route_and_field(cli, world, tmp_path):
    folder, _ = world
    out = run(cli, "check", str(folder)).stdout
    assert "orders-read" in out and "OK: 1 route(s), 1 provider(s)" in out
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "p.toml").write_text(POLICY.replace('scopes = ["orders:read"]', 'scopes = ["orders:read"]\npublic = true'))
    result = run(cli, "check", str(bad), ok=False)
    assert result.returncode == 1
    assert "p.toml" in result.stderr and 'route "orders-read"' in result.stderr and "field" in result.stderr


def test_explain_with_keys_allows_through_the_pipeline(cli, world):
    folder, key = world
    out = explain(cli, folder, token(key), "--jwks", f"agent={folder / 'jwks.json'}")
    assert "decision  the gateway's pipeline" in out, out
    assert "verdict   ALLOW: forward to https://origin.example/v1/orders/7" in out, out
    assert "set     x-verified-user: user:alice" in out
    assert "set     x-verified-agent: agent:planner" in out
    assert "set     x-verified-route: orders-read" in out
    assert "NOT verified" not in out


def test_explain_with_keys_refuses_a_flipped_signature_byte(cli, world):
    folder, key = world
    good = token(key)
    head, payload, sig = good.split(".")
    flipped = ("B" if sig[5] != "B" else "C")
    bad = f"{head}.{payload}.{sig[:5]}{flipped}{sig[6:]}"
    out = explain(cli, folder, bad, "--jwks", f"agent={folder / 'jwks.json'}")
    assert "verdict   401 invalid_token (bad_signature)" in out, out
    assert 'WWW-Authenticate: Bearer realm="cli.attestgate.test", error="invalid_token"' in out


def test_explain_reports_expiry_and_scope_with_the_gateways_mapping(cli, world):
    folder, key = world
    jwks = f"agent={folder / 'jwks.json'}"
    out = explain(cli, folder, token(key, exp=NOW - 120), "--jwks", jwks)
    assert "[FAIL] expired" in out and "verdict   401 invalid_token (expired)" in out, out
    out = explain(cli, folder, token(key, scope="profile"), "--jwks", jwks)
    assert "verdict   403 insufficient_scope (scope_missing)" in out, out


def test_explain_without_keys_says_the_signature_is_not_verified(cli, world):
    folder, key = world
    out = explain(cli, folder, token(key))
    assert "signature NOT verified" in out
    assert "decision  derived from the checks above; signatures of agent NOT verified" in out
    assert "verdict   ALLOW if the signatures and bindings verify" in out
    out = explain(cli, folder, token(key, aud="https://other.example"))
    assert "verdict   401 invalid_token (audience_mismatch)" in out, out


def test_explain_without_a_token_and_on_unknown_routes(cli, world):
    folder, _ = world
    out = run(cli, "explain", "GET", "/v1/orders/7", "--dir", str(folder), "--now", str(NOW)).stdout
    assert "verdict   401 missing_token" in out
    assert 'WWW-Authenticate: Bearer realm="cli.attestgate.test"' in out
    out = run(cli, "explain", "GET", "/nowhere", "--dir", str(folder)).stdout
    assert "verdict   404 not_found (no_route)" in out, out


def test_explain_refuses_bad_arguments(cli, world):
    folder, key = world
    result = run(cli, "explain", "GET", "/v1/orders/7", "--dir", str(folder), "--token", "nobody=x", ok=False)
    assert result.returncode == 1 and 'no provider "nobody"' in result.stderr
    result = run(cli, "explain", "GET", ok=False)
    assert result.returncode == 1 and "explain needs METHOD and URL" in result.stderr
    (folder / "garbage.json").write_text("{not json")
    result = run(cli, "explain", "GET", "/v1/orders/7", "--dir", str(folder), "--token",
                 f"agent={token(key)}", "--jwks", f"agent={folder / 'garbage.json'}", ok=False)
    assert result.returncode == 1 and "not a usable JWKS" in result.stderr
