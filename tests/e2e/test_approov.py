"""Approov-style token binding end to end: an HS256 token (key: the APPROOV_SECRET Worker secret)
whose `pay` claim is the base64 SHA-256 of the whole Authorization header value."""

import base64
import hashlib
import time

import pytest
from joserfc import jwk

from nonce_support import assert_refused
from servers import sign

PATH = "/approov/orders"


def approov_token(secret: bytes, **claims) -> str:
    body = {"did": "device-42", "exp": int(time.time()) + 300}
    for name, value in claims.items():
        if value is None:
            body.pop(name, None)
        else:
            body[name] = value
    return sign({"alg": "HS256", "typ": "JWT"}, body, jwk.OctKey.import_key(secret))


def pay(value: str, encoding: str) -> str:
    digest = hashlib.sha256(value.encode()).digest()
    if encoding == "standard":
        return base64.b64encode(digest).decode()
    if encoding == "url-safe":
        return base64.urlsafe_b64encode(digest).decode()
    if encoding == "url-safe-unpadded":
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
    raise ValueError(encoding)


def send(gateway, approov, authorization):
    return gateway.request(
        "POST",
        PATH,
        {"approov-token": approov, "authorization": authorization},
        body=b'{"item":1}',
    )


def find_digest_with_url_specific_chars(servers):
    """An agent token whose Authorization value hashes to base64 with `+` or `/` in it, so that
    the standard and URL-safe forms really differ."""
    for _ in range(50):
        auth = f"Bearer {servers.issuer.mint('k-es256')}"
        std = pay(auth, "standard")
        if "+" in std or "/" in std:
            return auth
    raise AssertionError("no digest with + or / in 50 tries")


@pytest.mark.parametrize("encoding", ["standard", "url-safe", "url-safe-unpadded"])
def test_correct_pay_is_allowed(gateway, servers, origin, approov_secret, encoding):
    auth = find_digest_with_url_specific_chars(servers)
    token = approov_token(approov_secret, pay=pay(auth, encoding))
    resp = send(gateway, token, auth)
    assert resp.status == 200, resp
    verified = resp.json()["verified"]
    assert verified["x-verified-device"] == "device-42"
    assert verified["x-verified-user"] == "user:alice"
    headers = dict(origin.since()[0]["headers"])
    assert "approov-token" not in headers and "authorization" not in headers


def test_wrong_pay_is_refused_and_never_reaches_origin(gateway, servers, origin, approov_secret):
    token = servers.issuer.mint("k-es256")
    auth = f"Bearer {token}"
    other = f"Bearer {servers.issuer.mint('k-es256')}"
    cases = {
        "hash of another Authorization": approov_token(approov_secret, pay=pay(other, "standard")),
        "hash of the token without the scheme": approov_token(approov_secret, pay=pay(token, "standard")),
        "no pay claim": approov_token(approov_secret),
        "pay not base64": approov_token(approov_secret, pay="not base64!"),
        "pay truncated": approov_token(approov_secret, pay=pay(auth, "standard")[:20]),
    }
    for what, approov in cases.items():
        resp = send(gateway, approov, auth)
        assert resp.status == 401, (what, resp)
        assert_refused(resp, 401, "invalid_token", origin)
        assert resp.headers["www-authenticate"] == (
            'Bearer realm="e2e.attestgate.test", error="invalid_token", resource_metadata='
            f'"http://127.0.0.1:{gateway.port}/.well-known/oauth-protected-resource{PATH}"'
        ), what


def test_approov_token_with_another_secret_is_refused(gateway, servers, origin):
    auth = f"Bearer {servers.issuer.mint('k-es256')}"
    forged = approov_token(b"\x01" * 32, pay=pay(auth, "standard"))
    assert_refused(send(gateway, forged, auth), 401, "invalid_token", origin)


def test_pay_binds_the_exact_header_value(gateway, servers, origin, approov_secret):
    # The client hashed "Bearer <token>" but sends a lowercase scheme: the value differs.
    token = servers.issuer.mint("k-es256")
    approov = approov_token(approov_secret, pay=pay(f"Bearer {token}", "standard"))
    assert_refused(send(gateway, approov, f"bearer {token}"), 401, "invalid_token", origin)
