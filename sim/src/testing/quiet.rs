//! A panic hook that keeps a seed sweep's panics off the terminal.
//!
//! Every failing seed panics (an assertion in the body), and the default hook prints
//! each panic with its backtrace: a sweep where a hundred seeds fail would print
//! thousands of lines. While a sweep runs, its OS thread is "quiet": its panics are
//! not printed, only the first of each seed is recorded for the report. Panics of
//! other threads (other tests of a parallel `cargo test`) go to the hook that was
//! installed before, as always. The hook is installed when the first sweep of the
//! process starts and the previous one is put back when the last one ends.

use std::backtrace::{Backtrace, BacktraceStatus};
use std::cell::{Cell, RefCell};
use std::panic::PanicHookInfo;
use std::sync::Arc;

type Hook = Box<dyn Fn(&PanicHookInfo<'_>) + Send + Sync + 'static>;

#[allow(
    clippy::disallowed_types,
    reason = "test support outside any simulation: guards the process's panic hook"
)]
type StdMutex<T> = std::sync::Mutex<T>;

/// The hook that was installed before the first active sweep, and how many sweeps
/// are active.
struct Installed {
    active: usize,
    previous: Option<Arc<Hook>>,
}

static INSTALLED: StdMutex<Installed> = StdMutex::new(Installed {
    active: 0,
    previous: None,
});

thread_local! {
    /// Whether this OS thread runs a sweep (its simulated threads run on it too).
    static QUIET: Cell<bool> = const { Cell::new(false) };
    /// The first panic on this OS thread since [`take_first_panic`].
    static FIRST: RefCell<Option<PanicRecord>> = const { RefCell::new(None) };
}

/// A panic seen while quiet: its message, where it happened, and its backtrace when
/// `RUST_BACKTRACE` asks for one.
#[derive(Debug)]
pub(crate) struct PanicRecord {
    pub(crate) message: String,
    pub(crate) location: Option<String>,
    pub(crate) backtrace: Option<String>,
}

fn record(info: &PanicHookInfo<'_>) {
    FIRST.with(|first| {
        let mut first = first.borrow_mut();
        if first.is_some() {
            return;
        }
        let payload = info.payload();
        let message = payload
            .downcast_ref::<&str>()
            .map(|s| (*s).to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic without a message".to_string());
        let backtrace = Backtrace::capture();
        *first = Some(PanicRecord {
            message,
            location: info.location().map(ToString::to_string),
            backtrace: (backtrace.status() == BacktraceStatus::Captured)
                .then(|| backtrace.to_string()),
        });
    });
}

/// The first panic recorded on this thread since the last call, if any.
pub(crate) fn take_first_panic() -> Option<PanicRecord> {
    FIRST.with(|first| first.borrow_mut().take())
}

/// This thread is quiet while the value lives.
pub(crate) struct Quiet {
    was_quiet: bool,
}

impl Quiet {
    pub(crate) fn begin() -> Quiet {
        let mut installed = INSTALLED
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if installed.active == 0 {
            let previous = Arc::new(std::panic::take_hook());
            let forward = previous.clone();
            std::panic::set_hook(Box::new(move |info| {
                if QUIET.with(Cell::get) {
                    record(info);
                } else {
                    forward(info);
                }
            }));
            installed.previous = Some(previous);
        }
        installed.active += 1;
        take_first_panic();
        Quiet {
            was_quiet: QUIET.with(|quiet| quiet.replace(true)),
        }
    }
}

impl Drop for Quiet {
    fn drop(&mut self) {
        QUIET.with(|quiet| quiet.set(self.was_quiet));
        let mut installed = INSTALLED
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        installed.active -= 1;
        // Hooks cannot be changed while this thread panics; ours then stays, and
        // forwards every panic of a thread that is not quiet.
        if installed.active > 0 || std::thread::panicking() {
            return;
        }
        // Ours holds the other reference to the previous hook: drop it first.
        drop(std::panic::take_hook());
        if let Some(previous) = installed.previous.take() {
            match Arc::try_unwrap(previous) {
                Ok(previous) => std::panic::set_hook(previous),
                Err(shared) => std::panic::set_hook(Box::new(move |info| shared(info))),
            }
        }
    }
}
