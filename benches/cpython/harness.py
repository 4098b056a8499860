#!/usr/bin/env python3
"""Spawn+reap of /bin/true under one asyncio child watcher, for loopwatch's comparison.

Measures, with CPython's own asyncio and the watcher named on the command line, the
time of one reap: `asyncio.create_subprocess_exec("/bin/true")` and `wait()`, run by
one `run_until_complete`, as loopwatch's `Bench::spawn_reap` does. For each K given,
K idle `sleep` children are first spawned through the same loop and watcher (so the
watcher has K registered children), the reaps are timed, and then the idle children
are killed and reaped. K = 0 is the plain sequential case.

Standard library only; runs on CPython 3.7 to 3.13 (the child watchers are gone in
3.14). Prints one JSON object on stdout:

    {"implementation": "CPython", "version": "3.12.1", "watcher": "safe",
     "available": true, "cases": [{"k": 0, "samples_ns": [...], "median_ns": 812345},
     ...]}

or, for a watcher this version lacks (MultiLoop and Threaded before 3.8, Pidfd
before 3.9 or where `pidfd_open` fails):

    {"implementation": "CPython", "version": "3.7.16", "watcher": "pidfd",
     "available": false, "reason": "..."}

Exit status: 0 with the JSON, 1 when a measurement failed (the reason on stderr),
2 for bad arguments. A child whose exit the watcher does not report within
--timeout seconds is killed and reaped here, and the run fails.

    python3 harness.py --watcher pidfd --k 0,100,1000 --reps 20
"""

import argparse
import asyncio
import json
import os
import platform
import signal
import sys
import threading
import time
import warnings

WATCHERS = {
    "safe": ("SafeChildWatcher", (3, 7)),
    "fast": ("FastChildWatcher", (3, 7)),
    "multi_loop": ("MultiLoopChildWatcher", (3, 8)),
    "threaded": ("ThreadedChildWatcher", (3, 8)),
    "pidfd": ("PidfdChildWatcher", (3, 9)),
}

TRUE = "/bin/true"
IDLE = ("sleep", "100000")

# 3.12 and 3.13 deprecate every child-watcher class and the policy's get/set of the
# watcher; this harness measures exactly that API, so those warnings are noise.
warnings.filterwarnings(
    "ignore",
    message=r".*(ChildWatcher|child_watcher).*",
    category=DeprecationWarning,
)


class Unavailable(Exception):
    """This interpreter does not offer the watcher."""


def version():
    return platform.python_version()


def watcher_class(name):
    class_name, since = WATCHERS[name]
    if sys.version_info[:2] < since:
        raise Unavailable(
            "asyncio.%s is new in Python %d.%d" % (class_name, since[0], since[1])
        )
    cls = getattr(asyncio, class_name, None)
    if cls is None:
        raise Unavailable("this asyncio has no %s" % class_name)
    if name == "pidfd":
        pidfd_open = getattr(os, "pidfd_open", None)
        if pidfd_open is None:
            raise Unavailable("os.pidfd_open is missing")
        try:
            fd = pidfd_open(os.getpid())
        except OSError as error:
            raise Unavailable("pidfd_open failed: %s" % error)
        os.close(fd)
    return cls


class Setup:
    """A new loop with a new watcher of one kind as the policy's watcher, attached."""

    def __init__(self, cls):
        if threading.current_thread() is not threading.main_thread():
            raise RuntimeError("the harness must run in the main thread")
        self.policy = asyncio.get_event_loop_policy()
        self.loop = asyncio.new_event_loop()
        try:
            self.watcher = cls()
            # set_child_watcher closes the policy's previous watcher, if any.
            self.policy.set_child_watcher(self.watcher)
            # 3.7's policy attaches only in set_event_loop (from the main thread);
            # attach explicitly too: every watcher's attach_loop may be repeated.
            self.watcher.attach_loop(self.loop)
            asyncio.set_event_loop(self.loop)
        except BaseException:
            self.loop.close()
            raise

    def close(self):
        try:
            # Detaches (removes the SIGCHLD handler, joins Threaded's threads) and
            # closes the watcher while the loop is still open.
            self.policy.set_child_watcher(None)
        finally:
            asyncio.set_event_loop(None)
            self.loop.close()


