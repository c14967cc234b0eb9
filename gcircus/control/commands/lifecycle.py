"""start, stop, restart, reload, quit: changing whether watchers run."""
from __future__ import annotations

from collections.abc import Callable

import gevent

from gcircus.control.commands.base import Command, Deferred, Flag, Prop, match_watchers, register
from gcircus.control.errors import MessageError

WAITING = Flag("waiting", "waiting", help="reply only once the operation has finished")
MATCH = Flag("match", "match", takes_value=True, help="how NAME matches watchers: glob (default), simple, regex")


class Queued:
    """The command is already queued on watchers: `results` (their AsyncResults) say when it is done.

    The server replies at once, or with `waiting` once every result is in, as `shape(values)`; nothing holds a
    greenlet meanwhile, and a restart queued behind an identical one shares its result (gcircus.command_queue).
    """

    def __init__(self, results: list, shape: Callable[[list], object] = lambda values: None):
        self.results = results
        self.shape = shape


def _info(results: list) -> dict:
    return {"info": results[0]}


@register
class Start(Command):
    """Start watchers, or every autostart watcher when no name is given.

    start [NAME] [--waiting] [--match simple|glob|regex]

    With --waiting, the reply comes once the processes run and (for one watcher) lists them:
    {"info": {"started": [pids], "kept": [pids]}}.
    """

    name = "start"
    properties = (Prop("name"), Prop("match", default="glob"), Prop("waiting", "bool", default=False))
    flags = (WAITING, MATCH)
    positional = ("name",)

    def execute(self, arbiter, props):
        if not props["name"]:
            return Deferred(arbiter.start_watchers)
        watchers = match_watchers(arbiter, props["name"], props["match"])
        if len(watchers) == 1:
            return Queued([watchers[0].submit_start()], _info)
        return Queued([w.submit_start() for w in watchers if w.autostart])


@register
class Stop(Command):
    """Stop watchers (all of them when no name is given), with their whole process trees.

    stop [NAME] [--waiting] [--match simple|glob|regex]
    """

    name = "stop"
    properties = Start.properties
    flags = (WAITING, MATCH)
    positional = ("name",)
    preempts = True

    def execute(self, arbiter, props):
        if not props["name"]:
            return Deferred(arbiter.stop_watchers)
        watchers = match_watchers(arbiter, props["name"], props["match"])
        if len(watchers) == 1:
            return Queued([watchers[0].submit_stop()], _info)
        return Queued([w.submit_stop() for w in watchers])


def _check_config(arbiter) -> None:
    """MessageError naming the problem if the arbiter's config file no longer loads."""
    from gcircus import reload as reload_config
    from gcircus.errors import ConfigError

    try:
        reload_config.prepare(arbiter)
    except ConfigError as exc:
        raise MessageError(str(exc)) from None


@register
class Restart(Command):
    """Restart watchers: stop, then start (every watcher when no name is given).

    restart [NAME] [--waiting] [--match simple|glob|regex]

    Without a name, gcircusd first re-reads its configuration file, as circusd does: a file that does not load is the
    error reply and nothing changes; otherwise every watcher is stopped, the file's changes are applied as
    reloadconfig applies them, and the autostart watchers are started.

    With --waiting and one watcher: {"info": {"stopped": [...], "started": [...], "kept": [...]}}.
    """

    name = "restart"
    properties = Start.properties
    flags = (WAITING, MATCH)
    positional = ("name",)

    def execute(self, arbiter, props):
        if not props["name"]:
            if arbiter.config_path and getattr(arbiter, "loaded_config", None) is not None:
                _check_config(arbiter)  # as circusd re-reads its file: a bad one is this reply, nothing changes
            return Deferred(arbiter.restart)
        watchers = match_watchers(arbiter, props["name"], props["match"])
        if len(watchers) == 1:
            return Queued([watchers[0].submit_restart()], _info)

        def stop_then_start():
            gevent.joinall([gevent.spawn(w.stop) for w in watchers], raise_error=True)
            gevent.joinall([gevent.spawn(w.start) for w in watchers if w.autostart], raise_error=True)
        return Deferred(stop_then_start)


@register
class Reload(Command):
    """Reload watchers: start new processes, then stop the old ones (SIGHUP instead with send_hup).

    reload [NAME] [--terminate] [--waiting] [--sequential]

    --terminate restarts instead of reloading gracefully; --sequential replaces one process at a time.
    """

    name = "reload"
    properties = (Prop("name"), Prop("graceful", "bool", default=True), Prop("sequential", "bool", default=False),
                  Prop("waiting", "bool", default=False))
    flags = (WAITING, Flag("terminate", "graceful", value=False, help="restart instead of a graceful reload"),
             Flag("sequential", "sequential", help="replace one process at a time"))
    positional = ("name",)

    def execute(self, arbiter, props):
        graceful, sequential = props["graceful"], props["sequential"]
        if not props["name"]:
            return Deferred(lambda: arbiter.reload(graceful=graceful, sequential=sequential))
        watcher = match_watchers(arbiter, props["name"], "simple")[0]
        return Queued([watcher.submit_reload(graceful=graceful, sequential=sequential)], _info)


@register
class Quit(Command):
    """Stop every watcher, then gcircusd itself.

    quit [--waiting]
    """

    name = "quit"
    properties = (Prop("waiting", "bool", default=False),)
    flags = (WAITING,)
    preempts = True

    def execute(self, arbiter, props):
        return Queued([arbiter.stop_in_background()])
