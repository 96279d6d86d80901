"""The Worker's entry: scripts/plain_entry.py replaces worker-build's per-request class + Proxy
default export with a plain object of the same semantics (docs/performance.md).

Checked here: the Worker every other e2e test talks to was built with that entry; the entry
calls the shim's re-initialisation check before the wasm handler and marks a trap critical on
the way out, then has every pending request answered (run in Node on a module shaped like
worker-build's minified output); the executor's JavaScript half (src/edge/task.js) answers every
pending task with the gateway's 503 when the instance traps and never calls the trapped
instance again; and the patch refuses a shim it does not recognise instead of guessing.
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


def node() -> str:
    return shutil.which("node") or str(ROOT / "node_modules" / ".bin" / "node")


def run_node(script: Path) -> dict:
    result = subprocess.run([node(), str(script)], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_the_tested_worker_has_the_plain_entry(built):
    text = (built / "index.js").read_text()
    assert text.count("var __attestgateEntry=") == 1
    assert "__attestgateEntry as default" in text
    # The trap hooks between the entry and the executor's JavaScript (task.js) are both there.
    assert 'globalThis[Symbol.for("attestgate.markCritical")]=' in text
    assert 'Symbol.for("attestgate.resetTasks")' in text
    assert "instance_reset" in text
    # The Durable Object class is still exported as worker-build made it.
    assert " as NonceStore" in text


def test_entry_keeps_the_shims_semantics(tmp_path):
    patched = plain_entry.patch(SHIM_LIKE)
    assert plain_entry.patch(patched) == patched  # idempotent
    (tmp_path / "index.mjs").write_text(patched)
    (tmp_path / "run.mjs").write_text(
        'import entry, { calls, y, NonceStore } from "./index.mjs";\n'
        '// What task.js registers: answer every pending task.\n'
        'globalThis[Symbol.for("attestgate.resetTasks")] = (e) =>\n'
        '  calls.push("reset-tasks:" + (e instanceof WebAssembly.RuntimeError));\n'
        'const out = [];\n'
        'out.push(entry.fetch("req", "env", "ctx"));\n'
        'try { entry.fetch("trap", "env", "ctx"); out.push("no throw"); }\n'
        'catch (e) { out.push(e instanceof WebAssembly.RuntimeError ? "rethrown" : String(e)); }\n'
        'out.push("critical=" + y.criticalError);\n'
        'entry.fetch("again", "env", "ctx");\n'
        'out.push("after=" + y.criticalError + "/" + y.instanceId);\n'
        'out.push(typeof NonceStore);\n'
        '// The hook task.js calls for a trap outside the entry: the shim\'s handleMaybeCritical.\n'
        'globalThis[Symbol.for("attestgate.markCritical")](new WebAssembly.RuntimeError("x"));\n'
        'out.push("marked=" + y.criticalError);\n'
        'console.log(JSON.stringify({ out, calls }));\n'
    )
    got = run_node(tmp_path / "run.mjs")
    assert got["out"] == ["response", "rethrown", "critical=true", "after=false/1", "function",
                          "marked=true"]
    assert got["calls"] == [
        "reinit-check", "wasm:req:env:ctx",
        "reinit-check", "wasm:trap:env:ctx", "critical", "reset-tasks:true",
        "reinit-check", "wasm:again:env:ctx",
        "critical",
    ]


# src/edge/task.js as shipped, driven by fake wasm callbacks.
TASKS_SCENARIO = """
import * as t from "TASK_JS";
const log = [];
console.error = (line) => log.push(JSON.parse(line));
const marked = [];
globalThis[Symbol.for("attestgate.markCritical")] = (e) => marked.push(e.constructor.name);
const tick = (ms = 5) => new Promise((r) => setTimeout(r, ms));
const configure = () =>
  t.configureReset(503, "temporarily_unavailable", "The gateway is restarting; retry shortly.", 5);
const describe = async (r) => r instanceof Response
  ? { status: r.status, headers: Object.fromEntries(r.headers), body: await r.json() }
  : r;
const deferred = () => { let release; const p = new Promise((r) => { release = r; }); return [p, release]; };
const trap = () => { throw new WebAssembly.RuntimeError("unreachable"); };
const out = {};
let oldCalls = 0;
const old = () => { oldCalls++; };