async def wait_or_reap(process, timeout, what):
    """`process.wait()`, or, when the watcher has not reported the exit within
    `timeout` seconds (CPython's MultiLoopChildWatcher can lose one), kill the child,
    reap it here and raise."""
    try:
        return await asyncio.wait_for(process.wait(), timeout)
    except asyncio.TimeoutError:
        pass
    try:
        os.kill(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    try:
        os.waitpid(process.pid, 0)
    except ChildProcessError:
        pass
    raise RuntimeError(
        "the watcher did not report the exit of %s (pid %d) within %g s"
        % (what, process.pid, timeout)
    )


async def spawn_true(timeout):
    process = await asyncio.create_subprocess_exec(TRUE)
    code = await wait_or_reap(process, timeout, TRUE)
    if code != 0:
        raise RuntimeError("%s ended with returncode %r" % (TRUE, code))


async def start_idle(count, started):
    for _ in range(count):
        started.append(await asyncio.create_subprocess_exec(*IDLE))


async def stop_idle(processes, timeout):
    # One at a time: a burst of SIGCHLDs lets MultiLoopChildWatcher's Python-level
    # handler run nested in itself, and the outer pass then finds the child already
    # reaped and reports it with returncode 255.
    bad = []
    lost = []
    for process in processes:
        if process.returncode is None:
            try:
                process.kill()
            except ProcessLookupError:
                pass
        try:
            code = await wait_or_reap(process, timeout, "an idle child")
        except RuntimeError as error:
            lost.append(str(error))
            # Once the watcher has lost an exit, the rest get a short wait each.
            timeout = min(timeout, 2.0)
            continue
        if code != -signal.SIGKILL:
            bad.append(code)
    if lost:
        raise RuntimeError("%d idle children lost, the first: %s" % (len(lost), lost[0]))
    if bad:
        raise RuntimeError("idle children ended with returncodes %r" % bad[:5])


def measure_case(loop, k, reps, warmup, timeout):
    idle = []
    samples = []
    try:
        loop.run_until_complete(start_idle(k, idle))
        for _ in range(warmup):
            loop.run_until_complete(spawn_true(timeout))
        for _ in range(reps):
            start = time.perf_counter_ns()
            loop.run_until_complete(spawn_true(timeout))
            samples.append(time.perf_counter_ns() - start)
    finally:
        # Every idle child started, even after a failure, is killed and reaped.
        loop.run_until_complete(stop_idle(idle, timeout))
    ordered = sorted(samples)
    return {"k": k, "samples_ns": samples, "median_ns": ordered[(len(ordered) - 1) // 2]}


def run(name, ks, reps, warmup, timeout):
    report = {"implementation": "CPython", "version": version(), "watcher": name}
    try:
        cls = watcher_class(name)
    except Unavailable as reason:
        report["available"] = False
        report["reason"] = str(reason)
        return report
    setup = Setup(cls)
    try:
        cases = [measure_case(setup.loop, k, reps, warmup, timeout) for k in ks]
    finally:
        setup.close()
    report["available"] = True
    report["cases"] = cases
    return report


def k_list(text):
    try:
        ks = [int(item) for item in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(
            "%r is not a comma-separated list of numbers (e.g. 0,100,1000)" % text
        )
    if any(k < 0 for k in ks):
        raise argparse.ArgumentTypeError("K cannot be negative: %r" % text)
    return ks


def positive(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError("%r is not a number" % text)
    if value < 1:
        raise argparse.ArgumentTypeError("%r: at least 1" % text)
    return value


def count(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError("%r is not a number" % text)
    if value < 0:
        raise argparse.ArgumentTypeError("%r cannot be negative" % text)
    return value


def main(argv):
    parser = argparse.ArgumentParser(
        description="Per-reap time of asyncio spawn+wait of /bin/true under one "
        "child watcher, with K idle registered children; JSON on stdout."
    )
    parser.add_argument("--watcher", required=True, choices=sorted(WATCHERS))
    parser.add_argument(
        "--k", type=k_list, default=[0], help="comma-separated K values (default 0)"
    )
    parser.add_argument(
        "--reps", type=positive, default=20, help="timed reaps per K (default 20)"
    )
    parser.add_argument(
        "--warmup", type=count, default=2, help="untimed reaps first (default 2)"
    )
    parser.add_argument(
        "--timeout",
        type=positive,
        default=30,
        help="seconds to wait for the watcher to report one exit (default 30)",
    )
    args = parser.parse_args(argv)
    try:
        report = run(args.watcher, args.k, args.reps, args.warmup, args.timeout)
    except Exception as error:
        sys.stderr.write(
            "harness.py (Python %s, %s): %s: %s\n"
            % (version(), args.watcher, type(error).__name__, error)
        )
        return 1
    json.dump(report, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    if sys.version_info[:2] < (3, 7):
        sys.stderr.write(
            "harness.py needs CPython 3.7 to 3.13, this is %s\n" % version()
        )
        sys.exit(2)
    sys.exit(main(sys.argv[1:]))
