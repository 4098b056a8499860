//! The kernel contract for fds, pollers and signals (`Fds`, `Poller`, `PollWaker`,
//! `Signals` of `loopwatch::kernel`): each behaviour the trait documentation promises,
//! written once as a body generic over the kernel and run on the real OS (`OsKernel`)
//! and on the simulator (`SimKernel`, 16 seeds). Processes are in
//! `kernel_contract_processes.rs`, threads, locks and the clock in
//! `kernel_contract_threads.rs`; what only the real OS can show (fcntl flags, raw
//! `sigaction` structures, `sigpending`, errno, `/proc` paths, regular files) stays in
//! `src/sys/unix/tests.rs`.
//!
//! A `harness = false` binary on `loopwatch_sim::testing`: each test runs on the
//! process's main thread, one at a time, so dispositions, the wakeup fd and the main
//! thread's signal mask belong to the test that runs. Every test checks that it leaves
//! no child, fd or thread behind; on the real OS a failing test still puts back what it
//! changed (`testing::Cleanup`).
//!
//! `cargo test -p loopwatch-sim --test kernel_contract_fds_signals [NAME]`;
//! `LOOPWATCH_SEEDS=N` sets how many seeds each simulator arm runs, `LOOPWATCH_SEED=S`
//! runs one seed.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use loopwatch::kernel::{
    Disposition, Errno, Event, Fd, Interest, Kernel, PollWaker, Poller, Signal, Stdio, Token,
    WaitMode, WaitStatus, WaitTarget,
};
use loopwatch_sim::testing::{
    self, Body, Cleanup, Log, drain, fd_count, reap_status, sh, wait_until, write_all,
};

/// How long a body waits for something that should happen at once before it fails
/// instead of hanging. Generous: a loaded machine must not fail a test.
const PATIENCE: Duration = Duration::from_secs(30);

/// A descriptor number far above `RLIMIT_NOFILE`: never open.
const NEVER_OPEN: Fd = Fd(i32::MAX);

loopwatch_sim::bodies!(
    pipes_report_eagain_eof_epipe_and_ebadf,
    poller_is_level_triggered_and_registrations_are_exact,
    waker_ends_a_blocking_poll_from_another_thread,
    poller_and_waker_close_their_fds,
    wakeup_disposition_writes_the_signal_number,
    wakeup_handler_drops_the_byte_on_a_full_pipe,
    set_disposition_rejects_invalid_signals,
    blocked_signal_is_handled_on_unblock,
    realtime_signals_pass_through_by_number,
);

/// Polls without blocking; the events sorted by token.
fn poll_now(poller: &impl Poller) -> Vec<Event> {
    let mut events = Vec::new();
    poller
        .poll(&mut events, Some(Duration::ZERO))
        .expect("poll");
    events.sort_by_key(|event| event.token);
    events
}

fn readable(token: usize) -> Event {
    Event {
        token: Token(token),
        readable: true,
        writable: false,
    }
}

fn writable(token: usize) -> Event {
    Event {
        token: Token(token),
        readable: false,
        writable: true,
    }
}

/// Fills the non-blocking write end `write` until the pipe refuses more (EAGAIN);
/// returns how much it took.
fn fill<K: Kernel>(k: &K, write: Fd) -> usize {
    let chunk = vec![0u8; 65536];
    let mut written = 0usize;
    loop {
        match k.write(write, &chunk) {
            Ok(n) => {
                written += n;
                assert!(written < 64 << 20, "a pipe took 64 MiB without EAGAIN");
            }
            Err(Errno::EAGAIN) => return written,
            Err(e) => panic!("write({write}): {e:?}"),
        }
    }
}

