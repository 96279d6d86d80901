"""Hand-built JWS for the attack scenarios, and the refusal assertions of SPEC §4.

joserfc (servers.Issuer.mint) signs ordinary tokens. The attacks need bytes no JOSE library
will produce on request: duplicate members, raw numbers beyond i64, invalid UTF-8, DER or
out-of-range ECDSA signatures. Those are built here by hand: base64url of the exact header and
payload bytes, signed with pyca/cryptography (ECDSA DER converted to r‖s). The gateway's own code
never signs anything.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import time

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

REALM = "e2e.attestgate.test"
AUDIENCE = "https://api.example.com"
P256_N = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551


def b64u(data: bytes | str) -> str:
    if isinstance(data, str):
        data = data.encode()
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64u_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def compact_json(obj) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def as_bytes(part) -> bytes:
    """A header or payload: dict → compact JSON; str → its UTF-8; bytes as they are."""
    if isinstance(part, dict):
        return compact_json(part)
    if isinstance(part, str):
        return part.encode()
    return part


def raw_signature(alg: str, key, signing_input: bytes) -> bytes:
    """Sign like a JWS signer: ES256 as 64-byte r‖s, EdDSA, RS256 PKCS#1 v1.5, HS256 (key = bytes)."""
    if alg == "HS256":
        secret = key if isinstance(key, bytes) else key.raw_value
        return hmac.new(secret, signing_input, hashlib.sha256).digest()
    private = key.raw_value if hasattr(key, "raw_value") else key
    if alg == "ES256":
        r, s = decode_dss_signature(private.sign(signing_input, ec.ECDSA(hashes.SHA256())))
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")
    if alg in ("EdDSA", "Ed25519"):
        return private.sign(signing_input)
    if alg == "RS256":
        return private.sign(signing_input, padding.PKCS1v15(), hashes.SHA256())
    raise ValueError(alg)


def der_signature(key, signing_input: bytes) -> bytes:
    return key.raw_value.sign(signing_input, ec.ECDSA(hashes.SHA256()))


def jws(header, payload, key=None, alg: str | None = None, signature: bytes | None = None) -> str:
    """A compact JWS over the exact bytes of `header` and `payload`. Signed with `key` for `alg`
    (default: the header's alg), or carrying `signature` as given."""
    h = b64u(as_bytes(header))
    p = b64u(as_bytes(payload))
    signing_input = f"{h}.{p}".encode()
    if signature is None:
        if alg is None:
            alg = header["alg"] if isinstance(header, dict) else json.loads(header)["alg"]
        signature = raw_signature(alg, key, signing_input)
    return f"{h}.{p}.{b64u(signature)}"


def signing_input_of(token: str) -> bytes:
    return token.rsplit(".", 1)[0].encode()


def high_s_twin(token: str) -> str:
    """The same ES256 token with s replaced by n - s: a second valid signature (ATTACKS #19)."""
    head, sig = token.rsplit(".", 1)
    raw = b64u_decode(sig)
    r, s = raw[:32], int.from_bytes(raw[32:], "big")
    return f"{head}.{b64u(r + (P256_N - s).to_bytes(32, 'big'))}"


def bearer(token: str) -> dict:
    return {"authorization": f"Bearer {token}"}


def assert_refused(resp, status: int, code: str, origin_view, *, reason_hint: str = ""):
    """A refusal exactly as SPEC §4 describes it, and nothing reached the origin."""
    assert resp.status == status, f"{reason_hint}: {resp!r}"
    body = resp.json()
    assert body["error"] == code, f"{reason_hint}: {body}"
    assert set(body) == {"error", "error_description", "request_id"}, body
    assert body["error_description"] and body["request_id"]
    assert resp.headers.get("cache-control") == "no-store"
    challenge = resp.headers.get("www-authenticate")
    # Every challenge names the route's RFC 9728 metadata (issue 14 item 5; exact values per
    # route in test_mcp.py), and insufficient_scope the route's scopes.
    metadata = r', resource_metadata="http://127\.0\.0\.1:\d+/\.well-known/oauth-protected-resource(/[!-~]*)?"'
    if code == "missing_token":
        assert re.fullmatch(re.escape(f'Bearer realm="{REALM}"') + metadata, challenge or ""), challenge
    elif code in ("invalid_token", "insufficient_scope"):
        scope = r'(, scope="[!#-\[\]-~ ]+")?' if code == "insufficient_scope" else ""
        want = re.escape(f'Bearer realm="{REALM}", error="{code}"') + scope + metadata
        assert re.fullmatch(want, challenge or ""), challenge
    elif code in ("invalid_request", "not_found", "temporarily_unavailable"):
        assert challenge is None, challenge
    if code == "temporarily_unavailable":
        assert resp.headers.get("retry-after", "").isdigit(), resp.headers
    seen = origin_view.since()
    assert seen == [], f"{reason_hint}: a refused request reached the origin: {seen}"
    return body


def remark(origin, servers):
    """Start an origin view afresh (for several requests in one test)."""
    origin.mark = servers.recorder.count()


def decision_line(gateway, request_id: str) -> str | None:
    """The raw decision log line of one request (the log is written asynchronously)."""
    deadline = time.time() + 3
    while True:
        with open(gateway.log_path, "rb") as f:
            f.seek(0, 2)
            f.seek(max(0, f.tell() - 512 * 1024))
            tail = f.read().decode("utf-8", "replace")
        for line in reversed(tail.split("\n")):
            if request_id in line and '"attestgate":"decision"' in line:
                return line[line.index("{"):]
        if time.time() > deadline:
            return None
        time.sleep(0.05)


def last_reason(gateway, request_id: str) -> str | None:
    """The decision log's reason code for one request."""
    line = decision_line(gateway, request_id)
    return None if line is None else json.loads(line).get("reason")
