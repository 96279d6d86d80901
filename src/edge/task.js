// The JavaScript half of the Worker's executor (src/edge/task.rs): each waiting request is a
// task whose promise is settled from Rust; promise reactions and wakes call back into the wasm.
//
// Traps (issue 12). A trap (WebAssembly.RuntimeError) leaves the wasm instance unusable:
// worker-build's shim builds a fresh instance for the next request, and the requests still
// waiting in the old one would never be answered. So every call from here into the wasm is
// guarded. When one traps (or the entry reports a synchronous trap, `resetTasks`), the
// instance is marked for re-initialisation (the hook the entry registers, see
// scripts/plain_entry.py) and its pending tasks are doomed: none of its callbacks is called
// again, and each pending request is answered with the gateway's 503 at its own next event
// (the settled promise or timer it was waiting on, which always comes: every subrequest has a
// timeout, src/edge/replay.rs, keys.rs, forward.rs). The answer has to be made there:
// workerd refuses a Response created while another request's handler was running ("Cannot
// perform I/O on behalf of a different request").
//
// Tasks are kept per instance ("generation"): ids restart in a fresh instance, so a late
// callback of the old one can never reach a task of the new one.

const MARK_CRITICAL = Symbol.for("attestgate.markCritical");
const RESET = Symbol.for("attestgate.resetTasks");

let gen = 0; // the live instance; bumped when a new one configures itself
const tasks = new Map([[0, new Map()]]); // generation -> (task id -> [resolve, reject])
const trapped = new Set(); // generations whose instance trapped
let answer = {
  status: 503,
  code: "temporarily_unavailable",
  description: "The gateway is restarting; retry shortly.",
  retryAfter: "5",
};

// Called once by each wasm instance, before its first task: a new generation, and the wire
// form of the answer to its requests if it traps (src/error.rs, Error::InstanceReset).
export function configureReset(status, code, description, retryAfter) {
  answer = { status, code, description, retryAfter: String(retryAfter) };
  gen++;
  tasks.set(gen, new Map());
}

export function taskPromise(id) {
  const live = tasks.get(gen);
  return new Promise((resolve, reject) => { live.set(id, [resolve, reject]); });
}

export function taskSettle(id, value, ok) {
  const live = tasks.get(gen);
  const r = live.get(id);
  if (r) { live.delete(id); r[ok ? 0 : 1](value); }
}

// Poll task `id` in a microtask.
export function schedule(cb, id) {
  const at = gen;
  queueMicrotask(() => deliver(at, id, cb, id));
}

// Call `cb(id, value, ok)` when `promise` settles; `task` is the task that waits on it.
export function settleInto(promise, cb, id, task) {
  const at = gen;
  promise.then(
    (v) => deliver(at, task, cb, id, v, true),
    (e) => deliver(at, task, cb, id, e, false),
  );
}

// A timer as a promise (awaited through settleInto, so it is guarded like any other wait).
export function sleep(ms) {
  let timer;
  const p = new Promise((resolve) => { timer = setTimeout(resolve, ms); });
  p.timer = timer;
  return p;
}

export function cancelSleep(p) {
  clearTimeout(p.timer);
}

// Call `cb(...args)` for `task` of generation `at`, unless that instance trapped.
function deliver(at, task, cb, ...args) {
  if (trapped.has(at)) {
    answerDoomed(at, task);
    return;
  }
  try {
    cb(...args);
  } catch (e) {
    if (!(e instanceof WebAssembly.RuntimeError)) throw e;
    const mark = globalThis[MARK_CRITICAL];
    if (typeof mark === "function") mark(e);
    trapped.add(at);
    answerDoomed(at, task);
  }
}

function requestId() {
  const bytes = new Uint8Array(12);
  crypto.getRandomValues(bytes);
  return btoa(String.fromCharCode(...bytes)).replace(/\+/g, "-").replace(/\//g, "_");
}

// Answer a pending task of a trapped instance with the 503, in the current request's context.
function answerDoomed(at, task) {
  const doomed = tasks.get(at);
  const r = doomed && doomed.get(task);
  if (!r) return false;
  doomed.delete(task);
  if (doomed.size === 0 && at !== gen) tasks.delete(at);
  const request_id = requestId();
  const body = JSON.stringify({
    error: answer.code, error_description: answer.description, request_id,
  });
  console.error(JSON.stringify({
    attestgate: "instance_reset", request_id, reason: "instance_reset", status: answer.status,
  }));
  r[0](new Response(body, {
    status: answer.status,
    headers: {
      "content-type": "application/json",
      "cache-control": "no-store",
      "retry-after": answer.retryAfter,
    },
  }));
  return true;
}

// The entry saw a synchronous trap: doom the live instance's pending tasks (each is answered
// at its own next event). Returns how many there are.
export function resetTasks(error) {
  if (!(error instanceof WebAssembly.RuntimeError)) return 0;
  trapped.add(gen);
  return tasks.get(gen).size;
}

globalThis[RESET] = resetTasks;
