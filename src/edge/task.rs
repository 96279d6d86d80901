//! A small executor for the Worker's requests, and a promise future to go with it.
//!
//! `wasm_bindgen_futures` is general: every task is spawned through a queue drained in a
//! microtask, and every awaited promise costs two new closures (wasm-bindgen `Closure`s, each a
//! JavaScript function wrapping a table entry). A request of the gateway awaits about one
//! promise (WebCrypto's verify), so that machinery was a large share of its CPU time
//! (docs/performance.md). Here:
//!
//! - a task is a boxed future in a per-isolate map, its promise made and settled by a few lines
//!   of JavaScript; a wake from a settled promise polls the task right away, any other wake in a
//!   microtask (if the task is being polled, it is polled once more after);
//! - [`Settled`] awaits a JavaScript promise through one closure made once per isolate: the
//!   promise's reactions are plain JavaScript arrow functions that call it with the future's id;
//! - the JavaScript half (`task.js`) guards every call back into the wasm: if one traps, the
//!   trapped instance is never called again (worker-build's shim builds a fresh one for the next
//!   request) and each of its pending tasks is answered with the gateway's 503
//!   (`Error::InstanceReset`) at its own next event, instead of never. For that, every wait a
//!   task can be stuck in must pass through `task.js`: promises through [`Settled`] (which tells
//!   it which task waits), timers through [`sleep`], and every subrequest is raced against a
//!   [`sleep`] timeout.
//!
//! Ids are never reused within an isolate (a `u32` counter), so a late settle or wake for a
//! finished task or a dropped future finds nothing and does nothing.

use std::cell::RefCell;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

use wasm_bindgen::prelude::*;

type Run = Pin<Box<dyn Future<Output = Result<JsValue, JsValue>>>>;

#[wasm_bindgen(module = "/src/edge/task.js")]
extern "C" {
    #[wasm_bindgen(js_name = taskPromise)]
    fn task_promise(id: u32) -> js_sys::Promise;
    #[wasm_bindgen(js_name = taskSettle)]
    fn task_settle(id: u32, value: &JsValue, ok: bool);
    fn schedule(cb: &Closure<dyn FnMut(u32)>, id: u32);
    #[wasm_bindgen(js_name = settleInto)]
    fn settle_into(
        promise: &js_sys::Promise,
        cb: &Closure<dyn FnMut(u32, JsValue, bool)>,
        id: u32,
        task: u32,
    );
    #[wasm_bindgen(js_name = configureReset)]
    fn configure_reset(status: u16, code: &str, description: &str, retry_after: u32);
    #[wasm_bindgen(js_name = sleep)]
    fn sleep_promise(ms: f64) -> js_sys::Promise;
    #[wasm_bindgen(js_name = cancelSleep)]
    fn cancel_sleep(promise: &js_sys::Promise);
}

struct Task {
    run: Option<Run>,
    waker: Waker,
    running: bool,
    woken: bool,
}

struct SettleSlot {
    result: Option<Result<JsValue, JsValue>>,
    waker: Option<Waker>,
}

struct Runtime {
    next_id: std::cell::Cell<u32>,
    tasks: RefCell<HashMap<u32, Task>>,
    settles: RefCell<HashMap<u32, SettleSlot>>,
    on_settle: Closure<dyn FnMut(u32, JsValue, bool)>,
    run_task: Closure<dyn FnMut(u32)>,
    /// Set while a promise reaction ([`on_settle`]) wakes a task: then no Rust frame is below
    /// and the task is polled at once. Any other wake is deferred to a microtask, as the waker
    /// may be called before its future's state says it is ready (`worker::Delay` wakes, then
    /// sets its flag).
    sync_wake: std::cell::Cell<bool>,
    /// The task being polled (0: none), so that `task.js` knows which task a promise belongs
    /// to. During a request's first poll it is the id the task will get if it has to wait.
    current: std::cell::Cell<u32>,
}

thread_local! {
    static RT: Runtime = {
        // What the JavaScript side answers every pending task with if this instance traps.
        let wire = crate::Error::InstanceReset.wire("");
        configure_reset(wire.status, wire.code, wire.description, wire.retry_after.unwrap_or(5));
        Runtime {
        next_id: std::cell::Cell::new(0),
        tasks: RefCell::new(HashMap::new()),
        settles: RefCell::new(HashMap::new()),
        on_settle: Closure::new(on_settle),
        run_task: Closure::new(run),
        sync_wake: std::cell::Cell::new(false),
        current: std::cell::Cell::new(0),
        }
    };
}

fn next_id(rt: &Runtime) -> u32 {
    let id = rt.next_id.get().wrapping_add(1);
    rt.next_id.set(id);
    id
}

struct TaskWaker(u32);

impl Wake for TaskWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        let id = self.0;
        let now = RT.with(|rt| {
            // Taken (cleared) here, so wakes made during that poll are deferred again.
            if rt.sync_wake.replace(false) {
                return true;
            }
            schedule(&rt.run_task, id);
            false
        });
        if now {
            run(id);
        }
    }
}

/// An id for a request's task, reserved before its first poll, and `f` (the first poll) run as
/// that task: what it waits on is attributed to the task it becomes if it has to wait
/// ([`spawn`]).
pub fn first_poll_as_task<T>(f: impl FnOnce() -> T) -> (u32, T) {
    let (id, previous) = RT.with(|rt| {
        let id = next_id(rt);
        (id, rt.current.replace(id))
    });
    let out = f();
    RT.with(|rt| rt.current.set(previous));
    (id, out)
}

