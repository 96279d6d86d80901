#!/usr/bin/env python3
"""Issue 18: what response masking costs in workerd, build against build, and the transformer's
throughput on 1 MB and 10 MB answers with the memory of the workerd process.

    source scripts/env.sh
    .venv/bin/python benches/mask_bench.py build NAME       # the working tree -> benches/.ab/builds/NAME
    FLOOR=copy .venv/bin/python benches/mask_bench.py build NAME   # a measuring floor (below)
    .venv/bin/python benches/mask_bench.py cpu NAME...      # 10 KB: masked / unmasked, per build
    .venv/bin/python benches/mask_bench.py mbps NAME        # 1 MB and 10 MB: MB/s, peak RSS

Every Worker is a build of benches/policies/ (routes `mask-on`, `/v1/customers/{id}`, 3 rules,
and `mask-off`, `/v1/records/{id}`, the same route without a mask) served by the workerd binary
itself (benches/workerd.py's DirectWorker), one process per build and route, so that the CPU
time of a process is that of one kind of request. The origin (tests/e2e/servers.py) answers the
document of benches/workerd.py's MaskWorkload (customer records, Python's json.dumps) of the
size asked; every request carries its own ES256 token (act.sub: the mask applies), minted by
joserfc before anything is timed.

- `cpu`: the 10 KB document (10,346 bytes). Per round, N requests to each process, interleaved
  one by one (the order rotates per round); CPU per request of each process (utime+stime of
  /proc, schedstat when no thread ended). Reports per build: masked and unmasked µs, their
  difference and ratio (median (min-max) over the rounds), and each build's masked µs over the
  first build's.
- `mbps`: for 1 MB and 10 MB (SIZES, in MB), a fresh pair of processes (masked, unmasked):
  warm-up with the 10 KB document, then BIG_N requests of the big one each, interleaved. Reports
  CPU per request, the masked answer's MB per CPU second, the masking's own throughput (size over
  the masked minus the unmasked CPU), wall time, and the process's peak RSS (VmHWM) after the
  warm-up and after the big answers: the bound on memory is that the masked process's peak does
  not grow with the body (1 MB vs 10 MB).

FLOOR (build only) builds a measuring stick, never a gateway (the build leaves the tree as it
was): `copy`: the Worker's masking path with the body copied into WebAssembly and back,
unparsed (what the crossings and copies cost); `js`: the same path with the body read and
answered as read, never entering WebAssembly; `await`: a caller the mask does not apply to
(HUMAN=1) gets the origin's response object as it is, without `Vary` (the cost of awaiting the
origin in the Worker).

HUMAN=1 (cpu) adds a third process per build: a caller without `act` on the masking route (the
mask does not apply: the origin's answer with `Vary`), what the route costs without the body.

TRACE=1 (mbps) prints both processes' RSS after every big request (is a growth a peak per
request, or garbage the isolate has not collected yet, which levels off?).

Environment: MASK_PORT (47311: the origin/issuer port, compiled into the builds' policies, so
builds and runs use the same), ROUNDS (6), N (300), WARM (300), SIZES (1,10), BIG_N (8).
"""
from __future__ import annotations

import base64
import json
import os
import secrets
import shutil
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import workerd as B  # noqa: E402

AB = HERE / ".ab"
PORT = int(os.environ.get("MASK_PORT", "47311"))
ON, OFF = "/v1/customers/", "/v1/records/"

