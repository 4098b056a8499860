//! The simulator's programs (`loopwatch_sim::program`): each form of the shell subset
//! run on the real OS and on the simulator with the same expectations, the refusal of
//! what is not modelled (ENOENT, a warning and a trace line naming it), and programs
//! registered with a closure over their arguments and environment.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use loopwatch::kernel::{
    Errno, Fd, Kernel, Pid, Processes, Signal, SpawnRequest, Stdio, WaitMode, WaitStatus,
};
use loopwatch_sim::program::{ChildPlan, Invocation};
use loopwatch_sim::testing::{self, Body, Capture, Log, Sweep};
use loopwatch_sim::{Outcome, SimKernel, Simulation, check_determinism};

/// Reads `fd` to end of file and closes it.
fn read_all<K: Kernel>(kernel: &K, fd: Fd) -> Vec<u8> {
    let mut all = Vec::new();
    let mut buf = [0u8; 256];
    loop {
        match kernel.read(fd, &mut buf) {
            Ok(0) => break,
            Ok(n) => all.extend_from_slice(&buf[..n]),
            Err(Errno::EINTR) => continue,
            Err(e) => panic!("read: {e:?}"),
        }
    }
    kernel.close(fd).unwrap();
    all
}

/// `/bin/sh -c script` with `env` added, stdout and stderr piped, stdin from
/// /dev/null, at the default signal actions.
fn request(script: &str, env: &[(&str, &str)]) -> SpawnRequest {
    let mut request = testing::sh(script);
    request.env = env.iter().map(|(k, v)| (k.into(), v.into())).collect();
    request.stdin = Stdio::Null;
    request.stdout = Stdio::Pipe;
    request.stderr = Stdio::Pipe;
    request.restore_signals = true;
    request
}

/// What a child did: its stdout, stderr and returncode, and its pid.
#[derive(Debug, PartialEq, Eq)]
struct Ran {
    stdout: String,
    stderr: String,
    code: i32,
}

fn run<K: Kernel>(kernel: &K, request: &SpawnRequest) -> (Ran, Pid) {
    let child = kernel
        .spawn(request)
        .unwrap_or_else(|e| panic!("spawning {request:?}: {e:?}"));
    let stdout = read_all(kernel, child.stdout.unwrap());
    let stderr = read_all(kernel, child.stderr.unwrap());
    let code = testing::reap(kernel, child.pid);
    let text = |bytes: Vec<u8>| String::from_utf8(bytes).unwrap();
    let ran = Ran {
        stdout: text(stdout),
        stderr: text(stderr),
        code,
    };
    (ran, child.pid)
}

struct Case {
    script: &'static str,
    env: &'static [(&'static str, &'static str)],
    stdout: &'static str,
    stderr: &'static str,
    code: i32,
}

const fn case(script: &'static str, stdout: &'static str, stderr: &'static str, code: i32) -> Case {
    Case {
        script,
        env: &[],
        stdout,
        stderr,
        code,
    }
}

