//! Run a future synchronously as far as it goes, then hand what is left to an executor.
//!
//! The Worker answers most refusals and every public route without waiting for anything: they
//! are decided within the first poll, and there is no point in paying for a JavaScript task,
//! microtasks and closures (`future_to_promise`) to run them. A request that does wait
//! (WebCrypto, a key fetch, the nonce store) is handed over to the executor after that first
//! poll (`src/edge/promise.rs`).
//!
//! The first poll has no executor to wake yet, and some futures keep the waker of their *first*
//! poll only (`worker::Delay` does). So the inner future is always polled with one stable
//! forwarding waker, and every poll from the executor points that forwarder at the executor's
//! current waker. A wake that comes before the executor exists is not lost either: an executor
//! always polls a new task once.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};

/// Forwards wakes to whoever drives the future now.
#[derive(Default)]
struct Forwarder(Mutex<Option<Waker>>);

impl Wake for Forwarder {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        let target = self.0.lock().ok().and_then(|slot| slot.clone());
        if let Some(waker) = target {
            waker.wake();
        }
    }
}

/// A future that has been polled once and is still pending.
pub struct Handoff<F: Future> {
    inner: Pin<Box<F>>,
    forwarder: Arc<Forwarder>,
    waker: Waker,
}

impl<F: Future> Handoff<F> {
    fn poll_inner(&mut self) -> Poll<F::Output> {
        let mut cx = Context::from_waker(&self.waker);
        self.inner.as_mut().poll(&mut cx)
    }
}

impl<F: Future> Future for Handoff<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        // Handoff is Unpin: the inner future is boxed.
        let this = self.get_mut();
        if let Ok(mut slot) = this.forwarder.0.lock() {
            *slot = Some(cx.waker().clone());
        }
        this.poll_inner()
    }
}

/// Poll `future` once: its output if it finished, else the rest of it for an executor.
pub fn first_poll<F: Future>(future: F) -> Result<F::Output, Handoff<F>> {
    let forwarder = Arc::new(Forwarder::default());
    let mut handoff = Handoff {
        inner: Box::pin(future),
        waker: Waker::from(forwarder.clone()),
        forwarder,
    };
    match handoff.poll_inner() {
        Poll::Ready(out) => Ok(out),
        Poll::Pending => Err(handoff),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;
    use std::rc::Rc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Like `worker::Delay`: keeps the waker of its first poll only.
    struct FirstWakerOnly {
        fired: Rc<Cell<bool>>,
        waker: Rc<std::cell::RefCell<Option<Waker>>>,
    }

    impl Future for FirstWakerOnly {
        type Output = u32;
        fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<u32> {
            if self.fired.get() {
                return Poll::Ready(7);
            }
            let mut slot = self.waker.borrow_mut();
            if slot.is_none() {
                *slot = Some(cx.waker().clone());
            }
            Poll::Pending
        }
    }

    #[derive(Default)]
    struct Counter(AtomicUsize);
    impl Wake for Counter {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn a_ready_future_is_answered_in_the_first_poll() {
        assert!(matches!(first_poll(async { 5 }), Ok(5)));
    }

    #[test]
    fn a_wake_reaches_the_executor_even_from_a_first_poll_waker() {
        let fired = Rc::new(Cell::new(false));
        let captured = Rc::new(std::cell::RefCell::new(None));
        let future = FirstWakerOnly {
            fired: fired.clone(),
            waker: captured.clone(),
        };
        let Err(mut handoff) = first_poll(future) else {
            panic!("should be pending");
        };
        // The executor takes over and polls with its own waker.
        let executor = Arc::new(Counter::default());
        let waker = Waker::from(executor.clone());
        let mut cx = Context::from_waker(&waker);
        assert!(Pin::new(&mut handoff).poll(&mut cx).is_pending());
        // The "timer" fires and wakes the waker it kept from the very first poll.
        fired.set(true);
        let kept = captured.borrow().clone().expect("waker kept");
        kept.wake();
        assert_eq!(executor.0.load(Ordering::SeqCst), 1, "the wake was lost");
        assert_eq!(Pin::new(&mut handoff).poll(&mut cx), Poll::Ready(7));
    }

    #[test]
    fn a_wake_before_the_executor_exists_is_harmless() {
        let fired = Rc::new(Cell::new(false));
        let captured = Rc::new(std::cell::RefCell::new(None));
        let Err(mut handoff) = first_poll(FirstWakerOnly {
            fired: fired.clone(),
            waker: captured.clone(),
        }) else {
            panic!("should be pending");
        };
        fired.set(true);
        captured.borrow().clone().expect("waker kept").wake();
        // The executor's first poll sees the result.
        let waker = Waker::from(Arc::new(Counter::default()));
        let mut cx = Context::from_waker(&waker);
        assert_eq!(Pin::new(&mut handoff).poll(&mut cx), Poll::Ready(7));
    }
}