impl Body for pipes_report_eagain_eof_epipe_and_ebadf {
    // Goal: a new pipe blocks, read and write report EAGAIN (non-blocking, empty or
    // full), end of file and EPIPE exactly, the flag setters work, and closed or
    // never-open fds give EBADF.
    fn run<K: Kernel>(&self, k: &K) {
        let mut held = Cleanup::new(k);
        let (read, write) = held.pipe();
        assert_eq!(k.set_cloexec(read, false), Ok(()));
        assert_eq!(k.set_cloexec(read, true), Ok(()));

        assert_eq!(k.set_nonblocking(read, true), Ok(()));
        let mut buf = [0u8; 16];
        assert_eq!(k.read(read, &mut buf), Err(Errno::EAGAIN));
        assert_eq!(k.write(write, b"abc"), Ok(3));
        assert_eq!(k.read(read, &mut buf), Ok(3));
        assert_eq!(&buf[..3], b"abc");
        assert_eq!(k.read(read, &mut buf), Err(Errno::EAGAIN));
        assert_eq!(held.close(write), Ok(()));
        assert_eq!(
            k.read(read, &mut buf),
            Ok(0),
            "no end of file after the writer closed"
        );
        // Blocking again: at end of file a read still returns at once.
        assert_eq!(k.set_nonblocking(read, false), Ok(()));
        assert_eq!(k.read(read, &mut buf), Ok(0));
        assert_eq!(held.close(read), Ok(()));
        assert_eq!(k.close(read), Err(Errno::EBADF), "closed twice");

        // A full non-blocking pipe refuses more; without a reader a write is EPIPE.
        assert_eq!(
            k.disposition(Signal::SIGPIPE),
            Ok(Disposition::Ignore),
            "a Rust program is assumed to ignore SIGPIPE, so that writes give EPIPE"
        );
        let (read, write) = held.pipe();
        assert_eq!(k.set_nonblocking(write, true), Ok(()));
        assert!(fill(k, write) > 0);
        assert_eq!(held.close(read), Ok(()));
        assert_eq!(k.write(write, b"x"), Err(Errno::EPIPE));
        assert_eq!(held.close(write), Ok(()));

        for fd in [NEVER_OPEN, Fd(-1)] {
            assert_eq!(k.close(fd), Err(Errno::EBADF), "close({fd})");
            assert_eq!(k.read(fd, &mut buf), Err(Errno::EBADF), "read({fd})");
            assert_eq!(k.write(fd, b"x"), Err(Errno::EBADF), "write({fd})");
            assert_eq!(k.set_nonblocking(fd, true), Err(Errno::EBADF), "{fd}");
            assert_eq!(k.set_cloexec(fd, true), Err(Errno::EBADF), "{fd}");
        }
    }
}

impl Body for poller_is_level_triggered_and_registrations_are_exact {
    // Goal: the poller is level-triggered (a still-ready fd is reported again, end of
    // file too), keeps its registration table exact (EEXIST, ENOENT, EBADF; a new
    // token; nothing for a deregistered fd), reports room and a lost reader as
    // writable, and never reports a wake as an event.
    fn run<K: Kernel>(&self, k: &K) {
        let mut held = Cleanup::new(k);
        let poller = k.new_poller().expect("new_poller");
        let (read, write) = held.pipe();
        assert_eq!(k.set_nonblocking(read, true), Ok(()));
        let mut byte = [0u8; 1];

        poller
            .register(read, Token(1), Interest::READABLE)
            .expect("register");
        // poll clears what the vector held before.
        let mut events = vec![readable(99)];
        poller
            .poll(&mut events, Some(Duration::ZERO))
            .expect("poll");
        assert_eq!(
            events,
            [],
            "an empty pipe is readable, or events were not cleared"
        );

        write_all(k, write, b"x");
        assert_eq!(poll_now(&poller), [readable(1)]);
        assert_eq!(
            poll_now(&poller),
            [readable(1)],
            "not reported again while ready"
        );
        assert_eq!(
            poll_now(&poller),
            [readable(1)],
            "not reported a third time"
        );
        assert_eq!(k.read(read, &mut byte), Ok(1));
        assert_eq!(poll_now(&poller), [], "reported after the data was read");

        // Registration errors.
        let (other_read, other_write) = held.pipe();
        assert_eq!(
            poller.register(read, Token(2), Interest::READABLE),
            Err(Errno::EEXIST)
        );
        assert_eq!(poller.deregister(other_read), Err(Errno::ENOENT));
        assert_eq!(
            poller.reregister(other_read, Token(3), Interest::READABLE),
            Err(Errno::ENOENT)
        );
        assert_eq!(
            poller.register(NEVER_OPEN, Token(4), Interest::READABLE),
            Err(Errno::EBADF)
        );

        // reregister changes the token.
        poller
            .reregister(read, Token(6), Interest::READABLE)
            .expect("reregister");
        write_all(k, write, b"x");
        assert_eq!(poll_now(&poller), [readable(6)]);

        // A deregistered fd is not reported, ready or not; it can be registered again.
        poller.deregister(read).expect("deregister");
        assert_eq!(poll_now(&poller), [], "a deregistered fd was reported");
        assert_eq!(poller.deregister(read), Err(Errno::ENOENT));
        poller
            .register(read, Token(1), Interest::READABLE)
            .expect("register again");
        assert_eq!(poll_now(&poller), [readable(1)]);
        assert_eq!(k.read(read, &mut byte), Ok(1));
        assert_eq!(poll_now(&poller), []);

        // A write end with room is writable, and stays reported.
        poller
            .register(write, Token(2), Interest::WRITABLE)
            .expect("register write end");
        assert_eq!(poll_now(&poller), [writable(2)]);
        assert_eq!(poll_now(&poller), [writable(2)]);

        // Closing the writer makes the registered reader readable: end of file.
        poller
            .register(other_read, Token(3), Interest::READABLE)
            .expect("register");
        assert_eq!(poll_now(&poller), [writable(2)]);
        assert_eq!(held.close(other_write), Ok(()));
        assert_eq!(poll_now(&poller), [writable(2), readable(3)]);
        assert_eq!(k.read(other_read, &mut byte), Ok(0));
        assert_eq!(
            poll_now(&poller),
            [writable(2), readable(3)],
            "end of file is level too"
        );
        poller.deregister(other_read).expect("deregister");
        assert_eq!(held.close(other_read), Ok(()));

        // A wake ends a poll but is not an event.
        let waker = poller.waker();
        assert_eq!(waker.wake(), Ok(()));
        assert_eq!(poll_now(&poller), [writable(2)], "a wake is not an event");

        // Without a reader the write end is still reported writable: the write fails.
        poller.deregister(read).expect("deregister");
        assert_eq!(held.close(read), Ok(()));
        assert_eq!(poll_now(&poller), [writable(2)]);
        assert_eq!(k.write(write, b"x"), Err(Errno::EPIPE));
        poller.deregister(write).expect("deregister");
        assert_eq!(poll_now(&poller), []);
        assert_eq!(held.close(write), Ok(()));

        // With nothing registered, a wake still ends a poll without a timeout.
        assert_eq!(waker.wake(), Ok(()));
        let mut events = vec![readable(99)];
        poller.poll(&mut events, None).expect("poll(None)");
        assert_eq!(events, [], "woken with nothing registered");
    }
}

