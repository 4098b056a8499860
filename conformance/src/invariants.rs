//! The invariant checker: what every simulated run must satisfy, judged without an
//! oracle from the runner's [`Event`]s and the simulator's [`Ledger`].
//!
//! The ledger says what happened to every child (its true returncode, who reaped it,
//! every signal sent to its pid); the events say what the runner asked of the watcher
//! (registrations, removals, closes) and what the watcher reported. The rules below
//! hold for every built-in watcher, with the exceptions each watcher documents (see
//! [`Rules`], and the "What the bug hunt checks" section of each watcher's documentation):
//!
//! | rule | what must hold |
//! |---|---|
//! | `once` | a child is reported at most once per registration, and with a code other than 255 at most once (a registration after the child was reaped, or Threaded's second waiter, gets 255: R-2, T-5) |
//! | `returncode` | a report carries the child's true returncode, or 255 when code other than the watcher reaped it; Fast never reports such a child (F-7) |
//! | `removed` | once every registration of a child was removed (`remove_child_handler` answered `true`), no callback comes (Threaded: `remove` is a no-op, T-6) |
//! | `reported` | a child registered with a watcher that stays open, attached where it must be (Safe, Fast, Waitid), registered in its spawn's fork window where it must be (Fast), and not removed, is reported, unless a later registration of another child that got its pid (it was reaped by other code) replaced it (W-2), or other code reaped it and the watcher is Fast (F-7) or Waitid (I-3) |
//! | `zombie` | such a child is not left a zombie for the teardown to reap |
//! | `steal` | a watcher that does not steal reaps only children it was given (not Fast, F-3); judged on reaps, so a `WNOWAIT` peek at any child (Waitid's, I-2) is allowed |
//! | `signal` | every signal that reaches a child was meant for that child: none reaches a pid reused by another child (except, without a pidfd, one meant for a child that other code reaped: no fence covers it) |
//! | `latency` | an exit the watcher reaps reaches the loop within [`LATENCY`] of virtual time, when nothing blocks the loop (not for `subprocess` children, whose exit goes to `process.wait()`) |
//! | `leak` | once the run is over: no fd, thread or child left |
//! | `progress` | the run completes: no panic, deadlock or step limit |
//! | `kernel.*` | the simulator's own checks (its model, and writes into stale fds) |
//!
//! A watcher that knows children by pid alone (all but Pidfd) cannot tell two
//! children that held one pid apart once other code reaped the first, or once it was
//! given the pid again after reaping it: it may wait on the newcomer and report its
//! status (bpo-42110, T-8), or remove the other's handler. `once`, `returncode`,
//! `removed`, `latency` and `steal` are not judged for such a pid
//! ([`Rules::keyed_by_pid`]), nor is `reported` (the report may wait for the
//! newcomer's end); `signal` and `zombie` still are. Pidfd, which holds a pidfd for
//! each child it is given, is judged for such a pid too, but not where its pidfd was
//! opened from a pid that may have been stale already: a child given to it again, or
//! given by pid (not through its subprocess) and reaped by other code, while another
//! child held the pid in the run (`pidfd_open` then names whoever holds the pid).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::Duration;

use loopwatch_sim::{Ledger, Outcome, Reaper, Report};
use serde::{Deserialize, Serialize};

use crate::runner::{Event, Spawner};
use crate::scenario::{Scenario, Step, WatcherName};

/// The longest virtual time an exit the watcher reaps may take to reach the loop.
/// Generous: the lag fault delays each wake-up by up to 100 ms, and a report may take
/// a few hops (a waiter thread, `call_soon_threadsafe`, the loop).
pub const LATENCY: Duration = Duration::from_millis(1500);

/// One broken invariant.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Breach {
    /// The rule (`once`, `returncode` … `kernel.stale-wakeup-write`).
    pub rule: String,
    /// The child it is about, if one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub child: Option<String>,
    /// What happened.
    pub detail: String,
}

