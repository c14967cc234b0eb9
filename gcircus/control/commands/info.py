"""The read-only commands: list, status, listsockets, stats, dstats, options, get, globaloptions, numprocesses,
numwatchers; listen and help, which gcircusctl carries out; ipython. procs, with its table, has a module of its own.

None of them changes anything or takes a watcher's lock, so they answer even while a long stop or reload runs.
"""
from __future__ import annotations

from collections import defaultdict
from typing import Any

from gcircus.control.commands.base import Command, Flag, Prop, register
from gcircus.roles import READ
from gcircus.wire.errors import ArgumentError

INFOLINE = "{pid}  {cmdline} {username} {nice} {mem_info1} {mem_info2} {cpu} {mem} {ctime}"
NA = "N/A"  # what circusctl shows for a field a process's info lacks


def option_text(key: str, value: Any) -> str:
    """How gcircusctl shows one option value: env as sorted `K=V,...`, None as nothing, anything else as str()."""
    if key == "env":
        return ",".join(f"{k}={v}" for k, v in sorted(value.items())) if isinstance(value, dict) else ""
    return "" if value is None else str(value)


def _option_lines(options: dict, sort: bool = False) -> str:
    items = sorted(options.items()) if sort else options.items()
    return "\n".join(f"{k}: {option_text(k, v)}" for k, v in items)


# -- what runs -----------------------------------------------------------------------------------------------------

@register
class List(Command):
    """List the watchers, or the pids of one watcher's running processes.

    list [NAME]
    """

    role = READ

    properties = (Prop("name"),)

    def console(self, reply):
        items = reply.get("pids", reply.get("watchers", []))
        return ",".join(str(i) for i in items)


@register
class Status(Command):
    """Status of one watcher (stopped, starting, active, stopping, backoff, failed) or of all of them.

    status [NAME]

    Circus's four words keep their meaning; `backoff` is a watcher waiting out a crash loop or a failing spawn (it
    retries by itself), `failed` one that gave up (it stays so until started). For every watcher, a line
    `name: state`, followed by why in parentheses when the watcher backs off, failed or waits for a dependency;
    for one watcher, the word alone (`procs NAME` tells the rest).
    """

    role = READ

    properties = (Prop("name"),)

    def console(self, reply):
        if "statuses" in reply:
            reasons = reply.get("reasons") or {}
            return "\n".join(f"{name}: {status}" + (f" ({reasons[name]})" if reasons.get(name) else "")
                             for name, status in sorted(reply["statuses"].items()))
        return str(reply.get("status"))


@register
class ListSockets(Command):
    """List the managed sockets: fd, name and address (host:port, or the unix socket path).

    listsockets
    """

    role = READ

    def console(self, reply):
        lines = []
        for s in reply.get("sockets", []):
            where = s["path"] if "path" in s else f"{s.get('host')}:{s.get('port')}"
            lines.append(f"{s['fd']}:socket '{s['name']}' at {where}")
        return "\n".join(lines)


# -- stats ---------------------------------------------------------------------------------------------------------

def infoline(info: Any) -> str:
    """One process as circusctl prints it; a non-dict info (a vanished process) is printed as it is."""
    if not isinstance(info, dict):
        return str(info)
    return INFOLINE.format_map(defaultdict(lambda: NA, info))


def _process_lines(pid: Any, info: Any) -> str:
    lines = [f"{pid}: {infoline(info)}"]
    if isinstance(info, dict):
        lines.extend("   " + infoline(child) for child in info.get("children") or [])
    return "\n".join(lines)


@register
class Stats(Command):
    """Process information (memory, CPU, user, children...) of every watcher, one watcher or one process.

    stats [--extended] [NAME [PID]]

    --extended also runs the watcher's extended_stats hook, which may add fields. Console columns: pid, program,
    user, nice, RSS, VMS, CPU %, memory %, CPU time; a process's children follow it, indented.
    """

    role = READ

    properties = (Prop("name"), Prop("process", "any"))
    flags = (Flag("extended", "extended", help="also run the watchers' extended_stats hooks"),)
    int_args = ("process",)

    def console(self, reply):
        if "infos" in reply or "name" in reply:  # every watcher, or one: its name, then a line per process
            watchers = reply["infos"] if "infos" in reply else {reply["name"]: reply.get("info")}
            lines = []
            for name, infos in watchers.items():
                lines.append(f"{name}:")
                lines.extend(_process_lines(pid, info) for pid, info in (infos or {}).items())
            return "\n".join(lines)
        return _process_lines(reply.get("process"), reply.get("info")) + "\n"


