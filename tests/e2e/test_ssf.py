"""The Shared Signals receiver (issue 16 item 4: SSF push, RFC 8935; SETs, RFC 8417) in the real
Worker.

The transmitter is a local stand-in: SETs signed by joserfc with the keys the /issuers/dn-ssf-tx
issuer publishes (servers.LocalServers), pushed to `[shared_signals] path` = /dn/ssf/events
(tests/e2e/policies/deny.toml). The entries a SET makes refuse dn_agent tokens on /dn/strict/ and
are visible through the operator API.
"""

from __future__ import annotations

import json
import secrets
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from joserfc import jwk

from jwstools import assert_refused, bearer, remark
from servers import sign
from test_deny import BASE, agent_token, op

PATH = "/dn/ssf/events"
AUD = "https://gateway.dn.test/ssf"
CAEP = "https://schemas.openid.net/secevent/caep/event-type/"
RISC = "https://schemas.openid.net/secevent/risc/event-type/"


class Transmitter:
    """The local stand-in for an SSF transmitter."""

    def __init__(self, servers, gateway):
        self.issuer = servers.issuer_named("dn-ssf-tx")
        self.gateway = gateway

    def set(self, events: dict, *, key=None, typ="secevent+jwt", **claims) -> str:
        payload = {
            "iss": self.issuer.issuer,
            "aud": AUD,
            "iat": int(time.time()),
            "jti": secrets.token_urlsafe(12),
            "events": events,
        }
        for k, v in claims.items():
            if v is None:
                payload.pop(k, None)
            else:
                payload[k] = v
        header = {"alg": "ES256", "kid": "dn-ssf-tx-es256"}
        if typ:
            header["typ"] = typ
        return sign(header, payload, key or self.issuer.keys["dn-ssf-tx-es256"])

    def push(self, token: str | bytes, content_type="application/secevent+jwt"):
        body = token.encode() if isinstance(token, str) else token
        headers = {"content-type": content_type, "accept": "application/json"}
        return self.gateway.request("POST", PATH, headers, body)


@pytest.fixture
def tx(servers, gateway):
    return Transmitter(servers, gateway)


def agents(servers):
    return servers.issuer_named("dn-agents").issuer


def lookup(gateway, servers, **key):
    resp = op(gateway, servers, "POST", f"{BASE}/lookup", key)
    assert resp.status == 200, resp
    return resp.json()["entries"]


def test_metadata_is_published(gateway, servers):
    resp = gateway.request("GET", PATH)
    assert resp.status == 200, resp
    meta = resp.json()
    assert meta["delivery_method"] == "urn:ietf:rfc:8935"
    assert meta["endpoint_url"].endswith(PATH)
    assert meta["aud"] == AUD and meta["issuers"] == [servers.issuer_named("dn-ssf-tx").issuer]
    assert f"{CAEP}session-revoked" in meta["events_supported"]
    assert set(meta["subject_formats"]) == {"iss_sub", "jwt_id", "email", "opaque", "complex"}
    assert gateway.request("PUT", PATH).status == 405


def test_account_disabled_refuses_the_user_and_records_the_signal(gateway, servers, tx, origin):
    sub = f"user:{secrets.token_hex(4)}"
    token = agent_token(servers, "agent:ssf", sub=sub)
    assert gateway.request("GET", "/dn/strict/s", bearer(token)).status == 200
    set_token = tx.set({f"{RISC}account-disabled": {"subject": {"format": "iss_sub", "iss": agents(servers), "sub": sub}}})
    resp = tx.push(set_token)
    assert resp.status == 202 and resp.body == b"", resp
    remark(origin, servers)
    assert_refused(gateway.request("GET", "/dn/strict/s", bearer(token)), 401, "invalid_token", origin)
    [entry] = lookup(gateway, servers, kind="user", iss=agents(servers), sub=sub)
    assert entry["source"] == "shared_signal" and entry["reason"] == "risc account-disabled"
    claims = json.loads(__import__("base64").urlsafe_b64decode(set_token.split(".")[1] + "=="))
    assert entry["by"] == {"iss": tx.issuer.issuer, "sub": claims["jti"]}


@pytest.mark.parametrize(
    "event",
    [f"{CAEP}session-revoked", f"{CAEP}credential-change", f"{CAEP}token-claims-change",
     f"{RISC}credential-compromise", f"{RISC}account-disabled", f"{RISC}sessions-revoked"],
)
def test_every_event_type_maps_to_an_entry(gateway, servers, tx, event):
    email = f"{secrets.token_hex(4)}@example.com"
    assert tx.push(tx.set({event: {}}, sub_id={"format": "email", "email": email})).status == 202
    [entry] = lookup(gateway, servers, kind="email", value=email)
    assert entry["reason"].endswith(event.rsplit("/", 1)[1])


