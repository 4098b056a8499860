#!/usr/bin/env python3
"""Run one loopwatch scenario (format `loopwatch-scenario/1`) on real CPython.

Usage: python3 runner.py SCENARIO.json WATCHER [--force]

SCENARIO.json is a scenario file, or the scenario's JSON text itself (an argument
that starts with `{`), as loopwatch passes it.

WATCHER is one of safe, fast, multi_loop, threaded, pidfd. The script prints one
JSON object on stdout:

    {"scenario": name, "watcher": w, "backend": "cpython3.X", "trace": [...]}

or, when the watcher does not exist in this CPython (or is not listed in the
scenario's `watchers`, unless --force is given):

    {"scenario": name, "watcher": w, "backend": "cpython3.X", "skipped": reason}

See ../SCENARIOS.md for the format, the operations and the trace. Standard library
only; runs unchanged on CPython 3.7 to 3.13. Diagnostics (asyncio's own warnings,
teardown notes) go to stderr.

Children are started with os.fork() + os.execv(), never with subprocess.Popen:
Popen keeps a list of abandoned children and reaps them in _cleanup(), which would
be a second reaper the watchers do not expect. As Popen(restore_signals=True) does
for SIGPIPE/SIGXFSZ, and as loopwatch's runner does, the child starts with every
signal at its default, so that what the runner itself inherited ignored (SIGHUP
under nohup, SIGINT/SIGQUIT as a background job) does not reach it; signals are
blocked across fork() so that a signal sent before exec acts as it would after it.

Points SCENARIOS.md leaves open, as this runner settles them:

- Operations other than `wait` and `sleep` never yield to the loop, so nothing is
  reaped between two consecutive non-waiting steps (Safe/Fast handle SIGCHLD only
  when the loop runs; MultiLoop's handler may run between any two bytecodes).
- `wait` returns as soon as the child has had at least one callback, ever: a second
  `wait` after a callback returns at once (use `sleep` to catch a later callback).
- `register` is `with watcher: add_child_handler(...)`; `start` forks inside the
  same `with` block as its add_child_handler. A `start` whose add_child_handler
  raises prints `error start <child> <Kind>` (the child exists and is torn down).
- Teardown, after the last step, child by child in creation order: a child that is
  still running is sent SIGKILL and waited for until it is no longer running; if the
  child was ever registered and has had no callback yet, its callback is awaited
  (TEARDOWN_WAIT_S when it should come; TEARDOWN_GRACE_S when its handler was
  removed or it was already reaped elsewhere, since only some watchers report
  those). Then the loop runs 50 ms more (so Fast reaps what it will), and each
  child still a zombie gives `zombie <child>` and is reaped. A teardown wait that
  times out adds no trace line (a note goes to stderr).
- `kill` of a child that is no longer ours (reaped: waitid gives ECHILD) reports
  `error kill <child> ProcessLookupError` without calling os.kill: its pid may have
  been reused by an unrelated process. The teardown never signals such pids either.
- A scenario that would block for ever (a `foreign_wait` on a `forever` child)
  trips a WATCHDOG_S watchdog: every child is killed, the trace gets
  `error watchdog - Timeout`, and the runner exits with status 3.
"""

import asyncio
import json
import os
import shutil
import signal
import sys
import threading
import time
import traceback
import warnings

try:
    import resource
except ImportError:  # not on every platform
    resource = None

# 3.12+: the watcher constructors, set_child_watcher and fork() in a multi-threaded
# process warn; the trace is about behaviour, not about deprecation.
warnings.simplefilter("ignore", DeprecationWarning)

FORMAT = "loopwatch-scenario/1"
BACKEND = "cpython%d.%d" % sys.version_info[:2]

WATCHERS = {
    "safe": "SafeChildWatcher",
    "fast": "FastChildWatcher",
    "multi_loop": "MultiLoopChildWatcher",
    "threaded": "ThreadedChildWatcher",
    "pidfd": "PidfdChildWatcher",
}

