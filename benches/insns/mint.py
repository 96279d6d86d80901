#!/usr/bin/env python3
"""Mints the fixed tokens of the CPU regression gate (benches/insns.rs, scripts/insn-gate.sh).

The tokens are signed by joserfc, an independent JOSE library (the gateway's own code never
signs), with the fixed test keys in keys.json, for the gate's fixed clock (NOW below, the same
constant as in benches/insns.rs). Writes:

  jwks.json    the public keys (the policy's inline JWKS)
  tokens.json  one access token per algorithm, and the HS256 secret (base64url)

Usage: .venv/bin/python benches/insns/mint.py [--new-keys]
  --new-keys   generate new keys.json first (changes every token and so the counts a little:
               re-record the baseline afterwards with scripts/insn-gate.sh --record "why")

With the same keys, the EdDSA and HS256 tokens come out identical; ECDSA signatures are
randomised, so the ES256 token changes (and its count may move by a few instructions).
"""

import base64
import json
import secrets
import sys
import warnings
from pathlib import Path

from joserfc import jwk, jwt

# joserfc 1.8 warns that the name "EdDSA" is deprecated by RFC 9864; it is what issuers send.
warnings.filterwarnings("ignore", message="EdDSA is deprecated")

HERE = Path(__file__).resolve().parent
NOW = 1_700_000_000  # benches/insns.rs: NOW
ISSUER = "https://issuer.example"
DEVICE_ISSUER = "https://device.example"
AUDIENCE = "https://api.example.com"


def b64u(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def new_keys() -> None:
    es = jwk.ECKey.generate_key("P-256", parameters={"kid": "insn-es256"}, private=True)
    ed = jwk.OKPKey.generate_key("Ed25519", parameters={"kid": "insn-eddsa"}, private=True)
    doc = {
        "note": "test-only keys for benches/insns.rs; never use them anywhere else",
        "keys": [es.as_dict(private=True), ed.as_dict(private=True)],
        "hs256_secret": b64u(secrets.token_bytes(32)),
    }
    (HERE / "keys.json").write_text(json.dumps(doc, indent=2) + "\n")


def claims(iss: str, sub: str, jti: str) -> dict:
    # Valid at NOW only (the gate's clock is fixed): issued 10 s before, 10 minutes to live.
    return {
        "iss": iss,
        "aud": AUDIENCE,
        "sub": sub,
        "jti": jti,
        "iat": NOW - 10,
        "nbf": NOW - 10,
        "exp": NOW + 600,
        "scope": "orders:read orders:write",
        "act": {"sub": "agent:planner", "act": {"sub": "agent:orchestrator"}},
    }


def main() -> None:
    if "--new-keys" in sys.argv[1:] or not (HERE / "keys.json").exists():
        new_keys()
    doc = json.loads((HERE / "keys.json").read_text())
    keys = {k["kid"]: jwk.import_key(k) for k in doc["keys"]}
    public = {"keys": [keys[kid].as_dict(private=False) for kid in keys]}
    (HERE / "jwks.json").write_text(json.dumps(public, indent=2) + "\n")

    secret = base64.urlsafe_b64decode(doc["hs256_secret"] + "=" * (-len(doc["hs256_secret"]) % 4))
    hs = jwk.OctKey.import_key(secret)
    tokens = {
        "ES256": jwt.encode(
            {"alg": "ES256", "typ": "at+jwt", "kid": "insn-es256"},
            claims(ISSUER, "user:alice", "jti-es256"),
            keys["insn-es256"],
            algorithms=["ES256"],
        ),
        "EdDSA": jwt.encode(
            {"alg": "EdDSA", "typ": "at+jwt", "kid": "insn-eddsa"},
            claims(ISSUER, "user:alice", "jti-eddsa"),
            keys["insn-eddsa"],
            algorithms=["EdDSA"],
        ),
        "HS256": jwt.encode(
            {"alg": "HS256", "typ": "JWT"},
            dict(claims(DEVICE_ISSUER, "device:42", "jti-hs256"), did="device:42"),
            hs,
            algorithms=["HS256"],
        ),
    }
    out = {"now": NOW, "hs256_secret": doc["hs256_secret"], "tokens": tokens}
    (HERE / "tokens.json").write_text(json.dumps(out, indent=2) + "\n")
    print(f"mint: wrote {HERE / 'jwks.json'} and {HERE / 'tokens.json'}")


if __name__ == "__main__":
    main()