/// Runs each case and compares what the child did with what it says.
struct Cases(&'static [Case]);

impl Body for Cases {
    fn run<K: Kernel>(&self, kernel: &K) {
        for case in self.0 {
            let (ran, _) = run(kernel, &request(case.script, case.env));
            let expected = Ran {
                stdout: case.stdout.into(),
                stderr: case.stderr.into(),
                code: case.code,
            };
            assert_eq!(ran, expected, "sh -c {:?} with {:?}", case.script, case.env);
        }
    }
}

/// One case per form of the subset, valid for any POSIX `/bin/sh`.
const FORMS: &[Case] = &[
    // `;`, newlines, comments; the last command's status.
    case("true; false", "", "", 1),
    case("false\ntrue # a comment", "", "", 0),
    case("", "", "", 0),
    // Quoting.
    case(r#"echo 'a  b' "c  d" e\ \ f"#, "a  b c  d e  f\n", "", 0),
    // Variables from the environment, split unless quoted.
    Case {
        script: r#"echo ${N}x $WORDS "$WORDS" -$LOOPWATCH_TEST_UNSET-"#,
        env: &[("N", "7"), ("WORDS", "a   b")],
        stdout: "7x a b a   b --\n",
        stderr: "",
        code: 0,
    },
    // `$?` and `$0`.
    case("false; echo $? $0", "1 /bin/sh\n", "", 0),
    // Arithmetic.
    Case {
        script: "echo $(( (1 + $N) * -2 )) $((N / 3)) $((-N % 3)); exit $((N * 2))",
        env: &[("N", "4")],
        stdout: "-10 1 -1\n",
        stderr: "",
        code: 8,
    },
    // `exit` with an expanded value, mod 256.
    Case {
        script: "exit $CODE",
        env: &[("CODE", "300")],
        stdout: "",
        stderr: "",
        code: 44,
    },
    case("false; exit", "", "", 1),
    // `echo`, `-n`, `>&2` and `1>&2`.
    case(
        "echo out; echo err >&2; echo -n more; >&2 echo also 1>&2; exit 4",
        "out\nmore",
        "err\nalso\n",
        4,
    ),
    // `true`, `:`, `false`.
    case(": ignored words; true", "", "", 0),
    // `sleep` with an expanded value.
    Case {
        script: "sleep $T; exit 3",
        env: &[("T", "0.01")],
        stdout: "",
        stderr: "",
        code: 3,
    },
    // `kill … $$`: the shell dies of the signal, after its output.
    case(
        "echo before; echo also >&2; kill -TERM $$",
        "before\n",
        "also\n",
        -15,
    ),
    case("kill -s INT $$", "", "", -2),
    case("kill $$", "", "", -15),
    case("kill -9 $$", "", "", -9),
    // A signal ignored by default does nothing; the script goes on.
    case("kill -CHLD $$; kill -0 $$; exit 5", "", "", 5),
    // `ulimit` (no core file for the SIGSEGV).
    case("ulimit -c 0; kill -SEGV $$", "", "", -11),
    // `exec` of a built-in program.
    case(
        "echo a; exec sh -c 'echo b; exit 6'; echo never",
        "a\nb\n",
        "",
        6,
    ),
    case("exec /bin/echo x y", "x y\n", "", 0),
    // Programs as commands: the shell waits and goes on with their status.
    case(
        "sleep 0.01; /bin/echo hi >&2; sh -c 'exit 7'; exit $(($? + 1))",
        "",
        "hi\n",
        8,
    ),
    // `read -r NAME` (stdin is /dev/null: end of file at once, status 1), after
    // output, last or before `exit [N]`; also in a shell run as a command or `exec`ed.
    case("echo ready; read -r line; exit 3", "ready\n", "", 3),
    case("echo err >&2; read -r line", "", "err\n", 1),
    case("read -r line; exit", "", "", 1),
    case(
        "echo a; sh -c 'echo b >&2; read -r l; exit 4'",
        "a\n",
        "b\n",
        4,
    ),
    case("echo a; exec sh -c 'read -r l'", "a\n", "", 1),
];

#[test]
fn each_form_runs_alike_on_the_os_and_the_simulator() {
    Sweep::new(4).check_leaks().run_both(Cases(FORMS));
}

/// The errors dash reports, with its messages (`/bin/sh` is dash on Debian and
/// Ubuntu; the simulator models dash's text).
const DASH_ERRORS: &[Case] = &[
    Case {
        script: "echo $((N / 0)); echo not reached",
        env: &[("N", "1")],
        stdout: "",
        stderr: "/bin/sh: 1: arithmetic expression: division by zero: \"N / 0\"\n",
        code: 2,
    },
    Case {
        script: "echo first\nexit $((7 % $Z))",
        env: &[("Z", "0")],
        stdout: "first\n",
        stderr: "/bin/sh: 2: arithmetic expression: division by zero: \"7 % 0\"\n",
        code: 2,
    },
    case("exit abc", "", "/bin/sh: 1: exit: Illegal number: abc\n", 2),
    case("exit -1", "", "/bin/sh: 1: exit: Illegal number: -1\n", 2),
    // The line is the one the command starts on, counting the lines inside quotes,
    // arithmetic and continuations before it.
    case(
        "echo \"a\nb\" $((1 +\n1)) \\\n; exit abc",
        "a\nb 2\n",
        "/bin/sh: 4: exit: Illegal number: abc\n",
        2,
    ),
    case(
        "exit 2147483648",
        "",
        "/bin/sh: 1: exit: Illegal number: 2147483648\n",
        2,
    ),
];

fn system_sh_is_dash() -> bool {
    std::fs::canonicalize("/bin/sh").is_ok_and(|path| path.ends_with("dash"))
}

#[test]
fn shell_errors_are_dashs() {
    if system_sh_is_dash() {
        testing::run_on_os(&Cases(DASH_ERRORS), true).unwrap();
    } else {
        // The simulator's expectations still hold; only the OS comparison needs dash.
        eprintln!("/bin/sh is not dash: checking the simulator alone");
    }
    Sweep::new(4)
        .check_leaks()
        .run(|k| Cases(DASH_ERRORS).run(k));
}

/// Goal: `$((N % 7))` over N from the environment gives the same status on both
/// kernels for every N.
struct Modulo;

impl Body for Modulo {
    fn run<K: Kernel>(&self, kernel: &K) {
        for n in 0..=30 {
            let value = n.to_string();
            let (ran, _) = run(kernel, &request("exit $((N % 7))", &[("N", &value)]));
            assert_eq!(ran.code, n % 7, "N={n}");
        }
    }
}

#[test]
fn arithmetic_on_an_env_variable_agrees_with_the_os() {
    testing::for_seeds_and_os(2, Modulo);
}

/// Goal: `$$` is the child's pid on both kernels.
struct OwnPid;

impl Body for OwnPid {
    fn run<K: Kernel>(&self, kernel: &K) {
        let (ran, pid) = run(kernel, &request("echo $$ ${$}", &[]));
        assert_eq!(ran.stdout, format!("{pid} {pid}\n"));
    }
}

#[test]
fn dollar_dollar_is_the_childs_pid() {
    testing::for_seeds_and_os(4, OwnPid);
}

/// Goal: `exec cat` copies its stdin on both kernels.
struct ExecCat;

impl Body for ExecCat {
    fn run<K: Kernel>(&self, kernel: &K) {
        let mut request = request("exec cat", &[]);
        request.stdin = Stdio::Pipe;
        request.stderr = Stdio::Null;
        let child = kernel.spawn(&request).unwrap();
        let input = child.stdin.unwrap();
        assert_eq!(kernel.write(input, b"hello").unwrap(), 5);
        kernel.close(input).unwrap();
        assert_eq!(read_all(kernel, child.stdout.unwrap()), b"hello");
        assert_eq!(testing::reap(kernel, child.pid), 0);
    }
}

#[test]
fn exec_cat_copies_stdin() {
    Sweep::new(4).check_leaks().run_both(ExecCat);
}

/// Goal: `read -r line` reads up to a newline or end of file: until then the child is
/// alive (also after part of a line), then its status is `read`'s or `exit N`'s.
struct ReadLine;

impl Body for ReadLine {
    fn run<K: Kernel>(&self, kernel: &K) {
        for (script, input, close, code) in [
            ("echo ready; read -r line", &b"first part, "[..], false, 0),
            ("echo ready; read -r line; exit 7", b"no newline", true, 7),
            ("echo ready; read -r line", b"", true, 1),
        ] {
            let mut request = request(script, &[]);
            request.stdin = Stdio::Pipe;
            let child = kernel.spawn(&request).unwrap();
            let (stdin, stdout) = (child.stdin.unwrap(), child.stdout.unwrap());
            let mut ready = [0u8; 6];
            assert_eq!(kernel.read(stdout, &mut ready), Ok(6), "{script}");
            assert_eq!(&ready, b"ready\n");
            if !input.is_empty() {
                assert_eq!(kernel.write(stdin, input), Ok(input.len()), "{script}");
            }
            assert_eq!(
                kernel.wait_pid(child.pid, WaitMode::NoHang),
                Ok(WaitStatus::StillAlive),
                "{script}: no whole line yet"
            );
            if !close {
                assert_eq!(kernel.write(stdin, b"the rest\n"), Ok(9), "{script}");
            }
            kernel.close(stdin).unwrap();
            assert_eq!(read_all(kernel, stdout), b"", "{script}");
            assert_eq!(read_all(kernel, child.stderr.unwrap()), b"", "{script}");
            assert_eq!(testing::reap(kernel, child.pid), code, "{script}");
        }
    }
}

#[test]
fn read_waits_for_a_line_or_end_of_file() {
    Sweep::new(4).check_leaks().run_both(ReadLine);
}

/// Spawns `request` on a simulator inside a capture; returns the spawn's result, the
/// warnings and the trace.
fn refused(request: SpawnRequest) -> (Option<Errno>, Vec<String>, String) {
    let capture = Capture::new();
    let (result, report) =
        capture.during(|| Simulation::new(0).run_returning(move |k| k.spawn(&request).err()));
    report.assert_completed("refused");
    (result.flatten(), capture.warnings(), report.trace.text())
}

#[test]
fn an_unmodelled_command_is_enoent_with_a_warning_naming_it() {
    let (errno, warnings, trace) = refused(testing::sh("grep x"));
    let message = "the simulator does not model `grep` (in `/bin/sh -c 'grep x'`): register it \
                   with SimKernel::register_program or register_program_fn";
    assert_eq!(errno, Some(Errno::ENOENT));
    assert_eq!(warnings, [message]);
    assert!(
        trace.contains(&format!("spawn refused: {message}")),
        "{trace}"
    );

    let (errno, warnings, _) = refused(SpawnRequest::new("/usr/bin/grep", ["-q", "a b"]));
    assert_eq!(errno, Some(Errno::ENOENT));
    assert_eq!(
        warnings,
        [
            "the simulator does not model `/usr/bin/grep` (in `/usr/bin/grep -q 'a b'`): register \
          it with SimKernel::register_program or register_program_fn"
        ]
    );
}

#[test]
fn the_warning_carries_its_target_and_what() {
    let capture = Capture::new();
    capture
        .during(|| Simulation::new(0).run(|k| assert!(k.spawn(&testing::sh("a | b")).is_err())))
        .assert_completed("target");
    let events = capture.events();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].target, "loopwatch_sim");
    assert_eq!(events[0].fields["what"], "`|`");
}