DEFAULT_WAIT_MS = 5000
# Teardown: how long to await the callback of a registered child that is still
# running (and is killed here) or a zombie: the watcher must report it.
TEARDOWN_WAIT_S = 1.0
# Teardown: how long to await the callback of a child whose handler was removed, or
# which is already reaped: some watchers report it (Threaded, Pidfd 3.12+ ignore
# remove; Threaded/Safe/MultiLoop/Pidfd report a foreign-reaped child as 255), some
# never do (Fast F-7, removed handlers elsewhere). The grace is ample for a callback
# that is already on its way.
TEARDOWN_GRACE_S = 0.3
# Teardown: how long to wait for a SIGKILLed child to stop running.
DEATH_WAIT_S = 3.0
# The loop never sleeps longer than this (a ticker task). MultiLoop's SIGCHLD handler
# is a plain Python signal handler without a wakeup fd: a SIGCHLD that arrives just
# before the loop enters epoll_wait() only runs once epoll_wait() returns (the lost
# wakeup behind bpo-38323), which would push the callback to the end of the next
# wait's timeout and make the trace depend on that race. A busy loop bounds the
# delay; no other behaviour changes.
TICK_S = 0.01
# Hard wall-clock limit for the whole run (SIGALRM watchdog, main thread only).
WATCHDOG_S = 120


def log(msg):
    sys.stderr.write("runner: %s\n" % msg)
    sys.stderr.flush()


