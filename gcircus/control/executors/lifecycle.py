"""start, stop, restart, reload, quit: changing whether watchers run; reloadconfig (see gcircus.reload)."""
from __future__ import annotations

import logging
import weakref

import gevent

from gcircus import reload as reload_config
from gcircus.control.errors import MessageError
from gcircus.control.executors.base import Deferred, Queued, executes, match_watchers
from gcircus.errors import ConfigError

log = logging.getLogger(__name__)


def _info(results: list) -> dict:
    return {"info": results[0]}


@executes("start")
def start(arbiter, props):
    if not props["name"]:
        return Deferred(arbiter.start_watchers)
    watchers = match_watchers(arbiter, props["name"], props["match"])
    if len(watchers) == 1:
        return Queued([watchers[0].submit_start()], _info)
    return Queued([w.submit_start() for w in watchers if w.autostart])


@executes("stop")
def stop(arbiter, props):
    if not props["name"]:
        return Deferred(arbiter.stop_watchers)
    watchers = match_watchers(arbiter, props["name"], props["match"])
    if len(watchers) == 1:
        return Queued([watchers[0].submit_stop()], _info)
    return Queued([w.submit_stop() for w in watchers])


def _check_config(arbiter) -> None:
    """MessageError naming the problem if the arbiter's config file no longer loads or its new sockets cannot bind."""
    try:
        reload_config.check_restart(arbiter)
    except ConfigError as exc:
        raise MessageError(str(exc)) from None


def _restart_all(arbiter) -> None:
    """arbiter.restart(), a file that fails to apply being a MessageError (the reply says why; errno 3)."""
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


@executes("restart")
def restart(arbiter, props):
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


@executes("reload")
def reload(arbiter, props):
    graceful, sequential = props["graceful"], props["sequential"]
    if not props["name"]:
        return Deferred(lambda: arbiter.reload(graceful=graceful, sequential=sequential))
    watcher = match_watchers(arbiter, props["name"], "simple")[0]
    return Queued([watcher.submit_reload(graceful=graceful, sequential=sequential)], _info)


@executes("quit")
def quit_daemon(arbiter, props):
    return Queued([arbiter.stop_in_background()])


@executes("reloadconfig")
def reloadconfig(arbiter, props):
    try:
        plan = reload_config.prepare(arbiter)  # validates now, so a bad file is this command's error reply
    except ConfigError as exc:
        raise MessageError(str(exc)) from None
    if props["dry_run"]:
        return {"plan": plan.as_dict()}

    def run():  # plans again under the reload lock: another reload may have been applied meanwhile
        return {"plan": arbiter.reload_from_config()}
    if props["waiting"]:
        return Deferred(run)
    _BackgroundReload.request(arbiter, run)
    return {"plan": plan.as_dict()}


class _BackgroundReload:
    """The one greenlet per arbiter that applies non-waiting reloadconfig requests, however many arrive.

    Each run re-reads the file, so requests made while one is being applied are all served by one more run: a
    flood of casts costs at most two applications and one greenlet, never a greenlet per request.
    """

    _by_arbiter: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    def __init__(self):
        self.requested = False
        self.greenlet: gevent.Greenlet | None = None

    @classmethod
    def request(cls, arbiter, run) -> None:
        state = cls._by_arbiter.setdefault(arbiter, cls())
        state.requested = True
        if state.greenlet is None or state.greenlet.dead:
            state.greenlet = gevent.spawn(state._apply_while_requested, run)

    def _apply_while_requested(self, run) -> None:
        while self.requested:
            self.requested = False
            try:
                run()
            except Exception:  # noqa: BLE001 - nobody waits for this reply: log it
                log.exception("reloadconfig failed while applying its plan")
