"""The read-only commands: list, status, procs, listsockets, stats, dstats, options, get, globaloptions,
numprocesses, numwatchers, listen, ipython. None of them waits behind a command in progress.

Every reply is plain JSON data: option values that are tuples, signals or callables are converted first, because a
value json cannot encode would otherwise lose the reply altogether.
"""
from __future__ import annotations

import copy
import logging
import math
from typing import Any

from gcircus import procinfo
from gcircus.control.commands.info import IPython
from gcircus.control.executors.base import executes, get_watcher
from gcircus.options import CIRCUS_OPTIONS, WATCHER_OPTIONS, family_member, get_option
from gcircus.wire.errors import MessageError

log = logging.getLogger(__name__)

GLOBAL_OPTIONS = tuple(o.name for o in sorted(CIRCUS_OPTIONS.values(), key=lambda o: o.global_rank or 0)
                       if o.global_rank is not None)


def json_value(value: Any) -> Any:
    """`value` as JSON data: tuples and sets become lists, int subclasses (signals) ints, callables dotted names."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, dict):
        return {k if isinstance(k, (str, int)) and not isinstance(k, bool) else str(k): json_value(v)
                for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_value(v) for v in value]
    if isinstance(value, (set, frozenset)):
        return sorted((json_value(v) for v in value), key=str)
    if callable(value) and hasattr(value, "__qualname__"):
        return f"{getattr(value, '__module__', None) or '?'}.{value.__qualname__}"
    return str(value)


def option_value(key: str, value: Any) -> Any:
    """`value` of option `key` as JSON data, in the type circusd replies with (`max_age = 60` is 60, not 60.0)."""
    option = WATCHER_OPTIONS.get(key)
    if option is not None and option.whole_number and isinstance(value, float) and value.is_integer():
        return int(value)
    return json_value(value)


# -- what runs -----------------------------------------------------------------------------------------------------

@executes("list")
def list_watchers(arbiter, props):
    if props["name"]:
        return {"pids": get_watcher(arbiter, props["name"]).get_active_pids()}
    return {"watchers": sorted(w.name.lower() for w in arbiter.watchers)}


@executes("status")
def status(arbiter, props):
    if props["name"]:
        return {"status": get_watcher(arbiter, props["name"]).status()}
    reply: dict = {"statuses": arbiter.statuses()}
    # Why a watcher backs off, failed or waits: a key of gcircus's own, present only when there is something to say,
    # so the reply Circus clients see while everything runs keeps Circus's exact shape (they ignore extra keys).
    reasons = {w.name: w.reason for w in arbiter.watchers if w.reason}
    if reasons:
        reply["reasons"] = reasons
    if arbiter.audit is not None and arbiter.audit.enabled:  # gcircus's own too: where audit lines go, how many lost
        reply["audit"] = arbiter.audit.status()
    return reply


@executes("procs")
def procs(arbiter, props):
    watcher = get_watcher(arbiter, props["name"])
    return {"watcher": json_value({**watcher.lifecycle(), "name": watcher.name}),
            "processes": json_value(watcher.process_rows())}


@executes("listsockets")
def list_sockets(arbiter, props):
    sockets = []
    for name, sock in arbiter.sockets.items():
        fd = sock.fileno()
        if fd == -1:  # closed (the arbiter is not running)
            continue
        where = {"path": sock.path} if sock.is_unix else {"host": sock.host, "port": sock.port}
        sockets.append({"fd": fd, "name": name, "backlog": sock.backlog, **where})
    return {"sockets": sorted(sockets, key=lambda s: s["fd"])}


# -- stats ---------------------------------------------------------------------------------------------------------

def _extended(watcher, pid: int, info: Any) -> Any:
    """Run the watcher's extended_stats hook on a copy of `info`; the plain info if there is none or it fails.

    Circus lets the hook's exception fail the whole command; here a failing hook is logged (and published as
    hook_failure) and the stats are still returned.
    """
    hooks = getattr(watcher, "hooks", None)
    if not isinstance(info, dict) or hooks is None or "extended_stats" not in hooks:
        return info
    stats = copy.deepcopy(info)
    failures: list = []

    def notify(event: str, **fields) -> None:
        if event == "hook_failure":
            failures.append(fields.get("error"))
        watcher.notify(event, **fields)

    try:
        hooks.call("extended_stats", watcher, watcher.arbiter, notify, pid=pid, stats=stats)
    except Exception:  # noqa: BLE001 - user code: whatever it does, the plain stats still go out
        log.exception("extended_stats hook of watcher %r failed", watcher.name)
        return info
    if failures:
        log.warning("extended_stats hook of watcher %r failed for pid %s: plain stats returned", watcher.name, pid)
        return info
    return json_value(stats)


def watcher_stats(watcher, extended: bool = False) -> dict:
    """{pid: info} of every process of `watcher`, in spawn order, through its extended_stats hook if asked."""
    infos = procinfo.processes_info(list(watcher.processes.values()))
    if extended:
        infos = {pid: _extended(watcher, pid, info) for pid, info in infos.items()}
    return infos


def _pid(value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    raise MessageError("'process' must be an integer")


@executes("stats")
def stats(arbiter, props):
    extended = props["extended"]
    if props["name"] is None:
        return {"infos": {w.name: watcher_stats(w, extended) for w in list(arbiter.watchers)}}
    watcher = get_watcher(arbiter, props["name"])
    if props["process"] is None:
        # With cgroups, the watcher's cgroup (process count, memory.current): a key Circus clients ignore.
        return {"name": props["name"], "info": watcher_stats(watcher, extended), **json_value(watcher.cgroup_usage())}
    pid = _pid(props["process"])
    process = watcher.processes.get(pid)
    if process is None:
        raise MessageError(f"process {props['process']!r} not found in {props['name']!r}")
    info = procinfo.process_info(process)
    return {"process": props["process"], "info": _extended(watcher, pid, info) if extended else info}


@executes("dstats")
def dstats(arbiter, props):
    return {"info": procinfo.daemon_info(interval=0.01)}


# -- options -------------------------------------------------------------------------------------------------------

def watcher_options(watcher) -> dict:
    """The `options` reply: the keys Circus's command lists, read from the option table (options_key), plus `env`
    and the free-form options, as JSON data. gcircus's own options (autostart, hooks...) are read with `get`."""
    current = dict(watcher.options())
    listed = {"env": current.get("env")}  # env comes from [env] sections, not the option table; Circus lists it
    for option in WATCHER_OPTIONS.values():
        key = option.options_reply_key
        if key is not None:
            listed[key] = current.get(option.family or option.name)
    listed.update(getattr(watcher, "options_extra", {}))
    return {k: option_value(k, v) for k, v in sorted(listed.items()) if k != "__name__"}