impl fmt::Display for Breach {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.child {
            Some(child) => write!(f, "{} ({child}): {}", self.rule, self.detail),
            None => write!(f, "{}: {}", self.rule, self.detail),
        }
    }
}

/// What a watcher promises, beyond the rules every watcher keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rules {
    /// It reaps every child, given or not (Fast, F-3): `steal` does not apply, and a
    /// child reaped by other code is never reported (F-7).
    pub steals: bool,
    /// It reports only while attached to a loop (Safe, Fast): a child whose watcher
    /// ends the run detached need not be reported.
    pub needs_attach: bool,
    /// It reports only children registered in the fork window they were spawned in
    /// (Fast: an exit before the registration is taken for a stranger's, F-5).
    pub needs_fork_window: bool,
    /// `remove_child_handler` removes nothing (Threaded, T-6).
    pub remove_is_noop: bool,
    /// It knows children by pid alone (all but Pidfd): when other code reaped a
    /// child it was given, or it was given a pid again after reaping it, and the pid
    /// went to a new child, it may wait on and reap the newcomer and report its status
    /// (bpo-42110, T-8; S-/M- likewise). Reports for such a pid, and the newcomer's
    /// reaping, are not judged: only a pidfd tells the two children apart.
    pub keyed_by_pid: bool,
    /// Its callbacks go to the loop running where the child was registered (MultiLoop,
    /// Threaded, Pidfd): a child registered from a thread whose loop closes first need
    /// not be reported.
    pub reports_to_registering_loop: bool,
    /// A child that code other than the watcher reaped is not owed a report, though a
    /// report it gets must carry 255 (R-2) (Waitid, I-3: it learns of such a child
    /// only from a SIGCHLD whose pass finds no exit, and that SIGCHLD may have merged
    /// with one of its own children's).
    pub reaped_elsewhere_unowed: bool,
    /// A child whose registration was removed may still be reaped, unreported (Auto on
    /// its waiter rung, X-1): a later registration of it reports 255, however
    /// long after the reap.
    pub reaps_removed: bool,
}

impl Rules {
    /// The rules of a built-in watcher.
    pub fn of(watcher: WatcherName) -> Rules {
        let none = Rules {
            steals: false,
            needs_attach: false,
            needs_fork_window: false,
            remove_is_noop: false,
            keyed_by_pid: true,
            reports_to_registering_loop: false,
            reaped_elsewhere_unowed: false,
            reaps_removed: false,
        };
        match watcher {
            WatcherName::Safe => Rules {
                needs_attach: true,
                ..none
            },
            WatcherName::Fast => Rules {
                steals: true,
                needs_attach: true,
                needs_fork_window: true,
                ..none
            },
            WatcherName::MultiLoop => Rules {
                reports_to_registering_loop: true,
                ..none
            },
            WatcherName::Threaded => Rules {
                remove_is_noop: true,
                reports_to_registering_loop: true,
                ..none
            },
            WatcherName::Pidfd => Rules {
                reports_to_registering_loop: true,
                keyed_by_pid: false,
                ..none
            },
            // Safe's, but for a child other code reaped (I-3). Its peek reads any
            // child without reaping it: `steal` judges reaps (the ledger's
            // `reaped_by`), not waits, so a `WNOWAIT` peek at a child it was not given
            // is no breach, and a reaping wait of one is.
            // Pidfd's, but known by pid: where pidfds are refused (the pidfd faults)
            // its children go to waiter threads, which cannot tell a reused pid's
            // newcomer from the child (X-1, as Threaded, T-8).
            WatcherName::Auto => Rules {
                reports_to_registering_loop: true,
                reaps_removed: true,
                ..none
            },
            WatcherName::Waitid => Rules {
                needs_attach: true,
                reaped_elsewhere_unowed: true,
                ..none
            },
        }
    }
}

