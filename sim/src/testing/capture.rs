//! One capture of the `tracing` events a body logs.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::subscriber::Interest;
use tracing::{Event, Level, Metadata, Subscriber};

#[allow(
    clippy::disallowed_types,
    reason = "held only to append or copy events, never across a kernel call"
)]
type StdMutex<T> = std::sync::Mutex<T>;

/// One event: its level, target (loopwatch logs asyncio's messages on `"asyncio"`),
/// message, and its other fields as text (e.g. `category` for warnings.warn's
/// category, `exception` for the exception handler's).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Logged {
    /// The event's level.
    pub level: Level,
    /// The event's target.
    pub target: String,
    /// The formatted message.
    pub message: String,
    /// Every other field, by name: strings as they are, other values as `{:?}`.
    pub fields: BTreeMap<String, String>,
}

/// Records the `tracing` events logged while [`Capture::during`] runs.
///
/// What it sees: every event of the calling OS thread, and so of every simulated
/// thread of a simulation run inside it. In a [`Harness`](super::Harness) binary,
/// where one test runs at a time, also the events of the process's other threads (a
/// watcher's waiter or reaper thread on the real OS). In an ordinary `#[test]`, other
/// threads are other tests, so their events are left out.
///
/// A clone shares the record, so a body can read what was logged so far.
///
/// ```
/// use loopwatch_sim::Simulation;
/// use loopwatch_sim::testing::Capture;
///
/// let capture = Capture::new();
/// let inner = capture.clone();
/// let report = capture.during(|| {
///     Simulation::new(0).run(move |_| {
///         tracing::warn!(target: "asyncio", category = "RuntimeWarning", "careful");
///         assert_eq!(inner.warnings(), ["careful"]);
///     })
/// });
/// report.assert_completed("capture");
/// let events = capture.events();
/// assert_eq!(events[0].target, "asyncio");
/// assert_eq!(events[0].fields["category"], "RuntimeWarning");
/// ```
#[derive(Clone, Default)]
pub struct Capture {
    events: Arc<StdMutex<Vec<Logged>>>,
}

impl fmt::Debug for Capture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.events()).finish()
    }
}

/// Set once a [`Harness`](super::Harness) has made [`Forward`] the process's
/// subscriber: from then on a capture also takes other threads' events.
static PROCESS_WIDE: AtomicBool = AtomicBool::new(false);

/// The capture that [`Forward`] hands other threads' events to.
static ACTIVE: StdMutex<Option<Capture>> = StdMutex::new(None);

impl Capture {
    /// An empty record.
    pub fn new() -> Capture {
        Capture::default()
    }

    /// Runs `f`, recording the events logged meanwhile (see the type's docs for
    /// which threads), and returns what `f` returned.
    pub fn during<R>(&self, f: impl FnOnce() -> R) -> R {
        /// Puts the previous process-wide capture back, also when `f` panics.
        struct Restore(Option<Option<Capture>>);
        impl Drop for Restore {
            fn drop(&mut self) {
                if let Some(previous) = self.0.take() {
                    *lock(&ACTIVE) = previous;
                }
            }
        }
        let _restore = Restore(
            PROCESS_WIDE
                .load(Ordering::SeqCst)
                .then(|| lock(&ACTIVE).replace(self.clone())),
        );
        tracing::subscriber::with_default(Recorder(self.clone()), f)
    }

    /// Every event so far, in order.
    pub fn events(&self) -> Vec<Logged> {
        lock(&self.events).clone()
    }

    /// Every event so far, emptying the record.
    pub fn take(&self) -> Vec<Logged> {
        std::mem::take(&mut *lock(&self.events))
    }

    /// The messages of the events at `level`, in order.
    pub fn messages(&self, level: Level) -> Vec<String> {
        lock(&self.events)
            .iter()
            .filter(|e| e.level == level)
            .map(|e| e.message.clone())
            .collect()
    }

    /// The messages of the warnings (level `WARN`), in order.
    pub fn warnings(&self) -> Vec<String> {
        self.messages(Level::WARN)
    }

    fn push(&self, event: &Event<'_>) {
        let mut visitor = Fields::default();
        event.record(&mut visitor);
        lock(&self.events).push(Logged {
            level: *event.metadata().level(),
            target: event.metadata().target().to_string(),
            message: visitor.message,
            fields: visitor.fields,
        });
    }

    /// Makes [`Forward`] the process's subscriber, if no other is, so that captures
    /// also take other threads' events. For binaries that run one test at a time.
    pub(crate) fn forward_other_threads() {
        if tracing::subscriber::set_global_default(Forward).is_ok() {
            PROCESS_WIDE.store(true, Ordering::SeqCst);
        }
    }
}

fn lock<T>(mutex: &StdMutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[derive(Default)]
struct Fields {
    message: String,
    fields: BTreeMap<String, String>,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message = value.to_string();
        } else {
            self.fields
                .insert(field.name().to_string(), value.to_string());
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        let text = format!("{value:?}");
        if field.name() == "message" {
            self.message = text;
        } else {
            self.fields.insert(field.name().to_string(), text);
        }
    }
}

/// Every callsite always interests both subscribers: whether an event is kept is
/// decided when it happens, not cached when its callsite is first seen.
macro_rules! spanless_subscriber {
    () => {
        fn register_callsite(&self, _: &'static Metadata<'static>) -> Interest {
            Interest::always()
        }
        fn enabled(&self, _: &Metadata<'_>) -> bool {
            true
        }
        fn new_span(&self, _: &Attributes<'_>) -> Id {
            Id::from_u64(1)
        }
        fn record(&self, _: &Id, _: &Record<'_>) {}
        fn record_follows_from(&self, _: &Id, _: &Id) {}
        fn enter(&self, _: &Id) {}
        fn exit(&self, _: &Id) {}
    };
}

/// The calling thread's subscriber during [`Capture::during`].
struct Recorder(Capture);

impl Subscriber for Recorder {
    spanless_subscriber!();

    fn event(&self, event: &Event<'_>) {
        self.0.push(event);
    }
}

/// The process's subscriber in a harness binary: other threads' events go to the
/// active capture, if any.
struct Forward;

impl Subscriber for Forward {
    spanless_subscriber!();

    fn event(&self, event: &Event<'_>) {
        let active = lock(&ACTIVE).clone();
        if let Some(capture) = active {
            capture.push(event);
        }
    }
}
