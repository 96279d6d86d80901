"""The decision log end to end (issue 17): real requests through the Worker in workerd, their
records sequenced by the AuditLog Durable Object, checkpoints signed with the gateway key and
proofs read from the operator API. Everything is verified here with an independent RFC 6962
implementation (below, in Python), an independent canonical-JSON check and pyca/cryptography
for the checkpoint signature; tokens are minted by joserfc. The `attestgate audit verify` CLI
is run on the downloaded files too.

Routes (tests/e2e/policies/audit.toml): au-sync (audit = "sync"), au-async (audit = "async"),
au-off; the operator API needs a `dn_operator` token (deny.toml) with scope attestgate:admin.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from conftest import ROOT
from jwstools import assert_refused, bearer, last_reason, remark

LOG = "/.well-known/attestgate/log"
FAULT = "/__attestgate/selftest/fault/audit-down"


# ---- an independent RFC 6962 / RFC 9162 implementation ---------------------------------------

def leaf_hash(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def mth(leaves: list[bytes]) -> bytes:
    """RFC 6962 §2.1 MTH over leaf hashes."""
    n = len(leaves)
    if n == 0:
        return hashlib.sha256(b"").digest()
    if n == 1:
        return leaves[0]
    k = 1
    while k * 2 < n:
        k *= 2
    return node_hash(mth(leaves[:k]), mth(leaves[k:]))


def root_from_inclusion(index: int, size: int, leaf: bytes, proof: list[bytes]) -> bytes | None:
    """RFC 9162 §2.1.3.2."""
    if index >= size:
        return None
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            return None
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return r if sn == 0 else None


def consistent(old: int, new: int, old_root: bytes, new_root: bytes, proof: list[bytes]) -> bool:
    """RFC 9162 §2.1.4.2."""
    if old == new:
        return not proof and old_root == new_root
    if old == 0 or old > new or not proof:
        return old == 0 and not proof
    path = ([old_root] if old & (old - 1) == 0 else []) + proof
    fn, sn = old - 1, new - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr, sr = node_hash(c, fr), node_hash(c, sr)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    return sn == 0 and fr == old_root and sr == new_root


def test_the_python_implementation_reproduces_the_published_roots():
    # transparency-dev/merkle testonly/constants.go: the leaves and roots for sizes 3 and 8.
    leaves = [bytes.fromhex(h) for h in
              ["", "00", "10", "2021", "3031", "40414243", "5051525354555657",
               "606162636465666768696a6b6c6d6e6f"]]
    hashed = [leaf_hash(x) for x in leaves]
    assert mth(hashed[:3]).hex() == "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77"
    assert mth(hashed).hex() == "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"


# ---- helpers ----------------------------------------------------------------------------------

def canonical(obj) -> bytes:
    """RFC 8785 for what records hold (ASCII member names, strings, integers, booleans): sorted
    members, no whitespace, UTF-8, JSON.stringify's escapes."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


# The e2e policies have one [operator] table (tests/e2e/policies/deny.toml: provider
# dn_operator, the issuer /issuers/dn-idp, audience https://gateway.dn.test).
OP_AUD = "https://gateway.dn.test"


def operator_token(servers, **claims):
    claims.setdefault("aud", OP_AUD)
    claims.setdefault("sub", "ops:carol")
    claims.setdefault("scope", "attestgate:admin")
    return servers.issuer_named("dn-idp").mint("dn-idp-es256", typ="JWT", **claims)


def op(gateway, servers, method, path):
    resp = gateway.request(method, f"{LOG}/{path}", bearer(operator_token(servers)))
    return resp


def agent_token(servers, **claims):
    return servers.issuer.mint("k-es256", scope="payments:write", act={"sub": "agent:buyer"},
                               **claims)


def parse_note(note: str):
    text, sigs = note.rsplit("\n\n", 1)
    text += "\n"
    origin, size, root = text.split("\n")[:3]
    return text, origin, int(size), base64.b64decode(root), sigs


