"""The read-only commands: stats, dstats, options, get, globaloptions, numprocesses, numwatchers, listen, ipython.

None of them changes anything or takes a watcher's lock, so they answer even while a long stop or reload runs.
Every reply is plain JSON data: option values that are tuples, signals or callables are converted first, because a
value json cannot encode would otherwise lose the reply altogether.
"""
from __future__ import annotations

import copy
import logging
import math
from typing import Any

from gcircus import procinfo
from gcircus.control.commands.base import Command, Flag, Prop, get_watcher, register
from gcircus.control.errors import ArgumentError, MessageError
from gcircus.options import WATCHER_OPTIONS, get_option

log = logging.getLogger(__name__)

INFOLINE = "{pid}  {cmdline} {username} {nice} {mem_info1} {mem_info2} {cpu} {mem} {ctime}"
GLOBAL_OPTIONS = ("endpoint", "stats_endpoint", "pubsub_endpoint", "check_delay", "multicast_endpoint")
# Circus keeps these as ints (it refuses a fraction); gcircus accepts fractions, so only a whole value goes out as an
# int, as in circusd's replies, and a fraction (a gcircus extension) stays a float.
WHOLE_NUMBER_OPTIONS = frozenset({"max_age", "max_age_variance", "warmup_delay"})


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
    if key in WHOLE_NUMBER_OPTIONS and isinstance(value, float) and value.is_integer():
        return int(value)
    return json_value(value)


def option_text(key: str, value: Any) -> str:
    """How gcircusctl shows one option value: env as sorted `K=V,...`, None as nothing, anything else as str()."""
    if key == "env":
        return ",".join(f"{k}={v}" for k, v in sorted(value.items())) if isinstance(value, dict) else ""
    return "" if value is None else str(value)


def _option_lines(options: dict, sort: bool = False) -> str:
    items = sorted(options.items()) if sort else options.items()
    return "\n".join(f"{k}: {option_text(k, v)}" for k, v in items)


# -- stats ---------------------------------------------------------------------------------------------------------

class _NA(dict):
    def __missing__(self, key):
        return procinfo.NA


def infoline(info: Any) -> str:
    """One process as circusctl prints it; a non-dict info (a vanished process) is printed as it is."""
    if not isinstance(info, dict):
        return str(info)
    return INFOLINE.format_map(_NA(info))


def _process_lines(pid: Any, info: Any) -> str:
    lines = [f"{pid}: {infoline(info)}"]
    if isinstance(info, dict):
        lines.extend("   " + infoline(child) for child in info.get("children") or [])
    return "\n".join(lines)


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


@register
class Stats(Command):
    """Process information (memory, CPU, user, children...) of every watcher, one watcher or one process.

    stats [--extended] [NAME [PID]]

    --extended also runs the watcher's extended_stats hook, which may add fields. Console columns: pid, program,
    user, nice, RSS, VMS, CPU %, memory %, CPU time; a process's children follow it, indented.
    """

    name = "stats"
    properties = (Prop("name"), Prop("process", "any"), Prop("extended", "bool", default=False))
    flags = (Flag("extended", "extended", help="also run the watchers' extended_stats hooks"),)
    positional = ("name", "process")

    def message(self, args, opts):
        props = super().message(args, opts)
        if "process" in props:
            try:
                props["process"] = int(props["process"])
            except ValueError:
                raise ArgumentError(f"invalid process id {props['process']!r}") from None
        return props

    def execute(self, arbiter, props):
        extended = props["extended"]
        if props["name"] is None:
            return {"infos": {w.name: watcher_stats(w, extended) for w in list(arbiter.watchers)}}
        watcher = get_watcher(arbiter, props["name"])
        if props["process"] is None:
            return {"name": props["name"], "info": watcher_stats(watcher, extended)}
        pid = _pid(props["process"])
        process = watcher.processes.get(pid)
        if process is None:
            raise MessageError(f"process {props['process']!r} not found in {props['name']!r}")
        info = procinfo.process_info(process)
        return {"process": props["process"], "info": _extended(watcher, pid, info) if extended else info}

    def console(self, reply):
        if "infos" in reply:
            lines = []
            for name, infos in reply["infos"].items():
                lines.append(f"{name}:")
                lines.extend(_process_lines(pid, info) for pid, info in (infos or {}).items())
            return "\n".join(lines)
        if "name" in reply:
            lines = [f"{reply['name']}:"]
            lines.extend(_process_lines(pid, info) for pid, info in (reply.get("info") or {}).items())
            return "\n".join(lines)
        return _process_lines(reply.get("process"), reply.get("info")) + "\n"


@register
class DStats(Command):
    """Process information of gcircusd itself.

    dstats
    """

    name = "dstats"

    def execute(self, arbiter, props):
        return {"info": procinfo.daemon_info(interval=0.01)}

    def console(self, reply):
        info = reply.get("info") or {}
        lines = ["Main Process:", "    " + infoline(info)]
        children = info.get("children") if isinstance(info, dict) else None
        if children:
            lines.append("Children:")
            lines.extend("    " + infoline(child) for child in children)
        return "\n".join(lines)


# -- options -------------------------------------------------------------------------------------------------------

