#!/usr/bin/env python3
"""Mints HS256 tokens of the insn gate's device fixture (benches/insns/mint.py), each with its own
`jti`, for examples/feature_insns.rs (a decision per token the isolate has not seen: the
deny check's token key is new every time, as with the unique-token workloads).

Usage: .venv/bin/python benches/insns/mint_unique.py OUT.json [COUNT (64)]
Signed by joserfc with the fixture's test-only HS256 secret (benches/insns/keys.json).
"""

import base64
import json
import sys
import warnings
from pathlib import Path

from joserfc import jwk, jwt

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
warnings.filterwarnings("ignore", message="EdDSA is deprecated")
import mint  # noqa: E402


def main() -> None:
    out = Path(sys.argv[1])
    count = int(sys.argv[2]) if len(sys.argv) > 2 else 64
    secret = json.loads((HERE / "keys.json").read_text())["hs256_secret"]
    key = jwk.OctKey.import_key(base64.urlsafe_b64decode(secret + "=" * (-len(secret) % 4)))
    tokens = [
        jwt.encode(
            {"alg": "HS256", "typ": "JWT"},
            dict(mint.claims(mint.DEVICE_ISSUER, "device:42", f"jti-{i:04}-unique"),
                 did="device:42"),
            key,
            algorithms=["HS256"],
        )
        for i in range(count)
    ]
    out.write_text(json.dumps(tokens))
    print(f"mint_unique: wrote {count} tokens to {out}")


if __name__ == "__main__":
    main()
