//! What the CLI shows on stderr while it works: a progress bar per phase on a
//! terminal, one plain line per phase otherwise (never `\r`), and `tracing`'s events
//! (loopwatch's warnings) printed without tearing the bar.

use std::io::{IsTerminal as _, Write as _};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use loopwatch::kernel::Clock as _;
use loopwatch_conformance::progress::Progress;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

/// A plain `std` lock around the bar: the CLI's own, never held across a kernel call.
#[allow(
    clippy::disallowed_types,
    reason = "the CLI's display state, not simulated code"
)]
type Lock<T> = std::sync::Mutex<T>;

/// The bar on screen, if any, so that log lines can be printed above it.
static BAR: Lock<Option<ProgressBar>> = Lock::new(None);

fn bar() -> Option<ProgressBar> {
    BAR.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone()
}

fn set_bar(bar: Option<ProgressBar>) {
    let old = std::mem::replace(
        &mut *BAR
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner),
        bar,
    );
    if let Some(old) = old {
        old.finish_and_clear();
    }
}

/// Writes `text` to stderr, above the bar if one is showing.
pub(crate) fn eprint_above(text: &str) {
    let write = || {
        let _ = std::io::stderr().write_all(text.as_bytes());
    };
    match bar() {
        Some(bar) => bar.suspend(write),
        None => write(),
    }
}

/// Installs the `tracing` subscriber: events at or above `LOOPWATCH_LOG`'s filter
/// (else `RUST_LOG`'s, else `default`) go to stderr, so that loopwatch's warnings
/// ("Unknown child process pid …") show.
pub(crate) fn init_logging(default: &str) {
    let mut bad = None;
    let filter = ["LOOPWATCH_LOG", "RUST_LOG"]
        .into_iter()
        .find_map(|var| {
            let value = std::env::var(var).ok()?;
            match EnvFilter::try_new(&value) {
                Ok(filter) => Some(filter),
                Err(error) => {
                    bad = Some(format!("warning: {var}={value:?} ignored: {error}\n"));
                    None
                }
            }
        })
        .unwrap_or_else(|| EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(Stderr)
        .with_ansi(false)
        .without_time()
        .try_init();
    if let Some(bad) = bad {
        eprint_above(&bad);
    }
}

/// `tracing`'s writer: one event per [`Line`].
struct Stderr;

impl<'a> MakeWriter<'a> for Stderr {
    type Writer = Line;

    fn make_writer(&'a self) -> Line {
        Line(Vec::new())
    }
}

/// One formatted event, written to stderr (above the bar) when dropped.
struct Line(Vec<u8>);

impl std::io::Write for Line {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for Line {
    fn drop(&mut self) {
        eprint_above(&String::from_utf8_lossy(&self.0));
    }
}

/// The CLI's progress display.
pub(crate) struct Ui {
    /// Whether stderr is a terminal (then bars; else plain lines).
    terminal: bool,
    /// When the current phase began.
    started: Lock<Option<(String, Duration)>>,
}

impl Ui {
    pub(crate) fn new() -> Ui {
        Ui {
            terminal: std::io::stderr().is_terminal(),
            started: Lock::new(None),
        }
    }

    /// A line on stderr for the user (a notice), above the bar.
    pub(crate) fn notice(&self, text: &str) {
        eprint_above(&format!("{text}\n"));
    }

    /// Ends the current phase: clears its bar and says how long it took.
    pub(crate) fn finish(&self) {
        set_bar(None);
        let started = self
            .started
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let Some((name, at)) = started {
            let took = loopwatch::OsKernel.now().saturating_sub(at);
            self.notice(&format!("   {name}: done in {}", duration(took)));
        }
    }
}

/// `3.2 s`, `4 min 05 s`.
pub(crate) fn duration(took: Duration) -> String {
    let seconds = took.as_secs_f64();
    if seconds < 60.0 {
        format!("{seconds:.1} s")
    } else {
        let whole = took.as_secs();
        format!("{} min {:02} s", whole / 60, whole % 60)
    }
}

impl Progress for Ui {
    fn phase(&self, name: &str, total: usize) {
        self.finish();
        self.notice(&format!("== {name}"));
        *self
            .started
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) =
            Some((name.to_string(), loopwatch::OsKernel.now()));
        if self.terminal {
            let bar =
                ProgressBar::with_draw_target(Some(total as u64), ProgressDrawTarget::stderr());
            let style = ProgressStyle::with_template(
                "   [{bar:30}] {pos:>4}/{len} {elapsed:>4} {wide_msg}",
            )
            .map(|style| style.progress_chars("=> "))
            .unwrap_or_else(|_| ProgressStyle::default_bar());
            bar.set_style(style);
            set_bar(Some(bar));
        }
    }

    fn step(&self, what: &str) {
        if let Some(bar) = bar() {
            bar.inc(1);
            bar.set_message(what.to_string());
        }
    }
}
