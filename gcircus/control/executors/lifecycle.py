"""start, stop, restart, reload, quit: changing whether watchers run; reloadconfig (see gcircus.reload)."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import gevent

from gcircus.control import settling
from gcircus.control.executors import ordering
from gcircus.control.executors.base import Deferred, Queued, executes, match_watchers
from gcircus.errors import ConfigError
from gcircus.wire.errors import MessageError


def _info(results: list) -> dict:
    return {"info": results[0]}


def _autostarted(arbiter) -> list:
    """The watchers a start of every watcher starts (Arbiter.start_watchers): autostart ones, not on_demand ones."""
    return [w for w in arbiter.iter_watchers() if w.autostart and not w.on_demand]


def _queued(props, watchers: list, submit: Callable[[Any], Any]) -> Queued:
    """`submit(watcher)` for one watcher (its reply carries the info, as in Circus) or for the autostart ones among
    several; with `waiting`, the reply also waits for them to settle (an error naming each one that failed)."""
    if len(watchers) == 1:
        result = submit(watchers[0])
        return Queued([settling.settled(watchers[0], result) if props["waiting"] else result], _info)
    pairs = [(w, submit(w)) for w in watchers if w.autostart]
    return Queued([settling.all_settled(pairs)] if props["waiting"] else [result for _, result in pairs])


def _start_all(arbiter, waiting: bool) -> None:
    """Start every autostart watcher; with `waiting`, return once they settled (CommandError naming the failed)."""
    arbiter.start_watchers()
    if waiting:
        _settled_after(None, _autostarted(arbiter))


@executes("start")
def start(arbiter, props):
    if not props["name"]:
        return Deferred(lambda: _start_all(arbiter, props["waiting"]))
    watchers = match_watchers(arbiter, props["name"], props["match"])
    if props["with_dependencies"]:
        return Deferred(lambda: ordering.start_with_dependencies(arbiter, watchers))
    ordering.check_dependencies_up(arbiter, watchers if len(watchers) == 1 else [w for w in watchers if w.autostart])
    return _queued(props, watchers, lambda w: w.submit_start())


@executes("stop")
def stop(arbiter, props):
    if not props["name"]:
        return Deferred(arbiter.stop_watchers)
    watchers = match_watchers(arbiter, props["name"], props["match"])
    if props["with_dependents"]:
        return Deferred(lambda: ordering.stop_with_dependents(arbiter, watchers))
    if len(watchers) == 1:
        return Queued([watchers[0].submit_stop()], _info)
    return Queued([w.submit_stop() for w in watchers])


def _config_errors_reply(run: Callable[[], Any]) -> Any:
    """run(), a configuration that fails to load or apply being a MessageError (the reply says why; errno 3)."""
    try:
        return run()
    except ConfigError as exc:
        raise MessageError(str(exc)) from None


def _all_done(greenlets: list[gevent.Greenlet]) -> None:
    """Wait for every greenlet, then raise the first one's error: none is left running behind a failure."""
    gevent.joinall(greenlets)
    for greenlet in greenlets:
        greenlet.get()


@executes("restart")
def restart(arbiter, props):
    if not props["name"]:
        # As circusd re-reads its file: a bad one is this reply, and nothing changes.
        _config_errors_reply(arbiter.check_restart)
        if props["waiting"]:
            return Deferred(lambda: _settled_after(_config_errors_reply(arbiter.restart), _autostarted(arbiter)))
        arbiter.request_restart()  # casts coalesce: one restart running, at most one more pending
        return None
    watchers = match_watchers(arbiter, props["name"], props["match"])
    ordering.check_dependencies_up(arbiter, watchers, "restart")
    if props["with_dependents"]:
        return Deferred(lambda: ordering.restart_with_dependents(arbiter, watchers))
    if len(watchers) == 1:
        return _queued(props, watchers, lambda w: w.submit_restart())

    def stop_then_start():
        _all_done([gevent.spawn(w.stop) for w in watchers])
        _all_done([gevent.spawn(w.start) for w in watchers if w.autostart])
        if props["waiting"]:
            _settled_after(None, [w for w in watchers if w.autostart])
    return Deferred(stop_then_start)


def _settled_after(value: Any, watchers: list) -> Any:
    """`value` once `watchers`, started already, settled; a CommandError naming those that did not start."""
    settling.all_settled([(w, settling.DONE) for w in watchers]).get()
    return value


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
    plan = _config_errors_reply(arbiter.plan_reload)  # validated now, so a bad file is this command's error reply
    if props["dry_run"]:
        return {"plan": plan}
    if props["waiting"]:  # plans again under the reload lock: another reload may have been applied meanwhile
        return Deferred(lambda: {"plan": _config_errors_reply(arbiter.reload_from_config)})
    arbiter.request_reload()  # casts coalesce: one reload running, at most one more pending
    return {"plan": plan}