def test_every_subject_format(gateway, servers, tx, origin):
    jti, sid, did = secrets.token_hex(6), secrets.token_hex(6), f"dev-{secrets.token_hex(4)}"
    events = {
        f"{CAEP}session-revoked": {"subject": {"format": "complex",
                                               "session": {"format": "opaque", "id": sid},
                                               "device": {"format": "opaque", "id": did}}},
        f"{RISC}credential-compromise": {"subject": {"format": "jwt_id", "iss": agents(servers), "jti": jti}},
        f"{RISC}sessions-revoked": {"subject": {"format": "opaque", "id": "opaque-user"}},
    }
    assert tx.push(tx.set(events)).status == 202
    assert lookup(gateway, servers, kind="session", iss=tx.issuer.issuer, sid=sid)
    assert lookup(gateway, servers, kind="device", value=did)
    assert lookup(gateway, servers, kind="token", iss=agents(servers), jti=jti)
    assert lookup(gateway, servers, kind="user", iss=tx.issuer.issuer, sub="opaque-user")
    # the token by jwt_id and the device are refused
    remark(origin, servers)
    assert_refused(gateway.request("GET", "/dn/strict/f", bearer(agent_token(servers, "agent:f", jti=jti))), 401, "invalid_token", origin)
    assert_refused(gateway.request("GET", "/dn/strict/f", bearer(agent_token(servers, "agent:f", did=did))), 401, "invalid_token", origin)
    # an unsupported format is refused whole
    resp = tx.push(tx.set({f"{RISC}account-disabled": {"subject": {"format": "phone_number", "phone_number": "+1"}}}))
    assert resp.status == 400 and resp.json()["err"] == "invalid_request"


def test_a_replayed_set_is_refused(gateway, servers, tx):
    email = f"{secrets.token_hex(4)}@example.com"
    token = tx.set({f"{RISC}account-disabled": {}}, sub_id={"format": "email", "email": email})
    assert tx.push(token).status == 202
    resp = tx.push(token)
    assert resp.status == 400 and resp.json() == {
        "err": "invalid_request", "description": "This SET (iss, jti) was already received."}
    assert len(lookup(gateway, servers, kind="email", value=email)) == 1
    # concurrent pushes of one fresh SET: exactly one is accepted
    email = f"{secrets.token_hex(4)}@example.com"
    token = tx.set({f"{RISC}account-disabled": {}}, sub_id={"format": "email", "email": email})
    with ThreadPoolExecutor(max_workers=8) as pool:
        codes = sorted(pool.map(lambda _: tx.push(token).status, range(8)))
    assert codes == [202] + [400] * 7, codes
    assert len(lookup(gateway, servers, kind="email", value=email)) == 1


def test_forged_and_misaddressed_sets_are_refused(gateway, servers, tx):
    email = f"{secrets.token_hex(4)}@example.com"
    events = {f"{RISC}account-disabled": {}}
    sub_id = {"format": "email", "email": email}
    other = jwk.ECKey.generate_key("P-256", parameters={"kid": "dn-ssf-tx-es256"}, private=True)
    stranger = servers.issuer_named("dn-stranger")
    cases = [
        (tx.set(events, sub_id=sub_id, key=other), "invalid_key"),
        (tx.set(events, sub_id=sub_id, aud="https://elsewhere"), "invalid_audience"),
        (tx.set(events, sub_id=sub_id, iss=stranger.issuer), "invalid_issuer"),
        (tx.set(events, sub_id=sub_id, iat=int(time.time()) - 600), "invalid_request"),
        (tx.set(events, sub_id=sub_id, iat=int(time.time()) + 600), "invalid_request"),
        (tx.set(events, sub_id=sub_id, typ="JWT"), "invalid_request"),
        (tx.set(events, sub_id=sub_id, typ=None), "invalid_request"),
        (tx.set(events, sub_id=sub_id, jti=None), "invalid_request"),
        (tx.set({}, sub_id=sub_id), "invalid_request"),
        (tx.set(events, sub_id=sub_id, exp=int(time.time()) - 10), "invalid_request"),
        (tx.set(events, sub_id=sub_id)[:-5], "invalid_request"),
    ]
    for token, err in cases:
        resp = tx.push(token)
        assert resp.status == 400, (err, resp)
        body = resp.json()
        assert body["err"] == err and set(body) == {"err", "description"}, (err, body)
    assert lookup(gateway, servers, kind="email", value=email) == []


@pytest.mark.parametrize(
    "body, content_type",
    [
        (b"", "application/secevent+jwt"),
        (b"not a jwt", "application/secevent+jwt"),
        (b"a.b.c.d.e", "application/secevent+jwt"),
        (b"x" * 70000, "application/secevent+jwt"),
        (b"\xff\xfe", "application/secevent+jwt"),
        (None, "application/json"),
        (None, "text/plain"),
    ],
)
def test_bad_pushes_are_400(gateway, servers, tx, body, content_type):
    if body is None:
        body = tx.set({f"{RISC}account-disabled": {}}, sub_id={"format": "email", "email": "x@y.z"}).encode()
    resp = tx.push(body, content_type=content_type)
    assert resp.status == 400, resp
    assert resp.json()["err"] in ("invalid_request", "invalid_issuer")


def test_an_unknown_event_is_accepted_and_ignored(gateway, servers, tx):
    email = f"{secrets.token_hex(4)}@example.com"
    resp = tx.push(tx.set({"https://example.com/event/other": {}}, sub_id={"format": "email", "email": email}))
    assert resp.status == 202
    assert lookup(gateway, servers, kind="email", value=email) == []