configure();
// Normal operation: a wake polls, the task settles its promise.
const p1 = t.taskPromise(1);
t.schedule((id) => t.taskSettle(id, "answer", true), 1);
out.normal = await p1;

// Tasks 2 and 3 wait on promises; task 4's next poll traps (in a promise reaction, not in the
// entry). Task 4 is answered at once; 2 and 3 when what they wait on settles, without their
// callbacks ever being called.
const [slow2, release2] = deferred();
const [slow3, release3] = deferred();
const p2 = t.taskPromise(2), p3 = t.taskPromise(3), p4 = t.taskPromise(4);
t.settleInto(slow2, old, 20, 2);
t.settleInto(slow3, old, 21, 3);
t.settleInto(Promise.resolve("v"), trap, 22, 4);
out.trapping = await describe(await p4);
out.marked = [...marked];
// A wake the trapped instance registers before the next one exists is dropped too.
t.schedule(old, 1);
await tick();
release2("late");
out.doomed = await describe(await p2);
// The next instance: its task 3 is not the old task 3.
configure();
const fresh3 = t.taskPromise(3);
release3("late");
out.doomed3 = (await describe(await p3)).status;
t.schedule((id) => t.taskSettle(id, "next instance", true), 3);
out.next = await fresh3;
out.oldCalls = oldCalls;

// A synchronous trap seen by the entry: it calls the registered hook; the pending task is
// answered when its timer fires.
const p5 = t.taskPromise(5);
t.settleInto(t.sleep(20), old, 23, 5);
out.resetCount = globalThis[Symbol.for("attestgate.resetTasks")](new WebAssembly.RuntimeError("x"));
out.afterSleep = (await describe(await p5)).status;
out.oldCallsAfterSleep = oldCalls;

// Anything but a trap dooms nothing and is not swallowed.
configure();
const p6 = t.taskPromise(6);
out.notATrap = globalThis[Symbol.for("attestgate.resetTasks")](new Error("not a trap"));
let unhandled = null;
process.on("unhandledRejection", (e) => { unhandled = String(e); });
t.settleInto(Promise.resolve(1), () => { throw new TypeError("a bug"); }, 24, 6);
await tick();
out.unhandled = unhandled;
t.schedule((id) => t.taskSettle(id, "still served", true), 6);
out.kept = await p6;
// A cancelled sleep never fires.
let fired = false;
const s = t.sleep(10);
s.then(() => { fired = true; });
t.cancelSleep(s);
await tick(40);
out.cancelledFired = fired;
out.log = log;
console.log(JSON.stringify(out));
"""


def test_task_js_answers_every_pending_request_when_the_instance_traps(tmp_path):
    # As an .mjs copy: Node then loads it as the ES module it is, with no type warning.
    shutil.copy(ROOT / "src/edge/task.js", tmp_path / "task.mjs")
    script = tmp_path / "tasks.mjs"
    script.write_text(TASKS_SCENARIO.replace("TASK_JS", "./task.mjs"))
    got = run_node(script)
    assert got["normal"] == "answer"
    ids = set()
    for answer in (got["trapping"], got["doomed"]):
        assert answer["status"] == 503
        assert answer["headers"]["cache-control"] == "no-store"
        assert answer["headers"]["retry-after"] == "5"
        assert answer["headers"]["content-type"] == "application/json"
        body = answer["body"]
        assert set(body) == {"error", "error_description", "request_id"}
        assert body["error"] == "temporarily_unavailable"
        assert body["error_description"] == "The gateway is restarting; retry shortly."
        assert len(body["request_id"]) == 16
        ids.add(body["request_id"])
    assert len(ids) == 2
    # The trap marked the instance for re-initialisation, once.
    assert got["marked"] == ["RuntimeError"]
    assert got["doomed3"] == 503 and got["next"] == "next instance"
    assert got["oldCalls"] == 0
    assert got["resetCount"] == 1 and got["afterSleep"] == 503 and got["oldCallsAfterSleep"] == 0
    assert got["notATrap"] == 0
    assert got["unhandled"] == "TypeError: a bug"
    assert got["kept"] == "still served"
    assert got["cancelledFired"] is False
    # One log line per request answered this way, with its request id.
    lines = [line for line in got["log"] if line["attestgate"] == "instance_reset"]
    assert len(lines) == 4
    assert ids <= {line["request_id"] for line in lines}


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