/// A promise for `run` (a request's future after its first poll, with the id reserved by
/// [`first_poll_as_task`]), which is driven from here on by this executor.
pub fn spawn(
    id: u32,
    run: impl Future<Output = Result<JsValue, JsValue>> + 'static,
) -> js_sys::Promise {
    RT.with(|rt| {
        rt.tasks.borrow_mut().insert(
            id,
            Task {
                run: Some(Box::pin(run)),
                waker: Waker::from(Arc::new(TaskWaker(id))),
                running: false,
                woken: false,
            },
        );
    });
    let promise = task_promise(id);
    self::run(id);
    promise
}

/// Poll task `id` until it is pending without a wake in between, or finished.
fn run(id: u32) {
    loop {
        let taken = RT.with(|rt| {
            let mut tasks = rt.tasks.borrow_mut();
            let task = tasks.get_mut(&id)?;
            if task.running {
                // Woken from inside its own poll: poll once more when that poll returns.
                task.woken = true;
                return None;
            }
            task.running = true;
            task.woken = false;
            Some((task.run.take()?, task.waker.clone()))
        });
        let Some((mut fut, waker)) = taken else {
            return;
        };
        let previous = RT.with(|rt| rt.current.replace(id));
        let poll = fut.as_mut().poll(&mut Context::from_waker(&waker));
        RT.with(|rt| rt.current.set(previous));
        let again = RT.with(|rt| {
            let mut tasks = rt.tasks.borrow_mut();
            match poll {
                Poll::Ready(result) => {
                    tasks.remove(&id);
                    drop(tasks);
                    match result {
                        Ok(v) => task_settle(id, &v, true),
                        Err(e) => task_settle(id, &e, false),
                    }
                    false
                }
                Poll::Pending => match tasks.get_mut(&id) {
                    Some(task) => {
                        task.run = Some(fut);
                        task.running = false;
                        task.woken
                    }
                    None => false,
                },
            }
        });
        if !again {
            return;
        }
    }
}

fn on_settle(id: u32, value: JsValue, ok: bool) {
    let waker = RT.with(|rt| {
        let mut settles = rt.settles.borrow_mut();
        let slot = settles.get_mut(&id)?;
        slot.result = Some(if ok { Ok(value) } else { Err(value) });
        slot.waker.take()
    });
    if let Some(waker) = waker {
        RT.with(|rt| rt.sync_wake.set(true));
        waker.wake();
        RT.with(|rt| rt.sync_wake.set(false));
    }
}

/// The outcome of a JavaScript promise, as a future: `Ok` if it fulfilled, `Err` if it
/// rejected.
pub struct Settled {
    promise: Option<js_sys::Promise>,
    id: u32,
}

impl Settled {
    pub fn new(promise: js_sys::Promise) -> Self {
        Settled {
            promise: Some(promise),
            id: 0,
        }
    }
}

impl Future for Settled {
    type Output = Result<JsValue, JsValue>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        RT.with(|rt| {
            if let Some(promise) = this.promise.take() {
                let id = next_id(rt);
                this.id = id;
                rt.settles.borrow_mut().insert(
                    id,
                    SettleSlot {
                        result: None,
                        waker: Some(cx.waker().clone()),
                    },
                );
                settle_into(&promise, &rt.on_settle, id, rt.current.get());
                return Poll::Pending;
            }
            let mut settles = rt.settles.borrow_mut();
            let Some(slot) = settles.get_mut(&this.id) else {
                // Polled again after it finished: nothing more will come.
                return Poll::Pending;
            };
            match slot.result.take() {
                Some(result) => {
                    settles.remove(&this.id);
                    Poll::Ready(result)
                }
                None => {
                    slot.waker = Some(cx.waker().clone());
                    Poll::Pending
                }
            }
        })
    }
}

impl Drop for Settled {
    fn drop(&mut self) {
        if self.promise.is_none() {
            let id = self.id;
            RT.with(|rt| rt.settles.borrow_mut().remove(&id));
        }
    }
}

/// Wait `duration`, through `task.js` (so a task that waits only on a timer is still answered
/// if its instance traps). Dropping it clears the timer.
pub fn sleep(duration: std::time::Duration) -> Sleep {
    let promise = sleep_promise(duration.as_millis() as f64);
    Sleep {
        settled: Settled::new(promise.clone()),
        promise,
        done: false,
    }
}

pub struct Sleep {
    settled: Settled,
    promise: js_sys::Promise,
    done: bool,
}

impl Future for Sleep {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        match Pin::new(&mut this.settled).poll(cx) {
            Poll::Ready(_) => {
                this.done = true;
                Poll::Ready(())
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl Drop for Sleep {
    fn drop(&mut self) {
        if !self.done {
            cancel_sleep(&self.promise);
        }
    }
}

/// `future`'s output, or `None` when it takes longer than `limit` (a [`sleep`]).
pub async fn within<T>(limit: std::time::Duration, future: impl Future<Output = T>) -> Option<T> {
    use futures_util::future::{select, Either};
    match select(Box::pin(future), sleep(limit)).await {
        Either::Left((out, _)) => Some(out),
        Either::Right(_) => None,
    }
}
