"""start, stop, restart, reload, quit: changing whether watchers run."""
from __future__ import annotations

import logging
import weakref
from collections.abc import Callable

import gevent

from gcircus.control.commands.base import Command, Deferred, Flag, Prop, match_watchers, register
from gcircus.control.errors import MessageError

log = logging.getLogger(__name__)

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
    """MessageError naming the problem if the arbiter's config file no longer loads or its new sockets cannot bind."""
    from gcircus import reload as reload_config
    from gcircus.errors import ConfigError

    try:
        reload_config.check_restart(arbiter)
    except ConfigError as exc:
        raise MessageError(str(exc)) from None


def _restart_all(arbiter) -> None:
    """arbiter.restart(), a file that fails to apply being a MessageError (the reply says why; errno 3)."""
    from gcircus.errors import ConfigError

    try:
        arbiter.restart()
    except ConfigError as exc:
        raise MessageError(str(exc)) from None


class _BackgroundRestart:
    """The one greenlet per arbiter that runs non-waiting `restart`s without a name, however many arrive.

    Each run re-reads the file, so requests made while one runs are all served by one more run (as reloadconfig
    casts are): a flood of casts costs at most two restarts and one greenlet.
    """

    _by_arbiter: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    def __init__(self):
        self.requested = False
        self.greenlet: gevent.Greenlet | None = None

    @classmethod
    def request(cls, arbiter) -> None:
        state = cls._by_arbiter.setdefault(arbiter, cls())
        state.requested = True
        if state.greenlet is None or state.greenlet.dead:
            state.greenlet = gevent.spawn(state._run_while_requested, arbiter)

    def _run_while_requested(self, arbiter) -> None:
        while self.requested:
            self.requested = False
            try:
                _restart_all(arbiter)
            except MessageError as exc:
                log.warning("command restart was not carried out: %s", exc)
            except Exception:  # noqa: BLE001 - nobody waits for this reply: log it
                log.exception("command restart failed after its reply was sent")


@register
class Restart(Command):
    """Restart watchers: stop, then start (every watcher when no name is given).

    restart [NAME] [--waiting] [--match simple|glob|regex]

    Without a name, gcircusd first re-reads its configuration file, as circusd does: a file that does not load, or
    whose new sockets cannot be bound, is the error reply and nothing changes; otherwise every watcher is stopped,
    the file's changes are applied as reloadconfig applies them, and the autostart watchers are started (started
    again, the file not applied, if applying fails). Requests without --waiting coalesce: one restart runs, at
    most one more is pending, and requests made meanwhile share it.

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
            if props["waiting"]:
                return Deferred(lambda: _restart_all(arbiter))
            _BackgroundRestart.request(arbiter)  # casts coalesce: one restart running, at most one more pending
            return None
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