/// Starts a thread that logs `None` as it starts, then polls `poller` without a
/// timeout and logs what the poll gave.
fn poll_forever_in_thread<K: Kernel>(
    k: &K,
    poller: &Arc<K::Poller>,
    log: &Log<Option<Result<Vec<Event>, Errno>>>,
) -> K::JoinHandle {
    let (poller, log) = (Arc::clone(poller), log.clone());
    k.spawn_thread(
        "lw-poll",
        Box::new(move || {
            log.push(None);
            let mut events = Vec::new();
            let result = poller.poll(&mut events, None).map(|()| events);
            log.push(Some(result));
        }),
    )
    .expect("spawn_thread")
}

impl Body for waker_ends_a_blocking_poll_from_another_thread {
    // Goal: a wake ends a poll(None) of another thread, also when it comes before that
    // poll starts; it is never reported as an event, and wakes before a poll are
    // merged into one.
    fn run<K: Kernel>(&self, k: &K) {
        let mut held = Cleanup::new(k);
        let poller = Arc::new(k.new_poller().expect("new_poller"));
        let (read, write) = held.pipe();
        poller
            .register(read, Token(1), Interest::READABLE)
            .expect("register");
        let waker = poller.waker();

        // A wake once the other thread has started. Not a margin: the outcome is the
        // same whether it has blocked in poll yet or not (a wake before the poll is
        // kept). The pause makes "blocked" the likely case on the real OS and the
        // certain one on the simulator, whose clock moves only when all threads wait.
        let log = Log::new();
        let handle = poll_forever_in_thread(k, &poller, &log);
        let started = wait_until(k, PATIENCE, || (!log.is_empty()).then_some(()));
        assert!(started.is_some(), "the thread did not start");
        k.sleep(Duration::from_millis(1));
        assert_eq!(waker.clone().wake(), Ok(()));
        let ended = wait_until(k, PATIENCE, || (log.len() == 2).then_some(()));
        assert!(ended.is_some(), "poll(None) did not return after wake()");
        assert!(k.join_thread(handle).is_ok());
        assert_eq!(log.take(), [None, Some(Ok(Vec::new()))]);
        assert_eq!(poll_now(&*poller), [], "the waker was reported as an event");

        // Two wakes before the poll starts: it returns at once, and only once.
        assert_eq!(waker.wake(), Ok(()));
        assert_eq!(waker.wake(), Ok(()));
        let handle = poll_forever_in_thread(k, &poller, &log);
        let ended = wait_until(k, PATIENCE, || (log.len() == 2).then_some(()));
        assert!(
            ended.is_some(),
            "poll(None) did not return after an earlier wake()"
        );
        assert!(k.join_thread(handle).is_ok());
        assert_eq!(log.take(), [None, Some(Ok(Vec::new()))]);
        let mut events = Vec::new();
        poller
            .poll(&mut events, Some(Duration::ZERO))
            .expect("poll");
        assert_eq!(events, [], "two wakes were not merged");

        poller.deregister(read).expect("deregister");
        assert_eq!(held.close(read), Ok(()));
        assert_eq!(held.close(write), Ok(()));
    }
}