#[test]
fn every_construct_outside_the_subset_is_refused_by_name() {
    let constructs = [
        ("echo a | cat", "`|`"),
        ("true && exit 3", "`&`"),
        ("sleep 1 &", "`&`"),
        ("cat < in", "`<`"),
        ("echo a > out", "`>`"),
        ("echo a 2>&1", "`2>&1`"),
        ("(exit 3)", "`(`"),
        ("echo $(date)", "`$(`"),
        ("echo `date`", "`` ` ``"),
        ("echo *", "`*`"),
        ("echo $1", "`$1`"),
        ("echo ${N:-x}", "`${N:-x}`"),
        ("X=1; exit 3", "`X=`"),
        ("if true; then exit 3; fi", "`if`"),
        ("for i in 1; do :; done", "`for`"),
        ("echo $PWD", "`$PWD`"),
        ("kill -SIGTERM $$", "`kill -SIGTERM`"),
        ("kill -TERM 1", "`kill -TERM 1`"),
        ("echo -e 'a\\nb'", "`echo -e a\\nb`"),
        ("exit $((2 ** 3))", "`$((2 ** 3))`"),
        ("exit $((010))", "`$((010))`"),
        ("ulimit -n", "`ulimit -n`"),
        (
            "cat; exit 3",
            "`cat` after output or a sleep, or before other commands",
        ),
        ("kill -STOP $$; exit 3", "`kill -STOP 1001`"),
        ("exec true >&2", "`exec >&2`"),
        ("read line", "`read line`"),
        ("read -r a b", "`read -r a b`"),
        ("sleep 1; read -r line", "`read -r line` after a sleep"),
        (
            "read -r line; exit $line",
            "`exit $line` after `read -r line`",
        ),
        ("read -r line; exit $?", "`exit $?` after `read -r line`"),
        (
            "read -r line; exit $((line + 1))",
            "`exit $((line + 1))` after `read -r line`",
        ),
        ("read -r line; exit abc", "`exit abc` after `read -r line`"),
        (
            "read -r line; echo done",
            "`echo done` after `read -r line`",
        ),
        (
            "read -r line; exit 1; exit 2",
            "`exit 2` after `read -r line`",
        ),
        (
            "sh -c 'read -r l'; exit 3",
            "`sh` after a sleep, or before other commands",
        ),
        ("sed -n p", "`sed`"),
    ];
    for (script, what) in constructs {
        let (errno, warnings, _) = refused(testing::sh(script));
        assert_eq!(errno, Some(Errno::ENOENT), "{script}");
        assert_eq!(warnings.len(), 1, "{script}: {warnings:?}");
        let expected = format!("the simulator does not model {what} (in ");
        assert!(
            warnings[0].starts_with(&expected),
            "{script}: {} does not start with {expected}",
            warnings[0]
        );
    }
}