# FLOOR=...: (file, text, replacement) edits made for the build and undone after it.
_NO_MASK = "Ok(Counts(vec![0; rules.rules.len()]))"
FLOORS = {
    # The body into WebAssembly and back, copied, not parsed.
    "copy": [
        ("src/edge/mask.rs", "let done = t.feed(&input, &mut out).and_then(|()| t.finish(&mut out));",
         "out.extend_from_slice(&input); let done: Result<Counts, crate::gate::mask::MaskError> = "
         + _NO_MASK + "; let _ = &mut t;"),
        ("src/edge/mask.rs", "let r = self.t.feed(&self.input, &mut self.out);",
         "self.out.extend_from_slice(&self.input); "
         "let r: Result<(), crate::gate::mask::MaskError> = Ok(());"),
        ("src/edge/mask.rs", "let r = self.t.finish(&mut self.out);",
         "let r: Result<(), crate::gate::mask::MaskError> = Ok(());"),
    ],
    # A caller the mask does not apply to (HUMAN=1) gets the origin's response as it is (no
    # Vary): what awaiting the origin in the Worker costs, without the headers.
    "await": [
        ("src/edge/mask.rs", "let body = resp.body().map_or(JsValue::NULL, JsValue::from);",
         "let _ = &sets; if method.is_empty() || !method.is_empty() { return Ok((resp, None)); } "
         "let body = resp.body().map_or(JsValue::NULL, JsValue::from);"),
    ],
    # The body read and answered as read, never entering WebAssembly.
    "js": [
        ("src/edge/mask.rs", "let input = js_sys::Uint8Array::new(&buf).to_vec();",
         "let input: Vec<u8> = Vec::new(); let read = js_sys::Uint8Array::new(&buf);"),
        ("src/edge/mask.rs", "let done = t.feed(&input, &mut out).and_then(|()| t.finish(&mut out));",
         "let done: Result<Counts, crate::gate::mask::MaskError> = " + _NO_MASK
         + "; let _ = (&mut t, &input);"),
        ("src/edge/mask.rs", "(js_sys::Uint8Array::from(out.as_slice()).into(), true)",
         "{ let _: Vec<u8> = out; (read.into(), true) }"),
        ("src/edge/mask.rs", "const out = ok(m.push(value));", "const out = value;"),
        ("src/edge/mask.rs", "const tail = ok(m.end());", "const tail = new Uint8Array(0);"),
    ],
}


def document(size: int) -> bytes:
    """MaskWorkload.document(size), built in one pass (that one re-serialises the whole list per
    record): the same bytes, json.dumps({"customers": records})."""
    parts, total, i = [], len('{"customers": []}'), 0
    while total < size:
        rec = json.dumps({"id": f"c-{i}", "name": f"Customer {i}", "ssn": f"123-45-{i:04}",
                          "email": f"user{i}@example.com",
                          "internal": {"score": i / 100, "tags": ["a", "b"]},
                          "orders": [i, i + 1, i + 2]})
        total += len(rec) + (2 if parts else 0)
        parts.append(rec)
        i += 1
    return ('{"customers": [' + ", ".join(parts) + "]}").encode()


def build(name: str, servers) -> None:
    floor = os.environ.get("FLOOR")
    edits = FLOORS.get(floor, []) if floor else []
    if floor and not edits:
        sys.exit(f"FLOOR={floor}: one of {', '.join(FLOORS)}")
    saved: dict[Path, str] = {}
    try:
        for rel, old, new in edits:
            path = B.ROOT / rel
            text = saved.setdefault(path, path.read_text())
            current = path.read_text()
            if current.count(old) < 1:
                sys.exit(f"FLOOR={floor}: {rel} no longer has {old!r}")
            path.write_text(current.replace(old, new))
        dest = AB / "builds" / name
        shutil.rmtree(dest, ignore_errors=True)
        dest.parent.mkdir(parents=True, exist_ok=True)
        policies = B.fill_policies(servers, AB / "policies-mask")
        secs = B.build_attestgate(policies, dest)
        if floor:
            (dest / "FLOOR").write_text(floor)
        print(f"built {name}{f' (FLOOR={floor})' if floor else ''} in {secs:.0f} s")
    finally:
        for path, text in saved.items():
            path.write_text(text)


def start(workers: dict, label: str, build_name: str, work: Path) -> B.DirectWorker:
    d = work / label.replace(" ", "_")
    d.mkdir(parents=True)
    nonce = {"ATTESTGATE_NONCE_KEY": base64.b64encode(secrets.token_bytes(32)).decode()}
    w = B.DirectWorker("attestgate", B.attestgate_config(d, AB / "builds" / build_name, False),
                       d, nonce)
    workers[label] = w
    w.start()
    return w