def verify_checkpoint(note: str, jwks: dict) -> tuple[str, int, bytes]:
    """The C2SP signed note's ECDSA (type 0x02) signature by the gateway's ES256 key: key ID =
    SHA-256(SubjectPublicKeyInfo)[:4], DER signature over SHA-256 of the note text."""
    text, origin, size, root, sigs = parse_note(note)
    verified = False
    for line in sigs.strip("\n").split("\n"):
        assert line.startswith("\u2014 "), line
        name, blob = line[2:].split(" ")
        blob = base64.b64decode(blob)
        for jwk in jwks["keys"]:
            if jwk.get("kty") != "EC":
                continue
            pub = ec.EllipticCurvePublicNumbers(
                int.from_bytes(base64.urlsafe_b64decode(jwk["x"] + "=="), "big"),
                int.from_bytes(base64.urlsafe_b64decode(jwk["y"] + "=="), "big"),
                ec.SECP256R1(),
            ).public_key()
            spki = pub.public_bytes(serialization.Encoding.DER,
                                    serialization.PublicFormat.SubjectPublicKeyInfo)
            if name == origin and blob[:4] == hashlib.sha256(spki).digest()[:4]:
                pub.verify(blob[4:], text.encode(), ec.ECDSA(hashes.SHA256()))
                verified = True
    assert verified, note
    return origin, size, root


def record_of(gateway, servers, index: int) -> bytes:
    resp = op(gateway, servers, "GET", f"record/{index}")
    assert resp.status == 200, resp
    prefix = f'{{"index":{index},"record":'.encode()
    assert resp.body.startswith(prefix) and resp.body.endswith(b"}"), resp.body
    return resp.body[len(prefix):-1]


def signed_checkpoint(gateway, servers):
    resp = op(gateway, servers, "POST", "checkpoint")
    assert resp.status == 200, resp
    assert resp.headers["content-type"].startswith("text/plain")
    jwks = gateway.request("GET", "/.well-known/attestgate/jwks.json").json()
    return resp.body.decode(), verify_checkpoint(resp.body.decode(), jwks)


def b64list(items) -> list[bytes]:
    return [base64.b64decode(x) for x in items]


# ---- scenarios --------------------------------------------------------------------------------

def test_sync_records_of_real_requests_are_provably_in_the_log(gateway, servers, origin):
    tokens, indexes = [], []
    for i in range(3):
        token = agent_token(servers)
        resp = gateway.request("POST", f"/au/sync/pay/{i}?amount=5", bearer(token))
        assert resp.status == 200, resp
        indexes.append(int(resp.headers["attestgate-log-index"]))
        tokens.append(token)
    assert len(origin.since()) == 3
    note, (origin_line, size, root) = signed_checkpoint(gateway, servers)
    assert origin_line == "e2e.attestgate.test/attestgate/decisions"
    assert size > max(indexes)
    for i, token in zip(indexes, tokens):
        raw = record_of(gateway, servers, i)
        rec = json.loads(raw)
        # Canonical (recomputed independently), and the AIMS fields of this very request.
        assert canonical(rec) == raw
        assert rec["resource"]["route"] == "au-sync"
        assert rec["request"]["method"] == "POST"
        assert rec["request"]["query_sha256"] == base64.urlsafe_b64encode(
            hashlib.sha256(b"amount=5").digest()).rstrip(b"=").decode()
        assert rec["decision"]["verdict"] == "allow"
        assert rec["agent"] == {"id": "agent:buyer", "act": ["agent:buyer"]}
        assert rec["tokens"][0]["sha256"] == base64.urlsafe_b64encode(
            hashlib.sha256(token.encode()).digest()).rstrip(b"=").decode()
        assert token.encode() not in raw and token.split(".")[2].encode() not in raw
        # Inclusion, with the Python implementation, against the signed root.
        proof = op(gateway, servers, "GET", f"inclusion/{i}/{size}").json()
        assert proof["index"] == i and proof["size"] == size
        got = root_from_inclusion(i, size, leaf_hash(raw), b64list(proof["proof"]))
        assert got == root
        # One byte of the record changed: no longer included.
        bad = raw.replace(b"au-sync", b"au-synd")
        assert root_from_inclusion(i, size, leaf_hash(bad), b64list(proof["proof"])) != root


