"""incr, decr, add, rm, set: commands that change which watchers exist and how they are configured."""
from __future__ import annotations

from gcircus import runtime_options
from gcircus.control.commands.base import WAITING, Command, Flag, Prop, register
from gcircus.options import only_schedules
from gcircus.roles import DEFINE, OPERATE
from gcircus.wire.errors import ArgumentError


class _Count(Command):
    """Shared by incr and decr."""

    properties = (Prop("name", required=True), Prop("nb", "int", default=1, minimum=0))
    flags = (WAITING,)
    int_args = ("nb",)
    role = OPERATE

    def console(self, reply):
        return str(reply["numprocesses"]) if "numprocesses" in reply else "ok"


@register
class Incr(_Count):
    """Add processes to a watcher (nb, default 1); a stopped watcher only changes its count.

    incr <name> [<nb>] [--waiting]

    With --waiting, the reply carries the new count: {"numprocesses": n}. A singleton does not change:
    {"numprocesses": n, "singleton": true}.
    """


@register
class Decr(_Count):
    """Remove processes from a watcher (nb, default 1, down to 0), the oldest first.

    decr <name> [<nb>] [--waiting]

    With --waiting, the reply carries the new count: {"numprocesses": n}. A singleton does not change:
    {"numprocesses": n, "singleton": true}.
    """


@register
class Add(Command):
    """Add a watcher; it stays stopped unless --start.

    add [--start] [--waiting] <name> <cmd...>

    The words after the name are joined with spaces into the command line. Over the protocol, `options` may hold
    any watcher option (as in a [watcher:NAME] section, rlimit_*, hooks.*, stdout_stream.* included). With
    endpoint_owner set, the watcher must run as that user, with its groups, and hooks, streams, sockets and copy_env
    are refused (gcircus.control.ownership); the same holds for a non-root client of a root gcircusd, whose watcher
    runs as itself (or a user [access] runas:NAME lists for it) when no uid is given. With start and waiting, the
    reply lists the processes: {"started": [pids], "kept": []}.
    """

    properties = (Prop("name", required=True), Prop("cmd", required=True), Prop("args", "any"),
                  Prop("options", "object"))
    flags = (Flag("start", "start", help="start the watcher at once"), WAITING)
    role = DEFINE

    def arguments(self, args):
        return {"name": args[0], "cmd": " ".join(args[1:])}


@register
class Rm(Command):
    """Remove a watcher and stop its processes (with --nostop, leave them running, unsupervised).

    rm <name> [--nostop] [--waiting]

    With --nostop the processes are no longer respawned or stopped by gcircusd; they still die with it through
    the parent-death signal unless the watcher had pdeathsig = false. A watcher that others name in their
    depends_on is not removed (they would wait for it forever): the error names them; remove them first.
    """

    properties = (Prop("name", required=True),)
    flags = (Flag("nostop", "nostop", help="leave the processes running"), WAITING)
    role = DEFINE


@register
class Set(Command):
    """Change options of a running watcher; all are checked before any is applied.

    set <name> <key> <value> [<key> <value>...] [--waiting]

    Values are typed as in the config file: numbers, booleans, signal names, `env` as K=V,K2=V2, `hooks` as
    before_start:mod.func,after_start:mod.func. A key that needs new processes (cmd, args, env, uid, gid,
    working_dir, shell, max_age...) makes one graceful reload of a running watcher; numprocesses adds or stops
    processes; the others (respawn, max_retry, close_child_*, rlimit_*, copy_env, streams...) apply from the
    next spawn on. Each applied key publishes `updated`. Scheduling keys alone (numprocesses, graceful_timeout,
    respawn, stop_signal, priority...) need the operate role; any other key needs define. With endpoint_owner set,
    or from a non-root client of a root gcircusd, a watcher that does not run as that user only takes keys that
    change how many processes run and how they stop (gcircus.control.ownership).
    """

    properties = (Prop("name", required=True), Prop("options", "object", required=True))
    flags = (WAITING,)
    role = DEFINE

    def role_for(self, props):
        """operate when every key only schedules (how many processes run, when, how they stop: the option table's
        `scheduling` flag), as start/stop/incr do; define as soon as one key changes what runs or as whom."""
        options = props.get("options") or {}
        return OPERATE if options and all(only_schedules(key) for key in options) else DEFINE

    def arguments(self, args):
        if len(args) % 2 == 0:
            raise ArgumentError("Invalid number of arguments.")
        options = {}
        for key, text in zip(args[1::2], args[2::2]):
            try:
                options[key] = runtime_options.client_value(key, text)
            except ValueError as exc:
                raise ArgumentError(str(exc)) from None
        return {"name": args[0], "options": options}
