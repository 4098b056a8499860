//! The policy half of the suite: spec clauses P-, C- and D- checked against any
//! event-loop policy (the built-in default, or a user's own), on the real OS and on
//! the simulator. Each check is written once, generic over the kernel.

use std::fmt;
use std::sync::Arc;

use loopwatch::kernel::Kernel;
use loopwatch::{ErrorKind, PolicyRef, policy};

use crate::cpython::{CPython, Pythons};
use crate::matrix::{Cell, Status};

/// Builds the policy under test for any kernel.
pub trait MakePolicy: Clone + Send + Sync + 'static {
    /// A name for reports.
    fn name(&self) -> String;
    /// A new policy over `kernel`.
    fn make<K: Kernel>(&self, kernel: &K) -> PolicyRef<K>;
}

/// The built-in [`loopwatch::DefaultEventLoopPolicy`].
#[derive(Clone, Copy, Debug)]
pub struct DefaultPolicy;

impl MakePolicy for DefaultPolicy {
    fn name(&self) -> String {
        "DefaultEventLoopPolicy".into()
    }
    fn make<K: Kernel>(&self, kernel: &K) -> PolicyRef<K> {
        Arc::new(loopwatch::DefaultEventLoopPolicy::with_kernel(
            kernel.clone(),
        ))
    }
}

/// Why a policy check failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CheckFailure {
    /// A call raised where the clauses say it must not.
    Raised {
        /// The call, as Python would write it (`policy.get_event_loop()`).
        call: &'static str,
        /// What it raised.
        error: loopwatch::Error,
    },
    /// A value or behaviour other than the clauses'.
    Unexpected(String),
}

impl fmt::Display for CheckFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CheckFailure::Raised { call, error } => write!(f, "{call} raised {error}"),
            CheckFailure::Unexpected(what) => f.write_str(what),
        }
    }
}

impl std::error::Error for CheckFailure {}

/// Names the call behind a loopwatch error, for a readable check failure.
trait Call<T> {
    fn call(self, call: &'static str) -> Result<T, CheckFailure>;
}

impl<T> Call<T> for loopwatch::Result<T> {
    fn call(self, call: &'static str) -> Result<T, CheckFailure> {
        self.map_err(|error| CheckFailure::Raised { call, error })
    }
}

type Check<K> = (
    &'static str,
    &'static [&'static str],
    fn(&K, &PolicyRef<K>) -> Result<(), CheckFailure>,
);

fn ensure(condition: bool, what: &str) -> Result<(), CheckFailure> {
    if condition {
        Ok(())
    } else {
        Err(CheckFailure::Unexpected(what.to_string()))
    }
}

/// Runs `body` in a new thread of `kernel` named `name`, returning its result.
fn in_thread<K: Kernel, T: Send + 'static>(
    kernel: &K,
    name: &str,
    body: impl FnOnce() -> T + Send + 'static,
) -> Result<T, CheckFailure> {
    #[allow(
        clippy::disallowed_types,
        reason = "hands a result out of a thread; never held across a kernel call"
    )]
    let slot = Arc::new(std::sync::Mutex::new(None));
    let out = slot.clone();
    let handle = kernel
        .spawn_thread(
            name,
            Box::new(move || {
                let value = body();
                *out.lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(value);
            }),
        )
        .map_err(|errno| {
            CheckFailure::Unexpected(format!("the thread {name:?} could not start: {errno:?}"))
        })?;
    kernel
        .join_thread(handle)
        .map_err(|_| CheckFailure::Unexpected(format!("the thread {name:?} panicked")))?;
    let value = slot
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .take();
    value.ok_or_else(|| CheckFailure::Unexpected(format!("the thread {name:?} produced nothing")))
}

