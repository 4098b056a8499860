//! One run that compares spawn+reap of `/bin/true`, alone and with K idle registered
//! children, across raw `std::process::Command`, `tokio::process`, loopwatch with each
//! watcher, and CPython's asyncio with each watcher in every CPython that pyenv has
//! (3.7 to 3.13, through `benches/cpython/harness.py`).
//!
//! ```text
//! cargo run --release -p loopwatch-benches --example compare
//! cargo run --release -p loopwatch-benches --example compare -- --quick
//! LOOPWATCH_BENCH_K=0,100,1000,5000 cargo run --release -p loopwatch-benches --example compare
//! ```
//!
//! The rows are measured round by round, every row once per round and K in an order
//! that turns each round, so that the machine's load falls on all of them alike; each ratio divides a row's median
//! per-reap time by std's in the same round and at the same K, and the table shows the
//! median of those ratios over the rounds. A CPython run that fails (its watcher
//! reported a wrong returncode, say) leaves that round without the row's figure; the
//! table says from how many rounds a figure comes. It prints one Markdown table and writes an
//! SVG plot of per-reap time against K (`--svg`).
//!
//! Options: `--quick` (2 rounds of 3 reaps, K = 0 and 100), `--rounds N` (default 5),
//! `--reps N` (timed reaps per row, round and K; default 10), `--k LIST` (default
//! 0,100,1000, or `LOOPWATCH_BENCH_K`; each K must fit this machine's limits, see
//! `loopwatch_benches::limits`), `--svg PATH` (default
//! `target/loopwatch-compare/k_scaling.svg`), `--json PATH` (every round's figure
//! and every failure; default `target/loopwatch-compare/figures.json`), `--harness PATH` (default this crate's
//! `cpython/harness.py`), `--no-cpython`, `--batch N` (each timed reap starts N
//! children at once and waits for them all, the figure being per child; default 1, one
//! at a time; the CPython harness spawns one at a time, so N > 1 needs
//! `--no-cpython`). Bad options exit with status 2.

mod cpython;
mod report;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use loopwatch::OsKernel;
use loopwatch_benches::limits::{self, Limits};
use loopwatch_benches::{Bench, Watcher, quantile, true_request};

use cpython::{Outcome, Python};
use report::{Figures, Row};

const DEFAULT_KS: [u64; 3] = [0, 100, 1000];
const QUICK_KS: [u64; 2] = [0, 100];
const USAGE: &str = "usage: compare [--quick] [--rounds N] [--reps N] [--k 0,100,1000] \
                     [--svg PATH] [--json PATH] [--harness PATH] [--no-cpython] [--batch N]";

#[derive(Debug)]
struct Options {
    rounds: usize,
    reps: usize,
    warmup: usize,
    ks: Vec<u64>,
    svg: PathBuf,
    json: PathBuf,
    harness: PathBuf,
    cpython: bool,
    /// Children started at once per timed reap.
    batch: usize,
}

