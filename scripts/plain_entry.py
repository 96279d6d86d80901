#!/usr/bin/env python3
"""Give the built Worker a plain-object default export (run by scripts/build.sh after worker-build).

worker-build 0.8.7's shim (src/js/shim.js in its crate) exports `new Proxy(Entrypoint, hooks)`:
for every request the runtime constructs a `WorkerEntrypoint` subclass through a Proxy, the
construct hook wraps the instance in a second Proxy (spreading a 13-member handler object), and
reading `fetch`, `env` and `ctx` from it goes through a `get` hook that wraps `fetch` in a third
Proxy. None of that code gets optimised (new closures per request) and it cost about 4% of the
CPU of a verified request (docs/performance.md, "What changed").

This script adds `{ fetch(request, env, ctx) { ... } }` with the shim's own semantics for a
synchronous handler — `checkReinitialize()` first (a fresh wasm instance after a trap), and a
trap marked critical on the way out (`handleMaybeCritical`) — and makes it the default export.
The class, its Proxy and every other export (the `NonceStore` Durable Object) stay as
worker-build wrote them.

Traps and requests in flight (issue 12): a request that waits (WebCrypto, a key fetch, the
nonce store, a DPoP route's origin) is a task of the executor in `src/edge/task.rs`, whose
JavaScript half (`src/edge/task.js`) holds every pending task. When an instance traps, those
requests can never be answered by it. So the entry
- registers `handleMaybeCritical` as `globalThis[Symbol.for("attestgate.markCritical")]`, which
  `task.js` calls when a trap happens inside a promise reaction or microtask (outside this
  entry), so that the next request re-initialises the instance;
- after a synchronous trap, calls `globalThis[Symbol.for("attestgate.resetTasks")]`, which
  answers every pending task at once with the gateway's 503 `temporarily_unavailable` (the
  trapping request itself is rethrown, as before: the runtime answers it with its 500).

The minified names differ per build, so the pieces are found by their shape. If any is missing
(another worker-build version), the build fails here rather than ship an unknown entry.
"""
import re
import sys
from pathlib import Path

ENTRY = "__attestgateEntry"


def patch(text: str) -> str:
    if ENTRY in text:
        return text  # already done (idempotent)
    name = r"([\w$]+)"  # a JavaScript identifier as esbuild's minifier writes them
    fetch = re.search(
        rf"{name}\.prototype\.fetch=function(?: fetch)?\({name}\)\{{return {name}\.call\(this,"
        rf"\2,this\.env,this\.ctx\)\}}", text)
    reinit = re.search(
        rf"function {name}\(\)\{{[\w$]+\.criticalError&&\(console\.log\(\"Reinitializing Wasm "
        r"application\"\)", text)
    critical = re.search(
        rf"function {name}\({name}\)\{{\2 instanceof WebAssembly\.RuntimeError&&", text)
    default = re.search(rf"export\{{[^}}]*?(?<![\w$]){name} as default\b[^}}]*\}}", text)
    missing = [label for label, m in (("the fetch handler", fetch), ("checkReinitialize", reinit),
                                    ("handleMaybeCritical", critical),
                                    ("the default export", default)) if not m]
    if missing:
        sys.exit("scripts/plain_entry.py: worker-build's shim has changed, not found: "
                 + ", ".join(missing) + " (see the docstring; pin WORKER_BUILD_VERSION or adapt)")
    wasm_fetch, reinit_fn, critical_fn = fetch.group(3), reinit.group(1), critical.group(1)
    # Parameter names no minifier picks, so they cannot shadow the three functions called.
    entry = (f"var {ENTRY}={{fetch($request,$env,$ctx){{{reinit_fn}();"
             f"try{{return {wasm_fetch}($request,$env,$ctx)}}"
             f"catch($error){{throw {critical_fn}($error),"
             f"globalThis[Symbol.for(\"attestgate.resetTasks\")]?.($error),$error}}}}}};"
             f"globalThis[Symbol.for(\"attestgate.markCritical\")]={critical_fn};")
    start, end = default.span()
    export = re.sub(rf"(?<![\w$]){re.escape(default.group(1))} as default\b", f"{ENTRY} as default",
                    text[start:end])
    return text[:start] + entry + export + text[end:]


def main() -> None:
    path = Path(sys.argv[1] if len(sys.argv) > 1 else "build/index.js")
    text = path.read_text()
    patched = patch(text)
    if patched != text:
        path.write_text(patched)


if __name__ == "__main__":
    main()
