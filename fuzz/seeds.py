#!/usr/bin/env python3
"""Builds the fuzzers' seed corpora at run time, into OUT/<target>/ (one file per seed).

Sources: the shared test vectors (../shared/vectors: the RFC JOSE vectors and the Wycheproof
key and signature material) and the policy folders of this repository (policies/, the e2e and
bench policies, and the invalid-policy cases). Nothing is copied into the repository: the seeds
are derived each run (scripts/fuzz.sh calls this), and the output folder is ignored by git.

Standard library only (Python 3.11+: tomllib). Usage: fuzz/seeds.py OUT [VECTORS]
"""

import base64
import hashlib
import json
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "fuzz" / "seeds"
VECTORS = Path(sys.argv[2]) if len(sys.argv) > 2 else ROOT.parent / "shared" / "vectors"

# The constants the targets check against (fuzz_targets/jws_parse.rs, dpop_proof.rs): seeds that
# pass every check, so the fuzzers start on the accepting paths.
NOW = 1_700_000_000
ISSUER = "https://issuer.example"
AUDIENCE = "https://api.example"
DPOP_HTU = "https://api.example/v1/orders"
DPOP_ACCESS_TOKEN = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln"

# Per target, at most this many seeds from one Wycheproof file (they are many and alike).
WYCHEPROOF_PER_FILE = 40

seeds: dict[str, dict[str, bytes]] = {}


def add(target: str, name: str, data: bytes | str) -> None:
    if isinstance(data, str):
        data = data.encode()
    seeds.setdefault(target, {})[name] = data