fn checks<K: Kernel>() -> Vec<Check<K>> {
    vec![
        ("main_thread_creates_once", &["C-2"], |_, p| {
            let first = p.get_event_loop().call("policy.get_event_loop()")?;
            let second = p.get_event_loop().call("policy.get_event_loop()")?;
            ensure(first == second, "get_event_loop gave two loops")?;
            p.set_event_loop(None).call("policy.set_event_loop(None)")?;
            first.close().call("loop.close()")
        }),
        ("set_none_disables_creation", &["C-3", "C-4"], |_, p| {
            p.set_event_loop(None).call("policy.set_event_loop(None)")?;
            let err = p.get_event_loop().err().ok_or_else(|| {
                CheckFailure::Unexpected(
                    "policy.get_event_loop() created a loop after set_event_loop(None)".into(),
                )
            })?;
            ensure(
                err.kind() == ErrorKind::RuntimeError,
                &format!("policy.get_event_loop() raised {err}, not a RuntimeError"),
            )?;
            ensure(
                err.message() == "There is no current event loop in thread 'MainThread'.",
                &format!(
                    "policy.get_event_loop() raised {err}, not CPython's message \"There is no current event loop in thread 'MainThread'.\""
                ),
            )
        }),
        ("set_then_get", &["C-5", "C-8"], |_, p| {
            let event_loop = p.new_event_loop().call("policy.new_event_loop()")?;
            p.set_event_loop(Some(event_loop.clone()))
                .call("policy.set_event_loop(loop)")?;
            let got = p.get_event_loop().call("policy.get_event_loop()")?;
            ensure(
                got == event_loop,
                "policy.get_event_loop() is not the loop given to set_event_loop()",
            )?;
            let other = p.new_event_loop().call("policy.new_event_loop()")?;
            ensure(
                other != event_loop,
                "new_event_loop returned the current loop",
            )?;
            let still = p.get_event_loop().call("policy.get_event_loop()")?;
            ensure(
                still == event_loop,
                "new_event_loop changed the current loop",
            )?;
            p.set_event_loop(None).call("policy.set_event_loop(None)")?;
            other.close().call("other_loop.close()")?;
            event_loop.close().call("loop.close()")
        }),
        (
            "worker_thread_has_no_loop",
            &["C-1", "C-2", "C-3"],
            |k, p| {
                let policy = p.clone();
                let outcome = in_thread(k, "Worker-P", move || {
                    policy
                        .get_event_loop()
                        .map(drop)
                        .map_err(|e| (e.kind(), e.message().to_string()))
                })?;
                ensure(
                    outcome
                        == Err((
                            ErrorKind::RuntimeError,
                            "There is no current event loop in thread 'Worker-P'.".to_string(),
                        )),
                    &format!(
                        "in a worker thread, policy.get_event_loop() gave {}, not RuntimeError(\"There is no current event loop in thread 'Worker-P'.\")",
                        match &outcome {
                            Ok(()) => "a loop".to_string(),
                            Err((kind, message)) => format!("{}({message:?})", kind.python_name()),
                        }
                    ),
                )
            },
        ),
        ("loops_are_per_thread", &["C-1"], |k, p| {
            let mine = p.new_event_loop().call("policy.new_event_loop()")?;
            p.set_event_loop(Some(mine.clone()))
                .call("policy.set_event_loop(loop)")?;
            let policy = p.clone();
            let theirs = in_thread(k, "Worker-Q", move || {
                let theirs = policy.new_event_loop().ok()?;
                policy.set_event_loop(Some(theirs.clone())).ok()?;
                let got = policy.get_event_loop().ok()?;
                policy.set_event_loop(None).ok()?;
                Some((got == theirs, theirs))
            })?
            .ok_or_else(|| {
                CheckFailure::Unexpected("the worker thread could not set its own loop".into())
            })?;
            ensure(theirs.0, "the worker did not get its own loop")?;
            ensure(
                p.get_event_loop().ok() == Some(mine.clone()),
                "the main loop changed",
            )?;
            p.set_event_loop(None).call("policy.set_event_loop(None)")?;
            theirs.1.close().call("worker_loop.close()")?;
            mine.close().call("loop.close()")
        }),
        (
            "child_watcher_is_one_object",
            &["D-1", "D-3", "D-4"],
            |_, p| {
                let first = p.get_child_watcher().call("policy.get_child_watcher()")?;
                let second = p.get_child_watcher().call("policy.get_child_watcher()")?;
                ensure(
                    Arc::ptr_eq(&first, &second),
                    "get_child_watcher gave two watchers",
                )?;
                p.set_child_watcher(None)
                    .call("policy.set_child_watcher(None)")?;
                let third = p.get_child_watcher().call("policy.get_child_watcher()")?;
                ensure(
                    !Arc::ptr_eq(&first, &third),
                    "set_child_watcher(None) kept the watcher",
                )?;
                p.set_child_watcher(None)
                    .call("policy.set_child_watcher(None)")
            },
        ),
        (
            "set_event_loop_attaches_the_watcher",
            &["D-2", "D-5"],
            |_, p| {
                let watcher = p.get_child_watcher().call("policy.get_child_watcher()")?;
                let event_loop = p.new_event_loop().call("policy.new_event_loop()")?;
                p.set_event_loop(Some(event_loop.clone()))
                    .call("policy.set_event_loop(loop)")?;
                // Only watchers that attach to a loop can show it (Safe, Fast).
                let attached = watcher.attached_loop();
                let shows = attached.is_some();
                if shows {
                    ensure(
                        attached == Some(event_loop.clone()),
                        "attached to another loop",
                    )?;
                }
                p.set_event_loop(None).call("policy.set_event_loop(None)")?;
                if shows {
                    ensure(
                        watcher.attached_loop().is_none(),
                        "still attached after set_event_loop(None)",
                    )?;
                }
                p.set_child_watcher(None)
                    .call("policy.set_child_watcher(None)")?;
                event_loop.close().call("loop.close()")
            },
        ),
        ("process_slot", &["P-1", "P-2", "P-3", "P-7"], |k, p| {
            policy::set_event_loop_policy(k, Some(p.clone()));
            let got = policy::get_event_loop_policy(k);
            ensure(
                Arc::ptr_eq(&got, p),
                "get_event_loop_policy is not the policy set",
            )?;
            policy::set_event_loop_policy(k, None);
            let fresh = policy::get_event_loop_policy(k);
            ensure(!Arc::ptr_eq(&fresh, p), "None did not restore a default")?;
            ensure(
                fresh.state().is_some(),
                "the restored policy is not the default one",
            )?;
            policy::set_event_loop_policy(k, None);
            Ok(())
        }),
    ]
}

