"""start, stop, restart, reload, quit: changing whether watchers run."""
from __future__ import annotations

from gcircus.control.commands.base import WAITING, Command, Flag, Prop, register
from gcircus.roles import OPERATE

MATCH = Flag("match", "match", takes_value=True, help="how NAME matches watchers: glob (default), simple, regex")
WITH_DEPENDENCIES = Flag("with-dependencies", "with_dependencies",
                         help="start what NAME depends on first (depends_on), each once active")
WITH_DEPENDENTS = Flag("with-dependents", "with_dependents",
                       help="stop what depends on NAME first (depends_on), dependents of dependents before")


@register
class Start(Command):
    """Start watchers, or every autostart watcher when no name is given.

    start [NAME] [--waiting] [--match simple|glob|regex] [--with-dependencies]

    With --waiting, the reply comes once the processes run and (for one watcher) lists them:
    {"info": {"started": [pids], "kept": [pids]}}. A watcher whose depends_on names a stopped (or failed) watcher
    is not started: the error names it. With --with-dependencies, what it depends on is started first, in
    dependency order, each waited until active before the watchers depending on it start.
    """

    role = OPERATE

    properties = (Prop("name"), Prop("match", default="glob"))
    flags = (WAITING, MATCH, WITH_DEPENDENCIES)


@register
class Stop(Command):
    """Stop watchers (all of them when no name is given), with their whole process trees.

    stop [NAME] [--waiting] [--match simple|glob|regex] [--with-dependents]

    Without a name, watchers stop before what they depend on. With a name, only that watcher stops (what depends
    on it keeps running, and waits for it when it restarts); with --with-dependents, the watchers depending on it
    stop first, the last started first.
    """

    role = OPERATE

    properties = (Prop("name"), Prop("match", default="glob"))
    flags = (WAITING, MATCH, WITH_DEPENDENTS)
    preempts = True


@register
class Restart(Command):
    """Restart watchers: stop, then start (every watcher when no name is given).

    restart [NAME] [--waiting] [--match simple|glob|regex] [--with-dependents]

    Without a name, gcircusd first re-reads its configuration file, as circusd does: a file that does not load, or
    whose new sockets cannot be bound, is the error reply and nothing changes; otherwise every watcher is stopped,
    the file's changes are applied as reloadconfig applies them, and the autostart watchers are started (started
    again, the file not applied, if applying fails). Requests without --waiting coalesce: one restart runs, at
    most one more is pending, and requests made meanwhile share it.

    With --waiting and one watcher: {"info": {"stopped": [...], "started": [...], "kept": [...]}}. As with start,
    a watcher whose depends_on names a stopped (or failed) watcher is not restarted: the error names it. With
    --with-dependents, the running watchers that depend on it are stopped first (the last started first) and
    started again, in dependency order, once it is active again.
    """

    role = OPERATE

    properties = (Prop("name"), Prop("match", default="glob"))
    flags = (WAITING, MATCH, WITH_DEPENDENTS)


@register
class Reload(Command):
    """Reload watchers: start new processes, then stop the old ones (SIGHUP instead with send_hup).

    reload [NAME] [--terminate] [--waiting] [--sequential]

    --terminate restarts instead of reloading gracefully; --sequential replaces one process at a time.
    """

    role = OPERATE

    properties = (Prop("name"),)
    flags = (WAITING, Flag("terminate", "graceful", value=False, help="restart instead of a graceful reload"),
             Flag("sequential", "sequential", help="replace one process at a time"))


@register
class Quit(Command):
    """Stop every watcher, then gcircusd itself.

    quit [--waiting]
    """

    role = OPERATE

    flags = (WAITING,)
    preempts = True
