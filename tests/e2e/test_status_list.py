"""Token Status Lists (issue 16 item 5, draft-ietf-oauth-status-list) in the real Worker.

The status issuer is a local stand-in (servers.LocalServers, /status-lists/...): it serves Status
List Tokens (`typ` `statuslist+jwt`) signed by joserfc with the key of the issuer of the referenced
tokens (/issuers/dn-status), the lists compressed by Python's zlib (independent of the gateway's
inflate). Provider `dn_status` (tests/e2e/policies/deny.toml) checks `status.status_list` with
`max_stale_secs = 2`; route `/dn/status-long/**` allows 30 s.
"""

from __future__ import annotations

import base64
import secrets
import threading
import time
import zlib
from concurrent.futures import ThreadPoolExecutor

import pytest

from jwstools import assert_refused, bearer, last_reason, remark
from servers import sign

STALE = 2.0


def pack(statuses: list[int], bits: int) -> bytes:
    per = 8 // bits
    out = bytearray((len(statuses) + per - 1) // per)
    for i, s in enumerate(statuses):
        out[i // per] |= s << ((i % per) * bits)
    return bytes(out)


def lst(statuses: list[int], bits: int, level: int = 6, wbits: int = 15) -> str:
    c = zlib.compressobj(level, zlib.DEFLATED, wbits)
    z = c.compress(pack(statuses, bits)) + c.flush()
    return base64.urlsafe_b64encode(z).rstrip(b"=").decode()


class StatusIssuer:
    """The local stand-in for the status issuer: publishes lists at {base}/status-lists/<name>."""

    def __init__(self, servers):
        self.servers = servers
        self.issuer = servers.issuer_named("dn-status")

    def uri(self, name: str) -> str:
        return f"{self.servers.base}/status-lists/{name}"

    def publish(self, name, statuses, bits=1, *, level=6, wbits=15, key=None, **claims):
        now = int(time.time())
        payload = {
            "sub": self.uri(name),
            "iss": self.issuer.issuer,
            "iat": now,
            "exp": now + 3600,
            "ttl": 300,
            "status_list": {"bits": bits, "lst": lst(statuses, bits, level, wbits)},
        }
        for k, v in claims.items():
            if v is None:
                payload.pop(k, None)
            else:
                payload[k] = v
        header = {"alg": "ES256", "kid": "dn-status-es256", "typ": "statuslist+jwt"}
        token = sign(header, payload, key or self.issuer.keys["dn-status-es256"])
        with self.servers.named_lock:
            entry = self.servers.status_lists.setdefault(f"/status-lists/{name}", {"fetches": 0})
            entry.update(body=token.encode(), status=200)
        return token

    def entry(self, name):
        return self.servers.status_lists[f"/status-lists/{name}"]

    def token(self, name, idx, **claims):
        return self.issuer.mint(
            "dn-status-es256", status={"status_list": {"idx": idx, "uri": self.uri(name)}}, **claims
        )


@pytest.fixture
def status(servers):
    return StatusIssuer(servers)


def fresh() -> str:
    return f"list-{secrets.token_hex(4)}"


def test_valid_passes_invalid_and_suspended_refuse(gateway, status, origin):
    name = fresh()
    status.publish(name, [0, 1, 2, 3, 0], bits=2)
    assert gateway.request("GET", "/dn/status/a", bearer(status.token(name, 0))).status == 200
    assert gateway.request("GET", "/dn/status/a", bearer(status.token(name, 4))).status == 200
    for idx, reason in [(1, "token_status_invalid"), (2, "token_status_suspended"), (3, "token_status_invalid")]:
        remark(origin, status.servers)
        resp = gateway.request("GET", "/dn/status/a", bearer(status.token(name, idx)))
        body = assert_refused(resp, 401, "invalid_token", origin)
        assert body["error_description"] == "The token is no longer accepted."
        assert last_reason(gateway, body["request_id"]) == reason
    # one fetch served all of these
    assert status.entry(name)["fetches"] == 1


def test_out_of_range_and_foreign_uris_are_refused(gateway, status, origin, servers):
    name = fresh()
    status.publish(name, [0] * 16)
    remark(origin, servers)
    resp = gateway.request("GET", "/dn/status/a", bearer(status.token(name, 16)))
    body = assert_refused(resp, 401, "invalid_token", origin)
    assert last_reason(gateway, body["request_id"]) == "token_status_reference"
    # a uri outside the provider's prefixes is never fetched
    outside = status.issuer.mint(
        "dn-status-es256", status={"status_list": {"idx": 0, "uri": f"{servers.base}/trap/list"}}
    )
    before = len(servers.trap_hits)
    assert_refused(gateway.request("GET", "/dn/status/a", bearer(outside)), 401, "invalid_token", origin)
    assert len(servers.trap_hits) == before
    for bad in [{"status_list": {"idx": -1, "uri": status.uri(name)}},
                {"status_list": {"idx": "0", "uri": status.uri(name)}},
                {"status_list": {"idx": 0}}, "x"]:
        tok = status.issuer.mint("dn-status-es256", status=bad)
        assert_refused(gateway.request("GET", "/dn/status/a", bearer(tok)), 401, "invalid_token", origin)
    # no status claim: the provider does not require one
    assert gateway.request("GET", "/dn/status/a", bearer(status.issuer.mint("dn-status-es256"))).status == 200


@pytest.mark.parametrize("bits", [1, 2, 4, 8])
@pytest.mark.parametrize("level, wbits", [(0, 15), (1, 15), (6, 15), (9, 15), (9, 9), (6, 12)])
def test_every_width_and_zlib_header(gateway, status, bits, level, wbits):
    name = fresh()
    size = 64
    statuses = [(i * 7) % 3 if bits > 1 else i % 2 for i in range(size)]
    status.publish(name, statuses, bits=bits, level=level, wbits=wbits)
    for idx in [0, 1, 2, 5, size - 1]:
        want = 200 if statuses[idx] == 0 else 401
        got = gateway.request("GET", "/dn/status/w", bearer(status.token(name, idx))).status
        assert got == want, (bits, level, wbits, idx)


def test_a_change_takes_effect_after_the_maximum_staleness_and_per_route(gateway, status):
    name = fresh()
    status.publish(name, [0, 0])
    tok = status.token(name, 1)
    assert gateway.request("GET", "/dn/status/c", bearer(tok)).status == 200
    assert gateway.request("GET", "/dn/status-long/c", bearer(tok)).status == 200
    status.publish(name, [0, 1])
    changed = time.time()
    while gateway.request("GET", "/dn/status/c", bearer(tok)).status == 200:
        assert time.time() - changed < STALE + 1.5, "the change was not seen within the staleness"
        time.sleep(0.1)
    # the long route shares the list the short one refetched
    assert gateway.request("GET", "/dn/status-long/c", bearer(tok)).status == 401


def test_an_unreachable_list_past_its_staleness_is_503(gateway, status, origin, servers):
    name = fresh()
    status.publish(name, [0, 0])
    tok = status.token(name, 0)
    assert gateway.request("GET", "/dn/status/u", bearer(tok)).status == 200
    status.entry(name)["status"] = 503
    # within the staleness the held list answers
    assert gateway.request("GET", "/dn/status/u", bearer(tok)).status == 200
    time.sleep(STALE + 0.2)
    remark(origin, servers)
    resp = gateway.request("GET", "/dn/status/u", bearer(tok))
    body = assert_refused(resp, 503, "temporarily_unavailable", origin)
    assert last_reason(gateway, body["request_id"]) == "status_list_unavailable"
    # the 30 s route still has a usable copy
    assert gateway.request("GET", "/dn/status-long/u", bearer(tok)).status == 200
    status.entry(name)["status"] = 200
    assert gateway.request("GET", "/dn/status/u", bearer(tok)).status == 200


@pytest.mark.parametrize(
    "claims, why",
    [
        ({"sub": "https://elsewhere/list"}, "sub is not the uri"),
        ({"iss": "https://other-issuer"}, "another issuer"),
        ({"exp": int(time.time()) - 100}, "expired"),
        ({"iat": None}, "no iat"),
        ({"status_list": {"bits": 3, "lst": "eNrbuRgAAhcBXQ"}}, "bits 3"),
        ({"status_list": {"bits": 1, "lst": "eNrbuRgAAhcBXA"}}, "bad adler"),
    ],
)
def test_bad_list_tokens_are_503(gateway, status, origin, servers, claims, why):
    name = fresh()
    status.publish(name, [0, 0], **claims)
    remark(origin, servers)
    resp = gateway.request("GET", "/dn/status/b", bearer(status.token(name, 0)))
    assert_refused(resp, 503, "temporarily_unavailable", origin, reason_hint=why)


def test_a_forged_or_mistyped_list_is_503(gateway, status, origin, servers):
    from joserfc import jwk

    name = fresh()
    other = jwk.ECKey.generate_key("P-256", parameters={"kid": "dn-status-es256"}, private=True)
    status.publish(name, [0, 0], key=other)
    assert_refused(gateway.request("GET", "/dn/status/f", bearer(status.token(name, 0))), 503, "temporarily_unavailable", origin)
    # an access token of the issuer is not a status list
    name2 = fresh()
    status.publish(name2, [0])
    with servers.named_lock:
        servers.status_lists[f"/status-lists/{name2}"]["body"] = status.token(name2, 0).encode()
    remark(origin, servers)
    assert_refused(gateway.request("GET", "/dn/status/f", bearer(status.token(name2, 0))), 503, "temporarily_unavailable", origin)


def test_concurrent_requests_for_a_cold_list_share_one_fetch(gateway, status):
    name = fresh()
    status.publish(name, [0] * 8)
    status.entry(name)["delay"] = 0.8
    tokens = [status.token(name, i % 8) for i in range(12)]
    with ThreadPoolExecutor(max_workers=12) as pool:
        codes = list(pool.map(lambda t: gateway.request("GET", "/dn/status/s", bearer(t)).status, tokens))
    assert codes == [200] * 12
    # wrangler dev may run more than one isolate; each fetches at most once
    assert status.entry(name)["fetches"] <= 2, status.entry(name)["fetches"]