@register
class DStats(Command):
    """Process information of gcircusd itself.

    dstats
    """

    role = READ

    def console(self, reply):
        info = reply.get("info") or {}
        lines = ["Main Process:", "    " + infoline(info)]
        children = info.get("children") if isinstance(info, dict) else None
        if children:
            lines.append("Children:")
            lines.extend("    " + infoline(child) for child in children)
        return "\n".join(lines)


# -- options -------------------------------------------------------------------------------------------------------

@register
class Options(Command):
    """The options of a watcher that Circus lists, free-form ones included, with their current values.

    options NAME

    The keys are Circus's (the stream options as stdout_stream_conf and stderr_stream_conf). Options Circus does not
    list there (autostart, copy_path, umask, hooks.*, rlimit_*...) are read with `get NAME KEY`.
    """

    role = READ

    properties = (Prop("name", required=True),)

    def console(self, reply):
        return _option_lines(reply.get("options") or {}, sort=True)


@register
class Get(Command):
    """The current values of some options of a watcher.

    get NAME KEY [KEY...]

    A key is a watcher option (including family members such as rlimit_nofile or hooks.after_start) or a free-form
    option of that watcher; any other key is an error.
    """

    role = READ

    properties = (Prop("name", required=True), Prop("keys", "strlist", required=True))

    def console(self, reply):
        return _option_lines(reply.get("options") or {})


@register
class GlobalOptions(Command):
    """gcircusd's own settings: endpoint, stats_endpoint, pubsub_endpoint, check_delay, multicast_endpoint.

    globaloptions [OPTION]
    """

    role = READ

    properties = (Prop("option"),)

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

    role = READ

    properties = (Prop("name"),)

    def console(self, reply):
        return str(reply.get("numprocesses"))


@register
class NumWatchers(Command):
    """The number of watchers.

    numwatchers
    """

    role = READ

    def console(self, reply):
        return str(reply.get("numwatchers"))


# -- carried out by gcircusctl -------------------------------------------------------------------------------------

@register
class Listen(Command):
    """Print the events published on the pub/sub endpoint (all of them, or those of the given topic prefixes).

    listen [TOPIC...]

    gcircusctl subscribes to the events itself; sent over the control channel, this command is an error.

    gcircusctl prints one `topic: json` line per event until Ctrl-C. TOPIC is a prefix such as
    `watcher.web.` or `watcher.web.spawn`; without one, every event is shown. The events come from the pubsub
    endpoint: --endpoint, else the config's pubsub_endpoint (-c), else tcp://127.0.0.1:5556; a control endpoint given
    there is refused with the daemon's pubsub endpoint named. Only events published after the subscription started
    are seen.
    """

    role = READ

    properties = (Prop("topics", "strlist"),)
    completes_watchers = False  # its arguments are topics

    def run_client(self, session, props):
        return session.print_events(props.get("topics") or [])


@register
class Help(Command):
    """Describe one command, or list them all.

    help [COMMAND]

    gcircusctl answers it itself; the daemon does not know this command.
    """

    role = READ

    positional = ("*names",)
    completes_watchers = False

    def run_client(self, session, props):
        return session.print_help(*(props.get("names") or [])[:1])


@register
class Keygen(Command):
    """Write a new CURVE key pair: NAME.key (public) and NAME.key_secret (secret, mode 0600).

    keygen NAME [--dir DIR]

    gcircusctl does this itself; no daemon is needed (sent to the daemon, the command is unknown there).

    The files are in pyzmq's zmq.auth format, in DIR (default: the current directory; made 0700 if missing); an
    existing pair is never overwritten. For a client: copy NAME.key into the daemon's curve_clients directory (the
    client is then `curve:NAME` in [access]) and connect with --curve-key DIR/NAME.key_secret and --server-key
    set to the daemon's public certificate. For the daemon: curve_secret_key = DIR/NAME.key_secret, and give
    NAME.key to its clients.
    """

    role = READ  # as help's: gcircusctl's own, never run by the daemon

    properties = (Prop("name", required=True), Prop("dir"))
    flags = (Flag("dir", "dir", takes_value=True, help="the directory to write the two files in (default: .)"),)
    completes_watchers = False

    def run_client(self, session, props):
        return session.write_keys(props["name"], props.get("dir"))


@register
class IPython(Command):
    """Open an IPython shell inside the supervisor (not available in gcircus).

    ipython
    """

    role = READ

    NO_KERNEL = "gcircus does not embed an IPython kernel; inspect it through the control commands instead"

    def message(self, args, opts):
        """gcircusctl could not attach to a kernel even where a daemon has one: a command line it cannot run."""
        raise ArgumentError(f"cannot open an IPython shell: {self.NO_KERNEL}")

    def console(self, reply):
        return "error: Could not start ipython kernel"
