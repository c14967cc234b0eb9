"""Hook callables imported by dotted name (tests.support.hookfuncs.NAME), as from a config file.

The watcher tests call them in-process; gcircusd imports them from the repository root (its cwd in those tests).
"""
import logging
import os
import threading
import time

CALLS: list = []
RELEASE = threading.Event()  # set by the tests to let abandoned hanging hooks finish


def record(watcher, arbiter, hook_name, **kwargs):
    CALLS.append((hook_name, kwargs))
    return True


def refuse(watcher, arbiter, hook_name, **kwargs):
    CALLS.append((hook_name, kwargs))
    return False


def returns_none(watcher, arbiter, hook_name, **kwargs):
    CALLS.append((hook_name, kwargs))


def explode(watcher, arbiter, hook_name, **kwargs):
    CALLS.append((hook_name, kwargs))
    raise RuntimeError("hook exploded")


def hang(watcher, arbiter, hook_name, **kwargs):
    CALLS.append((hook_name, kwargs))
    RELEASE.wait(30)  # a blocking hook: runs in a worker thread, abandoned after hook_timeout
    return True


FLOOD = 3000  # records flood_the_log writes: three times what the log queue holds (gcircus.logqueue.MAX_RECORDS)


def flood_the_log(watcher, arbiter, hook_name, **kwargs):
    """Floods gcircusd's own log (run inside gcircusd)."""
    log = logging.getLogger("gcircus.test.flood")
    for number in range(FLOOD):
        log.warning("flood record %d", number)
    return True


class Undecided:
    """A hook's answer that cannot say whether it is true: gcircusd reading it raises, outside the hook's call."""

    def __bool__(self):
        raise RuntimeError("this answer is neither true nor false")


def undecided(**kwargs) -> Undecided:
    return Undecided()


WAIT_FOR: list = []  # paths wait_for_files waits for (set by the test)


def wait_for_files(watcher, arbiter, hook_name, **kwargs):
    """Blocks (in its worker thread) until every path in WAIT_FOR exists, at most 30 s: a hook slow on purpose,
    done only once the child did what the test waits for."""
    deadline = time.monotonic() + 30
    while not all(os.path.exists(path) for path in WAIT_FOR) and time.monotonic() < deadline:
        time.sleep(0.01)
    CALLS.append((hook_name, kwargs))
    return True