fn parse_options(args: &[String], env_ks: Option<&str>) -> Result<Options, String> {
    let mut quick = false;
    let mut rounds = None;
    let mut reps = None;
    let mut ks = None;
    let mut svg = PathBuf::from("target/loopwatch-compare/k_scaling.svg");
    let mut json = PathBuf::from("target/loopwatch-compare/figures.json");
    let mut harness = Path::new(env!("CARGO_MANIFEST_DIR")).join("cpython/harness.py");
    let mut cpython = true;
    let mut batch = 1;
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        let mut value = |name: &str| {
            args.next()
                .cloned()
                .ok_or_else(|| format!("{name} needs a value"))
        };
        let count = |name: &str, text: String| -> Result<usize, String> {
            match text.parse::<usize>() {
                Ok(n) if n > 0 => Ok(n),
                _ => Err(format!("{name}: {text:?} is not a positive number")),
            }
        };
        match arg.as_str() {
            "--quick" => quick = true,
            "--rounds" => rounds = Some(count("--rounds", value("--rounds")?)?),
            "--reps" => reps = Some(count("--reps", value("--reps")?)?),
            "--k" => ks = Some(parse_ks(&value("--k")?, "--k")?),
            "--svg" => svg = PathBuf::from(value("--svg")?),
            "--json" => json = PathBuf::from(value("--json")?),
            "--harness" => harness = PathBuf::from(value("--harness")?),
            "--no-cpython" => cpython = false,
            "--batch" => batch = count("--batch", value("--batch")?)?,
            other => return Err(format!("unknown option {other:?}")),
        }
    }
    if batch > 1 && cpython {
        return Err(
            "--batch above 1 needs --no-cpython: the CPython harness spawns one \
                    child at a time"
                .to_string(),
        );
    }
    let ks = match (ks, env_ks) {
        (Some(ks), _) => ks,
        (None, Some(text)) => parse_ks(text, "LOOPWATCH_BENCH_K")?,
        (None, None) if quick => QUICK_KS.to_vec(),
        (None, None) => DEFAULT_KS.to_vec(),
    };
    Ok(Options {
        rounds: rounds.unwrap_or(if quick { 2 } else { 5 }),
        reps: reps.unwrap_or(if quick { 3 } else { 10 }),
        warmup: if quick { 1 } else { 2 },
        ks,
        svg,
        json,
        harness,
        cpython,
        batch,
    })
}

/// A K list from `source` (`--k` or `LOOPWATCH_BENCH_K`), sorted, without repeats.
fn parse_ks(text: &str, source: &str) -> Result<Vec<u64>, String> {
    let mut ks = limits::parse_ks(text)
        .map_err(|error| error.to_string().replacen("LOOPWATCH_BENCH_K", source, 1))?;
    ks.sort_unstable();
    ks.dedup();
    Ok(ks)
}

#[allow(
    clippy::disallowed_methods,
    reason = "this program times the real OS from outside the kernel seam"
)]
fn now() -> Instant {
    Instant::now()
}

fn median(mut samples: Vec<Duration>) -> u64 {
    samples.sort_unstable();
    quantile(&samples, 0.5).map_or(0, |d| d.as_nanos() as u64)
}

/// `sleep` children spawned with std, killed and reaped when dropped.
struct StdIdle(Vec<Child>);

impl StdIdle {
    fn start(count: u64) -> Result<StdIdle, String> {
        let mut idle = StdIdle(Vec::with_capacity(count as usize));
        for _ in 0..count {
            #[allow(clippy::disallowed_methods, reason = "std is the baseline")]
            let child = Command::new("sleep")
                .arg("100000")
                .stdin(Stdio::null())
                .spawn()
                .map_err(|error| format!("spawning an idle child: {error}"))?;
            idle.0.push(child);
        }
        Ok(idle)
    }
}

impl Drop for StdIdle {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
        }
        for child in &mut self.0 {
            let _ = child.wait();
        }
    }
}

/// `count` children of `/bin/true` started with std, then each waited for.
fn std_reap(count: usize) -> Result<(), String> {
    let mut children = Vec::with_capacity(count);
    for _ in 0..count {
        #[allow(clippy::disallowed_methods, reason = "std is the baseline")]
        let child = Command::new("/bin/true")
            .spawn()
            .map_err(|error| format!("std spawn: {error}"))?;
        children.push(child);
    }
    for mut child in children {
        let status = child.wait().map_err(|error| format!("std wait: {error}"))?;
        if !status.success() {
            return Err(format!("std: /bin/true ended with {status}"));
        }
    }
    Ok(())
}

/// The median over `options.reps` timed calls of `reap` (after `options.warmup`
/// untimed ones), per child: each call reaps `options.batch` children.
fn time_reaps(
    options: &Options,
    mut reap: impl FnMut() -> Result<(), String>,
) -> Result<u64, String> {
    for _ in 0..options.warmup {
        reap()?;
    }
    let mut samples = Vec::with_capacity(options.reps);
    for _ in 0..options.reps {
        let start = now();
        reap()?;
        samples.push(start.elapsed() / options.batch as u32);
    }
    Ok(median(samples))
}

fn measure_std(k: u64, options: &Options) -> Result<u64, String> {
    let _idle = StdIdle::start(k)?;
    time_reaps(options, || std_reap(options.batch))
}

