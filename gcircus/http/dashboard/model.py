"""What the dashboard shows of a watcher, read through the control commands' own table and executors.

The page and its live feed read gcircusd exactly as `gcircusctl procs NAME` does: the command is looked up in
gcircus.control.commands, its properties validated there, and its executor run on the arbiter. So the dashboard
never shows a field the control channel does not have, and never reaches into a watcher by another way. The one
exception is the output tail (gcircus.streams.tail), which no command carries.
"""
from __future__ import annotations

from typing import Any

from gcircus.control.commands import get_command
from gcircus.control.executors import EXECUTORS, Deferred, Queued
from gcircus.streams.tail import OutputTail
from gcircus.wire.errors import ControlError

TAIL_LINES = 200  # lines of a watcher's output a page gets when it opens the tail


def read_command(arbiter, name: str, /, **props) -> Any:
    """Run read-only command `name` as the control server would (validated, same executor) and return its reply.

    ControlError (MessageError...) as the control channel would answer it. Only for commands that answer at once:
    a long one (Deferred or Queued) is refused, as the dashboard changes things only through /api/COMMAND.
    """
    command = get_command(name)
    if command is None or name not in EXECUTORS:
        raise LookupError(f"no command {name!r}")
    result = EXECUTORS[name](arbiter, command.validate(props))
    if isinstance(result, (Deferred, Queued)):
        raise TypeError(f"command {name!r} is not a read")
    return result


def watcher_names(arbiter) -> list[str]:
    """Every watcher's name, sorted case-insensitively (the order of the page)."""
    return sorted((w.name for w in list(arbiter.watchers)), key=str.lower)


def watcher_view(arbiter, name: str) -> dict | None:
    """The `procs` reply of watcher `name`, flattened for the page: its lifecycle fields plus `processes` (each
    with `last_exit` reduced to its description) and `tail` (whether its output can be followed); None if it is
    gone."""
    try:
        reply = read_command(arbiter, "procs", name=name)
    except ControlError:  # removed meanwhile (`program NAME not found`): the page drops it
        return None
    view = dict(reply["watcher"])
    view["processes"] = [_process_view(p) for p in reply["processes"]]
    view["tail"] = output_tail(arbiter, name) is not None
    return view


def _process_view(process: dict) -> dict:
    last_exit = process.get("last_exit")
    return {"pid": process["pid"], "wid": process["wid"], "state": process["state"], "started": process["started"],
            "restarts": process["restarts"], "last_exit": last_exit.get("description") if last_exit else None,
            "detail": "; ".join(str(t) for t in (process.get("detail"), process.get("status")) if t)}


def all_views(arbiter) -> list[dict]:
    return [view for view in (watcher_view(arbiter, name) for name in watcher_names(arbiter)) if view is not None]


def pid_groups(arbiter) -> dict[str, list[int]]:
    """{watcher: pids of its live processes}: what the usage sampler reads."""
    return {w.name: [p.pid for p in list(w.processes.values()) if p.is_alive()] for w in list(arbiter.watchers)}


def output_tail(arbiter, name: str) -> OutputTail | None:
    """The output tail of watcher `name`, or None if there is no such watcher or gcircusd does not read its output
    (no stream is configured: the children write to gcircusd's own stdout)."""
    try:
        watcher = arbiter.get_watcher(name)
    except KeyError:
        return None
    outputs = watcher.outputs
    if not (outputs.wants_pipe("stdout") or outputs.wants_pipe("stderr")):
        return None
    return outputs.tail
