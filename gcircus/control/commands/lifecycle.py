"""start, stop, restart, reload, quit: changing whether watchers run."""
from __future__ import annotations

from gcircus.control.commands.base import WAITING, Command, Flag, Prop, register

MATCH = Flag("match", "match", takes_value=True, help="how NAME matches watchers: glob (default), simple, regex")


@register
class Start(Command):
    """Start watchers, or every autostart watcher when no name is given.

    start [NAME] [--waiting] [--match simple|glob|regex]

    With --waiting, the reply comes once the processes run and (for one watcher) lists them:
    {"info": {"started": [pids], "kept": [pids]}}.
    """

    properties = (Prop("name"), Prop("match", default="glob"))
    flags = (WAITING, MATCH)


@register
class Stop(Start):  # stop and restart take start's arguments
    """Stop watchers (all of them when no name is given), with their whole process trees.

    stop [NAME] [--waiting] [--match simple|glob|regex]
    """

    preempts = True


@register
class Restart(Start):
    """Restart watchers: stop, then start (every watcher when no name is given).

    restart [NAME] [--waiting] [--match simple|glob|regex]

    Without a name, gcircusd first re-reads its configuration file, as circusd does: a file that does not load, or
    whose new sockets cannot be bound, is the error reply and nothing changes; otherwise every watcher is stopped,
    the file's changes are applied as reloadconfig applies them, and the autostart watchers are started (started
    again, the file not applied, if applying fails). Requests without --waiting coalesce: one restart runs, at
    most one more is pending, and requests made meanwhile share it.

    With --waiting and one watcher: {"info": {"stopped": [...], "started": [...], "kept": [...]}}.
    """


@register
class Reload(Command):
    """Reload watchers: start new processes, then stop the old ones (SIGHUP instead with send_hup).

    reload [NAME] [--terminate] [--waiting] [--sequential]

    --terminate restarts instead of reloading gracefully; --sequential replaces one process at a time.
    """

    properties = (Prop("name"),)
    flags = (WAITING, Flag("terminate", "graceful", value=False, help="restart instead of a graceful reload"),
             Flag("sequential", "sequential", help="replace one process at a time"))


@register
class Quit(Command):
    """Stop every watcher, then gcircusd itself.

    quit [--waiting]
    """

    flags = (WAITING,)
    preempts = True