def status(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM of a process, in KiB."""
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmRSS", "VmHWM"):
                out[k] = int(v.split()[0])
    return out


def mint(servers, n: int, human: bool = False) -> list[str]:
    """ES256 tokens with act.sub (an agent: the mask applies) or, `human`, without it."""
    now = int(time.time())
    claims = B.good_claims(now)
    if human:
        del claims["act"]
    return [servers.issuer.mint(B.KIDS["ES256"], **claims) for _ in range(n)]


def check_masked(w, path: str, token: str, floor: bool = False) -> int:
    """The masked answer parses and has no ssn or internal left (a floor's: the origin's)."""
    w.close()
    import http.client
    conn = http.client.HTTPConnection("127.0.0.1", w.port, timeout=120)
    conn.request("GET", path, headers=B.bearer(token))
    resp = conn.getresponse()
    body = resp.read()
    conn.close()
    if resp.status != 200:
        sys.exit(f"{path}: {resp.status} {body[:300]!r}")
    doc = json.loads(body)
    recs = doc["customers"]
    if not floor and any("internal" in r or r.get("ssn") != "[redacted]" for r in recs):
        sys.exit(f"{path}: not masked as the rules say")
    return len(recs)


def is_floor(name: str) -> bool:
    return (AB / "builds" / name / "FLOOR").exists()


def med(vals: list[float]) -> str:
    return f"{statistics.median(vals):.3f} ({min(vals):.3f}-{max(vals):.3f})"


def cpu(names: list[str], servers) -> None:
    rounds = int(os.environ.get("ROUNDS", "6"))
    n = int(os.environ.get("N", "300"))
    warm = int(os.environ.get("WARM", "300"))
    body = document(10 * 1024)
    servers.canned[ON + "7"] = servers.canned[OFF + "7"] = {
        "body": body, "headers": {"content-type": "application/json"}}
    total = warm + rounds * n
    work = AB / "work-mask"
    shutil.rmtree(work, ignore_errors=True)
    workers: dict[str, B.DirectWorker] = {}
    try:
        labels = []
        kinds = ("mask", "off", "human") if os.environ.get("HUMAN") else ("mask", "off")
        for name in names:
            for kind in kinds:
                label = f"{name} {kind}"
                start(workers, label, name, work)
                labels.append(label)
        print(f"{len(body)}-byte document; minting {total * len(labels)} ES256 tokens", flush=True)
        tokens = {label: mint(servers, total, label.endswith("human")) for label in labels}
        for name in names:
            check_masked(workers[f"{name} mask"], ON + "7", mint(servers, 1)[0], is_floor(name))

        def plan(order):
            return [(label, workers[label],
                     lambda k, label=label: ((OFF if label.endswith("off") else ON) + "7",
                                             B.bearer(tokens[label][k]), 200))
                    for label in order]

        batch = B.interleaved_batch(plan(labels), warm, 0)
        if batch.unexpected:
            sys.exit(f"warm-up: {batch.examples}")
        res = {label: [] for label in labels}
        for r in range(rounds):
            turn = labels[r % len(labels):] + labels[:r % len(labels)]
            batch = B.interleaved_batch(plan(turn), n, warm + r * n)
            if batch.unexpected:
                sys.exit(f"round {r + 1}: {batch.examples}")
            for label in turn:
                res[label].append(batch.user_us[label])
            print(f"round {r + 1}/{rounds}: " + "  ".join(
                f"{label} {res[label][-1]:.0f}" for label in labels), flush=True)
        print(f"== 10 KB masked / unmasked, us CPU per request of the process, median (min-max) "
              f"of {rounds} rounds x {n} requests ({os.cpu_count()} CPUs; shared machine: "
              f"load average {os.getloadavg()[0]:.1f})")
        first = names[0]
        for name in names:
            on, off = res[f"{name} mask"], res[f"{name} off"]
            diff = [a - b for a, b in zip(on, off)]
            if f"{name} human" in res:
                h = [a - b for a, b in zip(res[f"{name} human"], off)]
                print(f"  {name:12s} human caller on the masking route (no act: not masked) "
                      f"{statistics.median(res[f'{name} human']):6.0f}, +{statistics.median(h):.0f} us "
                      f"({min(h):.0f}..{max(h):.0f}) over unmasked")
            print(f"  {name:12s} masked {statistics.median(on):6.0f}  unmasked "
                  f"{statistics.median(off):6.0f}  +{statistics.median(diff):5.0f} us "
                  f"({min(diff):.0f}..{max(diff):.0f})  ratio {med([a / b for a, b in zip(on, off)])}"
                  f"  masked / {first} masked {med([a / b for a, b in zip(on, res[first + ' mask'])])}")
    finally:
        for w in workers.values():
            try:
                w.stop()
            except Exception:  # noqa: BLE001 - best effort on the way out
                pass


def mbps(name: str, servers) -> None:
    sizes = [float(s) for s in os.environ.get("SIZES", "1,10").split(",")]
    big_n = int(os.environ.get("BIG_N", "8"))
    warm = 50
    small = document(10 * 1024)
    servers.canned[ON + "7"] = servers.canned[OFF + "7"] = {
        "body": small, "headers": {"content-type": "application/json"}}
    work = AB / "work-mask"
    print(f"== {name}: throughput and memory ({os.cpu_count()} CPUs; shared machine: load "
          f"average {os.getloadavg()[0]:.1f}); {big_n} requests per size and process")
    for mb in sizes:
        body = document(int(mb * 1e6))
        key = f"big{mb:g}"
        servers.canned[ON + key] = servers.canned[OFF + key] = {
            "body": body, "headers": {"content-type": "application/json"}}
        shutil.rmtree(work, ignore_errors=True)
        workers: dict[str, B.DirectWorker] = {}
        try:
            for kind in ("mask", "off"):
                start(workers, f"{name} {kind}", name, work)
            tokens = mint(servers, 2 * (warm + big_n) + 1)
            records = check_masked(workers[f"{name} mask"], ON + key, tokens.pop(), is_floor(name))
            it = iter(tokens)
            for _ in range(warm):
                for kind, base in (("mask", ON), ("off", OFF)):
                    st, _ = workers[f"{name} {kind}"].get(base + "7", B.bearer(next(it)))
                    if st != 200:
                        sys.exit(f"warm-up {kind}: {st}")
            mem0 = {k: status(w.user_pid) for k, w in workers.items()}
            cpu_us = {k: [] for k in workers}
            wall = {k: [] for k in workers}
            for i in range(big_n):
                for kind, base in (("mask", ON), ("off", OFF))[:: 1 if i % 2 == 0 else -1]:
                    label = f"{name} {kind}"
                    w = workers[label]
                    before = B.proc_cpu(w.user_pid)
                    t0 = time.perf_counter()
                    st, got = w.get(base + key, B.bearer(next(it)), timeout=300)
                    wall[label].append(time.perf_counter() - t0)
                    ns, _ = B.cpu_delta_ns(before, B.proc_cpu(w.user_pid))
                    cpu_us[label].append(ns / 1000)
                    if st != 200 or (kind == "off" and len(got) != len(body)):
                        sys.exit(f"{label} {key}: {st}, {len(got)} bytes")
                if os.environ.get("TRACE"):
                    print("    after request " + str(i + 1) + ": " + "  ".join(
                        f"{k} RSS {status(w.user_pid)['VmRSS'] / 1024:.1f} MiB"
                        for k, w in workers.items()), flush=True)
            mem1 = {k: status(w.user_pid) for k, w in workers.items()}
            on, off = cpu_us[f"{name} mask"], cpu_us[f"{name} off"]
            diff = [a - b for a, b in zip(on, off)]
            mbytes = len(body) / 1e6
            print(f"  {mbytes:.2f} MB ({records} records): CPU per request masked "
                  f"{statistics.median(on) / 1e3:.1f} ms ({min(on) / 1e3:.1f}-{max(on) / 1e3:.1f}), "
                  f"unmasked {statistics.median(off) / 1e3:.1f} ms; masked answer "
                  f"{mbytes / (statistics.median(on) / 1e6):.1f} MB/s of CPU, the masking alone "
                  f"{mbytes / (statistics.median(diff) / 1e6):.1f} MB/s "
                  f"({mbytes / (max(diff) / 1e6):.1f}-{mbytes / (max(min(diff), 1) / 1e6):.1f}); "
                  f"wall masked {statistics.median(wall[f'{name} mask']) * 1e3:.0f} ms, unmasked "
                  f"{statistics.median(wall[f'{name} off']) * 1e3:.0f} ms")
            for k in workers:
                print(f"    {k:16s} RSS after warm-up {mem0[k]['VmRSS'] / 1024:.1f} MiB (peak "
                      f"{mem0[k]['VmHWM'] / 1024:.1f}); after {big_n} x {mbytes:.2f} MB: RSS "
                      f"{mem1[k]['VmRSS'] / 1024:.1f} MiB, peak {mem1[k]['VmHWM'] / 1024:.1f} MiB "
                      f"(+{(mem1[k]['VmHWM'] - mem0[k]['VmHWM']) / 1024:.1f})", flush=True)
        finally:
            for w in workers.values():
                try:
                    w.stop()
                except Exception:  # noqa: BLE001
                    pass


# `runtime`: what the runtime itself charges for each way of handling the origin's answer in
# JavaScript (no attestgate, no WebAssembly): small Workers that fetch the 10 KB document.
RUNTIME_JS = {
    "return": "return fetch(o);",
    "await": "const r = await fetch(o); return r;",
    "headers": "const r = await fetch(o); const h = new Headers(r.headers); h.delete('content-length'); "
               "h.set('cache-control', 'private'); return new Response(r.body, { status: r.status, headers: h });",
    "reader": "const r = await fetch(o); const rd = r.body.getReader(); const parts = []; let n = 0; "
              "for (;;) { const { done, value } = await rd.read(); if (done) break; parts.push(value); n += value.length; } "
              "const all = new Uint8Array(n); let at = 0; for (const p of parts) { all.set(p, at); at += p.length; } "
              "const h = new Headers(r.headers); h.set('x-chunks', String(parts.length)); "
              "return new Response(all, { status: r.status, headers: h });",
    "bytes": "const r = await fetch(o); return new Response(await r.bytes(), { status: r.status, headers: r.headers });",
    "byob": "const r = await fetch(o); const rd = r.body.getReader({ mode: 'byob' }); "
            "const { value } = await rd.readAtLeast(262144, new Uint8Array(262144)); "
            "return new Response(value, { status: r.status, headers: r.headers });",
    "arraybuffer": "const r = await fetch(o); return new Response(await r.arrayBuffer(), { status: r.status, headers: r.headers });",
    "transform": "const r = await fetch(o); return new Response(r.body.pipeThrough(new TransformStream()), { status: r.status, headers: r.headers });",
}


# `runtime` with RT_SIZE (MB) > 0.2: ways of streaming a long answer through JavaScript, chunk
# by chunk (what the masking path does past the commit buffer), without WebAssembly.
RUNTIME_STREAM_JS = {
    "return": "return fetch(o);",
    "pull": "const r = await fetch(o); const rd = r.body.getReader(); let n = 0; "
            "const body = new ReadableStream({ async pull(c) { const { done, value } = await rd.read(); "
            "if (done) { c.close(); return; } n++; c.enqueue(value.slice()); } }); "
            "return new Response(body, { status: r.status, headers: new Headers(r.headers) });",
    "byob": "const r = await fetch(o); const rd = r.body.getReader({ mode: 'byob' }); "
            "const body = new ReadableStream({ async pull(c) { "
            "const { done, value } = await rd.readAtLeast(65536, new Uint8Array(65536)); "
            "if (value && value.length) c.enqueue(value); if (done) c.close(); } }); "
            "return new Response(body, { status: r.status, headers: new Headers(r.headers) });",
    "count": "const r = await fetch(o); const rd = r.body.getReader(); let n = 0, max = 0; "
             "for (;;) { const { done, value } = await rd.read(); if (done) break; n++; max = Math.max(max, value.length); } "
             "return new Response(n + ' chunks, largest ' + max);",
    "identity": "const r = await fetch(o); const rd = r.body.getReader(); "
                "const { readable, writable } = new IdentityTransformStream(); const w = writable.getWriter(); "
                "(async () => { for (;;) { const { done, value } = await rd.read(); if (done) break; "
                "await w.write(value.slice()); } await w.close(); })(); "
                "return new Response(readable, { status: r.status, headers: new Headers(r.headers) });",
    "transform": "const r = await fetch(o); return new Response(r.body.pipeThrough(new TransformStream({ "
                 "transform(chunk, c) { c.enqueue(chunk.slice()); } })), { status: r.status, headers: r.headers });",
}


def runtime(servers) -> None:
    rounds = int(os.environ.get("ROUNDS", "6"))
    n = int(os.environ.get("N", "300"))
    warm = int(os.environ.get("WARM", "300"))
    size = float(os.environ.get("RT_SIZE", "0"))
    variants = RUNTIME_STREAM_JS if size > 0.2 else RUNTIME_JS
    servers.canned[OFF + "7"] = {"body": document(int(size * 1e6) if size else 10 * 1024),
                                 "headers": {"content-type": "application/json"}}
    work = AB / "work-runtime"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    workers: dict[str, B.DirectWorker] = {}
    try:
        for name, code in variants.items():
            js = ("export default { async fetch(request, env) {\n"
                  f"  const o = env.ORIGIN + '{OFF}7';\n  {code}\n}} }};\n")
            config = B.floor_config(work, variant=f"rt-{name}", js=js)
            w = B.DirectWorker(name, config, work / f"rt-{name}", {"ORIGIN": servers.base})
            w.start()
            workers[name] = w
        labels = list(workers)
        if "count" in workers:
            status, text = workers["count"].get(OFF + "7", {})
            print(f"the reader got the body in {text.decode()}")
        if "reader" in workers:
            import http.client
            conn = http.client.HTTPConnection("127.0.0.1", workers["reader"].port, timeout=30)
            conn.request("GET", OFF + "7")
            resp = conn.getresponse()
            resp.read()
            conn.close()
            print(f"the reader got the 10 KB body in {resp.getheader('x-chunks')} chunks")
        plan = lambda order: [(x, workers[x], OFF + "7", {}, 200) for x in order]  # noqa: E731
        B.interleaved_batch(plan(labels), warm, 0)
        res = {x: [] for x in labels}
        for r in range(rounds):
            turn = labels[r % len(labels):] + labels[:r % len(labels)]
            batch = B.interleaved_batch(plan(turn), n, 0)
            if batch.unexpected:
                sys.exit(f"round {r + 1}: {batch.examples}")
            for x in turn:
                res[x].append(batch.user_us[x])
        print(f"== the runtime, {size or 0.01:g} MB answer: us CPU per request, median (min-max) of {rounds} x {n}; "
              f"over `return` (load average {os.getloadavg()[0]:.1f})")
        for x in labels:
            d = [a - b for a, b in zip(res[x], res["return"])]
            print(f"  {x:12s} {statistics.median(res[x]):6.0f} ({min(res[x]):.0f}-{max(res[x]):.0f})"
                  f"  +{statistics.median(d):.0f} ({min(d):.0f}..{max(d):.0f})   {variants[x][:60]}")
    finally:
        for w in workers.values():
            try:
                w.stop()
            except Exception:  # noqa: BLE001
                pass


def main() -> None:
    if len(sys.argv) >= 2 and sys.argv[1] == "runtime":
        sys.argv.append("-")
    if len(sys.argv) < 3 or sys.argv[1] not in ("build", "cpu", "mbps", "runtime"):
        sys.exit(__doc__)
    assert document(10 * 1024) == B.MaskWorkload.document(), "the bench's 10 KB document"
    servers = B.LocalServers(port=PORT)
    servers.httpd.RequestHandlerClass.disable_nagle_algorithm = True
    servers.start()
    try:
        servers.issuer.add_key("ES256", "bench-es256")
        servers.issuer.add_key("EdDSA", "bench-eddsa")
        servers.recorder.add = lambda entry: None
        if sys.argv[1] == "build":
            build(sys.argv[2], servers)
        elif sys.argv[1] == "cpu":
            cpu(sys.argv[2:], servers)
        elif sys.argv[1] == "runtime":
            runtime(servers)
        else:
            for name in sys.argv[2:]:
                mbps(name, servers)
    finally:
        servers.stop()


if __name__ == "__main__":
    main()
