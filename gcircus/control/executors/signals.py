"""signal and kill: commands that deliver signals to a watcher's processes; reopen, what SIGUSR1 does to gcircusd.

Neither signal nor kill takes the watcher's lock (as in Circus), so an operator can still signal or kill processes
while a long stop or reload runs. A pid that is not one of the watcher's processes is an error (errno 3); Circus
ignores it.
"""
from __future__ import annotations

import os

from gcircus.control.executors.base import Deferred, executes, get_watcher
from gcircus.logsetup import reopen_log_files
from gcircus.wire.errors import MessageError


def _process(watcher, pid: int):
    process = watcher.processes.get(pid)
    if process is None:
        raise MessageError(f"process {pid} not found in {watcher.name.lower()!r}")
    return process


@executes("signal")
def signal(arbiter, props):
    watcher = get_watcher(arbiter, props["name"])
    signum, pid, childpid = props["signum"], props["pid"], props["childpid"]
    if childpid is not None and pid is None:
        raise MessageError("cannot specify childpid without pid")
    targets = [_process(watcher, pid)] if pid is not None else watcher.get_active_processes()
    if childpid is not None and childpid not in targets[0].children():
        raise MessageError(f"process {childpid} is not a child of {pid}")
    for process in targets:
        if childpid is not None:
            watcher.send_signal_child(process.pid, childpid, signum)
        elif props["children"]:
            watcher.send_signal_children(process.pid, signum, props["recursive"])
        else:
            # The tree is listed before the process is signalled: once it dies, its children re-parent and
            # could no longer be found from it.
            descendants = process.children(recursive=True) if props["recursive"] else []
            watcher.send_signal(process.pid, signum)
            for child in descendants:
                try:
                    os.kill(child, signum)
                except ProcessLookupError:
                    pass
    return None


@executes("kill")
def kill(arbiter, props):
    watcher = get_watcher(arbiter, props["name"])
    pid, signum, timeout = props["pid"], props["signum"], props["graceful_timeout"]
    if pid is not None:
        _process(watcher, pid)
    return Deferred(lambda: watcher.kill(pid, signum, timeout))


@executes("reopen")
def reopen(arbiter, props):
    if props["name"]:
        get_watcher(arbiter, props["name"]).reopen_streams()
    else:
        reopen_log_files()
        if arbiter.audit is not None:
            arbiter.audit.reopen()
        arbiter.reopen_streams()
    return None
