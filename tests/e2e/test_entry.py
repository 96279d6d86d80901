"""The Worker's entry: scripts/plain_entry.py replaces worker-build's per-request class + Proxy
default export with a plain object of the same semantics (docs/performance.md).

Checked here: the Worker every other e2e test talks to was built with that entry; the entry
calls the shim's re-initialisation check before the wasm handler and marks a trap critical on
the way out (run in Node on a module shaped like worker-build's minified output); and the patch
refuses a shim it does not recognise instead of guessing.
"""
import importlib.util
import json
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("plain_entry", ROOT / "scripts" / "plain_entry.py")
plain_entry = importlib.util.module_from_spec(spec)
spec.loader.exec_module(plain_entry)

# The parts of worker-build 0.8.7's minified shim the patch looks for, with the calls recorded.
SHIM_LIKE = (
    'var calls=[];var y={criticalError:!1,instanceId:0};'
    'function H(){y.criticalError&&(console.log("Reinitializing Wasm application"),'
    'y.criticalError=!1,y.instanceId++),calls.push("reinit-check")}'
    'function K(r){r instanceof WebAssembly.RuntimeError&&(calls.push("critical"),'
    'y.criticalError=!0)}'
    'function it(r,t,e){calls.push("wasm:"+r+":"+t+":"+e);if(r==="trap")throw new '
    'WebAssembly.RuntimeError("unreachable");return "response"}'
    'class St{};var N=class extends St{};'
    'N.prototype.fetch=function(t){return it.call(this,t,this.env,this.ctx)};'
    'var Lt=new Proxy(N,{}),Ut=class{};'
    'export{Ut as NonceStore,Lt as default,calls,y};'
)


def test_the_tested_worker_has_the_plain_entry(built):
    text = (built / "index.js").read_text()
    assert text.count("var __attestgateEntry=") == 1
    assert "__attestgateEntry as default" in text
    # The Durable Object class is still exported as worker-build made it.
    assert " as NonceStore" in text


def test_entry_keeps_the_shims_semantics(tmp_path):
    node = shutil.which("node") or str(ROOT / "node_modules" / ".bin" / "node")
    patched = plain_entry.patch(SHIM_LIKE)
    assert plain_entry.patch(patched) == patched  # idempotent
    (tmp_path / "index.mjs").write_text(patched)
    (tmp_path / "run.mjs").write_text(
        'import entry, { calls, y, NonceStore } from "./index.mjs";\n'
        'const out = [];\n'
        'out.push(entry.fetch("req", "env", "ctx"));\n'
        'try { entry.fetch("trap", "env", "ctx"); out.push("no throw"); }\n'
        'catch (e) { out.push(e instanceof WebAssembly.RuntimeError ? "rethrown" : String(e)); }\n'
        'out.push("critical=" + y.criticalError);\n'
        'entry.fetch("again", "env", "ctx");\n'
        'out.push("after=" + y.criticalError + "/" + y.instanceId);\n'
        'out.push(typeof NonceStore);\n'
        'console.log(JSON.stringify({ out, calls }));\n'
    )
    result = subprocess.run([node, str(tmp_path / "run.mjs")], capture_output=True, text=True,
                            timeout=30)
    assert result.returncode == 0, result.stderr
    got = json.loads(result.stdout.strip().splitlines()[-1])
    assert got["out"] == ["response", "rethrown", "critical=true", "after=false/1", "function"]
    assert got["calls"] == [
        "reinit-check", "wasm:req:env:ctx",
        "reinit-check", "wasm:trap:env:ctx", "critical",
        "reinit-check", "wasm:again:env:ctx",
    ]


@pytest.mark.parametrize("remove", [
    'console.log("Reinitializing Wasm application")',
    "instanceof WebAssembly.RuntimeError",
    "this.env,this.ctx",
    "Lt as default",
])
def test_patch_refuses_an_unknown_shim(remove):
    with pytest.raises(SystemExit) as refused:
        plain_entry.patch(SHIM_LIKE.replace(remove, "changed"))
    assert "worker-build's shim has changed" in str(refused.value)