impl Body for poller_and_waker_close_their_fds {
    // Goal: a poller holds fds of its own; dropping it closes some, its waker keeps
    // working, and once the waker is dropped too every fd they opened is closed.
    // (Which fds those are only the real OS shows: see src/sys/unix/tests.rs.)
    fn run<K: Kernel>(&self, k: &K) {
        let mut held = Cleanup::new(k);
        let before = fd_count(k);
        let (read, write) = held.pipe();
        let poller = k.new_poller().expect("new_poller");
        poller
            .register(read, Token(1), Interest::READABLE)
            .expect("register");
        let waker = poller.waker();
        assert_eq!(waker.wake(), Ok(()));
        assert_eq!(poll_now(&poller), []);
        let with_poller = fd_count(k);
        assert!(
            with_poller > before + 2,
            "the poller holds no fd of its own ({before} fds, {with_poller} with a pipe and a poller)"
        );
        poller.deregister(read).expect("deregister");
        drop(poller);
        assert_eq!(waker.wake(), Ok(()), "the waker stopped working");
        let with_waker = fd_count(k);
        assert!(
            with_waker < with_poller,
            "dropping the poller closed no fd ({with_poller} before, {with_waker} after)"
        );
        drop(waker);
        assert_eq!(held.close(read), Ok(()));
        assert_eq!(held.close(write), Ok(()));
        assert_eq!(
            fd_count(k),
            before,
            "the poller or its waker left an fd open"
        );
    }
}

/// A new pipe, both ends non-blocking and held, its write end installed as the wakeup
/// fd; a failure puts the previous wakeup fd back. Returns the pipe and the previous
/// wakeup fd.
fn wakeup_pipe<K: Kernel>(k: &K, held: &mut Cleanup<K>) -> (Fd, Fd, Option<Fd>) {
    let (read, write) = held.pipe();
    k.set_nonblocking(read, true).expect("set_nonblocking");
    k.set_nonblocking(write, true).expect("set_nonblocking");
    let previous = k.set_wakeup_fd(Some(write)).expect("set_wakeup_fd");
    held.undo(move |k| {
        let _ = k.set_wakeup_fd(previous);
    });
    (read, write, previous)
}

/// Installs `disposition` for `signal`, which must have been at its default, and has
/// a failure put the default back.
fn install<K: Kernel>(k: &K, held: &mut Cleanup<K>, signal: Signal, disposition: Disposition) {
    let previous = k.set_disposition(signal, disposition);
    held.undo(move |k| {
        let _ = k.set_disposition(signal, Disposition::Default);
    });
    assert_eq!(previous, Ok(Disposition::Default), "{signal}");
}