/// A child as the runner knew it, with what happened to it.
#[derive(Debug, Default)]
struct Child {
    serial: Option<u64>,
    by: Option<Spawner>,
    /// Watcher numbers it was registered with, in order (failed registrations left
    /// out).
    registrations: Vec<u32>,
    /// Whether its handler was removed after its last registration.
    removed_after_registration: bool,
    /// Whether a registration of it was ever removed.
    ever_removed: bool,
    /// Index of the last registration.
    registered_at: Option<usize>,
    /// Index of the last registration or removal that took effect.
    touched_at: Option<usize>,
    /// Per watcher number: whether its registration of the child stands (registered
    /// and not removed).
    live: BTreeMap<u32, bool>,
    /// What the last registration changed, for a [`Event::RegisterFailed`] to undo:
    /// the watcher, its `live` entry and the removal flag before it.
    undo: Option<(u32, Option<bool>, bool, Option<usize>)>,
    /// Codes of the reports that came when no registration stood (every one
    /// removed).
    after_removal: Vec<i32>,
    /// Whether its last registration was in its spawn's fork window.
    with_spawn: bool,
    /// Reports, in order.
    reports: Vec<Reported>,
    thread_loop_closed: bool,
    /// Left a zombie at the teardown.
    zombie: bool,
}

/// One report of a child.
#[derive(Debug)]
struct Reported {
    code: i32,
    at: Duration,
}

