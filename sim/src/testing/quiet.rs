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
                .then(|| own_frames(&backtrace.to_string())),
        });
    });
}

/// How many frames of a backtrace a report shows.
const FRAMES: usize = 12;

/// The frames of the failing body in a backtrace's text: from below the panic
/// machinery down to where the sweep or the simulator called the body, without the
/// standard library's closure shims in between. (Taken whole, a simulated thread's
/// backtrace has some seventy frames, most of them the harness's and the
/// coroutine library's.)
fn own_frames(backtrace: &str) -> String {
    const MACHINERY: &[&str] = &[
        "std::",
        "core::",
        "alloc::",
        "<std::",
        "<core::",
        "<alloc::",
        "__rust",
        "loopwatch_sim::testing::",
    ];
    const CALLERS: &[&str] = &[
        "loopwatch_sim::testing::sweep::",
        "loopwatch_sim::testing::harness::",
        "loopwatch_sim::Simulation::",
        "loopwatch_sim::driver::",
    ];
    let mut frames: Vec<Vec<&str>> = Vec::new();
    for line in backtrace.lines() {
        let numbered = line
            .trim_start()
            .split_once(": ")
            .is_some_and(|(n, _)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
        if numbered {
            frames.push(vec![line]);
        } else if let Some(frame) = frames.last_mut() {
            frame.push(line);
        }
    }
    let symbol = |frame: &Vec<&str>| -> String {
        frame[0]
            .trim_start()
            .split_once(": ")
            .map_or(String::new(), |(_, s)| s.to_string())
    };
    let is = |frame: &Vec<&str>, prefixes: &[&str]| {
        let symbol = symbol(frame);
        prefixes.iter().any(|p| symbol.starts_with(p))
    };
    let own: Vec<&Vec<&str>> = frames
        .iter()
        .skip_while(|frame| is(frame, MACHINERY))
        .take_while(|frame| !is(frame, CALLERS))
        .filter(|frame| !is(frame, MACHINERY))
        .collect();
    let mut text: Vec<String> = own
        .iter()
        .take(FRAMES)
        .flat_map(|frame| frame.iter().map(|line| (*line).to_string()))
        .collect();
    if own.len() > FRAMES {
        text.push(format!("… {} more frames", own.len() - FRAMES));
    }
    text.join("\n")
}

/// Runs `f` quietly: `Err` with its panic's message, where it happened and (with
/// `RUST_BACKTRACE`) the body's frames if it panicked, or with what it returned plus
/// that place if it returned `Err` after a panic it caught.
pub(crate) fn run_quietly(f: impl FnOnce() -> Result<(), String>) -> Result<(), String> {
    let quiet = Quiet::begin();
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    let panic = take_first_panic();
    drop(quiet);
    let problem = match result {
        Ok(Ok(())) => return Ok(()),
        Ok(Err(problem)) => problem,
        Err(_) => match &panic {
            Some(panic) => format!("panicked: {}", panic.message),
            None => "panicked".to_string(),
        },
    };
    let Some(panic) = panic else {
        return Err(problem);
    };
    let mut text = problem;
    if let Some(location) = &panic.location {
        text.push_str(&format!("\n  at {location}"));
    }
    if let Some(frames) = &panic.backtrace {
        text.push_str(&format!(
            "\n  its own frames (RUST_BACKTRACE is set):\n{frames}"
        ));
    }
    Err(text)
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
        // What was recorded in here is not for an enclosing quiet span to report.
        take_first_panic();
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

#[cfg(test)]
mod tests {
    use std::panic::{catch_unwind, set_hook, take_hook};
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[test]
    #[allow(
        clippy::disallowed_methods,
        reason = "counts the panics of this test's own thread"
    )]
    fn quiet_records_the_first_panic_and_puts_the_hook_back() {
        // Goal: while quiet, this thread's panics reach neither the installed hook nor
        // the terminal, the first one is recorded, and afterwards the hook that was
        // there before is back.
        static HERE: OnceLock<std::thread::ThreadId> = OnceLock::new();
        static CALLS: AtomicUsize = AtomicUsize::new(0);
        HERE.set(std::thread::current().id()).unwrap();
        set_hook(Box::new(|_| {
            if HERE.get() == Some(&std::thread::current().id()) {
                CALLS.fetch_add(1, Ordering::SeqCst);
            }
        }));
        let quiet = Quiet::begin();
        let _ = catch_unwind(|| panic!("first"));
        let _ = catch_unwind(|| panic!("second"));
        let first = take_first_panic().expect("recorded");
        assert_eq!(first.message, "first");
        assert!(first.location.unwrap().contains("quiet.rs"));
        assert_eq!(CALLS.load(Ordering::SeqCst), 0);
        drop(quiet);
        let _ = catch_unwind(|| panic!("after"));
        assert_eq!(CALLS.load(Ordering::SeqCst), 1);
        drop(take_hook());
    }

    #[test]
    fn own_frames_keep_the_bodys_frames() {
        // Goal: of a simulated thread's backtrace, only the frames between the panic
        // machinery and the sweep that called the body are kept.
        let backtrace = "   0: std::panicking::begin_panic\n             at std.rs:1:1\n   \
            1: loopwatch_sim::testing::helpers::reap\n             at helpers.rs:2:2\n   \
            2: my_tests::body::{{closure}}\n             at tests/my_tests.rs:3:3\n   \
            3: core::ops::function::FnOnce::call_once\n   \
            4: my_tests::helper\n             at tests/my_tests.rs:4:4\n   \
            5: loopwatch_sim::testing::sweep::Sweep::try_run::{{closure}}\n   \
            6: my_tests::main\n";
        assert_eq!(
            own_frames(backtrace),
            "   2: my_tests::body::{{closure}}\n             at tests/my_tests.rs:3:3\n   \
             4: my_tests::helper\n             at tests/my_tests.rs:4:4"
        );
    }
}