fn measure_tokio(options: &Options) -> Result<u64, String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .map_err(|error| format!("tokio runtime: {error}"))?;
    time_reaps(options, || {
        runtime.block_on(async {
            let mut children = Vec::with_capacity(options.batch);
            for _ in 0..options.batch {
                let child = tokio::process::Command::new("/bin/true")
                    .spawn()
                    .map_err(|error| format!("tokio spawn: {error}"))?;
                children.push(child);
            }
            for mut child in children {
                let status = child
                    .wait()
                    .await
                    .map_err(|error| format!("tokio wait: {error}"))?;
                if !status.success() {
                    return Err(format!("tokio: /bin/true ended with {status}"));
                }
            }
            Ok(())
        })
    })
}

fn measure_loopwatch(watcher: Watcher, k: u64, options: &Options) -> Result<u64, String> {
    let context =
        |error: loopwatch_benches::Error| format!("loopwatch {watcher}, K = {k}: {error}");
    let bench = Bench::new(&OsKernel, watcher).map_err(context)?;
    let idle = match bench.start_idle(k as usize) {
        Ok(idle) => idle,
        Err(error) => {
            // start_idle has reaped what it started.
            let _ = bench.close();
            return Err(context(error));
        }
    };
    let request = true_request();
    let timed = time_reaps(options, || {
        bench.spawn_reap(&request, options.batch).map_err(context)
    });
    // Release the idle children on every path: Threaded's waiter threads wait for
    // them, so the watcher reaps them there; the others are closed first and the
    // children reaped directly, in O(K).
    let released = if watcher == Watcher::Threaded {
        bench.stop_idle(idle).and_then(|()| bench.close())
    } else {
        bench.close_and_kill(idle)
    };
    let median = timed?;
    released.map_err(context)?;
    Ok(median)
}

/// One CPython row: its interpreter and watcher.
struct PythonRow {
    python: Python,
    watcher: Watcher,
}

impl PythonRow {
    fn row(&self) -> Row {
        Row::CPython(self.python.version, self.watcher)
    }
}

fn measure_cpython(python_row: &PythonRow, k: u64, options: &Options) -> Result<u64, String> {
    match cpython::run(
        &python_row.python,
        &options.harness,
        python_row.watcher,
        &[k],
        options.reps,
        options.warmup,
    )? {
        Outcome::Measured(cases) => match cases.as_slice() {
            [case] => Ok(case.median_ns),
            _ => Err(format!("{} cases for one K", cases.len())),
        },
        Outcome::Unavailable(reason) => Err(format!("became unavailable: {reason}")),
    }
}

fn run(options: &Options) -> Result<Figures, String> {
    let mut python_rows = Vec::new();
    if options.cpython {
        let (pythons, notices) = cpython::discover();
        for notice in notices {
            eprintln!("compare: {notice}");
        }
        if !pythons.is_empty() && !options.harness.is_file() {
            return Err(format!("no harness at {}", options.harness.display()));
        }
        // Which watchers each version has: one untimed reap each.
        for python in pythons {
            for watcher in Watcher::ALL.into_iter().filter(|w| w.in_cpython()) {
                match cpython::run(&python, &options.harness, watcher, &[0], 1, 0)? {
                    Outcome::Measured(_) => python_rows.push(PythonRow {
                        python: python.clone(),
                        watcher,
                    }),
                    Outcome::Unavailable(reason) => {
                        eprintln!("compare: CPython {} {watcher}: {reason}", python.version);
                    }
                }
            }
        }
    } else {
        eprintln!("compare: --no-cpython: no CPython rows");
    }

    let mut figures = Figures::default();
    let started = now();
    for round in 0..options.rounds {
        for &k in &options.ks {
            eprintln!(
                "compare: round {}/{}, K = {k} ({:.0} s so far)",
                round + 1,
                options.rounds,
                started.elapsed().as_secs_f64()
            );
            // Every row once; the order turns by one row each round, so that no row
            // always comes first or always follows the CPython runs.
            let mut rows = vec![Row::Std];
            if k == 0 {
                rows.push(Row::Tokio);
            }
            rows.extend(Watcher::ALL.map(Row::Loopwatch));
            rows.extend(python_rows.iter().map(PythonRow::row));
            let turn = round % rows.len();
            rows.rotate_left(turn);
            for row in rows {
                let ns = match row {
                    Row::Std => measure_std(k, options)?,
                    Row::Tokio => measure_tokio(options)?,
                    Row::Loopwatch(watcher) => measure_loopwatch(watcher, k, options)?,
                    Row::CPython(..) => {
                        let Some(python_row) = python_rows.iter().find(|p| p.row() == row) else {
                            continue;
                        };
                        match measure_cpython(python_row, k, options) {
                            Ok(ns) => ns,
                            Err(error) => {
                                eprintln!("compare: {row}, K = {k}, round {}: {error}", round + 1);
                                figures.fail(row, error);
                                continue;
                            }
                        }
                    }
                };
                figures.record(row, k, round, ns);
            }
        }
    }
    eprintln!(
        "compare: {} rounds in {:.0} s",
        options.rounds,
        started.elapsed().as_secs_f64()
    );
    Ok(figures)
}