def test_consistency_between_two_checkpoints_and_a_verified_export(gateway, servers, tmp_path):
    token = agent_token(servers)
    assert gateway.request("POST", "/au/sync/a", bearer(token)).status == 200
    old_note, (_, old_size, old_root) = signed_checkpoint(gateway, servers)
    for _ in range(2):
        assert gateway.request("POST", "/au/sync/b", bearer(agent_token(servers))).status == 200
    new_note, (_, new_size, new_root) = signed_checkpoint(gateway, servers)
    assert new_size >= old_size + 2
    proof = op(gateway, servers, "GET", f"consistency/{old_size}/{new_size}").json()
    assert consistent(old_size, new_size, old_root, new_root, b64list(proof["proof"]))
    assert not consistent(old_size, new_size, new_root, old_root, b64list(proof["proof"]))
    # The whole log as a download: the Python tree of its records is the signed root.
    start = max(0, new_size - 1000)
    resp = op(gateway, servers, "GET", f"export/{start}/{new_size}")
    assert resp.status == 200, resp
    assert resp.headers["content-type"] == "application/x-ndjson"
    assert "attachment" in resp.headers["content-disposition"]
    lines = resp.body.decode().splitlines()
    header = json.loads(lines[0])
    assert (header["start"], header["end"], header["tree_size"]) == (start, new_size, new_size)
    assert [json.loads(x)["index"] for x in lines[1:]] == list(range(start, new_size))
    if start == 0:
        leaves = [leaf_hash(canonical(json.loads(x)["record"])) for x in lines[1:]]
        assert mth(leaves) == new_root
    # The CLI on the same files: all good, then each tampering caught.
    cli = ROOT / "target" / "debug" / "attestgate"
    subprocess.run(["cargo", "build", "--quiet", "--bin", "attestgate"], cwd=ROOT, check=True, timeout=900)
    jwks = tmp_path / "jwks.json"
    jwks.write_text(gateway.request("GET", "/.well-known/attestgate/jwks.json").body.decode())
    (tmp_path / "new.txt").write_text(new_note)
    (tmp_path / "old.txt").write_text(old_note)
    (tmp_path / "cons.json").write_text(json.dumps(proof))
    (tmp_path / "export.ndjson").write_bytes(resp.body)

    def cli_verify(*extra):
        return subprocess.run([str(cli), "audit", "verify", "--jwks", str(jwks), "--checkpoint",
                               str(tmp_path / "new.txt"), *extra], capture_output=True, text=True)

    ok = cli_verify("--old-checkpoint", str(tmp_path / "old.txt"), "--consistency",
                    str(tmp_path / "cons.json"), "--export", str(tmp_path / "export.ndjson"))
    assert ok.returncode == 0, ok.stdout + ok.stderr
    body = resp.body.decode()
    last = lines[-1]
    for name, text in [
        ("flip", body.replace(last, last.replace('"v":1', '"v":2'))),
        ("drop", "\n".join(lines[:-2] + lines[-1:]) + "\n"),
        ("swap", "\n".join(lines[:-2] + [lines[-1], lines[-2]]) + "\n"),
    ]:
        assert text != body
        (tmp_path / f"{name}.ndjson").write_text(text)
        bad = cli_verify("--export", str(tmp_path / f"{name}.ndjson"))
        assert bad.returncode == 1, (name, bad.stdout, bad.stderr)