/// Each check's name and the clauses it checks, in order.
pub fn check_names() -> Vec<(&'static str, &'static [&'static str])> {
    checks::<loopwatch::OsKernel>()
        .into_iter()
        .map(|(name, clauses, _)| (name, clauses))
        .collect()
}

/// Runs the check `name` (one of [`check_names`]) against a fresh policy of
/// `maker` over `kernel`, and lets the policy drop its watcher afterwards.
///
/// # Errors
///
/// How the policy broke the check's clauses; [`CheckFailure::Unexpected`] for a
/// name that is not a check.
pub fn run_check<K: Kernel, M: MakePolicy>(
    kernel: &K,
    maker: &M,
    name: &str,
) -> Result<(), CheckFailure> {
    let Some((_, _, check)) = checks::<K>().into_iter().find(|(n, _, _)| *n == name) else {
        return Err(CheckFailure::Unexpected(format!(
            "no policy check is called {name:?}"
        )));
    };
    let policy = maker.make(kernel);
    let outcome = check(kernel, &policy);
    let _ = policy.set_child_watcher(None);
    outcome
}

type Outcome = (String, Vec<String>, Result<(), String>);

fn run_checks<K: Kernel, M: MakePolicy>(kernel: &K, maker: &M) -> Vec<Outcome> {
    check_names()
        .into_iter()
        .map(|(name, clauses)| {
            // Each check gets a fresh policy.
            let outcome = run_check(kernel, maker, name).map_err(|e| e.to_string());
            (
                name.to_string(),
                clauses.iter().map(|c| c.to_string()).collect(),
                outcome,
            )
        })
        .collect()
}

/// Runs every policy check against `maker`'s policy on the real OS (call it from the
/// process's main thread) and on the simulator (`seeds` seeds). For one test per
/// check in a test binary, see
/// [`testing::policy_tests`](crate::testing::policy_tests).
pub fn check_policy<M: MakePolicy>(maker: &M, seeds: u64) -> Vec<Cell> {
    let mut cells = Vec::new();
    let cell =
        |check: &str, clauses: Vec<String>, backend: &str, outcome: Result<(), String>| Cell {
            scenario: format!("policy:{check}"),
            clauses,
            watcher: maker.name(),
            backend: backend.to_string(),
            status: match outcome {
                Ok(()) => Status::Match,
                Err(error) => Status::Failed { error },
            },
        };
    for (check, clauses, outcome) in run_checks(&loopwatch::OsKernel, maker) {
        cells.push(cell(&check, clauses, "os", outcome));
    }
    let mut sim: Vec<Outcome> = Vec::new();
    for seed in 0..seeds {
        let maker_copy = maker.clone();
        let (results, report) = loopwatch_sim::Simulation::new(seed)
            .run_returning(move |kernel| run_checks(&kernel, &maker_copy));
        let Some(results) = results else {
            sim = vec![(
                "simulation".into(),
                vec![],
                Err(format!(
                    "seed {seed}: the simulation ended: {:?}",
                    report.outcome
                )),
            )];
            break;
        };
        let failed = results.iter().any(|(_, _, r)| r.is_err());
        sim = results
            .into_iter()
            .map(|(c, cl, r)| (c, cl, r.map_err(|e| format!("seed {seed}: {e}"))))
            .collect();
        if failed {
            break;
        }
    }
    for (check, clauses, outcome) in sim {
        cells.push(cell(&check, clauses, "sim", outcome));
    }
    cells
}

/// What one interpreter said of the policy checks.
enum Theirs {
    /// Not run: this status for every check (`n/a`, or the interpreter failed).
    Not(Status),
    /// `{"checks": {name: "ok" | "Kind: message"}}`.
    Ran(serde_json::Value),
}

/// Runs `cpython/policy_checks.py` under `python`.
fn run_policy_checks(python: &CPython) -> Theirs {
    let failed = |error: String| {
        Theirs::Not(Status::Failed {
            error: format!("{}: {error}", python.path.display()),
        })
    };
    match python
        .script(crate::cpython::POLICY_CHECKS_PY, &[])
        .output()
    {
        Ok(out) if out.status.success() => match serde_json::from_slice(&out.stdout) {
            Ok(value) => Theirs::Ran(value),
            Err(error) => failed(format!("the output is not JSON: {error}")),
        },
        Ok(out) => failed(format!(
            "exited with {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        )),
        Err(error) => failed(error.to_string()),
    }
}

/// The default policy's checks on the CPythons of `pythons`
/// (`cpython/policy_checks.py`, the same checks written in Python), compared with
/// loopwatch's outcomes in `ours` (the real-OS cells of [`check_policy`] for
/// [`DefaultPolicy`]). A version not found gives `n/a` cells.
pub fn compare_with_cpython(ours: &[Cell], pythons: &Pythons) -> Vec<Cell> {
    let mut cells = Vec::new();
    for minor in crate::matrix::CPYTHON_MINORS {
        let backend = format!("cpython3.{minor}");
        let theirs = match pythons.get(minor) {
            None => Theirs::Not(Status::Unavailable {
                reason: format!("no CPython 3.{minor} found"),
            }),
            Some(python) => run_policy_checks(python),
        };
        for cell in ours.iter().filter(|c| c.backend == "os") {
            let check = cell.scenario.trim_start_matches("policy:");
            let ours_ok = matches!(cell.status, Status::Match);
            let status = match &theirs {
                Theirs::Not(status) => status.clone(),
                Theirs::Ran(value) => match value["checks"][check].as_str() {
                    None => Status::Failed {
                        error: format!("CPython 3.{minor} gave no result for {check}"),
                    },
                    Some(result) if (result == "ok") == ours_ok => Status::Match,
                    Some(result) => Status::Diverges {
                        expected: vec![match &cell.status {
                            Status::Failed { error } => error.clone(),
                            _ => "ok".into(),
                        }],
                        got: vec![result.to_string()],
                    },
                },
            };
            cells.push(Cell {
                scenario: cell.scenario.clone(),
                clauses: cell.clauses.clone(),
                watcher: cell.watcher.clone(),
                backend: backend.clone(),
                status,
            });
        }
    }
    cells
}
