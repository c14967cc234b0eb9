"""Hook callables used by the hook tests (importable by dotted name, as in a config file)."""
import threading

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