fn create_parent(path: &Path) -> Result<(), String> {
    match path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
        Some(dir) => std::fs::create_dir_all(dir)
            .map_err(|error| format!("creating {}: {error}", dir.display())),
        None => Ok(()),
    }
}

/// Every round's figure and every failure, for a look behind the medians.
fn write_json(path: &Path, figures: &Figures) -> Result<(), String> {
    create_parent(path)?;
    let medians: Vec<serde_json::Value> = figures
        .entries()
        .map(|(row, k, round, median_ns)| {
            serde_json::json!({"row": row.to_string(), "k": k, "round": round, "median_ns": median_ns})
        })
        .collect();
    let failures: serde_json::Map<String, serde_json::Value> = figures
        .failures()
        .iter()
        .map(|(row, reasons)| (row.to_string(), serde_json::json!(reasons)))
        .collect();
    let text = serde_json::to_string_pretty(
        &serde_json::json!({"medians": medians, "failures": failures}),
    )
    .map_err(|error| format!("figures as JSON: {error}"))?;
    std::fs::write(path, text + "\n")
        .map_err(|error| format!("writing {}: {error}", path.display()))
}

fn write_svg(path: &Path, figures: &Figures) -> Result<(), String> {
    create_parent(path)?;
    let svg = report::svg(
        &figures.curves(),
        "spawn+reap of /bin/true with K idle registered children",
    );
    std::fs::write(path, svg).map_err(|error| format!("writing {}: {error}", path.display()))
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|arg| arg == "--help" || arg == "-h") {
        println!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    let env_ks = match std::env::var("LOOPWATCH_BENCH_K") {
        Ok(text) => Some(text),
        Err(std::env::VarError::NotPresent) => None,
        Err(std::env::VarError::NotUnicode(_)) => {
            eprintln!("compare: LOOPWATCH_BENCH_K is not UTF-8\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let options = match parse_options(&args, env_ks.as_deref()) {
        Ok(options) => options,
        Err(error) => {
            eprintln!("compare: {error}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match Limits::current() {
        Ok(limits) => {
            if let Some(error) = options.ks.iter().find_map(|&k| limits.check(k).err()) {
                eprintln!("compare: {error}\n{USAGE}");
                return ExitCode::from(2);
            }
        }
        Err(error) => {
            eprintln!("compare: {error}");
            return ExitCode::FAILURE;
        }
    }
    let figures = match run(&options) {
        Ok(figures) => figures,
        Err(error) => {
            eprintln!("compare: {error}");
            return ExitCode::FAILURE;
        }
    };
    println!(
        "{} rounds of {} reaps{} per row and K; median per-reap time over the round, \
         divided by std spawn+wait's in the same round and K; median over the rounds{}.\n",
        options.rounds,
        options.reps,
        if options.batch > 1 {
            format!(" of {} children started at once", options.batch)
        } else {
            String::new()
        },
        if options.rounds >= report::INTERVAL_ROUNDS {
            ", and in brackets its 95 % interval (order statistics of the rounds' ratios)"
        } else {
            ""
        }
    );
    print!("{}", figures.table(options.batch));
    for (row, reasons) in figures.failures() {
        // The harness's own summary is the last line of its stderr.
        let last = reasons[0]
            .lines()
            .rev()
            .find(|line| !line.trim().is_empty());
        println!(
            "\n{row}: {} run(s) failed, the first with: {}",
            reasons.len(),
            last.unwrap_or("")
        );
    }
    if let Err(error) =
        write_svg(&options.svg, &figures).and_then(|()| write_json(&options.json, &figures))
    {
        eprintln!("compare: {error}");
        return ExitCode::FAILURE;
    }
    println!(
        "\nplot: {}\nfigures: {}",
        options.svg.display(),
        options.json.display()
    );
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(text: &str) -> Vec<String> {
        text.split_whitespace().map(str::to_string).collect()
    }

    #[test]
    fn defaults_and_quick() {
        let options = parse_options(&[], None).unwrap();
        assert_eq!(
            (options.rounds, options.reps, &options.ks[..]),
            (5, 10, &[0, 100, 1000][..])
        );
        assert!(
            options
                .svg
                .ends_with("target/loopwatch-compare/k_scaling.svg")
        );
        assert!(options.harness.ends_with("cpython/harness.py"));
        assert_eq!(options.batch, 1);
        let batch = parse_options(&args("--batch 200 --no-cpython"), None).unwrap();
        assert_eq!((batch.batch, batch.cpython), (200, false));
        let quick = parse_options(&args("--quick"), None).unwrap();
        assert_eq!(
            (quick.rounds, quick.reps, &quick.ks[..]),
            (2, 3, &[0, 100][..])
        );
    }

    #[test]
    fn k_from_the_option_or_the_environment() {
        let options = parse_options(&args("--k 1000,0,100,0"), Some("5")).unwrap();
        assert_eq!(options.ks, [0, 100, 1000]);
        let options = parse_options(&args("--quick"), Some("0,5000")).unwrap();
        assert_eq!(options.ks, [0, 5000]);
    }

    #[test]
    fn bad_options_are_errors() {
        for (line, env, why) in [
            ("--rounds", None, "needs a value"),
            ("--rounds 0", None, "positive"),
            ("--reps many", None, "positive"),
            ("--k 0,lots", None, "--k: \"lots\" is not a number"),
            ("--fast", None, "unknown option"),
            ("--batch 0 --no-cpython", None, "positive"),
            ("--batch 200", None, "needs --no-cpython"),
            ("", Some("x"), "LOOPWATCH_BENCH_K: \"x\" is not a number"),
        ] {
            let error = parse_options(&args(line), env).unwrap_err();
            assert!(error.contains(why), "{line}: {error}");
        }
    }

    #[test]
    fn the_figures_as_json() {
        let mut figures = Figures::default();
        figures.record(Row::Std, 0, 0, 900_000);
        figures.record(Row::Loopwatch(Watcher::Pidfd), 100, 1, 1_000_000);
        figures.fail(Row::Tokio, "no runtime".into());
        #[allow(
            clippy::disallowed_methods,
            reason = "a directory of this test process's own"
        )]
        let pid = std::process::id();
        let dir = std::env::temp_dir().join(format!("loopwatch-compare-json-{pid}"));
        let path = dir.join("sub/figures.json");
        write_json(&path, &figures).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            value,
            serde_json::json!({
                "medians": [
                    {"row": "std", "k": 0, "round": 0, "median_ns": 900_000},
                    {"row": "loopwatch pidfd", "k": 100, "round": 1, "median_ns": 1_000_000}
                ],
                "failures": {"tokio": ["no runtime"]}
            })
        );
    }

    #[test]
    fn medians_by_nearest_rank() {
        let ms = Duration::from_millis;
        assert_eq!(median(vec![ms(3), ms(1), ms(2)]), 2_000_000);
        assert_eq!(median(vec![ms(4), ms(1), ms(2), ms(3)]), 2_000_000);
    }
}
