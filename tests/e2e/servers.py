"""Local stand-ins for the two things attestgate talks to: an origin API and a token issuer.

Both run on one loopback HTTP server:
- ``/demo-issuer/jwks.json`` serves the issuer's public keys (JWKS). Tests rotate keys, count fetches
  and simulate an outage.
- ``/issuers/<name>/jwks.json`` serves more issuers (created on first use, each with its own keys,
  fetch counter, outage switch and optional custom JWKS body), so that key-cache scenarios do not
  share state (the gateway caches keys per provider).
- ``/trap/...`` records every request and answers with ``trap_jwks``: token headers such as ``jku``
  or ``x5u`` point here, and a test proves the gateway never fetched them.
- every other path is the *origin*: it records each request it receives (method, path, headers,
  body) and answers with a JSON echo, so tests can assert what reached it and what did not.
  With ``origin_sleep_ms=N`` in the query it waits N ms before sending the response headers (the
  slow-origin scenarios); a client that gave up by then is not an error.

Tokens are minted with joserfc, an independent JOSE library: the gateway's own code never signs
anything in the end-to-end tests.

Run standalone for the README demo: ``python tests/e2e/servers.py --port 8788``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import secrets
import threading
import time
import warnings
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from joserfc import jwk, jwt

warnings.filterwarnings("ignore", message=".*deprecated.*")

ISSUER_PATH = "/demo-issuer"
NAMED_ISSUERS_PATH = "/issuers"
TRAP_PATH = "/trap"
# Issue 16: the local stand-in for a token status issuer (test_status_list.py).
STATUS_PATH = "/status-lists"


class Issuer:
    """A token issuer with a JWKS it can rotate and take offline."""

    def __init__(self, issuer: str):
        self.issuer = issuer
        self.keys: dict[str, object] = {}
        self.published: list[str] = []
        self.lock = threading.Lock()
        self.jwks_fetches = 0
        self.outage = False
        self.cache_control = "max-age=600"
        # A custom JWKS answer instead of jwks(): raw bytes, its status, and whether to send it
        # chunked (no content-length), for the malformed / huge document scenarios.
        self.body: bytes | None = None
        self.status = 200
        self.chunked = False
        # Seconds to wait before answering a JWKS fetch (a hanging issuer).
        self.delay = 0.0

    def add_key(self, kind: str, kid: str, publish: bool = True):
        if kind == "ES256":
            key = jwk.ECKey.generate_key("P-256", parameters={"kid": kid}, private=True)
        elif kind in ("EdDSA", "Ed25519"):
            key = jwk.OKPKey.generate_key("Ed25519", parameters={"kid": kid}, private=True)
        elif kind == "RS256":
            key = jwk.RSAKey.generate_key(2048, parameters={"kid": kid}, private=True)
        else:
            raise ValueError(kind)
        with self.lock:
            self.keys[kid] = key
            if publish:
                self.published.append(kid)
        return key

    def publish(self, kid: str):
        with self.lock:
            if kid not in self.published:
                self.published.append(kid)

    def jwks(self) -> dict:
        with self.lock:
            return {
                "keys": [self.keys[k].as_dict(private=False) for k in self.published]
            }

    def mint(
        self,
        kid: str,
        alg: str | None = None,
        typ: str | None = "at+jwt",
        extra_header: dict | None = None,
        **claims,
    ) -> str:
        key = self.keys[kid]
        if alg is None:
            alg = {"EC": "ES256", "OKP": "EdDSA", "RSA": "RS256"}[key.key_type]
        header = {"alg": alg, "kid": kid}
        if typ is not None:
            header["typ"] = typ
        if extra_header:
            header.update(extra_header)
        return sign(header, self.claims(**claims), key)

    def claims(self, **claims) -> dict:
        now = int(time.time())
        base = {
            "iss": self.issuer,
            "aud": "https://api.example.com",
            "sub": "user:alice",
            "iat": now,
            "exp": now + 300,
            "jti": secrets.token_urlsafe(12),
        }
        for name, value in claims.items():
            if value is None:
                base.pop(name, None)
            else:
                base[name] = value
        return base


def sign(header: dict, claims: dict, key) -> str:
    """Sign with joserfc, allowing exactly the algorithm in the header."""
    return jwt.encode(header, claims, key, algorithms=[header["alg"]])


def hmac_key(secret: bytes):
    return jwk.OctKey.import_key(secret)


class Recorder:
    """Everything the origin received."""

    def __init__(self):
        self.lock = threading.Lock()
        self.requests: list[dict] = []

    def add(self, entry: dict):
        with self.lock:
            self.requests.append(entry)

    def snapshot(self) -> list[dict]:
        with self.lock:
            return list(self.requests)

    def count(self) -> int:
        with self.lock:
            return len(self.requests)


class LocalServers:
    """The origin and the issuer on one loopback port, in a background thread."""

    def __init__(self, port: int = 0, issuer_url: str | None = None):
        self.recorder = Recorder()
        servers = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                pass

            def _body(self) -> bytes:
                length = int(self.headers.get("content-length") or 0)
                return self.rfile.read(length) if length else b""

            def _send(self, status: int, body: bytes, headers: dict | None = None):
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.end_headers()
                try:
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client stopped reading (e.g. the gateway's JWKS size cap)

            def _send_chunked(self, status: int, body: bytes, headers: dict | None = None):
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("transfer-encoding", "chunked")
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.end_headers()
                try:
                    for i in range(0, len(body), 16384):
                        chunk = body[i:i + 16384]
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                    self.wfile.write(b"0\r\n\r\n")
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the gateway stopped reading (size cap): expected

            def _send_canned(self, body: bytes, status: int = 200, headers: dict | None = None,
                             truncate: int | None = None, chunked: int | None = None):
                """A body a test set (issue 18, test_mask.py): its own headers; with `truncate`,
                announce the whole length, send only that many bytes and close; with `chunked`,
                no length, in chunks of that many bytes."""
                if chunked:
                    self.send_response(status)
                    for name, value in (headers or {}).items():
                        self.send_header(name, value)
                    self.send_header("transfer-encoding", "chunked")
                    self.end_headers()
                    for i in range(0, len(body), chunked):
                        part = body[i:i + chunked]
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
                        self.wfile.flush()
                    self.wfile.write(b"0\r\n\r\n")
                    return
                self.send_response(status)
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                try:
                    self.wfile.write(body if truncate is None else body[:truncate])
                    self.wfile.flush()
                except (BrokenPipeError, ConnectionResetError):
                    pass
                if truncate is not None:
                    self.close_connection = True

            def _handle(self):
                path = urlsplit(self.path).path
                if path.startswith(ISSUER_PATH + "/"):
                    return servers._issuer(self, path[len(ISSUER_PATH):])
                if path.startswith(NAMED_ISSUERS_PATH + "/"):
                    name, _, sub = path[len(NAMED_ISSUERS_PATH) + 1:].partition("/")
                    return servers._issuer(self, "/" + sub, servers.issuer_named(name))
                if path.startswith(TRAP_PATH + "/"):
                    return servers._trap(self, path)
                if path.startswith(STATUS_PATH + "/"):
                    return servers._status_list(self, path)
                body = self._body()
                entry = {
                    "method": self.command,
                    "path": self.path,
                    "headers": [(k.lower(), v) for k, v in self.headers.items()],
                    "body": body.decode("utf-8", "replace"),
                    "body_sha256": hashlib.sha256(body).hexdigest(),
                }
                servers.recorder.add(entry)
                canned = servers.canned.get(urlsplit(self.path).path)
                if canned is not None:
                    return self._send_canned(**canned)
                sleep_ms = parse_qs(urlsplit(self.path).query).get("origin_sleep_ms")
                if sleep_ms:
                    time.sleep(int(sleep_ms[-1]) / 1000)
                verified = {k: v for k, v in entry["headers"] if k.startswith("x-verified-")}
                reply = {
                    "origin": "demo-origin",
                    "method": self.command,
                    "path": self.path,
                    "verified": verified,
                    "body_bytes": len(body),
                }
                try:
                    self._send(200, json.dumps(reply).encode())
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the gateway stopped waiting (a slow-origin scenario)

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_PROPFIND = _handle

        # Answers for given origin paths: path -> _send_canned keyword arguments.
        self.canned: dict[str, dict] = {}
        self.named: dict[str, Issuer] = {}
        self.named_lock = threading.Lock()
        self.trap_hits: list[dict] = []
        self.trap_jwks: dict = {"keys": []}
        # Status List Tokens by path: {"body": bytes, "status": int, "delay": s, "fetches": n}.
        self.status_lists: dict[str, dict] = {}
        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.base = f"http://127.0.0.1:{self.port}"
        self.issuer = Issuer(issuer_url or f"{self.base}{ISSUER_PATH}")
        self.jwks_uri = f"{self.base}{ISSUER_PATH}/jwks.json"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def issuer_named(self, name: str) -> Issuer:
        """The issuer at ``/issuers/<name>`` (created with an ES256 and an EdDSA key on first use:
        ``<name>-es256``, ``<name>-eddsa``)."""
        with self.named_lock:
            issuer = self.named.get(name)
            if issuer is None:
                issuer = Issuer(f"{self.base}{NAMED_ISSUERS_PATH}/{name}")
                issuer.add_key("ES256", f"{name}-es256")
                issuer.add_key("EdDSA", f"{name}-eddsa")
                self.named[name] = issuer
            return issuer

    def jwks_uri_of(self, name: str) -> str:
        return f"{self.base}{NAMED_ISSUERS_PATH}/{name}/jwks.json"

    def _trap(self, handler, path: str):
        with self.named_lock:
            self.trap_hits.append({"method": handler.command, "path": handler.path})
            body = json.dumps(self.trap_jwks).encode()
        return handler._send(200, body)

    def _status_list(self, handler, path: str):
        with self.named_lock:
            entry = self.status_lists.get(path)
            if entry is not None:
                entry["fetches"] = entry.get("fetches", 0) + 1
                body, status, delay = entry["body"], entry.get("status", 200), entry.get("delay", 0)
        if entry is None:
            return handler._send(404, b'{"error":"not_found"}')
        if delay:
            time.sleep(delay)
        return handler._send(status, body, {"content-type": "application/statuslist+jwt"})

    def _issuer(self, handler, sub: str, issuer: Issuer | None = None):
        issuer = issuer or self.issuer
        if sub == "/jwks.json":
            with issuer.lock:
                issuer.jwks_fetches += 1
                outage = issuer.outage
                body, status, chunked = issuer.body, issuer.status, issuer.chunked
                delay = issuer.delay
            if delay:
                time.sleep(delay)
            if outage:
                return handler._send(503, b'{"error":"down"}')
            headers = {"cache-control": issuer.cache_control}
            if body is not None:
                if chunked:
                    return handler._send_chunked(status, body, headers)
                return handler._send(status, body, headers)
            return handler._send(200, json.dumps(issuer.jwks()).encode(), headers)
        if sub.startswith("/token"):
            # Demo convenience: GET /demo-issuer/token?scope=..&act=..&kid=..
            query = {k: v[-1] for k, v in parse_qs(urlsplit(handler.path).query).items()}
            kid = query.pop("kid", next(iter(issuer.keys)))
            claims = {}
            if "scope" in query:
                claims["scope"] = query.pop("scope")
            if "act" in query:
                claims["act"] = {"sub": query.pop("act")}
            if "sub" in query:
                claims["sub"] = query.pop("sub")
            token = issuer.mint(kid, **claims)
            return handler._send(200, token.encode(), {"content-type": "text/plain"})
        return handler._send(404, b'{"error":"not_found"}')

    def start(self) -> "LocalServers":
        self.thread.start()
        return self

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def main():
    parser = argparse.ArgumentParser(description="attestgate demo origin and issuer")
    parser.add_argument("--port", type=int, default=8788)
    args = parser.parse_args()
    servers = LocalServers(port=args.port)
    servers.issuer.add_key("ES256", "demo-es256")
    servers.issuer.add_key("EdDSA", "demo-eddsa")
    print(f"demo origin on {servers.base}/  issuer JWKS on {servers.jwks_uri}", flush=True)
    print(f"mint a token: curl -s '{servers.base}{ISSUER_PATH}/token?scope=orders:read'", flush=True)
    try:
        servers.httpd.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
