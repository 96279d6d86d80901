"""An origin that accepts a request only with a valid attestgate receipt for that very request.

The gateway (attestgate, a route with `receipt = true`) signs an `Attestgate-Receipt` for every
request it forwards: a compact JWS (`typ` `attestgate-receipt+jwt`) with the gateway's key,
published at `<gateway>/.well-known/attestgate/jwks.json`. This server checks, in order:

1. the JWS: a `typ` of `attestgate-receipt+jwt`, an `alg` of ES256 or EdDSA, a signature by a
   key of the gateway's JWKS (fetched, cached, refetched once for an unknown `kid`);
2. `iss` (the gateway) and `aud` (this origin's own URL);
3. `exp` (not past) and `iat` (not in the future), with a small clock leeway;
4. the request binding: `htm` is this request's method, `htu` this request's URL (this origin's
   URL + path + query, exactly), `content_digest` the RFC 9530 `sha-256` of the body received
   (recomputed here, and the same as the `Content-Digest` header);
5. `jti` seen once (remembered until the receipt's `exp`).

Anything else: 401 with `{"error": "invalid_receipt", "reason": "..."}` and nothing served. The
binding is checked before `jti` is remembered, so a receipt replayed on another path, method or
body is refused for that reason, and the genuine request is not locked out by it.

Only joserfc (https://jose.authlib.org) and the standard library:

    python origin.py --port 9001 --jwks http://gateway.example/.well-known/attestgate/jwks.json \
        --issuer https://gateway.example --audience http://127.0.0.1:9001
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import sys
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from joserfc import jws
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

RECEIPT_HEADER = "attestgate-receipt"
RECEIPT_TYP = "attestgate-receipt+jwt"
ALGORITHMS = ["ES256", "EdDSA"]
LEEWAY_SECS = 5
MAX_BODY = 1024 * 1024


class Refused(Exception):
    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def content_digest(body: bytes) -> str:
    """RFC 9530 Content-Digest with sha-256 (standard base64 with padding)."""
    return "sha-256=:" + base64.b64encode(hashlib.sha256(body).digest()).decode() + ":"


class Jwks:
    """The gateway's JWKS, cached for its max-age, refetched once for an unknown kid."""

    def __init__(self, url: str):
        self.url = url
        self.lock = threading.Lock()
        self.keys: KeySet | None = None
        self.fetched = 0.0
        self.max_age = 300.0

    def _fetch(self):
        with urllib.request.urlopen(self.url, timeout=5) as resp:
            doc = json.loads(resp.read())
            cc = resp.headers.get("cache-control", "")
        self.keys = KeySet.import_key_set(doc)
        self.fetched = time.time()
        for part in cc.split(","):
            name, _, value = part.strip().partition("=")
            if name == "max-age" and value.isdigit():
                self.max_age = float(value)

    def key(self, kid: str | None):
        if not kid:
            raise Refused("kid_missing")
        with self.lock:
            try:
                if self.keys is None or time.time() - self.fetched > self.max_age:
                    self._fetch()
                for attempt in (0, 1):
                    for k in self.keys.keys:
                        if k.kid == kid:
                            return k
                    if attempt == 0:
                        self._fetch()
            except OSError:
                raise Refused("jwks_unavailable")
        raise Refused("unknown_kid")