/// Checks one run of `scenario` with a watcher following `rules`: the runner's
/// `events` (`None` when the run did not complete) against the simulator's `report`.
/// Returns every breach, in a stable order.
pub fn check(
    scenario: &Scenario,
    rules: Rules,
    events: Option<&[Event]>,
    report: &Report,
) -> Vec<Breach> {
    let mut breaches = Vec::new();
    let mut breach = |rule: &str, child: Option<&str>, detail: String| {
        breaches.push(Breach {
            rule: rule.to_string(),
            child: child.map(str::to_string),
            detail,
        });
    };
    for violation in &report.ledger.violations {
        breach(
            violation.rule,
            None,
            format!("step {}: {}", violation.step, violation.detail),
        );
    }
    if report.outcome != Outcome::Completed {
        breach("progress", None, format!("{:?}", report.outcome));
    }
    let Some(events) = events else {
        breaches.sort();
        return breaches;
    };
    let ledger = &report.ledger;
    let (children, watcher_state) = replay(events, ledger);
    let blocks_loop = scenario
        .steps
        .iter()
        .any(|s| matches!(s, Step::ForeignWait { .. }));
    let reattached = events.iter().any(|e| {
        matches!(
            e,
            Event::Detached | Event::WatcherClosed { .. } | Event::ThreadLoopClosed { .. }
        )
    }) || scenario
        .steps
        .iter()
        .any(|s| matches!(s, Step::LoopCycle | Step::ReplaceWatcher));
    // By pid: a runner's `waitpid(pid)` may reap whoever holds the pid by then.
    let runner_reaped_pids: BTreeSet<loopwatch::kernel::Pid> = events
        .iter()
        .filter_map(|e| match e {
            Event::ReapedByRunner { pid, .. } => Some(*pid),
            _ => None,
        })
        .collect();
    let runner_reaped: BTreeSet<u64> = events
        .iter()
        .filter_map(|e| match e {
            Event::ReapedByRunner { serial, .. } => *serial,
            _ => None,
        })
        .collect();
    let teardown_reaped: BTreeSet<u64> = events
        .iter()
        .filter_map(|e| match e {
            Event::Zombie { serial, .. } => *serial,
            _ => None,
        })
        .collect();
    let given: BTreeSet<u64> = children
        .values()
        .filter(|c| !c.registrations.is_empty())
        .filter_map(|c| c.serial)
        .collect();
    // A child the runner never heard of, spawned by a thread of the runner's side: one
    // that `subprocess_exec` started and, when registering it failed, killed and
    // reaped itself before returning the error.
    let known: BTreeSet<u64> = children.values().filter_map(|c| c.serial).collect();
    let loopwatch_own = |life: &loopwatch_sim::ChildLife| {
        !known.contains(&life.serial) && !life.spawned_by.starts_with("foreign")
    };
    let names: BTreeMap<u64, &str> = children
        .iter()
        .filter_map(|(name, c)| c.serial.map(|s| (s, name.as_str())))
        .collect();
    // Reaped by code other than the watcher: foreign threads, the runner, the kernel.
    let reaped_elsewhere = |serial: u64| -> bool {
        if runner_reaped.contains(&serial) {
            return true;
        }
        match ledger
            .child(serial)
            .and_then(|life| life.reaped_by.as_ref())
        {
            Some(Reaper::Thread(name)) => name.starts_with("foreign"),
            Some(_) => true,
            None => false,
        }
    };

    // Pids whose children the watcher cannot tell apart: held by two children or more
    // in the run, one of which was reaped by other code or registered twice (a watcher
    // keyed by pid, see `Rules::keyed_by_pid`); for one that holds pidfds, one whose
    // pidfd may have been opened from a stale pid: registered twice, or given by pid
    // and reaped by other code.
    let blurred: BTreeSet<loopwatch::kernel::Pid> = {
        let mut lives: BTreeMap<loopwatch::kernel::Pid, Vec<u64>> = BTreeMap::new();
        for life in &ledger.children {
            lives.entry(life.pid).or_default().push(life.serial);
        }
        let twice: BTreeSet<u64> = children
            .values()
            .filter(|c| c.registrations.len() > 1)
            .filter_map(|c| c.serial)
            .collect();
        let by_pid: BTreeSet<u64> = children
            .values()
            .filter(|c| !c.registrations.is_empty() && c.by != Some(Spawner::Subprocess))
            .filter_map(|c| c.serial)
            .collect();
        let stale = |s: u64| {
            if rules.keyed_by_pid {
                rules.steals || reaped_elsewhere(s) || twice.contains(&s)
            } else {
                twice.contains(&s) || (reaped_elsewhere(s) && by_pid.contains(&s))
            }
        };
        lives
            .into_iter()
            .filter(|(_, serials)| serials.len() > 1 && serials.iter().any(|s| stale(*s)))
            .map(|(pid, _)| pid)
            .collect()
    };
    for (name, child) in &children {
        let Some(serial) = child.serial else {
            continue;
        };
        let Some(life) = ledger.child(serial) else {
            breach(
                "kernel.ledger",
                Some(name),
                format!("serial {serial} is not in the ledger"),
            );
            continue;
        };
        let elsewhere = reaped_elsewhere(serial);
        let registrations = child.registrations.len();
        // once: at most one report per registration, at most one of them with a code
        // other than 255 (a registration after the child was reaped, or after the
        // watcher's own registration was answered, gets 255: R-2, T-5).
        let judged = !blurred.contains(&life.pid);
        let real = child.reports.iter().filter(|r| r.code != 255).count();
        if judged && (child.reports.len() > registrations.max(1) || real > 1) {
            let codes: Vec<i32> = child.reports.iter().map(|r| r.code).collect();
            breach(
                "once",
                Some(name),
                format!(
                    "reported {} times {codes:?} for {registrations} registrations",
                    child.reports.len()
                ),
            );
        }
        // returncode
        for report in child.reports.iter().filter(|_| judged) {
            let (code, truth) = (report.code, life.returncode);
            let ok = Some(code) == truth
                || (code == 255 && elsewhere && !rules.steals)
                || (code == 255 && registrations > 1);
            if !ok {
                let how = match &life.reaped_by {
                    Some(Reaper::Thread(thread)) => format!("reaped by thread {thread}"),
                    Some(other) => format!("reaped by {other:?}"),
                    None => "never reaped".to_string(),
                };
                breach(
                    "returncode",
                    Some(name),
                    format!("reported {code}; the child's returncode is {truth:?}, {how}"),
                );
            }
        }
        // removed
        // A `thread_start` child's registration, made on its own thread, races the
        // runner's steps: a removal recorded after it may have taken effect before.
        let races = child.by == Some(Spawner::Thread);
        if judged && !races && !rules.remove_is_noop && child.by != Some(Spawner::Subprocess) {
            if let Some(&code) = child.after_removal.first() {
                breach(
                    "removed",
                    Some(name),
                    format!("callback called with {code} after its handler was removed"),
                );
            }
        }
        // reported
        // Registered (or removed) later for another child that got the same pid (this
        // one was reaped by other code, its pid reused): that call replaced (or
        // removed) this registration in a table keyed by pid (W-2), and the watcher
        // cannot tell the two apart.
        let replaced = children.iter().any(|(other, o)| {
            other != name
                && o.touched_at > child.registered_at
                && o.serial
                    .and_then(|s| ledger.child(s))
                    .is_some_and(|l| l.pid == life.pid)
        });
        let owed = child.owed(rules, &watcher_state, elsewhere)
            && !replaced
            && !child.reaped_by_runner_before_registration(events, name);
        if owed && child.zombie {
            breach(
                "zombie",
                Some(name),
                "registered, and left a zombie once the run was over".to_string(),
            );
        }
        if owed && judged && child.reports.is_empty() {
            breach(
                "reported",
                Some(name),
                format!(
                    "registered and never reported (returncode {:?}, reaped by {:?})",
                    life.returncode, life.reaped_by
                ),
            );
        }
        // latency
        // A `subprocess` child's exit goes to `process.wait()`, which the runner sees
        // only when it awaits it: no time to judge.
        // A watcher that reaps a removed child without reporting it (Auto's waiter
        // rung, X-1) may reap it long before a later registration reports it.
        let reaped_unreported = rules.reaps_removed && child.ever_removed;
        if judged
            && !blocks_loop
            && !reattached
            && !elsewhere
            && !reaped_unreported
            && child.by != Some(Spawner::Subprocess)
        {
            if let (Some(&Reported { at, .. }), Some(reaped)) =
                (child.reports.first(), life.reaped_at)
            {
                if at > reaped + LATENCY {
                    breach(
                        "latency",
                        Some(name),
                        format!(
                            "reaped at {} ms, reported at {} ms",
                            reaped.as_millis(),
                            at.as_millis()
                        ),
                    );
                }
            }
        }
    }

    // steal
    if !rules.steals {
        for life in &ledger.children {
            let Some(Reaper::Thread(thread)) = &life.reaped_by else {
                continue;
            };
            if thread.starts_with("foreign")
                || runner_reaped.contains(&life.serial)
                || (thread == "MainThread" && runner_reaped_pids.contains(&life.pid))
                || teardown_reaped.contains(&life.serial)
                || given.contains(&life.serial)
                || loopwatch_own(life)
            {
                continue;
            }
            if blurred.contains(&life.pid) {
                continue;
            }
            let name = names.get(&life.serial).copied();
            breach(
                "steal",
                name,
                format!(
                    "thread {thread} reaped child #{} (pid {}, {}), which the watcher was not given",
                    life.serial, life.pid, life.program
                ),
            );
        }
    }

    // A child whose registration's watcher was closed (replaced) before the exit:
    // whoever reaped it then did not hold its reap fence.
    let fence_lost = |name: &str| {
        children.get(name).is_some_and(|c| {
            c.registrations
                .last()
                .is_some_and(|w| watcher_state.closed.contains(w))
        })
    };
    // signal
    let mut meant: BTreeMap<(String, i32), usize> = BTreeMap::new();
    for e in events {
        if let Event::Signalled { child, signal } = e {
            *meant.entry((child.clone(), *signal)).or_default() += 1;
        }
    }
    for sent in &ledger.signals {
        let Some(landed) = sent.landed_on else {
            continue;
        };
        if ledger
            .child(landed)
            .is_some_and(|life| loopwatch_own(life) && life.spawned_by == sent.by)
        {
            continue;
        }
        let target = names.get(&landed).copied();
        let key = target.map(|t| (t.to_string(), sent.signal));
        match key.as_ref().and_then(|k| meant.get_mut(k)) {
            Some(count) if *count > 0 => *count -= 1,
            _ => {
                let intended: Vec<&str> = names
                    .iter()
                    .filter(|(s, _)| ledger.child(**s).is_some_and(|l| l.pid == sent.pid))
                    .map(|(_, n)| *n)
                    .collect();
                // Meant, by pid, for a child that other code reaped: outside any reap
                // fence, only a pidfd could have told (see "Signalling a child by
                // pid" in loopwatch's watcher docs). Not judged.
                let unfenced = (sent.via == loopwatch_sim::SignalVia::Kill).then(|| {
                    names.iter().find(|(s, n)| {
                        ledger.child(**s).is_some_and(|l| l.pid == sent.pid)
                            && (reaped_elsewhere(**s) || fence_lost(n))
                            && meant
                                .get(&(n.to_string(), sent.signal))
                                .is_some_and(|c| *c > 0)
                    })
                });
                if let Some(Some((_, n))) = unfenced {
                    if let Some(count) = meant.get_mut(&(n.to_string(), sent.signal)) {
                        *count -= 1;
                    }
                    continue;
                }
                breach(
                    "signal",
                    target,
                    format!(
                        "signal {} from thread {} reached child #{landed} (pid {}), which nobody meant to signal; the pid's children: {intended:?}",
                        sent.signal, sent.by, sent.pid
                    ),
                );
            }
        }
    }

    // leak
    if report.outcome == Outcome::Completed {
        if report.fds_left > 0 {
            breach("leak", None, format!("{} fds left open", report.fds_left));
        }
        if report.threads_abandoned > 0 {
            breach(
                "leak",
                None,
                format!("{} threads still running", report.threads_abandoned),
            );
        }
        let (running, zombies) = report.children_left;
        if running + zombies > 0 {
            breach(
                "leak",
                None,
                format!("{running} children running and {zombies} zombies left"),
            );
        }
    }
    breaches.sort();
    breaches.dedup();
    breaches
}

