//! The policy half of the suite: spec clauses P-, C- and D- checked against any
//! event-loop policy (the built-in default, or a user's own), on the real OS and on
//! the simulator. Each check is written once, generic over the kernel.

use std::sync::Arc;

use loopwatch::kernel::Kernel;
use loopwatch::{ErrorKind, PolicyRef, policy};

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

type Check<K> = (
    &'static str,
    &'static [&'static str],
    fn(&K, &PolicyRef<K>) -> Result<(), String>,
);

fn ensure(condition: bool, what: &str) -> Result<(), String> {
    if condition {
        Ok(())
    } else {
        Err(what.to_string())
    }
}

/// Runs `body` in a new thread of `kernel` named `name`, returning its result.
fn in_thread<K: Kernel, T: Send + 'static>(
    kernel: &K,
    name: &str,
    body: impl FnOnce() -> T + Send + 'static,
) -> Result<T, String> {
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
        .map_err(|e| e.to_string())?;
    kernel
        .join_thread(handle)
        .map_err(|_| "the thread panicked".to_string())?;
    let value = slot
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .take();
    value.ok_or_else(|| "the thread produced nothing".to_string())
}

fn checks<K: Kernel>() -> Vec<Check<K>> {
    vec![
        ("main_thread_creates_once", &["C-2"], |_, p| {
            let first = p.get_event_loop().map_err(|e| e.to_string())?;
            let second = p.get_event_loop().map_err(|e| e.to_string())?;
            ensure(first == second, "get_event_loop gave two loops")?;
            p.set_event_loop(None).map_err(|e| e.to_string())?;
            first.close().map_err(|e| e.to_string())
        }),
        ("set_none_disables_creation", &["C-3", "C-4"], |_, p| {
            p.set_event_loop(None).map_err(|e| e.to_string())?;
            let err = p
                .get_event_loop()
                .err()
                .ok_or("a loop was created after set_event_loop(None)")?;
            ensure(err.kind() == ErrorKind::RuntimeError, "not a RuntimeError")?;
            ensure(
                err.message() == "There is no current event loop in thread 'MainThread'.",
                &format!("message {:?}", err.message()),
            )
        }),
        ("set_then_get", &["C-5", "C-8"], |_, p| {
            let event_loop = p.new_event_loop().map_err(|e| e.to_string())?;
            p.set_event_loop(Some(event_loop.clone()))
                .map_err(|e| e.to_string())?;
            let got = p.get_event_loop().map_err(|e| e.to_string())?;
            ensure(got == event_loop, "get_event_loop is not the loop set")?;
            let other = p.new_event_loop().map_err(|e| e.to_string())?;
            ensure(
                other != event_loop,
                "new_event_loop returned the current loop",
            )?;
            let still = p.get_event_loop().map_err(|e| e.to_string())?;
            ensure(
                still == event_loop,
                "new_event_loop changed the current loop",
            )?;
            p.set_event_loop(None).map_err(|e| e.to_string())?;
            other.close().map_err(|e| e.to_string())?;
            event_loop.close().map_err(|e| e.to_string())
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
                    &format!("{outcome:?}"),
                )
            },
        ),
        ("loops_are_per_thread", &["C-1"], |k, p| {
            let mine = p.new_event_loop().map_err(|e| e.to_string())?;
            p.set_event_loop(Some(mine.clone()))
                .map_err(|e| e.to_string())?;
            let policy = p.clone();
            let theirs = in_thread(k, "Worker-Q", move || {
                let theirs = policy.new_event_loop().ok()?;
                policy.set_event_loop(Some(theirs.clone())).ok()?;
                let got = policy.get_event_loop().ok()?;
                policy.set_event_loop(None).ok()?;
                Some((got == theirs, theirs))
            })?
            .ok_or("the worker could not set its loop")?;
            ensure(theirs.0, "the worker did not get its own loop")?;
            ensure(
                p.get_event_loop().ok() == Some(mine.clone()),
                "the main loop changed",
            )?;
            p.set_event_loop(None).map_err(|e| e.to_string())?;
            theirs.1.close().map_err(|e| e.to_string())?;
            mine.close().map_err(|e| e.to_string())
        }),
        (
            "child_watcher_is_one_object",
            &["D-1", "D-3", "D-4"],
            |_, p| {
                let first = p.get_child_watcher().map_err(|e| e.to_string())?;
                let second = p.get_child_watcher().map_err(|e| e.to_string())?;
                ensure(
                    Arc::ptr_eq(&first, &second),
                    "get_child_watcher gave two watchers",
                )?;
                p.set_child_watcher(None).map_err(|e| e.to_string())?;
                let third = p.get_child_watcher().map_err(|e| e.to_string())?;
                ensure(
                    !Arc::ptr_eq(&first, &third),
                    "set_child_watcher(None) kept the watcher",
                )?;
                p.set_child_watcher(None).map_err(|e| e.to_string())
            },
        ),
        (
            "set_event_loop_attaches_the_watcher",
            &["D-2", "D-5"],
            |_, p| {
                let watcher = p.get_child_watcher().map_err(|e| e.to_string())?;
                let event_loop = p.new_event_loop().map_err(|e| e.to_string())?;
                p.set_event_loop(Some(event_loop.clone()))
                    .map_err(|e| e.to_string())?;
                // Only watchers that attach to a loop can show it (Safe, Fast).
                let attached = watcher.attached_loop();
                let shows = attached.is_some();
                if shows {
                    ensure(
                        attached == Some(event_loop.clone()),
                        "attached to another loop",
                    )?;
                }
                p.set_event_loop(None).map_err(|e| e.to_string())?;
                if shows {
                    ensure(
                        watcher.attached_loop().is_none(),
                        "still attached after set_event_loop(None)",
                    )?;
                }
                p.set_child_watcher(None).map_err(|e| e.to_string())?;
                event_loop.close().map_err(|e| e.to_string())
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

fn run_checks<K: Kernel, M: MakePolicy>(
    kernel: &K,
    maker: &M,
) -> Vec<(String, Vec<String>, Result<(), String>)> {
    checks::<K>()
        .into_iter()
        .map(|(name, clauses, check)| {
            // Each check gets a fresh policy.
            let policy = maker.make(kernel);
            let outcome = check(kernel, &policy);
            let _ = policy.set_child_watcher(None);
            (
                name.to_string(),
                clauses.iter().map(|c| c.to_string()).collect(),
                outcome,
            )
        })
        .collect()
}

/// Runs every policy check against `maker`'s policy on the real OS (call it from the
/// process's main thread) and on the simulator (`seeds` seeds).
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
    let mut sim: Vec<(String, Vec<String>, Result<(), String>)> = Vec::new();
    for seed in 0..seeds {
        let maker_copy = maker.clone();
        let (results, report) = loopwatch_sim::Simulation::new(seed)
            .run_returning(move |kernel| run_checks(&kernel, &maker_copy));
        let Some(results) = results else {
            sim = vec![(
                "simulation".into(),
                vec![],
                Err(format!("seed {seed}: {:?}", report.outcome)),
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

/// The default policy's checks on CPython 3.7–3.13 (`cpython/policy_checks.py`, the
/// same checks written in Python), compared with loopwatch's outcomes in `ours` (the
/// real-OS cells of [`check_policy`] for [`DefaultPolicy`]).
pub fn compare_with_cpython(ours: &[Cell]) -> Vec<Cell> {
    let mut cells = Vec::new();
    for minor in crate::matrix::CPYTHON_MINORS {
        let backend = format!("cpython3.{minor}");
        let Some(python) = crate::cpython(minor) else {
            continue;
        };
        let output = std::process::Command::new(&python)
            .arg(crate::crate_dir().join("cpython").join("policy_checks.py"))
            .output();
        let parsed: Result<serde_json::Value, String> = match output {
            Ok(out) if out.status.success() => {
                serde_json::from_slice(&out.stdout).map_err(|e| e.to_string())
            }
            Ok(out) => Err(String::from_utf8_lossy(&out.stderr).into_owned()),
            Err(error) => Err(error.to_string()),
        };
        for cell in ours.iter().filter(|c| c.backend == "os") {
            let check = cell.scenario.trim_start_matches("policy:");
            let theirs = parsed.as_ref().map_err(Clone::clone).and_then(|v| {
                v["checks"][check]
                    .as_str()
                    .map(str::to_string)
                    .ok_or_else(|| format!("no result for {check}"))
            });
            let ours_ok = matches!(cell.status, Status::Match);
            let status = match theirs {
                Err(error) => Status::Failed { error },
                Ok(result) if (result == "ok") == ours_ok => Status::Match,
                Ok(result) => Status::Diverges {
                    expected: vec![if ours_ok {
                        "ok".into()
                    } else {
                        format!("{:?}", cell.status)
                    }],
                    got: vec![result],
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