impl Body for wakeup_disposition_writes_the_signal_number {
    // Goal: the Wakeup disposition writes the signal number to the wakeup fd, once per
    // signal; an ignored signal writes nothing; set_disposition and set_wakeup_fd hand
    // back what they replace, and an fd that is not open is refused as wakeup fd.
    fn run<K: Kernel>(&self, k: &K) {
        let mut held = Cleanup::new(k);
        let signal = Signal::SIGUSR2;
        let (read, write, previous_fd) = wakeup_pipe(k, &mut held);
        install(k, &mut held, signal, Disposition::Wakeup);
        assert_eq!(k.disposition(signal), Ok(Disposition::Wakeup));

        assert_eq!(k.raise(signal), Ok(()));
        assert_eq!(drain(k, read), (vec![12], false));
        assert_eq!(k.raise(signal), Ok(()));
        assert_eq!(k.raise(signal), Ok(()));
        assert_eq!(drain(k, read), (vec![12, 12], false));

        // Ignored: nothing happens, nothing is written.
        assert_eq!(
            k.set_disposition(signal, Disposition::Ignore),
            Ok(Disposition::Wakeup)
        );
        assert_eq!(k.disposition(signal), Ok(Disposition::Ignore));
        assert_eq!(k.raise(signal), Ok(()));
        assert_eq!(drain(k, read), (vec![], false));

        assert_eq!(
            k.set_disposition(signal, Disposition::Default),
            Ok(Disposition::Ignore)
        );
        assert_eq!(k.disposition(signal), Ok(Disposition::Default));
        assert_eq!(k.set_wakeup_fd(previous_fd), Ok(Some(write)));
        // An fd that is not open is refused and changes nothing.
        assert_eq!(k.set_wakeup_fd(Some(NEVER_OPEN)), Err(Errno::EBADF));
        assert_eq!(k.set_wakeup_fd(previous_fd), Ok(previous_fd));
        assert_eq!(held.close(read), Ok(()));
        assert_eq!(held.close(write), Ok(()));
    }
}

impl Body for wakeup_handler_drops_the_byte_on_a_full_pipe {
    // Goal: the Wakeup handler does not block on a full wakeup pipe: the byte is lost,
    // and what the pipe held is untouched. (That it keeps the errno of the code it
    // interrupted only the real OS shows: see src/sys/unix/tests.rs.)
    fn run<K: Kernel>(&self, k: &K) {
        let mut held = Cleanup::new(k);
        let signal = Signal::SIGUSR2;
        let (read, write, previous_fd) = wakeup_pipe(k, &mut held);
        install(k, &mut held, signal, Disposition::Wakeup);

        let written = fill(k, write);
        assert_eq!(k.raise(signal), Ok(()));
        let (bytes, eof) = drain(k, read);
        assert!(!eof);
        assert_eq!(bytes.len(), written, "the signal byte got into a full pipe");
        assert!(
            bytes.iter().all(|&b| b == 0),
            "the signal byte got into a full pipe"
        );

        assert_eq!(
            k.set_disposition(signal, Disposition::Default),
            Ok(Disposition::Wakeup)
        );
        assert_eq!(k.set_wakeup_fd(previous_fd), Ok(Some(write)));
        assert_eq!(held.close(read), Ok(()));
        assert_eq!(held.close(write), Ok(()));
    }
}

impl Body for set_disposition_rejects_invalid_signals {
    // Goal: invalid signal numbers are refused with EINVAL by every signal call, as are
    // handlers for SIGKILL and SIGSTOP (which stay at their default) and an unknown
    // Foreign token, which changes nothing.
    fn run<K: Kernel>(&self, k: &K) {
        let all = [
            Disposition::Default,
            Disposition::Ignore,
            Disposition::Wakeup,
        ];
        for signal in [Signal(0), Signal(-1), Signal(65), Signal(i32::MAX)] {
            for disposition in all {
                assert_eq!(
                    k.set_disposition(signal, disposition),
                    Err(Errno::EINVAL),
                    "{signal} {disposition:?}"
                );
            }
            assert_eq!(k.disposition(signal), Err(Errno::EINVAL), "{signal}");
            assert_eq!(k.block_signal(signal), Err(Errno::EINVAL), "{signal}");
            assert_eq!(k.unblock_signal(signal), Err(Errno::EINVAL), "{signal}");
            if signal != Signal(0) {
                assert_eq!(k.raise(signal), Err(Errno::EINVAL), "raise({signal})");
            }
        }
        for signal in [Signal::SIGKILL, Signal::SIGSTOP] {
            for disposition in all {
                assert_eq!(
                    k.set_disposition(signal, disposition),
                    Err(Errno::EINVAL),
                    "{signal} {disposition:?}"
                );
            }
            assert_eq!(k.disposition(signal), Ok(Disposition::Default), "{signal}");
        }
        let before = k.disposition(Signal::SIGUSR2);
        assert_eq!(
            k.set_disposition(Signal::SIGUSR2, Disposition::Foreign(u64::MAX)),
            Err(Errno::EINVAL)
        );
        assert_eq!(k.disposition(Signal::SIGUSR2), before);
    }
}

