//! One leak account for both kernels: children, fds and threads.

use std::fmt;
use std::time::Duration;

use loopwatch::OsKernel;
use loopwatch::kernel::Processes as _;

use crate::Report;

/// What a process holds that a test must give back: children (running or zombie),
/// open fds and threads.
///
/// On the real OS it is read from `/proc` ([`Resources::of_this_process`]); on the
/// simulator from a run's [`Report`] ([`Resources::left_in`]), where a process starts
/// with none of them (stdio and the main thread are not counted).
///
/// ```
/// use loopwatch_sim::Simulation;
/// use loopwatch_sim::testing::Resources;
///
/// let report = Simulation::new(3).run(|_| {});
/// assert_eq!(Resources::left_in(&report), Resources::default());
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Resources {
    /// Children of the process, running or zombie.
    pub children: usize,
    /// Open fds (on the simulator: other than 0, 1 and 2).
    pub fds: usize,
    /// Threads (on the simulator: threads other than the main thread still blocked
    /// when it returned).
    pub threads: usize,
}

impl Resources {
    /// This process's children, fds and threads, from `/proc/self/fd`,
    /// `/proc/self/task` and the parent field of each `/proc/<pid>/stat`.
    ///
    /// ```
    /// use loopwatch_sim::testing::Resources;
    ///
    /// let now = Resources::of_this_process().unwrap();
    /// assert!(now.threads >= 1 && now.fds >= 3);
    /// ```
    pub fn of_this_process() -> std::io::Result<Resources> {
        Ok(Resources {
            children: children_of(OsKernel.getpid().0)?,
            fds: std::fs::read_dir("/proc/self/fd")?.count(),
            threads: std::fs::read_dir("/proc/self/task")?.count(),
        })
    }

    /// What a simulated process still held when its run ended.
    pub fn left_in(report: &Report) -> Resources {
        let (running, zombies) = report.children_left;
        Resources {
            children: running + zombies,
            fds: report.fds_left,
            threads: report.threads_abandoned,
        }
    }

    /// `None` when nothing grew since `before`; else what grew, e.g.
    /// `"leaked: 2 fds (3 → 5)"`.
    ///
    /// ```
    /// use loopwatch_sim::testing::Resources;
    ///
    /// let before = Resources { children: 0, fds: 3, threads: 1 };
    /// let after = Resources { fds: 5, ..before };
    /// assert_eq!(after.leaked_since(&before).unwrap(), "leaked: 2 fds (3 → 5)");
    /// assert_eq!(before.leaked_since(&after), None);
    /// ```
    pub fn leaked_since(&self, before: &Resources) -> Option<String> {
        let grew: Vec<String> = [
            ("children", before.children, self.children),
            ("fds", before.fds, self.fds),
            ("threads", before.threads, self.threads),
        ]
        .into_iter()
        .filter(|(_, was, now)| now > was)
        .map(|(what, was, now)| format!("{} {what} ({was} → {now})", now - was))
        .collect();
        (!grew.is_empty()).then(|| format!("leaked: {}", grew.join(", ")))
    }
}

impl fmt::Display for Resources {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} children, {} fds, {} threads",
            self.children, self.fds, self.threads
        )
    }
}

/// Children of `pid`: every `/proc/<n>/stat` whose parent field is `pid` (zombies
/// included, as they stay there until reaped).
fn children_of(pid: i32) -> std::io::Result<usize> {
    let mut count = 0;
    for entry in std::fs::read_dir("/proc")?.flatten() {
        let name = entry.file_name();
        let Some(name) = name
            .to_str()
            .filter(|n| n.bytes().all(|b| b.is_ascii_digit()))
        else {
            continue;
        };
        // A process may end between the listing and the read.
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{name}/stat")) else {
            continue;
        };
        // The command name before the fields may hold spaces and parentheses: the
        // state and the parent follow the last ')'.
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        if rest.split_whitespace().nth(1).and_then(|p| p.parse().ok()) == Some(pid) {
            count += 1;
        }
    }
    Ok(count)
}

/// The real OS's account around a body: [`LeakAccount::start`] before it,
/// [`LeakAccount::finish`] after.
///
/// ```standalone_crate
/// use loopwatch::kernel::Fds;
/// use loopwatch::OsKernel;
/// use loopwatch_sim::testing::LeakAccount;
///
/// let account = LeakAccount::start().unwrap();
/// let (read, write) = OsKernel.pipe().unwrap();
/// OsKernel.close(read).unwrap();
/// OsKernel.close(write).unwrap();
/// account.finish().unwrap();
/// ```
#[derive(Clone, Copy, Debug)]
pub struct LeakAccount {
    before: Resources,
}

impl LeakAccount {
    /// Takes the "before" snapshot.
    pub fn start() -> std::io::Result<LeakAccount> {
        Ok(LeakAccount {
            before: Resources::of_this_process()?,
        })
    }

    /// What was there at the start.
    pub fn before(&self) -> Resources {
        self.before
    }

    /// `Ok` when the process holds no more than at the start; else what it leaked.
    ///
    /// A joined thread leaves `/proc/self/task` a moment after its join returns, and
    /// a child reaped by another thread is gone only when that thread gets to it: so
    /// an account that shows more is read again for up to five seconds before it is
    /// called a leak. A clean account returns at once.
    pub fn finish(self) -> Result<(), String> {
        let mut pause = Duration::from_millis(1);
        let mut waited = Duration::ZERO;
        loop {
            let now = Resources::of_this_process().map_err(|e| format!("reading /proc: {e}"))?;
            match now.leaked_since(&self.before) {
                None => return Ok(()),
                Some(leak) if waited >= Duration::from_secs(5) => return Err(leak),
                Some(_) => {
                    #[allow(
                        clippy::disallowed_methods,
                        reason = "waits for the real kernel to finish tearing down, outside any simulation"
                    )]
                    std::thread::sleep(pause);
                    waited += pause;
                    pause = (pause * 2).min(Duration::from_millis(100));
                }
            }
        }
    }
}