def test_sync_with_the_log_down_is_503_and_nothing_reaches_the_origin(gateway, servers, origin):
    assert gateway.request("POST", f"{FAULT}?ms=4000").body == b"down"
    try:
        remark(origin, servers)
        token = agent_token(servers)
        resp = gateway.request("POST", "/au/sync/pay/down", bearer(token))
        body = assert_refused(resp, 503, "temporarily_unavailable", origin)
        assert last_reason(gateway, body["request_id"]) == "audit_log_unavailable"
        # An async route is not held by the log: forwarded (its record is retried, then dropped
        # and logged, if the log stays down: the documented loss window).
        resp = gateway.request("GET", "/au/async/while-down", bearer(agent_token(servers)))
        assert resp.status == 200, resp
    finally:
        time.sleep(4.2)
    # Back: sync requests go through again, recorded.
    resp = gateway.request("POST", "/au/sync/pay/up", bearer(agent_token(servers)))
    assert resp.status == 200, resp
    assert "attestgate-log-index" in resp.headers


def test_async_records_reach_the_log_after_the_response(gateway, servers):
    marker = secrets.token_hex(6)
    resp = gateway.request("GET", f"/au/async/{marker}", bearer(agent_token(servers)))
    assert resp.status == 200, resp
    assert "attestgate-log-index" not in resp.headers
    deadline = time.time() + 20
    while True:
        _, (_, size, root) = signed_checkpoint(gateway, servers)
        start = max(0, size - 50)
        export = op(gateway, servers, "GET", f"export/{start}/{size}").body.decode().splitlines()
        found = [json.loads(x) for x in export[1:]
                 if json.loads(x)["record"]["resource"]["path"] == f"/au/async/{marker}"]
        if found:
            rec = found[0]["record"]
            assert rec["decision"]["verdict"] == "allow"
            assert rec["resource"]["route"] == "au-async"
            raw = canonical(rec)
            proof = op(gateway, servers, "GET", f"inclusion/{found[0]['index']}/{size}").json()
            assert root_from_inclusion(found[0]["index"], size, leaf_hash(raw),
                                       b64list(proof["proof"])) == root
            return
        assert time.time() < deadline, "the async record never reached the log"
        time.sleep(0.5)


def test_concurrent_appends_get_distinct_indexes(gateway, servers):
    tokens = [agent_token(servers) for _ in range(16)]

    def one(t):
        return gateway.request("POST", "/au/sync/concurrent", bearer(t))

    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(one, tokens))
    assert all(a.status == 200 for a in answers), answers
    indexes = [int(a.headers["attestgate-log-index"]) for a in answers]
    assert len(set(indexes)) == len(indexes), indexes
    _, (_, size, _) = signed_checkpoint(gateway, servers)
    assert size > max(indexes)
    # Each index holds the record of the request that was told that index.
    by_sha = {base64.urlsafe_b64encode(hashlib.sha256(t.encode()).digest()).rstrip(b"=").decode(): i
              for t, i in zip(tokens, indexes)}
    for sha, i in by_sha.items():
        assert json.loads(record_of(gateway, servers, i))["tokens"][0]["sha256"] == sha


def test_a_checkpoint_is_signed_on_the_interval_without_asking(gateway, servers):
    resp = gateway.request("POST", "/au/sync/interval", bearer(agent_token(servers)))
    index = int(resp.headers["attestgate-log-index"])
    jwks = gateway.request("GET", "/.well-known/attestgate/jwks.json").json()
    deadline = time.time() + 30  # the alarm fires within CHECKPOINT_SECS (10 s) of the append
    while True:
        resp = op(gateway, servers, "GET", "checkpoint")
        if resp.status == 200:
            _, size, _ = verify_checkpoint(resp.body.decode(), jwks)
            if size > index:
                return
        assert time.time() < deadline, "no checkpoint covered the record within 30 s"
        time.sleep(1)


def test_log_endpoints_need_the_operator(gateway, servers, origin):
    resp = gateway.request("GET", f"{LOG}/checkpoint")
    assert resp.status == 401 and resp.json()["error"] == "missing_token", resp
    agent = operator_token(servers, scope="read", sub="ops:mallory")
    resp = gateway.request("GET", f"{LOG}/record/0", bearer(agent))
    assert resp.status == 403 and resp.json()["error"] == "insufficient_scope", resp
    # The agent's own token (another audience) is no operator token either.
    resp = gateway.request("GET", f"{LOG}/record/0", bearer(agent_token(servers)))
    assert resp.status == 401, resp
    # Past the end of the log: 404.
    resp = op(gateway, servers, "GET", "record/999999999")
    assert resp.status == 404 and resp.json()["error"] == "not_found", resp
    assert origin.since() == []