def b64u(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def compact(obj) -> str:
    return json.dumps(obj, separators=(",", ":"))


def policy_dirs() -> list[tuple[str, list[Path]]]:
    dirs = [ROOT / "policies", ROOT / "tests" / "e2e" / "policies", ROOT / "benches" / "policies"]
    invalid = ROOT / "tests" / "policies" / "invalid"
    if invalid.is_dir():
        dirs += sorted(p for p in invalid.iterdir() if p.is_dir())
    out = []
    for d in dirs:
        files = sorted(f for f in d.glob("*.toml") if not f.name.startswith("."))
        if files:
            out.append((d.relative_to(ROOT).as_posix().replace("/", "_"), files))
    return out


def from_rfc_vectors() -> None:
    doc = json.loads((VECTORS / "rfc" / "jose_rfc_vectors.json").read_text())
    for v in doc["vectors"]:
        vid = v["id"]
        token = v.get("compact")
        if token:
            target = "dpop_proof" if v["kind"] == "dpop_proof" else "jws_parse"
            add(target, vid, b"\x00" + token.encode())
            add("url_split", vid + "-token", token)
        header, payload = v.get("protected_header_raw"), v.get("payload_raw")
        if header is not None:
            add("json_strict", vid + "-header", header)
            signed = header.encode() + b"\xff" + (payload or "{}").encode()
            add("jws_parse", vid + "-signed", b"\x01" + signed)
        if payload is not None:
            add("json_strict", vid + "-payload", payload)
            if v["kind"] == "dpop_proof":
                add("dpop_proof", vid + "-claims", b"\x01" + payload.encode())
        for member in ("jwk", "jwk_private_from_rfc"):
            jwk = v.get(member)
            if isinstance(jwk, dict):
                add("json_strict", f"{vid}-{member}", compact(jwk))
                add("jwks_load", f"{vid}-{member}", compact({"keys": [jwk]}))
        if isinstance(v.get("jwks"), dict):
            add("json_strict", vid + "-jwks", compact(v["jwks"]))
            add("jwks_load", vid + "-jwks", json.dumps(v["jwks"], indent=1))
        if v.get("serialized"):
            add("json_strict", vid + "-serialized", v["serialized"])
        request = v.get("request")
        if isinstance(request, dict) and request.get("htu"):
            add("url_split", vid + "-htu", request["htu"])


def from_wycheproof() -> None:
    headers = {
        "ecdsa_secp256r1_sha256_p1363_test.json": {"alg": "ES256", "typ": "at+jwt"},
        "ed25519_test.json": {"alg": "EdDSA", "typ": "at+jwt"},
        "rsa_signature_2048_sha256_test.json": {"alg": "RS256", "typ": "JWT"},
        "hmac_sha256_test.json": {"alg": "HS256", "typ": "JWT"},
    }
    for file, header in headers.items():
        doc = json.loads((VECTORS / "wycheproof" / file).read_text())
        stem = file.removesuffix(".json")
        keys = []
        count = 0
        for gi, group in enumerate(doc["testGroups"]):
            jwk = group.get("publicKeyJwk") or group.get("keyJwk")
            if isinstance(jwk, dict):
                keys.append(jwk)
                if len(keys) <= WYCHEPROOF_PER_FILE:
                    add("json_strict", f"{stem}-g{gi}-jwk", compact(jwk))
            for test in group["tests"]:
                if count >= WYCHEPROOF_PER_FILE:
                    break
                sig = bytes.fromhex(test.get("sig") or test.get("tag") or "")
                msg = bytes.fromhex(test.get("msg", ""))
                h = dict(header, kid=str(jwk.get("kid", "none")) if isinstance(jwk, dict) else "k")
                token = f"{b64u(compact(h).encode())}.{b64u(msg) or 'e30'}.{b64u(sig) or 'AA'}"
                add("jws_parse", f"{stem}-{test['tcId']}", b"\x00" + token.encode())
                count += 1
        # Key sets of several entries, with the kids made distinct and then one repeated.
        for i in range(0, min(len(keys), 4 * 5), 5):
            chunk = [dict(k, kid=f"k{i + j}") for j, k in enumerate(keys[i : i + 5])]
            add("jwks_load", f"{stem}-set{i}", compact({"keys": chunk}))
            if len(chunk) > 1:
                chunk[1]["kid"] = chunk[0]["kid"]
                add("jwks_load", f"{stem}-set{i}-dup", compact({"keys": chunk}))


def from_policies() -> None:
    # The compiled forms the builds embedded (build.rs: $OUT_DIR/policy.bin), where a build left
    # them: seeds the policy_json target's compiled-form reader can mutate from.
    for i, built in enumerate(sorted(ROOT.glob("target/**/build/attestgate-*/out/policy.bin"))[:8]):
        add("policy_json", f"compiled-{i}", built.read_bytes())
    for name, files in policy_dirs():
        texts = [f.read_text() for f in files]
        add("policy_toml", name, "\n#---\n".join(texts))
        try:
            models = [
                {"name": f.relative_to(ROOT).as_posix(), "model": tomllib.loads(t)}
                for f, t in zip(files, texts)
            ]
        except tomllib.TOMLDecodeError:
            continue
        embedded = compact({"format": "attestgate-policy/1", "files": models})
        add("policy_json", name, embedded)
        if "invalid" not in name:
            add("json_strict", name + "-policy", embedded)
        for model in models:
            gateway = model["model"].get("gateway", {})
            for url in (gateway.get("origin"),):
                if isinstance(url, str):
                    add("url_split", f"{name}-origin-{len(url)}", url)
            for provider in model["model"].get("provider", {}).values():
                if isinstance(provider.get("jwks_uri"), str):
                    add("url_split", f"{name}-jwks-{provider['jwks_uri']}"[:80], provider["jwks_uri"])
            for route in model["model"].get("route", []):
                path = route.get("path")
                if isinstance(path, str):
                    concrete = "/".join("x" if s.startswith("{") or "*" in s else s for s in path.split("/"))
                    host = route.get("host", "api.example.com")
                    add("url_split", f"{name}-{route.get('id')}-path", concrete)
                    add("url_split", f"{name}-{route.get('id')}-url", f"https://{host}{concrete}?a=1")


def hand_written() -> None:
    # Request URLs of the shapes the runtime sends and the shapes it never sends.
    for i, url in enumerate([
        "https://api.example.com/v1/orders/42?x=1&y=%2F",
        "http://127.0.0.1:8787/",
        "http://[::1]:8787/a?",
        "https://h//a/%2F/b?q=?",
        "https://user:pw@h/x",
        "https://h/#frag",
        "https://xn--bcher-kva.example:8443/caf%C3%A9;p=1/a..b/",
        "HTTPS://API.Example.COM:443/a/./b/../c?%41",
        "http://h\\a\\b",
        "/a/%2e%2E/b",
        "/users/..;/admin",
        "/a%20b/%7e/%25",
        "/~a/!$&'()*+,;=:@/-._",
    ]):
        add("url_split", f"hand-{i}", url)
    # Access-token claims that pass every check of jws_parse's profile.
    header = {"alg": "HS256", "typ": "at+jwt"}
    claims = {
        "iss": ISSUER, "aud": [AUDIENCE, "other"], "sub": "user-1", "iat": NOW - 10,
        "exp": NOW + 600, "nbf": NOW - 10, "jti": "j1", "cnf": {"jkt": "abc"},
        "act": {"sub": "agent", "act": {"sub": "agent-2"}}, "scope": "a b",
    }
    add("jws_parse", "good-signed", b"\x01" + compact(header).encode() + b"\xff" + compact(claims).encode())
    # A DPoP proof's claims that pass every check of dpop_proof's expectations.
    ath = b64u(hashlib.sha256(DPOP_ACCESS_TOKEN.encode()).digest())
    proof = {"htm": "POST", "htu": DPOP_HTU, "iat": NOW, "jti": "proof-1", "ath": ath, "nonce": "n"}
    add("dpop_proof", "good-signed", b"\x01" + compact(proof).encode())
    # Strict-JSON edge cases: duplicates, escapes, depth, numbers.
    for i, text in enumerate([
        '{"alg":"none","alg":"ES256"}',
        '{"alg":"ES256","\\u0061lg":"HS256"}',
        '{"a":[{"x":1},{"y":1,"y":1}]}',
        '{"exp":1e400}',
        '{"a":9223372036854775808,"b":18446744073709551616,"c":-1.5e-7}',
        '\ufeff{}',
        '{"sub":"\\ud800"}',
        '{"a":' * 20 + "1" + "}" * 20,
    ]):
        add("json_strict", f"hand-{i}", text)
    # Issue 15: the intent evaluator with the body reader (body 0xff details 0xff query 0xff account).
    body = compact({"creditor": {"iban": "DE02"}, "amount": "99.50", "currency": "EUR", "purpose": "rent"})
    details = compact([{"type": "payment_initiation", "actions": ["initiate"],
                        "locations": ["https://bank.example"], "identifier": "acc-1",
                        "creditorAccount": {"iban": "DE02"}, "remittance": "INV-*",
                        "instructedAmount": {"currency": "EUR", "amount": "100.00"},
                        "purposes": ["rent"], "floor": "1"}])
    add("intent_eval", "covered", b"\xff".join([body.encode(), details.encode(), b"reference=INV-7", b"acc-1"]))
    add("intent_eval", "over-limit", b"\xff".join([body.replace("99.50", "100.01").encode(), details.encode(), b"reference=INV-7", b"acc-1"]))
    add("intent_eval", "duplicate", b'{"amount":"1","amount":"2"}\xff[]\xff\xff')


def main() -> None:
    if not VECTORS.is_dir():
        sys.exit(f"seeds: the shared vectors are not at {VECTORS}")
    from_rfc_vectors()
    from_wycheproof()
    from_policies()
    hand_written()
    total = 0
    for target, items in sorted(seeds.items()):
        folder = OUT / target
        folder.mkdir(parents=True, exist_ok=True)
        for old in folder.iterdir():
            old.unlink()
        for name, data in items.items():
            safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)[:100]
            (folder / safe).write_bytes(data)
        total += len(items)
        print(f"seeds: {target}: {len(items)}")
    print(f"seeds: {total} in {OUT}")


if __name__ == "__main__":
    main()
