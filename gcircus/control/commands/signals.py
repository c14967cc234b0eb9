"""signal and kill: commands that deliver signals to a watcher's processes; reopen, what SIGUSR1 does to gcircusd."""
from __future__ import annotations

from gcircus.control.commands.base import Command, Flag, Prop, int_arg, register
from gcircus.roles import OPERATE
from gcircus.wire.errors import ArgumentError

WAITING = Flag("waiting", "waiting", help="reply only once the processes are gone")


@register
class Signal(Command):
    """Send a signal to a watcher's processes, to one of them, or to their children.

    signal <name> [<pid> [<childpid>]] [--children] [--recursive] <signum>

    The signal goes to every process of the watcher, or only to <pid>. With <childpid>, only to that child of
    <pid>. With --children, to the processes' direct children instead (all descendants with --recursive as
    well); with --recursive alone, to the processes and all their descendants. A signal name (TERM, SIGTERM) or
    number; 0 sends nothing and only checks that the processes exist. No event is published; a process that dies
    is reaped and respawned as usual.
    """

    role = OPERATE

    properties = (Prop("name", required=True), Prop("signum", "signal", required=True, minimum=0), Prop("pid", "pid"),
                  Prop("childpid", "pid"))
    flags = (Flag("children", "children", help="signal the direct children instead"),
             Flag("recursive", "recursive", help="signal all descendants too"))

    def arguments(self, args):
        if len(args) > 4:
            raise ArgumentError("Invalid number of arguments.")
        props = {"name": args[0], "signum": args[-1]}
        if len(args) >= 3:
            props["pid"] = int_arg(args[1], "pid")
        if len(args) == 4:
            props["childpid"] = int_arg(args[2], "childpid")
        return props


@register
class Kill(Command):
    """Stop a watcher's processes (or one of them) gracefully; the watcher replaces them.

    kill <name> [<pid>] [--signum S] [--graceful_timeout T] [--waiting]

    The stop signal (or S) goes first, SIGKILL after the graceful timeout (or T seconds). Each signal publishes
    `kill`, each exit `reap`, each replacement `spawn`.
    """

    role = OPERATE

    properties = (Prop("name", required=True), Prop("pid", "pid"), Prop("signum", "signal"),
                  Prop("graceful_timeout", "number", minimum=0))
    flags = (Flag("signum", "signum", takes_value=True, help="signal to send first (default: the stop signal)"),
             Flag("graceful_timeout", "graceful_timeout", takes_value=True, convert=float,
                  help="seconds before SIGKILL (default: the watcher's)"),
             WAITING)
    int_args = ("pid",)


@register
class Reopen(Command):
    """Reopen log and stream files (after logrotate moved them); the same as sending gcircusd SIGUSR1.

    reopen [NAME]

    With NAME, only that watcher's stream files are reopened.
    """

    role = OPERATE

    properties = (Prop("name"),)