/// The watcher's state at the end of the run.
#[derive(Debug, Default)]
struct WatcherState {
    closed: BTreeSet<u32>,
    attached_at_end: bool,
}

/// Folds the events into what the checker needs per child. A child whose serial the
/// runner could not learn (a `subprocess` child reaped before `subprocess_exec`
/// returned) is matched with the ledger by pid: the first life of that pid after
/// those already matched.
fn replay(events: &[Event], ledger: &Ledger) -> (BTreeMap<String, Child>, WatcherState) {
    let mut children: BTreeMap<String, Child> = BTreeMap::new();
    let mut state = WatcherState::default();
    let mut claimed: BTreeSet<u64> = BTreeSet::new();
    for e in events {
        if let Event::Spawned {
            serial: Some(serial),
            ..
        } = e
        {
            claimed.insert(*serial);
        }
    }
    let mut last_of_pid: BTreeMap<loopwatch::kernel::Pid, u64> = BTreeMap::new();
    for (index, e) in events.iter().enumerate() {
        match e {
            Event::Spawned {
                child,
                pid,
                serial,
                by,
            } => {
                // The thread that spawned it, by the ledger's names.
                let thread = match by {
                    Spawner::Foreign => Some("foreign-spawner"),
                    Spawner::Thread => Some("loop-thread"),
                    Spawner::Runner | Spawner::Subprocess => None,
                };
                let serial = serial.or_else(|| {
                    let after = last_of_pid.get(pid).copied();
                    let found = ledger
                        .by_pid(*pid)
                        .filter(|life| thread.is_none_or(|t| life.spawned_by == t))
                        .map(|life| life.serial)
                        .filter(|s| {
                            !claimed.contains(s)
                                && (thread.is_some() || after.is_none_or(|a| *s > a))
                        })
                        .min();
                    if let Some(found) = found {
                        claimed.insert(found);
                    }
                    found
                });
                if let Some(serial) = serial {
                    last_of_pid.insert(*pid, serial);
                }
                let c = children.entry(child.clone()).or_default();
                c.serial = serial;
                c.by = Some(*by);
            }
            Event::Registered {
                child,
                watcher,
                with_spawn,
            } => {
                let c = children.entry(child.clone()).or_default();
                c.undo = Some((
                    *watcher,
                    c.live.get(watcher).copied(),
                    c.removed_after_registration,
                    c.registered_at,
                ));
                c.with_spawn = *with_spawn;
                c.registrations.push(*watcher);
                c.registered_at = Some(index);
                c.touched_at = Some(index);
                c.removed_after_registration = false;
                c.live.insert(*watcher, true);
            }
            Event::RegisterFailed { child } => {
                let c = children.entry(child.clone()).or_default();
                c.registrations.pop();
                if let Some((watcher, live, removed, registered_at)) = c.undo.take() {
                    match live {
                        Some(live) => c.live.insert(watcher, live),
                        None => c.live.remove(&watcher),
                    };
                    c.removed_after_registration = removed;
                    c.registered_at = registered_at;
                }
            }
            Event::Removed {
                child,
                removed,
                watcher,
            } => {
                let c = children.entry(child.clone()).or_default();
                // A handler already taken (its exit on the way to the loop) was not
                // removed: `remove_child_handler` says so, and its callback runs.
                if *removed {
                    c.touched_at = Some(index);
                    c.removed_after_registration = c.registered_at.is_some();
                    c.live.insert(*watcher, false);
                    c.ever_removed = true;
                }
            }
            Event::Reported { child, code, at } => {
                let c = children.entry(child.clone()).or_default();
                if !c.live.is_empty() && !c.live.values().any(|live| *live) {
                    c.after_removal.push(*code);
                }
                c.reports.push(Reported {
                    code: *code,
                    at: *at,
                });
            }
            Event::Attached => state.attached_at_end = true,
            Event::Detached => state.attached_at_end = false,
            Event::WatcherClosed { watcher } => {
                state.closed.insert(*watcher);
            }
            Event::ThreadLoopClosed { child } => {
                children
                    .entry(child.clone())
                    .or_default()
                    .thread_loop_closed = true;
            }
            // Read where they matter: by serial and pid in `check`.
            Event::Signalled { .. } | Event::ReapedByRunner { .. } => {}
            Event::Zombie { child, .. } => children.entry(child.clone()).or_default().zombie = true,
        }
    }
    (children, state)
}