#[test]
fn a_script_that_runs_itself_again_is_refused() {
    let mut request = testing::sh(r#"exec sh -c "$S""#);
    request.env.push(("S".into(), r#"exec sh -c "$S""#.into()));
    let (errno, warnings, _) = refused(request);
    assert_eq!(errno, Some(Errno::ENOENT));
    assert!(
        warnings[0].starts_with("the simulator does not model shells nested more than 16 deep"),
        "{warnings:?}"
    );
}

#[test]
fn a_failed_sweep_shows_the_refusal_in_its_trace_tail() {
    let failure = Sweep::new(2)
        .name("refusal")
        .try_run(|k| {
            testing::spawn_sh(k, "sort | uniq");
        })
        .unwrap_err();
    let report = failure.to_string();
    assert!(
        report.contains(
            "spawn refused: the simulator does not model `|` (in `/bin/sh -c 'sort | uniq'`)"
        ),
        "{report}"
    );
    assert_eq!(failure.failed_seeds(), [0, 1]);
}

#[test]
fn a_refused_spawn_leaves_nothing_behind_and_frees_its_pid() {
    let swept = Sweep::new(4).check_leaks().run(|k| {
        assert_eq!(k.spawn(&testing::sh("grep x")).err(), Some(Errno::ENOENT));
        assert_eq!(k.children_left(), (0, 0));
        let pid = testing::spawn_sh(k, "exit 3");
        assert_eq!(testing::reap(k, pid), 3);
    });
    assert_eq!(swept.marks["spawn_unmodelled"], swept.seeds as u64);
}

#[test]
fn a_registered_fn_sees_args_and_the_final_environment() {
    testing::for_seeds(4, |k| {
        let seen: Log<Invocation> = Log::new();
        let record = seen.clone();
        k.set_env_var("FROM_PARENT", "p");
        k.set_env_var("SHADOWED", "parent");
        // `tool N` exits N, plus 100 if STRICT=1; it says what it got on stdout.
        k.register_program_fn("tool", move |invocation| {
            record.push(invocation.clone());
            let n: u8 = invocation.arg(0).and_then(|a| a.parse().ok()).unwrap_or(0);
            let strict = invocation.var("STRICT") == Some("1");
            let said = format!("{:?}\n", invocation.args());
            ChildPlan::exit_with_output(n + if strict { 100 } else { 0 }, said, "")
        });

        let mut direct = request("", &[("STRICT", "1"), ("SHADOWED", "request")]);
        direct.program = "tool".into();
        direct.args = vec!["3".into(), "x y".into()];
        direct.cwd = Some("sub/dir".into());
        let (ran, _) = run(k, &direct);
        assert_eq!(ran.code, 103);
        assert_eq!(ran.stdout, "[\"3\", \"x y\"]\n");
        let invocation = &seen.take()[0];
        assert_eq!(invocation.program(), "tool");
        assert_eq!(invocation.var("FROM_PARENT"), Some("p"));
        assert_eq!(invocation.var("SHADOWED"), Some("request"));
        assert_eq!(invocation.cwd(), Some(std::path::Path::new("sub/dir")));

        // Through the shell: as a command (then `$?`), and with `exec`.
        let (ran, _) = run(
            k,
            &request(r#"tool 4 "$W"; exit $(($? + 1))"#, &[("W", "a b")]),
        );
        assert_eq!(
            ran,
            Ran {
                stdout: "[\"4\", \"a b\"]\n".into(),
                stderr: String::new(),
                code: 5
            }
        );
        let (ran, _) = run(k, &request("exec tool 6", &[("STRICT", "1")]));
        assert_eq!(ran.code, 106);
        let recorded = seen.take();
        assert_eq!(recorded.len(), 2);
        assert_eq!(recorded[0].args(), ["4", "a b"]);
        assert_eq!(recorded[1].var("STRICT"), Some("1"));
        assert_eq!(recorded[1].var("FROM_PARENT"), Some("p"));

        // env_remove: the parent's variable is gone; one also in `env` is set, as the
        // OS kernel applies the removals first.
        let mut remove = request("tool 2", &[("SHADOWED", "again")]);
        remove.env_remove = vec!["FROM_PARENT".into(), "SHADOWED".into()];
        assert_eq!(run(k, &remove).0.code, 2);
        let invocation = &seen.take()[0];
        assert_eq!(invocation.var("FROM_PARENT"), None);
        assert_eq!(invocation.var("SHADOWED"), Some("again"));

        // env_clear: only the request's variables.
        let mut clear = request("tool 1", &[("ONLY", "this")]);
        clear.env_clear = true;
        assert_eq!(run(k, &clear).0.code, 1);
        let invocation = &seen.take()[0];
        assert_eq!(invocation.env().len(), 1);
        assert_eq!(invocation.var("ONLY"), Some("this"));
    });
}

#[test]
fn the_shell_reads_the_simulated_process_environment() {
    testing::for_seeds(2, |k| {
        k.set_env_var("GREETING", "hello");
        let (ran, _) = run(k, &request("echo $GREETING $N", &[("N", "1")]));
        assert_eq!(ran.stdout, "hello 1\n");
        let mut clear = request("echo $GREETING $N", &[("N", "1")]);
        clear.env_clear = true;
        assert_eq!(run(k, &clear).0.stdout, "1\n");
        let removed = request("echo $GREETING $N", &[("N", "1")]).env_remove("GREETING");
        assert_eq!(run(k, &removed).0.stdout, "1\n");
        k.remove_env_var("GREETING");
        assert_eq!(run(k, &request("echo $GREETING", &[])).0.stdout, "\n");
    });
}

#[test]
fn a_registered_program_that_dies_of_a_signal_runs_only_through_exec() {
    testing::for_seeds(2, |k| {
        k.register_program("crasher", ChildPlan::killed(Signal::SIGSEGV));
        assert_eq!(k.spawn(&testing::sh("crasher")).err(), Some(Errno::ENOENT));
        let pid = testing::spawn_sh(k, "echo x; exec crasher");
        assert_eq!(testing::reap(k, pid), -11);
    });
}

#[test]
fn a_registered_fn_calling_the_kernel_fails_the_run_instead_of_hanging() {
    Sweep::new(1)
        .check_report(|report| match &report.outcome {
            Outcome::Panicked(message) if message.contains("register_program_fn") => Ok(()),
            other => Err(format!(
                "expected the closure's kernel call to panic: {other:?}"
            )),
        })
        .run(|k| {
            let inner: SimKernel = k.clone();
            k.register_program_fn("reentrant", move |_| {
                inner.note("from inside the spawn");
                ChildPlan::exit(0)
            });
            let _ = k.spawn(&SpawnRequest::new("reentrant", Vec::<String>::new()));
        });
}

#[test]
fn a_registered_fn_holding_a_kernel_is_dropped_with_the_run() {
    struct Flag(Arc<AtomicBool>);
    impl Drop for Flag {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }
    let dropped = Arc::new(AtomicBool::new(false));
    let flag = Flag(dropped.clone());
    let report = Simulation::new(0).run(move |k| {
        let inner = k.clone();
        k.register_program_fn("holder", move |_| {
            let _held = (&inner, &flag);
            ChildPlan::exit(0)
        });
    });
    report.assert_completed("holder");
    assert!(dropped.load(Ordering::SeqCst));
}

#[test]
fn programs_replay_by_seed() {
    let scenario = |k: SimKernel| {
        k.register_program_fn("tool", |invocation| {
            ChildPlan::exit(invocation.arg(0).map_or(0, |a| a.len() as u8))
        });
        let pids: Vec<Pid> = ["tool abc; exit $?", "sleep 0.5; echo x", "kill -TERM $$"]
            .iter()
            .map(|script| testing::spawn_sh(&k, script))
            .collect();
        let _ = k.spawn(&testing::sh("grep x"));
        for pid in pids {
            testing::reap(&k, pid);
        }
    };
    for seed in 0..4 {
        assert_eq!(check_determinism(&Simulation::new(seed), scenario), None);
    }
}
