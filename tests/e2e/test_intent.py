"""Issue 15: request bodies (read under a cap, forwarded byte for byte), intent rules against the
token's RFC 9396 `authorization_details`, and session budgets. Routes `in-*` under `/in/`
(tests/e2e/policies/intent.toml). Tokens are minted by joserfc (servers.Issuer)."""

import hashlib
import http.client

from conftest import Response
from test_foundation import assert_refusal


def bearer(servers, **claims):
    return {"authorization": "Bearer " + servers.issuer.mint("k-es256", **claims)}


def chunked(gateway, method, path, headers, chunks):
    """Send a chunked upload (no Content-Length), one chunk per item of `chunks`."""
    conn = http.client.HTTPConnection("127.0.0.1", gateway.port, timeout=30)
    try:
        conn.putrequest(method, path, skip_accept_encoding=True)
        for name, value in headers.items():
            conn.putheader(name, value)
        conn.putheader("transfer-encoding", "chunked")
        conn.endheaders()
        for c in chunks:
            conn.send(b"%x\r\n%s\r\n" % (len(c), c))
        conn.send(b"0\r\n\r\n")
        resp = conn.getresponse()
        data = resp.read()
        return Response(resp.status, dict(resp.getheaders()), data)
    finally:
        conn.close()


# ---- request bodies (item 2) ------------------------------------------------------------------

EVERY_BYTE = bytes(range(256)) * 3


def test_a_read_body_is_forwarded_byte_for_byte(gateway, servers, origin):
    resp = gateway.request("POST", "/in/body/x", bearer(servers), EVERY_BYTE)
    assert resp.status == 200, resp
    seen = origin.since()
    assert len(seen) == 1
    assert seen[0]["body_sha256"] == hashlib.sha256(EVERY_BYTE).hexdigest()
    assert dict(seen[0]["headers"])["content-length"] == str(len(EVERY_BYTE))


def test_a_chunked_upload_is_read_and_forwarded_byte_for_byte(gateway, servers, origin):
    parts = [EVERY_BYTE[i:i + 100] for i in range(0, len(EVERY_BYTE), 100)]
    resp = chunked(gateway, "POST", "/in/body/chunked", bearer(servers), parts)
    assert resp.status == 200, resp
    seen = origin.since()
    assert len(seen) == 1
    assert seen[0]["body_sha256"] == hashlib.sha256(EVERY_BYTE).hexdigest()
    assert resp.json()["body_bytes"] == len(EVERY_BYTE)


def test_content_length_over_the_cap_is_413_and_nothing_is_forwarded(gateway, servers, origin):
    resp = gateway.request("POST", "/in/body/big", bearer(servers), b"a" * 1025)
    assert_refusal(resp, 413, "request_too_large", origin)
    # At the cap exactly: forwarded.
    resp = gateway.request("POST", "/in/body/big", bearer(servers), b"a" * 1024)
    assert resp.status == 200, resp


def test_a_chunked_upload_crossing_the_cap_is_413(gateway, servers, origin):
    resp = chunked(gateway, "POST", "/in/body/big", bearer(servers), [b"a" * 600, b"b" * 600])
    assert_refusal(resp, 413, "request_too_large", origin)


def test_a_body_cap_refusal_comes_before_the_token(gateway, origin):
    # 413 is a property of the request: decided before any token work (nothing to verify).
    resp = gateway.request("POST", "/in/body/big", {}, b"a" * 2000)
    assert_refusal(resp, 413, "request_too_large", origin)
    assert "www-authenticate" not in resp.headers
