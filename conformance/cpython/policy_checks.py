#!/usr/bin/env python3
"""The policy checks of loopwatch's policy_suite, run on real CPython.

Usage: python3 policy_checks.py

Prints one JSON object: {"backend": "cpython3.X", "checks": {name: "ok" | reason}}.
Each check mirrors the one of the same name in ../src/policy_suite.rs, against a
fresh asyncio.DefaultEventLoopPolicy(), from the main thread. Standard library only;
runs on CPython 3.7 to 3.13.
"""

import asyncio
import json
import sys
import threading
import warnings

# 3.12+ warns on implicit loop creation and on the watcher API; the checks are about
# behaviour, not deprecation.
warnings.simplefilter("ignore", DeprecationWarning)

NO_LOOP = "There is no current event loop in thread %r."


class Failed(Exception):
    pass


def ensure(condition, what):
    if not condition:
        raise Failed(what)


def in_thread(name, body):
    out = {}

    def run():
        try:
            out["value"] = body()
        except BaseException as exc:  # reported, not raised in the thread
            out["error"] = exc

    thread = threading.Thread(target=run, name=name)
    thread.start()
    thread.join()
    if "error" in out:
        raise out["error"]
    return out.get("value")


def main_thread_creates_once(p):
    first = p.get_event_loop()
    second = p.get_event_loop()
    ensure(first is second, "get_event_loop gave two loops")
    p.set_event_loop(None)
    first.close()


def set_none_disables_creation(p):
    p.set_event_loop(None)
    try:
        p.get_event_loop()
    except RuntimeError as exc:
        ensure(str(exc) == NO_LOOP % "MainThread", "message %r" % str(exc))
    else:
        raise Failed("a loop was created after set_event_loop(None)")


def set_then_get(p):
    loop = p.new_event_loop()
    p.set_event_loop(loop)
    ensure(p.get_event_loop() is loop, "get_event_loop is not the loop set")
    other = p.new_event_loop()
    ensure(other is not loop, "new_event_loop returned the current loop")
    ensure(p.get_event_loop() is loop, "new_event_loop changed the current loop")
    p.set_event_loop(None)
    other.close()
    loop.close()


def worker_thread_has_no_loop(p):
    def body():
        try:
            p.get_event_loop()
        except RuntimeError as exc:
            return str(exc)
        return "created"

    got = in_thread("Worker-P", body)
    ensure(got == NO_LOOP % "Worker-P", repr(got))


def loops_are_per_thread(p):
    mine = p.new_event_loop()
    p.set_event_loop(mine)

    def body():
        theirs = p.new_event_loop()
        p.set_event_loop(theirs)
        same = p.get_event_loop() is theirs
        p.set_event_loop(None)
        return same, theirs

    same, theirs = in_thread("Worker-Q", body)
    ensure(same, "the worker did not get its own loop")
    ensure(p.get_event_loop() is mine, "the main loop changed")
    p.set_event_loop(None)
    theirs.close()
    mine.close()


def child_watcher_is_one_object(p):
    first = p.get_child_watcher()
    second = p.get_child_watcher()
    ensure(first is second, "get_child_watcher gave two watchers")
    p.set_child_watcher(None)
    third = p.get_child_watcher()
    ensure(first is not third, "set_child_watcher(None) kept the watcher")
    p.set_child_watcher(None)


def set_event_loop_attaches_the_watcher(p):
    watcher = p.get_child_watcher()
    loop = p.new_event_loop()
    p.set_event_loop(loop)
    # Only watchers that attach to a loop show it (3.7's Safe has _loop).
    shows = getattr(watcher, "_loop", None) is not None
    if shows:
        ensure(watcher._loop is loop, "attached to another loop")
    p.set_event_loop(None)
    if shows:
        ensure(watcher._loop is None, "still attached after set_event_loop(None)")
    p.set_child_watcher(None)
    loop.close()


def process_slot(p):
    asyncio.set_event_loop_policy(p)
    ensure(asyncio.get_event_loop_policy() is p, "get_event_loop_policy is not the policy set")
    asyncio.set_event_loop_policy(None)
    fresh = asyncio.get_event_loop_policy()
    ensure(fresh is not p, "None did not restore a default")
    ensure(isinstance(fresh, asyncio.DefaultEventLoopPolicy), "the restored policy is not the default one")
    asyncio.set_event_loop_policy(None)


CHECKS = [
    main_thread_creates_once,
    set_none_disables_creation,
    set_then_get,
    worker_thread_has_no_loop,
    loops_are_per_thread,
    child_watcher_is_one_object,
    set_event_loop_attaches_the_watcher,
    process_slot,
]


def main():
    results = {}
    for check in CHECKS:
        policy = asyncio.DefaultEventLoopPolicy()
        try:
            check(policy)
            results[check.__name__] = "ok"
        except Exception as exc:
            results[check.__name__] = "%s: %s" % (type(exc).__name__, exc)
        finally:
            try:
                policy.set_child_watcher(None)
            except Exception:
                pass
    print(json.dumps({"backend": "cpython%d.%d" % sys.version_info[:2], "checks": results}))


if __name__ == "__main__":
    main()