def emit(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


class ScenarioError(Exception):
    pass


# --------------------------------------------------------------------------------
# Scenario loading and a structural check (the JSON Schema is the reference; this
# only refuses what the runner could not execute).

STEP_FIELDS = {
    "start": ({"child", "fate"}, set()),
    "spawn": ({"child", "fate"}, set()),
    "register": ({"child"}, set()),
    "remove": ({"child"}, set()),
    "foreign_wait": ({"child"}, set()),
    "wait": ({"child"}, {"timeout_ms"}),
    "sleep": ({"ms"}, set()),
    "kill": ({"child", "signal"}, set()),
    "active": (set(), set()),
}


def _is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


SIGNAL_NAMES = {17: "SIGCHLD", 18: "SIGCONT", 19: "SIGSTOP", 20: "SIGTSTP",
                21: "SIGTTIN", 22: "SIGTTOU", 23: "SIGURG", 28: "SIGWINCH"}


def check_signal(field, signum, as_fate):
    """The same refusals as the Rust parser (scenario.rs): signals whose effect the
    backends would not agree on."""
    if not _is_int(signum) or not 1 <= signum <= 64:
        raise ScenarioError("%s %r: use 1..64" % (field, signum))
    name = SIGNAL_NAMES.get(signum, "a signal")
    if signum in (32, 33):
        raise ScenarioError("%s %d is reserved by the C library, which catches it"
                            % (field, signum))
    if signum in (20, 21, 22):
        raise ScenarioError("%s %d (%s) stops a child only when its process group is "
                            "not orphaned" % (field, signum, name))
    if as_fate and signum in (17, 18, 23, 28):
        raise ScenarioError("%s %d (%s) is ignored by default: the child would not "
                            "die from it" % (field, signum, name))
    if as_fate and signum == 19:
        raise ScenarioError("%s 19 (SIGSTOP) stops the child instead of ending it"
                            % field)


def check_fate(fate, where):
    if not isinstance(fate, dict):
        raise ScenarioError("%s: fate must be an object" % where)
    kinds = [k for k in ("exit", "signal", "forever") if k in fate]
    if len(kinds) != 1:
        raise ScenarioError("%s: fate needs exactly one of exit/signal/forever" % where)
    extra = set(fate) - {"exit", "signal", "forever", "after_ms"}
    if extra:
        raise ScenarioError("%s: unknown fate keys %s" % (where, sorted(extra)))
    if "exit" in fate and not (_is_int(fate["exit"]) and 0 <= fate["exit"] <= 255):
        raise ScenarioError("%s: exit must be 0..255" % where)
    if "signal" in fate:
        check_signal("%s: fate.signal" % where, fate["signal"], True)
    if "forever" in fate and fate["forever"] is not True:
        raise ScenarioError("%s: forever must be true" % where)
    if "after_ms" in fate and not (_is_int(fate["after_ms"]) and fate["after_ms"] >= 0):
        raise ScenarioError("%s: after_ms must be an integer >= 0" % where)


def load_scenario(path):
    if path.lstrip().startswith("{"):
        sc = json.loads(path)
    else:
        with open(path) as f:
            sc = json.load(f)
    if not isinstance(sc, dict):
        raise ScenarioError("scenario must be a JSON object")
    if sc.get("format") != FORMAT:
        raise ScenarioError("format must be %r" % FORMAT)
    for key in ("name", "description", "clauses", "watchers", "steps"):
        if key not in sc:
            raise ScenarioError("missing key %r" % key)
    if not isinstance(sc["steps"], list):
        raise ScenarioError("steps must be a list")
    known = set()
    for i, step in enumerate(sc["steps"]):
        where = "step %d" % i
        if not isinstance(step, dict) or step.get("op") not in STEP_FIELDS:
            raise ScenarioError("%s: unknown op" % where)
        op = step["op"]
        required, optional = STEP_FIELDS[op]
        fields = set(step) - {"op"}
        if not required <= fields or fields - required - optional:
            raise ScenarioError("%s (%s): fields must be %s (+ optional %s)"
                                % (where, op, sorted(required), sorted(optional)))
        if "child" in step:
            child = step["child"]
            if not isinstance(child, str) or not child:
                raise ScenarioError("%s: bad child name" % where)
            if op in ("start", "spawn"):
                if child in known:
                    raise ScenarioError("%s: child %r is created twice" % (where, child))
                check_fate(step["fate"], where)
                known.add(child)
            elif child not in known:
                raise ScenarioError("%s: child %r used before start/spawn" % (where, child))
        if op == "sleep" and not (_is_int(step["ms"]) and step["ms"] >= 0):
            raise ScenarioError("%s: ms must be an integer >= 0" % where)
        if op == "wait" and "timeout_ms" in step and not (
                _is_int(step["timeout_ms"]) and step["timeout_ms"] >= 1):
            raise ScenarioError("%s: timeout_ms must be an integer >= 1" % where)
        if op == "kill":
            check_signal("%s: kill.signal" % where, step["signal"], False)
    return sc


# --------------------------------------------------------------------------------
# Children

SLEEP = shutil.which("sleep") or "/bin/sleep"


def seconds(ms):
    """after_ms -> the argument of sh's sleep: 20 -> '0.02', 1500 -> '1.5', 0 -> '0'."""
    return ("%d.%03d" % divmod(ms, 1000)).rstrip("0").rstrip(".")


def fate_argv(fate):
    if fate.get("forever"):
        return SLEEP, ["sleep", "1000"]
    if "exit" in fate:
        action = "exit %d" % fate["exit"]
    else:
        action = "kill -%d $$" % fate["signal"]
    if "after_ms" in fate:
        action = "sleep %s; %s" % (seconds(fate["after_ms"]), action)
    return "/bin/sh", ["/bin/sh", "-c", action]


def _blockable_signals():
    """Every signal number pthread_sigmask accepts (glibc reserves 32 and 33)."""
    if hasattr(signal, "valid_signals"):  # 3.8+
        return sorted(int(s) for s in signal.valid_signals() if 0 < int(s) < signal.NSIG)
    old = signal.pthread_sigmask(signal.SIG_BLOCK, [])
    sigs = []
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", RuntimeWarning)
            for signum in range(1, signal.NSIG):
                try:
                    signal.pthread_sigmask(signal.SIG_BLOCK, [signum])
                except (ValueError, OSError, RuntimeWarning):
                    continue
                sigs.append(signum)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)
    return sigs


BLOCKABLE = _blockable_signals()


def _child_after_fork(path, argv, mask):
    """In the forked child: never returns into the runner."""
    try:
        # Until exec, the child still has the parent's Python handlers (SIGINT's
        # KeyboardInterrupt, the watcher's SIGCHLD handler, the watchdog's SIGALRM).
        # Signals are blocked across fork(); put every caught signal back to its
        # default before unblocking, so a signal sent before exec (a `kill` step
        # right after `start`) acts exactly as it would after exec. An ignored
        # signal would survive exec: whether Python ignores it (SIGPIPE, SIGXFSZ)
        # or the runner was started with it ignored, the scenario's child must not.
        for signum in BLOCKABLE:
            try:
                handler = signal.getsignal(signum)
                if callable(handler) or handler == signal.SIG_IGN:
                    signal.signal(signum, signal.SIG_DFL)
            except (ValueError, OSError, RuntimeError):
                pass
        if resource is not None:
            try:
                resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # no core files
            except (ValueError, OSError):
                pass
        fd = os.open(os.devnull, os.O_RDWR)
        os.dup2(fd, 0)
        os.dup2(fd, 1)  # the runner's stdout carries the JSON result
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        os.execv(path, argv)
    finally:
        os._exit(127)