def _family_value(watcher, key: str, current: dict) -> Any:
    """The value of one member of an option family (rlimit_X, stdout_stream.X, hooks.X, flapping.X)."""
    family = family_member(key)
    if family is None:
        return getattr(watcher, key, None)
    field, member = family
    if field == "flapping":  # the respawn policy holds the values in force
        return getattr(getattr(watcher, "respawn_policy", None), member, None)
    return (current.get(field) or {}).get(member)


@executes("options")
def options(arbiter, props):
    return {"options": watcher_options(get_watcher(arbiter, props["name"]))}


@executes("get")
def get(arbiter, props):
    watcher = get_watcher(arbiter, props["name"])
    current = dict(watcher.options())
    current.pop("__name__", None)
    options = {}
    listed = None
    for key in props["keys"]:
        if key in current:
            options[key] = option_value(key, current[key])
        elif get_option(key, "watcher") is not None:
            options[key] = option_value(key, _family_value(watcher, key, current))
        else:
            listed = watcher_options(watcher) if listed is None else listed  # Circus's keys (stdout_stream_conf)
            if key not in listed:
                raise MessageError(f"{key!r} option not found")
            options[key] = listed[key]
    return {"options": options}


@executes("globaloptions")
def global_options(arbiter, props):
    wanted = props["option"]
    if wanted and wanted not in GLOBAL_OPTIONS:
        raise MessageError(f"{wanted!r} not an existing option")
    names = (wanted,) if wanted else GLOBAL_OPTIONS
    return {"options": {name: json_value(getattr(arbiter, name, None)) for name in names}}


# -- counts --------------------------------------------------------------------------------------------------------

@executes("numprocesses")
def numprocesses(arbiter, props):
    if props["name"] is None:
        return {"numprocesses": arbiter.numprocesses()}
    watcher = get_watcher(arbiter, props["name"])
    return {"numprocesses": len(watcher.processes), "watcher_name": props["name"]}


@executes("numwatchers")
def numwatchers(arbiter, props):
    return {"numwatchers": arbiter.numwatchers()}


# -- not served here -----------------------------------------------------------------------------------------------

@executes("listen")
def listen(arbiter, props):
    raise MessageError("invalid message. use a pub/sub socket")


@executes("ipython")
def ipython(arbiter, props):
    return {"shell": False, "msg": IPython.NO_KERNEL}
