"""Issue 18, response masking end to end in workerd: an agent caller (a token with `act`) gets
the origin's JSON masked by the route's rules, a human caller (no `act`) the original; each
action (redact, hash, last4, drop); gzip and deflate origin bodies; a non-JSON or broken answer
on a masking route is the gateway's own 502, and a body that breaks after the headers went out
never yields an unmasked value.

Policy: policies/mask.toml (routes `mk-*` under /mk/, provider `mk_agent`, tokens minted by
joserfc for the servers.py issuer /issuers/mk). The origin's answers are set per path
(servers.py `canned`).
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import hmac
import http.client
import json
import time
import zlib

import pytest

from servers import hmac_key, sign

AUD = "https://mk.example"
PATH = "/mk/customers/42"
JSON = {"content-type": "application/json"}

CUSTOMER = {
    "id": "c-42",
    "name": "Ada Lovelace",
    "ssn": "123-45-6789",
    "dob": "1815-12-10",
    "email": "ada@example.com",
    "cards": [{"number": "4111111111111111", "exp": "12/29"}, {"number": 5500005555555559}],
    "contacts": [{"kind": "work", "email": "ada@work.example"}],
    "internal": {"risk": 0.12, "notes": ["vip"]},
}
SECRETS = ["123-45-6789", "1815-12-10", "ada@example.com", "4111111111111111",
           "5500005555555559", "ada@work.example", "vip"]


def token(servers, agent: bool, **claims) -> str:
    if agent:
        claims.setdefault("act", {"sub": "agent:planner"})
    return servers.issuer_named("mk").mint("mk-es256", aud=AUD, **claims)


def get(gateway, servers, agent=True, path=PATH, headers=None):
    return gateway.request("GET", path, {"authorization": f"Bearer {token(servers, agent)}", **(headers or {})})


def serve(servers, body, path=PATH, headers=None, **options):
    servers.canned[path] = {"body": body, "headers": {**JSON, **(headers or {})}, **options}


def h(key: bytes, value: str) -> str:
    mac = hmac.new(key, b"s:" + value.encode(), hashlib.sha256).digest()[:16]
    return "h:" + base64.urlsafe_b64encode(mac).rstrip(b"=").decode()


def expected(key: bytes) -> dict:
    return {
        "id": "c-42",
        "name": "Ada Lovelace",
        "ssn": "[redacted]",
        "dob": "****-**-**",
        "email": h(key, "ada@example.com"),
        "cards": [{"number": "****1111", "exp": "12/29"}, {"number": "****5559"}],
        "contacts": [{"kind": "work", "email": h(key, "ada@work.example")}],
    }


def assert_bad_gateway(resp):
    assert resp.status == 502, resp
    assert resp.json()["error"] == "bad_gateway"
    assert resp.headers["cache-control"] == "no-store"
    assert "attestgate-masked" not in resp.headers
    for s in SECRETS:
        assert s.encode() not in resp.body


@pytest.fixture(autouse=True)
def _clean(servers):
    yield
    for path in [p for p in servers.canned if p.startswith("/mk/")]:
        del servers.canned[path]


def test_an_agent_gets_the_masked_record_and_a_human_the_original(gateway, servers, origin, mk_mask_key):
    body = json.dumps(CUSTOMER, indent=2).encode()
    serve(servers, body, headers={"etag": '"v1"', "cache-control": "public, max-age=60", "vary": "accept"})
    resp = get(gateway, servers, agent=True)
    assert resp.status == 200, resp
    assert resp.json() == expected(mk_mask_key)
    # counts only; 7 values masked: ssn, dob, 2 emails, 2 card numbers, internal
    assert resp.headers["attestgate-masked"] == "7"
    assert resp.headers["cache-control"] == "private, max-age=60"
    assert resp.headers["vary"] == "accept, authorization"
    assert "etag" not in resp.headers
    assert resp.headers.get("content-length", str(len(resp.body))) == str(len(resp.body))
    for s in SECRETS:
        assert s.encode() not in resp.body
    # The hash is stable: the same value maps to the same token on the next request.
    again = get(gateway, servers, agent=True)
    assert again.json()["email"] == resp.json()["email"]
    # The decision log line has the counts and paths, never a value.
    lines = [json.loads(l[l.index("{"):]) for l in gateway.logs().splitlines()
             if '"attestgate":"decision"' in l and '"mask"' in l]
    assert lines and lines[-1]["mask"]["masked"] == 7 and lines[-1]["mask"]["complete"] is True
    assert ["$..email", 2] in lines[-1]["mask"]["paths"]
    # No masked value in the mask's decision lines; none of the longer ones anywhere in the whole
    # session's log (a three-letter value like "vip" turns up by chance in random ids and jtis).
    assert all(s not in json.dumps(line) for line in lines for s in SECRETS)
    assert all(s not in gateway.logs() for s in SECRETS if len(s) >= 8)

    human = get(gateway, servers, agent=False)
    assert human.status == 200
    assert human.body == body  # untouched, byte for byte
    assert human.headers["etag"] == '"v1"'
    assert "attestgate-masked" not in human.headers
    assert "authorization" in human.headers["vary"]
    assert len(origin.since()) == 3


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
def test_a_compressed_origin_answer_is_masked(gateway, servers, mk_mask_key, encoding):
    raw = json.dumps(CUSTOMER).encode()
    packed = gzip.compress(raw) if encoding == "gzip" else zlib.compress(raw)
    serve(servers, packed, headers={"content-encoding": encoding})
    resp = get(gateway, servers, agent=True)
    assert resp.status == 200, resp
    assert "content-encoding" not in resp.headers
    assert resp.json() == expected(mk_mask_key)
    assert resp.headers["attestgate-masked"] == "7"


@pytest.mark.parametrize("body,headers", [
    (b"<html>ssn 123-45-6789</html>", {"content-type": "text/html"}),
    (b'{"ssn":"123-45-6789",}', {}),
    (b'{"ssn":"123-45-6789","ssn":"x"}', {}),
    (b'{"email":"ada@example.com"} trailing', {}),
    (b'{"email":"ada@example.com"}', {"content-encoding": "zstd"}),
    (b'[' * 100 + b']' * 100, {}),
])
def test_an_answer_the_gateway_cannot_mask_is_its_own_502(gateway, servers, origin, body, headers):
    serve(servers, body, headers=headers)
    assert_bad_gateway(get(gateway, servers, agent=True))
    # The human on the same route gets the origin's answer as it is.
    assert get(gateway, servers, agent=False).body == body


def test_a_body_truncated_mid_value_is_a_502(gateway, servers):
    body = json.dumps(CUSTOMER).encode()
    cut = body.index(b"4111") + 2
    serve(servers, body, truncate=cut)
    assert_bad_gateway(get(gateway, servers, agent=True))


def test_a_gzip_bomb_is_refused_within_the_cap(gateway, servers):
    bomb = gzip.compress(b"[" + b" " * (40 << 20) + b"]", compresslevel=9)
    assert len(bomb) < 100_000
    serve(servers, bomb, headers={"content-encoding": "gzip"})
    started = time.time()
    assert_bad_gateway(get(gateway, servers, agent=True))
    assert time.time() - started < 20


def test_a_long_body_that_breaks_after_the_headers_never_shows_an_unmasked_value(gateway, servers, mk_mask_key):
    # About 1 MB: past the 256 KiB commit buffer, so the headers go out before the end.
    # (`$.ssn` masks only the top-level one: the records carry none.)
    records = [{**{k: v for k, v in CUSTOMER.items() if k != "ssn"}, "id": f"c-{i}"} for i in range(2500)]
    body = json.dumps({"ssn": "123-45-6789", "items": records}).encode()
    path = "/mk/customers/all"
    servers.canned[path] = {"body": body, "headers": JSON, "truncate": len(body) - 40}
    conn = http.client.HTTPConnection("127.0.0.1", gateway.port, timeout=30)
    conn.request("GET", path, headers={"authorization": f"Bearer {token(servers, True)}"})
    resp = conn.getresponse()
    assert resp.status == 200
    assert resp.getheader("attestgate-masked", "").endswith("+")
    try:
        got = resp.read()
        broken = False
    except http.client.IncompleteRead as e:
        got, broken = e.partial, True
    finally:
        conn.close()
    assert broken or not got.endswith(b"}")
    # What arrived is masked output only: the rules' values ($.ssn at the top, $..email at any
    # depth) never appear, though the records' structure is there.
    assert got.startswith(b'{"ssn":"[redacted]","items":[{"id":"c-0"')
    assert b'"id":"c-1"' in got
    for s in ["123-45-6789", "ada@example.com", "ada@work.example"]:
        assert s.encode() not in got
    assert got.count(b'"email":"h:') > 100
    # Untruncated, the same long body is masked whole.
    servers.canned[path] = {"body": body, "headers": JSON}
    full = get(gateway, servers, agent=True, path=path)
    assert full.status == 200
    assert len(full.json()["items"]) == 2500
    assert full.json()["items"][7]["email"] == h(mk_mask_key, "ada@example.com")


@pytest.mark.parametrize("how", ["length", "chunked", "long"])
def test_every_way_an_answer_reaches_the_transformer_masks_it_the_same(gateway, servers, mk_mask_key, how):
    # `length`: a known length up to 64 KiB, read whole (arrayBuffer); `chunked`: no length, in
    # 100-byte chunks (streamed, read in 64 KiB reads); `long`: a known length over 64 KiB and
    # under the 256 KiB commit buffer (streamed, answered complete).
    if how == "long":
        records = [{**CUSTOMER, "id": f"c-{i}"} for i in range(300)]
        serve(servers, json.dumps({"items": records, **CUSTOMER}).encode())
    else:
        serve(servers, json.dumps(CUSTOMER).encode(), chunked=100 if how == "chunked" else None)
    resp = get(gateway, servers, agent=True)
    assert resp.status == 200, resp
    want = expected(mk_mask_key)
    if how == "long":
        assert len(resp.body) > 64 * 1024
        got = resp.json()
        assert {k: v for k, v in got.items() if k != "items"} == want
        # `$..email` reaches into the records; the top-level-only rules do not.
        assert got["items"][299]["email"] == h(mk_mask_key, "ada@example.com")
        assert got["items"][299]["ssn"] == "123-45-6789"
        assert resp.headers["attestgate-masked"] == str(7 + 300 * 2)
    else:
        assert resp.json() == want
        assert resp.headers["attestgate-masked"] == "7"
    assert "content-length" not in resp.headers or int(resp.headers["content-length"]) == len(resp.body)


def test_a_missing_hash_secret_is_503_before_the_origin(gateway, servers, origin):
    resp = get(gateway, servers, agent=True, path="/mk/nokey")
    assert resp.status == 503
    assert resp.json()["error"] == "temporarily_unavailable"
    assert origin.since() == []


def test_a_caller_without_the_attestation_is_masked(gateway, servers, approov_secret):
    body = b'{"name":"Ada","ssn":"123-45-6789"}'
    serve(servers, body, path="/mk/attested")
    now = int(time.time())
    device = sign({"alg": "HS256", "typ": "JWT"}, {"did": "d-1", "iat": now, "exp": now + 300},
                  hmac_key(approov_secret))
    human = token(servers, False)
    masked = gateway.request("GET", "/mk/attested", {"authorization": f"Bearer {human}"})
    assert masked.status == 200 and masked.json() == {"name": "Ada"}
    assert masked.headers["attestgate-masked"] == "1"
    attested = gateway.request("GET", "/mk/attested", {"authorization": f"Bearer {human}", "approov-token": device})
    assert attested.status == 200 and attested.body == body