def fork_exec(fate):
    """fork() + execv(); returns the pid."""
    path, argv = fate_argv(fate)
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, BLOCKABLE)
    pid = -1
    try:
        pid = os.fork()
        if pid == 0:
            _child_after_fork(path, argv, mask)
    finally:
        if pid != 0:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
    return pid


class Child(object):
    def __init__(self, name, pid, fut):
        self.name = name
        self.pid = pid
        self.fut = fut            # resolved by the first callback
        self.callbacks = 0        # callbacks received
        self.registered = False   # a registration succeeded at some point
        self.removed = False      # remove_child_handler was called after that
        self.reaped = False       # reaped by this runner (foreign_wait/teardown)


def child_state(pid):
    """'running', 'zombie' or 'gone' (not our child any more: reaped)."""
    try:
        res = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:
        return "gone"
    if res is None or getattr(res, "si_pid", 0) == 0:
        return "running"
    return "zombie"


def returncode_of(status):
    """spec R-1: exit code, or -signal; else the raw status."""
    if os.WIFSIGNALED(status):
        return -os.WTERMSIG(status)
    if os.WIFEXITED(status):
        return os.WEXITSTATUS(status)
    return status


# --------------------------------------------------------------------------------
# The run

class Runner(object):
    def __init__(self, scenario, watcher_name, cls):
        self.sc = scenario
        self.watcher_name = watcher_name
        self.cls = cls
        self.trace = []
        self.children = {}       # name -> Child
        self.order = []          # creation order
        self.loop = None
        self.watcher = None
        self.loop_thread = None

    # -- callback ------------------------------------------------------------

    def on_exit(self, pid, returncode, name):
        # Recorded at call time, whatever the thread (Safe/Fast call it
        # synchronously, MultiLoop/Threaded through call_soon_threadsafe, Pidfd
        # from its reader).
        self.trace.append("exit %s %d" % (name, returncode))
        if threading.get_ident() == self.loop_thread:
            self._resolve(name)
        else:
            self.loop.call_soon_threadsafe(self._resolve, name)

    def _resolve(self, name):
        child = self.children.get(name)
        if child is None:
            return
        child.callbacks += 1
        if not child.fut.done():
            child.fut.set_result(None)

    def error(self, op, child, exc):
        self.trace.append("error %s %s %s" % (op, child, type(exc).__name__))

    # -- operations ----------------------------------------------------------

    def _new_child(self, name, pid):
        child = Child(name, pid, self.loop.create_future())
        self.children[name] = child
        self.order.append(name)
        return child

    def op_start(self, step):
        name = step["child"]
        with self.watcher:
            try:
                pid = fork_exec(step["fate"])
            except Exception as exc:
                self.error("start", name, exc)
                return
            child = self._new_child(name, pid)
            try:
                self.watcher.add_child_handler(pid, self.on_exit, name)
            except Exception as exc:
                self.error("start", name, exc)
            else:
                child.registered = True
                child.removed = False

    def op_spawn(self, step):
        name = step["child"]
        try:
            pid = fork_exec(step["fate"])
        except Exception as exc:
            self.error("spawn", name, exc)
            return
        self._new_child(name, pid)

    def _child(self, op, name):
        child = self.children.get(name)
        if child is None:  # its start/spawn failed
            self.trace.append("error %s %s NoChild" % (op, name))
        return child

    def op_register(self, step):
        child = self._child("register", step["child"])
        if child is None:
            return
        try:
            with self.watcher:
                self.watcher.add_child_handler(child.pid, self.on_exit, child.name)
        except Exception as exc:
            self.error("register", child.name, exc)
        else:
            child.registered = True
            child.removed = False

    def op_remove(self, step):
        child = self._child("remove", step["child"])
        if child is None:
            return
        try:
            removed = self.watcher.remove_child_handler(child.pid)
        except Exception as exc:
            self.error("remove", child.name, exc)
            return
        if child.registered:
            child.removed = True
        if removed is True:
            text = "true"
        elif removed is False:
            text = "false"
        else:
            text = repr(removed)
        self.trace.append("removed %s %s" % (child.name, text))

    async def op_wait(self, step):
        child = self._child("wait", step["child"])
        if child is None:
            return
        timeout = step.get("timeout_ms", DEFAULT_WAIT_MS) / 1000.0
        done, _ = await asyncio.wait([child.fut], timeout=timeout)
        if not done:
            self.trace.append("timeout %s" % child.name)

    async def op_sleep(self, step):
        await asyncio.sleep(step["ms"] / 1000.0)

    def op_kill(self, step):
        child = self._child("kill", step["child"])
        if child is None:
            return
        try:
            if child_state(child.pid) == "gone":
                # Reaped already: its pid may belong to another process by now, so
                # it is not signalled; os.kill on a free pid raises the same error.
                raise ProcessLookupError(3, "No such process")
            os.kill(child.pid, step["signal"])
        except Exception as exc:
            self.error("kill", child.name, exc)

    def op_foreign_wait(self, step):
        child = self._child("foreign_wait", step["child"])
        if child is None:
            return
        # Foreign code's blocking waitpid in the loop's thread: the loop is blocked
        # meanwhile, as it would be.
        try:
            _, status = os.waitpid(child.pid, 0)
        except ChildProcessError:
            self.trace.append("foreign %s ECHILD" % child.name)
        except Exception as exc:
            self.error("foreign_wait", child.name, exc)
        else:
            child.reaped = True
            self.trace.append("foreign %s %d" % (child.name, returncode_of(status)))

    def op_active(self, step):
        try:
            active = self.watcher.is_active()
        except Exception as exc:
            self.error("active", "-", exc)
            return
        self.trace.append("active %s" % ("true" if active else "false"))

    # -- the coroutine -------------------------------------------------------

    async def tick(self):
        while True:
            await asyncio.sleep(TICK_S)

    async def main(self):
        ticker = self.loop.create_task(self.tick())
        try:
            for step in self.sc["steps"]:
                handler = getattr(self, "op_" + step["op"])
                result = handler(step)
                if asyncio.iscoroutine(result):
                    await result
        finally:
            try:
                await self.teardown_children()
            finally:
                ticker.cancel()
                try:
                    await ticker
                except asyncio.CancelledError:
                    pass

    async def teardown_children(self):
        """Kill what still runs, one child at a time, awaiting each callback."""
        for name in self.order:
            child = self.children[name]
            if child.reaped:
                continue
            state = child_state(child.pid)
            if state == "running":
                try:
                    os.kill(child.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                await self.until_dead(child)
            if child.registered and child.callbacks == 0:
                must_report = not child.removed and state != "gone"
                timeout = TEARDOWN_WAIT_S if must_report else TEARDOWN_GRACE_S
                done, _ = await asyncio.wait([child.fut], timeout=timeout)
                if not done and must_report:
                    log("teardown: no callback for registered child %s (pid %d) in %gs"
                        % (name, child.pid, timeout))
        # Let the watcher handle any SIGCHLD still pending (Fast reaps unknown
        # children here), so the zombie list below does not depend on timing.
        await asyncio.sleep(0.05)
        await asyncio.sleep(0)

    async def until_dead(self, child):
        deadline = time.monotonic() + DEATH_WAIT_S
        while child_state(child.pid) == "running":
            if time.monotonic() > deadline:
                log("teardown: child %s (pid %d) survives SIGKILL" % (child.name, child.pid))
                return
            await asyncio.sleep(0.002)

    def list_zombies(self):
        for name in self.order:
            child = self.children[name]
            if child.reaped:
                continue
            if child_state(child.pid) == "zombie":
                self.trace.append("zombie %s" % name)
                try:
                    os.waitpid(child.pid, 0)
                    child.reaped = True
                except ChildProcessError:
                    pass

    # -- whole run -----------------------------------------------------------

    def run(self):
        # SCENARIOS.md "Setup and teardown": a new current loop, the watcher made,
        # attached and installed; the steps as one coroutine; then the teardown.
        loop = asyncio.new_event_loop()
        self.loop = loop
        self.loop_thread = threading.get_ident()
        watcher = None
        try:
            asyncio.set_event_loop(loop)
            watcher = self.cls()
            self.watcher = watcher
            watcher.attach_loop(loop)
            asyncio.set_child_watcher(watcher)
            loop.run_until_complete(self.main())
            self.list_zombies()
        finally:
            try:
                if watcher is not None:
                    watcher.close()
                    asyncio.set_child_watcher(None)
            finally:
                loop.close()

    def kill_and_reap_all(self):
        """Last resort: no child may outlive the runner."""
        for name in self.order:
            child = self.children[name]
            if child.reaped or child_state(child.pid) == "gone":
                continue  # never signal a pid that is no longer our child
            try:
                os.kill(child.pid, signal.SIGKILL)
            except OSError:
                pass
            try:
                os.waitpid(child.pid, 0)
            except ChildProcessError:
                pass  # reaped by a watcher (or its thread) meanwhile
            child.reaped = True


def watcher_class(name):
    """(class, None) or (None, reason to skip)."""
    attr = WATCHERS[name]
    cls = getattr(asyncio, attr, None)
    if cls is None:
        return None, "asyncio.%s does not exist in CPython %d.%d" % (
            (attr,) + tuple(sys.version_info[:2]))
    if name == "pidfd":
        if not hasattr(os, "pidfd_open"):
            return None, "os.pidfd_open is not available"
        try:
            os.close(os.pidfd_open(os.getpid()))
        except OSError as exc:
            return None, "os.pidfd_open fails here: %s" % exc
    return cls, None


def main(argv):
    args = [a for a in argv[1:] if a != "--force"]
    force = len(args) != len(argv) - 1
    if len(args) != 2 or args[1] not in WATCHERS:
        sys.stderr.write("usage: %s SCENARIO.json {%s} [--force]\n"
                         % (argv[0], ",".join(sorted(WATCHERS))))
        return 2
    path, wname = args
    try:
        sc = load_scenario(path)
    except (OSError, ValueError, ScenarioError) as exc:
        sys.stderr.write("runner: %s: invalid scenario: %s\n" % (path, exc))
        return 2

    head = {"scenario": sc["name"], "watcher": wname, "backend": BACKEND}
    cls, reason = watcher_class(wname)
    if cls is None:
        head["skipped"] = reason
        emit(head)
        return 0
    if wname not in sc["watchers"] and not force:
        head["skipped"] = "the scenario does not list watcher %s" % wname
        emit(head)
        return 0

    runner = Runner(sc, wname, cls)

    tripped = []

    def watchdog(signum, frame):
        tripped.append(True)
        # Runs in the main thread, between bytecodes or when a blocking call is
        # interrupted. Killing every child unblocks a foreign_wait on a child that
        # never ends; the run then finishes with a visible error line.
        runner.trace.append("error watchdog - Timeout")
        log("watchdog: run exceeded %ds, killing every child" % WATCHDOG_S)
        for child in list(runner.children.values()):
            try:
                if child_state(child.pid) != "gone":
                    os.kill(child.pid, signal.SIGKILL)
            except OSError:
                pass
        signal.signal(signal.SIGALRM, hard_stop)
        signal.alarm(10)

    def hard_stop(signum, frame):
        log("watchdog: still stuck, exiting")
        runner.kill_and_reap_all()
        os._exit(3)

    signal.signal(signal.SIGALRM, watchdog)
    signal.alarm(WATCHDOG_S)
    status = 0
    try:
        runner.run()
    except BaseException:
        traceback.print_exc()
        status = 1
    finally:
        runner.kill_and_reap_all()
        signal.alarm(0)
    if status == 0:
        head["trace"] = list(runner.trace)
        emit(head)
        if tripped:
            status = 3  # the trace is printed, but the run did not end by itself
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv))
