"""The Worker's WebCrypto verifier, inside workerd, on every Wycheproof and RFC signature vector.

The e2e build has the test-only self-test endpoint (``ATTESTGATE_SELFTEST=1``, see
``src/edge/selftest.rs``). Each case goes through the gateway's own key constructors
(``Key::from_jwk`` for JWKs, the raw constructors for HMAC secrets), then through the production
WebCrypto verifier *and* the pure-Rust verifier compiled into the same wasm.

Verdicts asserted for every case:
- ``valid`` must verify, ``invalid`` must be refused, ``acceptable`` is refused (a strict verifier:
  the one such case is RSA tcId 8, MissingNull);
- keys the gateway refuses by policy refuse all their signatures, and are counted: HMAC secrets
  shorter than 32 bytes (RFC 7518 §3.2) and RSA keys with e = 3 (e must be 65537);
- WebCrypto and the pure-Rust verifier agree on every case. RS256 has no pure-Rust verifier in the
  Worker (``unavailable``); there the WebCrypto verdict is compared with pyca/cryptography
  (OpenSSL) as the second opinion, and ``tests/wycheproof.rs`` runs the native ``rsa`` verifier.

Counts are asserted so the test cannot pass vacuously.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from conftest import ROOT

VECTORS = ROOT.parent / "shared" / "vectors"
SELFTEST = "/__attestgate/selftest/verify"
BATCH = 200


def b64u(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64u_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@pytest.fixture(scope="module")
def vectors_dir() -> Path:
    if not (VECTORS / "wycheproof").is_dir() or not (VECTORS / "rfc").is_dir():
        pytest.fail(
            f"test vectors not found at {VECTORS}: the shared vector folder "
            "(shared/vectors next to the checkout) is required",
            pytrace=False,
        )
    return VECTORS


def load(vectors_dir: Path, name: str, schema: str) -> dict:
    doc = json.loads((vectors_dir / "wycheproof" / name).read_text())
    assert doc["schema"] == schema, f"{name}: schema changed"
    total = sum(len(g["tests"]) for g in doc["testGroups"])
    assert doc["numberOfTests"] == total, f"{name}: numberOfTests"
    return doc


def run_cases(gateway, cases: list[dict]) -> list[dict]:
    """Post the cases in batches; return the results in order."""
    results = []
    for start in range(0, len(cases), BATCH):
        chunk = cases[start:start + BATCH]
        resp = gateway.request(
            "POST",
            SELFTEST,
            {"content-type": "application/json"},
            json.dumps({"cases": chunk}).encode(),
        )
        assert resp.status == 200, f"self-test endpoint: {resp!r} (is ATTESTGATE_SELFTEST=1 set?)"
        got = resp.json()["results"]
        assert [r["id"] for r in got] == [c["id"] for c in chunk]
        results.extend(got)
    return results


class Tally:
    def __init__(self, name: str):
        self.name = name
        self.counts = {"total": 0, "valid_accepted": 0, "invalid_refused": 0,
                       "acceptable_refused": 0, "key_refused": 0}
        self.failures: list[str] = []

    def record(self, case: dict, result: dict, expected: str, *, key_policy_ok: bool = False):
        """`expected` is valid/invalid/acceptable. `key_policy_ok`: the gateway refuses this key by
        policy (then every signature is refused, whatever Wycheproof says)."""
        self.counts["total"] += 1
        what = f"{self.name} {case['id']}: {case.get('comment', '')}"
        if result["key"] != "ok":
            if not key_policy_ok and expected == "valid":
                self.failures.append(f"{what}: key refused ({result['key']}) for a valid vector")
                return
            self.counts["key_refused"] += 1
            return
        web, native = result["webcrypto"], result["native"]
        if native not in ("unavailable", None) and (web == "ok") != (native == "ok"):
            self.failures.append(f"{what}: WebCrypto {web} but native {native}")
        accepted = web == "ok"
        if expected == "valid" and accepted:
            self.counts["valid_accepted"] += 1
        elif expected == "invalid" and not accepted:
            self.counts["invalid_refused"] += 1
        elif expected == "acceptable" and not accepted:
            self.counts["acceptable_refused"] += 1
        else:
            self.failures.append(f"{what}: {expected} but WebCrypto says {web}")

    def check(self, **want):
        assert not self.failures, f"{len(self.failures)} mismatches:\n" + "\n".join(self.failures)
        assert self.counts == want, self.counts


def test_ecdsa_p256_wycheproof(gateway, vectors_dir):
    doc = load(vectors_dir, "ecdsa_secp256r1_sha256_p1363_test.json", "ecdsa_p1363_verify_schema_v1.json")
    cases, expected = [], []
    for group in doc["testGroups"]:
        point = bytes.fromhex(group["publicKey"]["uncompressed"])
        assert len(point) == 65 and point[0] == 4
        jwk = {"kty": "EC", "crv": "P-256", "x": b64u(point[1:33]), "y": b64u(point[33:])}
        for t in group["tests"]:
            cases.append({"id": f"ecdsa-{t['tcId']}", "alg": "ES256", "jwk": jwk,
                          "msg_hex": t["msg"], "sig_hex": t["sig"]})
            expected.append(t)
    tally = Tally("ecdsa")
    for case, result, t in zip(cases, run_cases(gateway, cases), expected):
        tally.record(dict(case, comment=t["comment"]), result, t["result"])
    # 70 of the 173 valid vectors are high-S: accepted (ATTACKS #19, policy_accept).
    tally.check(total=262, valid_accepted=173, invalid_refused=89, acceptable_refused=0, key_refused=0)


def test_ed25519_wycheproof(gateway, vectors_dir):
    doc = load(vectors_dir, "ed25519_test.json", "eddsa_verify_schema_v1.json")
    cases, expected = [], []
    for group in doc["testGroups"]:
        pk = bytes.fromhex(group["publicKey"]["pk"])
        jwk = {"kty": "OKP", "crv": "Ed25519", "x": b64u(pk)}
        for t in group["tests"]:
            cases.append({"id": f"ed25519-{t['tcId']}", "alg": "EdDSA", "jwk": jwk,
                          "msg_hex": t["msg"], "sig_hex": t["sig"]})
            expected.append(t)
    tally = Tally("ed25519")
    for case, result, t in zip(cases, run_cases(gateway, cases), expected):
        tally.record(dict(case, comment=t["comment"]), result, t["result"])
    tally.check(total=151, valid_accepted=88, invalid_refused=63, acceptable_refused=0, key_refused=0)


def test_hmac_sha256_wycheproof_full_tags(gateway, vectors_dir):
    """HS256 uses the full 32-byte tag: only the tagSize 256 groups are JWS vectors. The secret
    goes through the configured-secret constructor; 128-bit secrets are refused by policy."""
    doc = load(vectors_dir, "hmac_sha256_test.json", "mac_test_schema_v1.json")
    cases, expected = [], []
    for group in doc["testGroups"]:
        if group["tagSize"] != 256:
            continue
        for t in group["tests"]:
            cases.append({"id": f"hmac-{t['tcId']}", "alg": "HS256", "secret_hex": t["key"],
                          "msg_hex": t["msg"], "sig_hex": t["tag"]})
            expected.append((t, group["keySize"]))
    tally = Tally("hmac")
    for case, result, (t, key_bits) in zip(cases, run_cases(gateway, cases), expected):
        if key_bits < 256:
            assert result["key"] == "weak_key", result
        tally.record(dict(case, comment=t["comment"]), result, t["result"], key_policy_ok=key_bits < 256)
    tally.check(total=87, valid_accepted=30, invalid_refused=54, acceptable_refused=0, key_refused=3)


def test_rsa_pkcs1_2048_wycheproof(gateway, vectors_dir):
    doc = load(vectors_dir, "rsa_signature_2048_sha256_test.json", "rsassa_pkcs1_verify_schema_v1.json")
    cases, expected = [], []
    for group in doc["testGroups"]:
        n = bytes.fromhex(group["publicKey"]["modulus"]).lstrip(b"\0")
        e = bytes.fromhex(group["publicKey"]["publicExponent"]).lstrip(b"\0")
        jwk = {"kty": "RSA", "n": b64u(n), "e": b64u(e)}
        public = rsa.RSAPublicNumbers(int.from_bytes(e, "big"), int.from_bytes(n, "big")).public_key()
        for t in group["tests"]:
            cases.append({"id": f"rsa-{t['tcId']}", "alg": "RS256", "jwk": jwk,
                          "msg_hex": t["msg"], "sig_hex": t["sig"]})
            expected.append((t, public, int.from_bytes(e, "big")))
    tally = Tally("rsa")
    disagreements = []
    for case, result, (t, public, e) in zip(cases, run_cases(gateway, cases), expected):
        if e != 65537:
            assert result["key"] == "rsa_exponent", result
        else:
            # The length check is shared; past it, RS256 has no pure-Rust verifier in the Worker.
            assert result["native"] in ("unavailable", "signature_length"), result
            assert (result["native"] == "signature_length") == (result["webcrypto"] == "signature_length")
            try:
                public.verify(bytes.fromhex(t["sig"]), bytes.fromhex(t["msg"]),
                              padding.PKCS1v15(), hashes.SHA256())
                openssl = True
            except InvalidSignature:
                openssl = False
            if openssl != (result["webcrypto"] == "ok") and t["result"] != "acceptable":
                disagreements.append(f"tcId {t['tcId']}: OpenSSL {openssl}, WebCrypto {result['webcrypto']}")
        tally.record(dict(case, comment=t["comment"]), result, t["result"], key_policy_ok=e != 65537)
    assert not disagreements, disagreements
    # The two e = 3 groups (flag SmallPublicKey) hold one valid test each: key refused by policy.
    e3 = [t for g in doc["testGroups"] if int(g["publicKey"]["publicExponent"], 16) != 65537
          for t in g["tests"]]
    assert len(e3) == 2 and all(t["result"] == "valid" for t in e3)
    tally.check(total=259, valid_accepted=7, invalid_refused=249, acceptable_refused=1, key_refused=2)


def rfc_vectors(vectors_dir: Path) -> list[dict]:
    doc = json.loads((vectors_dir / "rfc" / "jose_rfc_vectors.json").read_text())
    assert doc["summary"]["total"] == len(doc["vectors"])
    return doc["vectors"]


def rfc_case(v: dict) -> dict | None:
    """The signature case of an RFC vector (signing input as the RFC defines it), or None when the
    vector has no verifiable signature."""
    if v["kind"] not in ("jws_compact", "jws_compact_detached", "dpop_proof") or not v.get("jwk"):
        return None
    header_b64, payload_b64, sig_b64 = v["compact"].split(".")
    if v["kind"] == "jws_compact_detached":
        if "detached_payload_b64u" in v:
            payload_b64 = v["detached_payload_b64u"]
            signing_input = f"{header_b64}.{payload_b64}".encode()
        else:  # RFC 7797 b64=false: the raw payload is in the signing input
            signing_input = header_b64.encode() + b"." + v["detached_payload_raw"].encode()
    else:
        signing_input = f"{header_b64}.{payload_b64}".encode()
    jwk = {k: val for k, val in v["jwk"].items()}
    case = {"id": v["id"], "alg": v["alg"], "msg_hex": signing_input.hex(),
            "sig_hex": b64u_decode(sig_b64).hex()}
    if jwk["kty"] == "oct":
        case["secret_hex"] = b64u_decode(jwk["k"]).hex()
    else:
        case["jwk"] = jwk
    return case


def test_rfc_signature_vectors(gateway, vectors_dir):
    """Every RFC vector with a signature and a key: the supported algorithms verify (and a flipped
    bit is refused); ES512 (P-521) keys are refused at load: not a supported algorithm."""
    cases = []
    for v in rfc_vectors(vectors_dir):
        case = rfc_case(v)
        if case is None:
            continue
        cases.append(case)
        flipped = bytearray(bytes.fromhex(case["sig_hex"]))
        flipped[len(flipped) // 2] ^= 0x01
        cases.append(dict(case, id=case["id"] + "#flipped", sig_hex=flipped.hex()))
    results = {r["id"]: r for r in run_cases(gateway, cases)}
    verified, refused_alg, flipped_refused = [], [], 0
    for case in cases:
        r = results[case["id"]]
        if case["alg"] not in ("ES256", "EdDSA", "RS256", "HS256"):
            assert r["key"] == "unknown_alg", r
            refused_alg.append(case["id"])
            continue
        assert r["key"] == "ok", r
        if case["alg"] != "RS256":
            assert r["native"] == r["webcrypto"], r
        if case["id"].endswith("#flipped"):
            assert r["webcrypto"] == "bad_signature", r
            flipped_refused += 1
        else:
            assert r["webcrypto"] == "ok", r
            verified.append(case["id"])
    assert sorted(verified) == sorted([
        "rfc7515-A.1-HS256", "rfc7515-A.2-RS256", "rfc7515-A.3-ES256", "rfc8037-A.4-A.5-EdDSA",
        "rfc7520-4.1-RS256", "rfc7520-4.4-HS256", "rfc7520-4.5-HS256-detached",
        "rfc7797-4.1-b64-true", "rfc7797-4.2-b64-false-detached",
        "rfc9449-fig2-fig5-token-request-proof", "rfc9449-fig7-refresh-request-proof",
        "rfc9449-fig13-resource-request-proof-ath",
    ]), verified
    assert flipped_refused == len(verified)
    assert sorted(refused_alg) == sorted([
        "rfc7515-A.4-ES512", "rfc7515-A.4-ES512#flipped",
        "rfc7520-4.3-ES512", "rfc7520-4.3-ES512#flipped",
    ])


# Ed25519 small-order points (their canonical encodings) and non-canonical encodings: every one
# must be refused when the key is loaded (ATTACKS #23), so no signature is ever checked with them.
SMALL_ORDER = [
    "0100000000000000000000000000000000000000000000000000000000000000",  # identity
    "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",  # order 2 (y = -1)
    "0000000000000000000000000000000000000000000000000000000000000000",  # order 4
    "0000000000000000000000000000000000000000000000000000000000000080",  # order 4, sign bit
    "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",  # order 8
    "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa",  # order 8
    "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",  # order 8
    "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc85",  # order 8
]
NON_CANONICAL = [
    "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",  # y = p + 1 (ATTACKS #23)
    "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",  # y = p
    "0100000000000000000000000000000000000000000000000000000000000080",  # x = 0 with sign bit
]


def test_weak_and_non_canonical_ed25519_keys_are_refused_at_load(gateway):
    forgery_sig = ("01" + "00" * 31) + "00" * 32  # R = identity, S = 0: "verifies" for any message
    cases = []
    for i, pk in enumerate(SMALL_ORDER + NON_CANONICAL):
        jwk = {"kty": "OKP", "crv": "Ed25519", "x": b64u(bytes.fromhex(pk))}
        for via in ("jwk", "raw"):
            case = {"id": f"{via}-{i}", "alg": "EdDSA", "msg_hex": b"admin".hex(), "sig_hex": forgery_sig}
            case.update({"jwk": jwk} if via == "jwk" else {"pk_hex": pk})
            cases.append(case)
    results = run_cases(gateway, cases)
    assert len(results) == 2 * (len(SMALL_ORDER) + len(NON_CANONICAL)) == 22
    for case, r in zip(cases, results):
        assert r["key"] in ("weak_key", "non_canonical", "invalid_point"), (case, r)
        assert r["webcrypto"] is None and r["native"] is None
    weak = [r for r in results[: 2 * len(SMALL_ORDER)] if r["key"] == "weak_key"]
    assert len(weak) >= 12, results  # canonical small-order encodings: refused as weak


def test_selftest_endpoint_refuses_other_methods_and_garbage(gateway):
    assert gateway.request("GET", SELFTEST).status == 405
    resp = gateway.request("POST", SELFTEST, {"content-type": "application/json"}, b'{"cases":[{"x":1}]}')
    assert resp.status == 400


ED25519_L = 2**252 + 27742317777372353535851937790883648493


def small_order_r_signature(seed: bytes, msg: bytes) -> tuple[bytes, bytes]:
    """An Ed25519 signature whose R is the identity point, made with the private key: with
    s = H(R‖A‖M)·a mod L the cofactorless equation [s]B = R + [H]A holds. RFC 8032 verifiers
    without a small-order check (OpenSSL, BoringSSL, so WebCrypto in workerd) accept it;
    `verify_strict` refuses small-order R. A second valid spelling of a signed message is what
    breaks signature-keyed caches, so the gateway must refuse it on both paths."""
    import hashlib

    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    public = Ed25519PrivateKey.from_private_bytes(seed).public_key().public_bytes_raw()
    digest = hashlib.sha512(seed).digest()
    a = int.from_bytes(digest[:32], "little")
    a &= (1 << 254) - 8
    a |= 1 << 254
    r = bytes.fromhex("01" + "00" * 31)
    h = int.from_bytes(hashlib.sha512(r + public + msg).digest(), "little") % ED25519_L
    return public, r + ((h * a) % ED25519_L).to_bytes(32, "little")


def test_ed25519_small_order_r_is_refused_by_webcrypto_too(gateway):
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    cases = []
    for i in range(4):
        msg = f"message {i}".encode()
        public, sig = small_order_r_signature(bytes([i + 1]) * 32, msg)
        # OpenSSL accepts it: the vector is valid under the cofactorless RFC 8032 equation.
        Ed25519PublicKey.from_public_bytes(public).verify(sig, msg)
        jwk = {"kty": "OKP", "crv": "Ed25519", "x": b64u(public)}
        cases.append({"id": f"small-r-{i}", "alg": "EdDSA", "jwk": jwk,
                      "msg_hex": msg.hex(), "sig_hex": sig.hex()})
    for r in run_cases(gateway, cases):
        assert r["key"] == "ok", r
        assert r["native"] == "bad_signature", r
        assert r["webcrypto"] == "bad_signature", r
