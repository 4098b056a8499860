//! Whether this machine lets the benchmarks keep K idle children registered.
//!
//! K idle children cost K processes, and with Threaded K waiter threads too (each a
//! task that counts toward `ulimit -u` and takes a pid); with Pidfd one pidfd each
//! (the process's, which the watcher shares; a pid registered by hand gets one of the
//! watcher's own). `2K` plus a margin of
//! [`MARGIN`] under the soft limits of processes (`ulimit -u`) and open files
//! (`ulimit -n`) and under the kernel's `pid_max`. The limits are read from
//! `/proc/self/limits` and `/proc/sys/kernel/pid_max`.

use crate::Error;

/// Processes, fds and pids left for everything else: the benchmark's own threads and
/// fds, and the rest of the machine's processes.
pub const MARGIN: u64 = 1024;

/// The limits that bound K; `None` is unlimited (or not known).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// The soft limit of processes (`ulimit -u`).
    pub processes: Option<u64>,
    /// The soft limit of open files (`ulimit -n`).
    pub open_files: Option<u64>,
    /// The kernel's highest pid plus one (`/proc/sys/kernel/pid_max`).
    pub pid_max: Option<u64>,
}

impl Limits {
    /// This process's limits.
    ///
    /// # Errors
    ///
    /// `/proc/self/limits` cannot be read or parsed.
    pub fn current() -> Result<Limits, Error> {
        let text = std::fs::read_to_string("/proc/self/limits")
            .map_err(|e| Error::BadInput(format!("reading /proc/self/limits: {e}")))?;
        let pid_max = std::fs::read_to_string("/proc/sys/kernel/pid_max")
            .ok()
            .and_then(|text| text.trim().parse().ok());
        Limits::parse(&text, pid_max)
    }

    /// The limits in the text of a `/proc/<pid>/limits` file, with `pid_max`.
    ///
    /// # Errors
    ///
    /// A line for processes or open files is missing or its soft limit is neither a
    /// number nor `unlimited`.
    pub fn parse(text: &str, pid_max: Option<u64>) -> Result<Limits, Error> {
        let soft = |name: &str| -> Result<Option<u64>, Error> {
            let line = text
                .lines()
                .find(|line| line.starts_with(name))
                .ok_or_else(|| Error::BadInput(format!("no {name:?} line in the limits")))?;
            let value = line[name.len()..].split_whitespace().next().unwrap_or("");
            match value {
                "unlimited" => Ok(None),
                number => number.parse().map(Some).map_err(|_| {
                    Error::BadInput(format!("{name:?}: soft limit {number:?} is not a number"))
                }),
            }
        };
        Ok(Limits {
            processes: soft("Max processes")?,
            open_files: soft("Max open files")?,
            pid_max,
        })
    }

    /// Whether K idle children fit, or which limit they would exceed.
    ///
    /// # Errors
    ///
    /// [`Error::BadInput`], naming the limit and what K needs.
    pub fn check(&self, k: u64) -> Result<(), Error> {
        let need = 2 * k + MARGIN;
        for (limit, name) in [
            (self.processes, "processes (ulimit -u)"),
            (self.open_files, "open files (ulimit -n)"),
            (self.pid_max, "pid_max"),
        ] {
            if let Some(limit) = limit {
                if limit < need {
                    return Err(Error::BadInput(format!(
                        "K = {k} needs {need} {name}, the limit is {limit}"
                    )));
                }
            }
        }
        Ok(())
    }
}

/// The values of K to run: those of `LOOPWATCH_BENCH_K` (comma-separated) if it is
/// set, else `defaults`, less those `limits` do not allow, which are named on stderr.
///
/// # Errors
///
/// `LOOPWATCH_BENCH_K` is not a list of numbers, or names a K the limits do not allow.
pub fn ks(defaults: &[u64], limits: &Limits) -> Result<Vec<u64>, Error> {
    match std::env::var("LOOPWATCH_BENCH_K") {
        Ok(text) => {
            let ks = parse_ks(&text)?;
            for &k in &ks {
                limits.check(k)?;
            }
            Ok(ks)
        }
        Err(std::env::VarError::NotPresent) => Ok(defaults
            .iter()
            .copied()
            .filter(|&k| match limits.check(k) {
                Ok(()) => true,
                Err(reason) => {
                    eprintln!("skipping K = {k}: {reason}");
                    false
                }
            })
            .collect()),
        Err(std::env::VarError::NotUnicode(_)) => Err(Error::BadInput(
            "LOOPWATCH_BENCH_K is not UTF-8".to_string(),
        )),
    }
}

/// A comma-separated list of K values.
///
/// # Errors
///
/// An item is not a number, or the list is empty.
pub fn parse_ks(text: &str) -> Result<Vec<u64>, Error> {
    let ks = text
        .split(',')
        .map(|item| {
            item.trim().parse::<u64>().map_err(|_| {
                Error::BadInput(format!(
                    "LOOPWATCH_BENCH_K: {item:?} is not a number (expected e.g. 0,100,1000)"
                ))
            })
        })
        .collect::<Result<Vec<u64>, Error>>()?;
    Ok(ks)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: &str = "\
Limit                     Soft Limit           Hard Limit           Units
Max processes             96363                96363                processes
Max open files            20000                20000                files
";

    #[test]
    fn parses_the_soft_limits() {
        let limits = Limits::parse(LIMITS, Some(32768)).unwrap();
        assert_eq!(limits.processes, Some(96363));
        assert_eq!(limits.open_files, Some(20000));
        let unlimited = LIMITS.replace("96363                96363", "unlimited unlimited");
        assert_eq!(Limits::parse(&unlimited, None).unwrap().processes, None);
    }

    #[test]
    fn bad_limits_are_errors() {
        assert!(Limits::parse("Max processes 10\n", None).is_err());
        assert!(Limits::parse(&LIMITS.replace("20000 ", "lots "), None).is_err());
    }

    #[test]
    fn k_needs_twice_its_size_and_the_margin() {
        let limits = Limits::parse(LIMITS, Some(32768)).unwrap();
        assert!(limits.check(5000).is_ok());
        // 2 × 9,500 + 1,024 open files > 20,000.
        let error = limits.check(9500).unwrap_err().to_string();
        assert!(error.contains("open files"), "{error}");
        let small = Limits {
            pid_max: Some(4096),
            ..limits
        };
        assert!(small.check(1000).is_ok());
        assert!(
            small
                .check(1600)
                .unwrap_err()
                .to_string()
                .contains("pid_max")
        );
    }

    #[test]
    fn k_lists() {
        assert_eq!(parse_ks("0, 100,1000").unwrap(), [0, 100, 1000]);
        assert!(parse_ks("0,lots").is_err());
        assert!(parse_ks("").is_err());
    }
}