impl Child {
    /// Whether the watcher owes the child a report: it was registered, its last
    /// registration stands (not removed, its watcher not closed), and none of the
    /// watcher's documented exceptions applies.
    fn owed(&self, rules: Rules, watcher: &WatcherState, elsewhere: bool) -> bool {
        let Some(last) = self.registrations.last() else {
            return false;
        };
        if self.removed_after_registration || watcher.closed.contains(last) {
            return false;
        }
        let detached = rules.needs_attach && !watcher.attached_at_end;
        let stolen = (rules.steals || rules.reaped_elsewhere_unowed) && elsewhere;
        let outside_window = rules.needs_fork_window && !self.with_spawn;
        let loop_gone = rules.reports_to_registering_loop && self.thread_loop_closed;
        !(detached || stolen || outside_window || loop_gone)
    }

    /// Whether the runner reaped the child before it was registered (a `foreign_wait`
    /// or `foreign_reap_any` first): then nothing is owed.
    fn reaped_by_runner_before_registration(&self, events: &[Event], name: &str) -> bool {
        let Some(registered) = self.registered_at else {
            return false;
        };
        events[..registered]
            .iter()
            .any(|e| matches!(e, Event::ReapedByRunner { child: Some(c), .. } if c == name))
    }
}

/// The ledger's children, for a report: `#serial pid program: returncode, reaper`.
pub fn describe(ledger: &Ledger) -> Vec<String> {
    ledger
        .children
        .iter()
        .map(|life| {
            format!(
                "#{} pid {} {} by {}: returncode {:?}, reaped by {:?}",
                life.serial,
                life.pid,
                life.program,
                life.spawned_by,
                life.returncode,
                life.reaped_by
            )
        })
        .collect()
}