def test_a_receipt_on_a_sync_route_names_the_records_log_index(gateway, servers, origin):
    """Issue 17 item 6: the record is sequenced before the request is forwarded, so the receipt
    the origin gets (verified here by joserfc with the gateway's JWKS) carries its index, the
    same as the client's Attestgate-Log-Index; the record at that index is this request's."""
    from test_receipt import verify_with_jwks

    remark(origin, servers)
    resp = gateway.request("POST", "/au/receipt/pay/1", bearer(agent_token(servers)))
    assert resp.status == 200, resp
    index = int(resp.headers["attestgate-log-index"])
    seen = origin.since()
    assert len(seen) == 1
    receipts = [v for n, v in seen[0]["headers"] if n == "attestgate-receipt"]
    assert len(receipts) == 1
    claims = verify_with_jwks(gateway, receipts[0])["claims"]
    assert claims["log_index"] == index
    record = op(gateway, servers, "GET", f"record/{index}")
    assert record.status == 200, record
    assert claims["jti"] in record.body.decode()


def test_a_log_past_its_first_tiles_still_proves_every_record(gateway, servers):
    """The tree is stored as tiles of 256 hashes (docs/architecture.md, "The decision log's
    storage"): once the log is past 256 records its first level-0 tile is full and a level-1
    tile holds its root. Enough async requests (batched by the isolate, several batches) to
    cross that boundary, then: the whole log exported, its Python tree equal to the signed
    root, every record read by index equal to its export line, inclusion proofs on both sides
    of the boundary, and consistency from a checkpoint taken before it."""
    assert gateway.request("POST", "/au/sync/first", bearer(agent_token(servers))).status == 200
    _, (_, before, before_root) = signed_checkpoint(gateway, servers)
    want = max(300, before + 40)
    tokens = [agent_token(servers) for _ in range(want - before)]

    def one(t):
        return gateway.request("GET", "/au/async/tiles", bearer(t))

    with ThreadPoolExecutor(max_workers=4) as pool:
        answers = list(pool.map(one, tokens))
    assert all(a.status == 200 for a in answers), [a.status for a in answers][:5]
    deadline = time.time() + 30
    while True:
        _, (_, size, root) = signed_checkpoint(gateway, servers)
        if size >= want:
            break
        assert time.time() < deadline, f"the log reached {size} records, not {want}"
        time.sleep(0.5)
    assert size <= 1000  # one export holds it all
    resp = op(gateway, servers, "GET", f"export/0/{size}")
    assert resp.status == 200, resp
    lines = resp.body.decode().splitlines()[1:]
    records = [canonical(json.loads(x)["record"]) for x in lines]
    assert [json.loads(x)["index"] for x in lines] == list(range(size))
    assert mth([leaf_hash(r) for r in records]) == root
    assert sum(1 for r in records if b'"/au/async/tiles"' in r) == len(tokens)
    for i in sorted({0, 1, 254, 255, 256, 257, before, size // 2, size - 2, size - 1}):
        raw = record_of(gateway, servers, i)
        assert raw == records[i], i
        proof = op(gateway, servers, "GET", f"inclusion/{i}/{size}").json()
        assert root_from_inclusion(i, size, leaf_hash(raw), b64list(proof["proof"])) == root, i
    proof = op(gateway, servers, "GET", f"consistency/{before}/{size}").json()
    assert consistent(before, size, before_root, root, b64list(proof["proof"]))
    # A checkpoint's size inside the first tile, proved against the one past it.
    proof = op(gateway, servers, "GET", f"consistency/200/{size}").json()
    assert consistent(200, size, mth([leaf_hash(r) for r in records[:200]]), root,
                      b64list(proof["proof"]))