impl Body for blocked_signal_is_handled_on_unblock {
    // Goal: a signal blocked in the calling thread is not handled (no byte written)
    // until it is unblocked, and is then handled once; block and unblock say whether
    // it was blocked. (That it is pending meanwhile, as sigpending reports, only the
    // real OS shows: see src/sys/unix/tests.rs.)
    fn run<K: Kernel>(&self, k: &K) {
        let mut held = Cleanup::new(k);
        let signal = Signal::SIGUSR2;
        let (read, write, previous_fd) = wakeup_pipe(k, &mut held);
        install(k, &mut held, signal, Disposition::Wakeup);

        assert_eq!(k.block_signal(signal), Ok(false));
        // Undone first: a pending signal is handled while the handler and pipe exist.
        held.undo(move |k| {
            let _ = k.unblock_signal(signal);
        });
        assert_eq!(k.block_signal(signal), Ok(true), "blocked twice");
        assert_eq!(k.raise(signal), Ok(()));
        assert_eq!(
            drain(k, read),
            (vec![], false),
            "a blocked signal was handled"
        );

        assert_eq!(k.unblock_signal(signal), Ok(true));
        assert_eq!(drain(k, read), (vec![12], false), "not handled on unblock");
        assert_eq!(k.unblock_signal(signal), Ok(false), "unblocked twice");

        assert_eq!(
            k.set_disposition(signal, Disposition::Default),
            Ok(Disposition::Wakeup)
        );
        assert_eq!(k.set_wakeup_fd(previous_fd), Ok(Some(write)));
        assert_eq!(held.close(read), Ok(()));
        assert_eq!(held.close(write), Ok(()));
    }
}

impl Body for realtime_signals_pass_through_by_number {
    // Goal: realtime signals (34..=64 on Linux), which the seam accepts as CPython
    // does, are handled, blocked, sent and reported by number like the classic ones: a
    // child started at the default actions dies of one, and both waits report it.
    fn run<K: Kernel>(&self, k: &K) {
        for signal in [Signal(40), Signal(Signal::MAX)] {
            let mut held = Cleanup::new(k);
            let (read, write, previous_fd) = wakeup_pipe(k, &mut held);
            install(k, &mut held, signal, Disposition::Wakeup);
            assert_eq!(k.disposition(signal), Ok(Disposition::Wakeup), "{signal}");

            assert_eq!(k.block_signal(signal), Ok(false), "{signal}");
            held.undo(move |k| {
                let _ = k.unblock_signal(signal);
            });
            assert_eq!(k.raise(signal), Ok(()), "{signal}");
            assert_eq!(drain(k, read), (vec![], false), "{signal} blocked");
            assert_eq!(k.unblock_signal(signal), Ok(true), "{signal}");
            let byte = signal.0 as u8;
            assert_eq!(drain(k, read), (vec![byte], false), "{signal}");

            // The child is signalled once it says it runs the shell: before `exec` it
            // would still have this process's handler.
            let mut request = sh("echo ready; read -r line");
            request.stdin = Stdio::Pipe;
            request.stdout = Stdio::Pipe;
            request.restore_signals = true;
            let child = held.spawned(k.spawn(&request).expect("spawn sh"));
            let pid = child.pid;
            let mut ready = [0u8; 6];
            let stdout = child.stdout.expect("stdout");
            assert_eq!(k.read(stdout, &mut ready), Ok(6), "{signal}");
            assert_eq!(&ready, b"ready\n");
            assert_eq!(k.kill(pid, Some(signal)), Ok(()), "{signal}");
            let peeked = k.wait_peek(WaitTarget::Pid(pid), WaitMode::Block);
            let status = reap_status(k, pid);
            assert_eq!(peeked, Ok(WaitStatus::Terminated(pid, status)), "{signal}");
            assert_eq!(status.signal(), Some(signal), "{signal}: {status:?}");
            assert_eq!(status.returncode(), -signal.0, "{signal}: {status:?}");
            for fd in [child.stdin.expect("stdin"), stdout] {
                assert_eq!(held.close(fd), Ok(()));
            }

            assert_eq!(
                k.set_disposition(signal, Disposition::Default),
                Ok(Disposition::Wakeup),
                "{signal}"
            );
            assert_eq!(k.set_wakeup_fd(previous_fd), Ok(Some(write)));
            assert_eq!(held.close(read), Ok(()));
            assert_eq!(held.close(write), Ok(()));
        }
    }
}

fn main() -> ExitCode {
    // The bodies expect these signals at their defaults.
    testing::undo_inherited_ignores(&[Signal::SIGUSR2, Signal(40), Signal(Signal::MAX)]);
    testing::main(tests())
}