def watcher_options(watcher) -> dict:
    """The `options` reply: the keys Circus's command lists, read from the option table (options_key), plus `env`
    and the free-form options, as JSON data. gcircus's own options (autostart, hooks...) are read with `get`."""
    current = dict(watcher.options())
    listed = {"env": current.get("env")}  # env comes from [env] sections, not the option table; Circus lists it
    for option in WATCHER_OPTIONS.values():
        key = option.options_reply_key
        if key is not None:
            listed[key] = current.get(option.name[:-2] if option.is_prefix else option.name)
    listed.update(getattr(watcher, "options_extra", {}))
    return {k: option_value(k, v) for k, v in sorted(listed.items()) if k != "__name__"}


def _family_value(watcher, key: str, current: dict) -> Any:
    """The value of one member of an option family (rlimit_X, stdout_stream.X, hooks.X, flapping.X)."""
    if key.startswith("rlimit_"):
        return (current.get("rlimits") or {}).get(key[len("rlimit_"):].lower())
    family, _, member = key.partition(".")
    if family in ("stdout_stream", "stderr_stream", "hooks"):
        return (current.get(family) or {}).get(member)
    if family == "flapping":
        return getattr(getattr(watcher, "crash_guard", None), member, None)
    return getattr(watcher, key, None)


@register
class Options(Command):
    """The options of a watcher that Circus lists, free-form ones included, with their current values.

    options NAME

    The keys are Circus's (the stream options as stdout_stream_conf and stderr_stream_conf). Options Circus does not
    list there (autostart, copy_path, umask, hooks.*, rlimit_*...) are read with `get NAME KEY`.
    """

    name = "options"
    properties = (Prop("name", required=True),)
    positional = ("name",)
    min_args = 1

    def execute(self, arbiter, props):
        return {"options": watcher_options(get_watcher(arbiter, props["name"]))}

    def console(self, reply):
        return _option_lines(reply.get("options") or {}, sort=True)


@register
class Get(Command):
    """The current values of some options of a watcher.

    get NAME KEY [KEY...]

    A key is a watcher option (including family members such as rlimit_nofile or hooks.after_start) or a free-form
    option of that watcher; any other key is an error.
    """

    name = "get"
    properties = (Prop("name", required=True), Prop("keys", "strlist", required=True))
    positional = ("name", "*keys")
    min_args = 2

    def execute(self, arbiter, props):
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

    def console(self, reply):
        return _option_lines(reply.get("options") or {})


@register
class GlobalOptions(Command):
    """gcircusd's own settings: endpoint, stats_endpoint, pubsub_endpoint, check_delay, multicast_endpoint.

    globaloptions [OPTION]
    """

    name = "globaloptions"
    properties = (Prop("option"),)
    positional = ("option",)

    def execute(self, arbiter, props):
        wanted = props["option"]
        if wanted and wanted not in GLOBAL_OPTIONS:
            raise MessageError(f"{wanted!r} not an existing option")
        names = (wanted,) if wanted else GLOBAL_OPTIONS
        return {"options": {name: json_value(getattr(arbiter, name, None)) for name in names}}

    def console(self, reply):
        return _option_lines(reply.get("options") or {})

    def console_error(self, reply: dict) -> str:
        """Circus prints this command's errors as the bare reason, without `error: `."""
        return str(reply.get("reason"))


# -- counts --------------------------------------------------------------------------------------------------------

@register
class NumProcesses(Command):
    """The number of processes of one watcher, or of all of them.

    numprocesses [NAME]
    """

    name = "numprocesses"
    properties = (Prop("name"),)
    positional = ("name",)

    def execute(self, arbiter, props):
        if props["name"] is None:
            return {"numprocesses": arbiter.numprocesses()}
        watcher = get_watcher(arbiter, props["name"])
        return {"numprocesses": len(watcher.processes), "watcher_name": props["name"]}

    def console(self, reply):
        return str(reply.get("numprocesses"))


@register
class NumWatchers(Command):
    """The number of watchers.

    numwatchers
    """

    name = "numwatchers"

    def execute(self, arbiter, props):
        return {"numwatchers": arbiter.numwatchers()}

    def console(self, reply):
        return str(reply.get("numwatchers"))


# -- not over the control channel ----------------------------------------------------------------------------------

@register
class Listen(Command):
    """Print the events published on the pub/sub endpoint (all of them, or those of the given topic prefixes).

    listen [TOPIC...]

    gcircusctl subscribes to the events itself; sent over the control channel, this command is an error.
    """

    name = "listen"
    properties = (Prop("topics", "strlist"),)
    positional = ("*topics",)

    def execute(self, arbiter, props):
        raise MessageError("invalid message. use a pub/sub socket")


@register
class IPython(Command):
    """Open an IPython shell inside the supervisor (not available in gcircus).

    ipython
    """

    name = "ipython"
    NO_KERNEL = "gcircus does not embed an IPython kernel; inspect it through the control commands instead"

    def message(self, args, opts):
        """gcircusctl could not attach to a kernel even where a daemon has one: a command line it cannot run."""
        raise ArgumentError(f"cannot open an IPython shell: {self.NO_KERNEL}")

    def execute(self, arbiter, props):
        return {"shell": False, "msg": self.NO_KERNEL}

    def console(self, reply):
        return "error: Could not start ipython kernel"