class Verifier:
    def __init__(self, jwks_url: str, issuer: str, audience: str, leeway: int = LEEWAY_SECS):
        self.leeway = leeway
        self.jwks = Jwks(jwks_url)
        self.issuer = issuer
        self.audience = audience.rstrip("/")
        self.seen: dict[str, int] = {}
        self.seen_lock = threading.Lock()

    def verify(self, method: str, target: str, headers, body: bytes) -> dict:
        values = headers.get_all(RECEIPT_HEADER) or []
        if not values:
            raise Refused("receipt_missing")
        if len(values) != 1:
            raise Refused("receipt_duplicated")
        token = values[0].strip()
        # 1. The JWS: header first (typ, alg, kid), then the signature with the gateway's key.
        try:
            head = json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "=="))
        except (ValueError, IndexError):
            raise Refused("malformed")
        if not isinstance(head, dict) or head.get("typ") != RECEIPT_TYP:
            raise Refused("wrong_typ")
        if head.get("alg") not in ALGORITHMS:
            raise Refused("alg_not_allowed")
        key = self.jwks.key(head.get("kid"))
        try:
            obj = jws.deserialize_compact(token, key, algorithms=ALGORITHMS)
        except (JoseError, ValueError):
            raise Refused("bad_signature")
        try:
            claims = json.loads(obj.payload)
        except ValueError:
            raise Refused("malformed")
        if not isinstance(claims, dict):
            raise Refused("malformed")
        # 2. Who signed it, for whom.
        if claims.get("iss") != self.issuer:
            raise Refused("wrong_issuer")
        if claims.get("aud") != self.audience:
            raise Refused("wrong_audience")
        # 3. Time.
        now = int(time.time())
        exp, iat = claims.get("exp"), claims.get("iat")
        if not isinstance(exp, int) or not isinstance(iat, int):
            raise Refused("malformed")
        if now > exp + self.leeway:
            raise Refused("expired")
        if iat > now + self.leeway:
            raise Refused("issued_in_future")
        # 4. This very request: method, URL (query included), body.
        if claims.get("htm") != method:
            raise Refused("method_mismatch")
        if claims.get("htu") != self.audience + target:
            raise Refused("url_mismatch")
        digest = content_digest(body)
        if claims.get("content_digest") != digest:
            raise Refused("body_mismatch")
        if headers.get("content-digest") not in (None, digest):
            raise Refused("content_digest_header_mismatch")
        # 5. Once.
        jti = claims.get("jti")
        if not isinstance(jti, str) or not jti:
            raise Refused("malformed")
        with self.seen_lock:
            for old in [j for j, until in self.seen.items() if until < now - self.leeway]:
                del self.seen[old]
            if jti in self.seen:
                raise Refused("replayed")
            self.seen[jti] = exp
        return claims


def make_handler(verifier: Verifier):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):  # quiet
            pass

        def _answer(self, status: int, doc: dict):
            data = json.dumps(doc).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.send_header("cache-control", "no-store")
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)

        def _handle(self):
            length = self.headers.get("content-length")
            if self.headers.get("transfer-encoding"):
                return self._answer(411, {"error": "length_required"})
            try:
                n = int(length) if length else 0
            except ValueError:
                return self._answer(400, {"error": "bad_content_length"})
            if n < 0 or n > MAX_BODY:
                return self._answer(413, {"error": "too_large"})
            body = self.rfile.read(n) if n else b""
            try:
                claims = verifier.verify(self.command, self.path, self.headers, body)
            except Refused as r:
                return self._answer(401, {"error": "invalid_receipt", "reason": r.reason})
            self._answer(200, {
                "ok": True,
                "method": self.command,
                "path": self.path,
                "body_bytes": len(body),
                "receipt": claims,
                "verifier": "python",
            })

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _handle

    return Handler


def serve(port: int, jwks: str, issuer: str, audience: str, host: str = "127.0.0.1",
          leeway: int = LEEWAY_SECS):
    verifier = Verifier(jwks, issuer, audience, leeway)
    server = ThreadingHTTPServer((host, port), make_handler(verifier))
    server.daemon_threads = True
    return server


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=9001)
    p.add_argument("--jwks", required=True, help="the gateway's JWKS URL")
    p.add_argument("--issuer", required=True, help="the gateway's issuer (the receipts' iss)")
    p.add_argument("--audience", required=True, help="this origin's URL as the gateway's route names it")
    p.add_argument("--leeway", type=int, default=LEEWAY_SECS, help="clock leeway, seconds")
    a = p.parse_args(argv)
    server = serve(a.port, a.jwks, a.issuer, a.audience, a.host, a.leeway)
    print(f"origin-python listening on {a.host}:{a.port}", file=sys.stderr, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
