"""start, stop, restart, reload, quit: changing whether watchers run; reloadconfig (see gcircus.reload)."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import gevent

from gcircus.control.executors import ordering
from gcircus.control.executors.base import Deferred, Queued, executes, match_watchers
from gcircus.errors import ConfigError
from gcircus.wire.errors import MessageError


def _info(results: list) -> dict:
    return {"info": results[0]}


@executes("start")
def start(arbiter, props):
    if not props["name"]:
        return Deferred(arbiter.start_watchers)
    watchers = match_watchers(arbiter, props["name"], props["match"])
    if props["with_dependencies"]:
        return Deferred(lambda: ordering.start_with_dependencies(arbiter, watchers))
    ordering.check_dependencies_up(arbiter, watchers if len(watchers) == 1 else [w for w in watchers if w.autostart])
    if len(watchers) == 1:
        return Queued([watchers[0].submit_start()], _info)
    return Queued([w.submit_start() for w in watchers if w.autostart])


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
            return Deferred(lambda: _config_errors_reply(arbiter.restart))
        arbiter.request_restart()  # casts coalesce: one restart running, at most one more pending
        return None
    watchers = match_watchers(arbiter, props["name"], props["match"])
    ordering.check_dependencies_up(arbiter, watchers, "restart")
    if props["with_dependents"]:
        return Deferred(lambda: ordering.restart_with_dependents(arbiter, watchers))
    if len(watchers) == 1:
        return Queued([watchers[0].submit_restart()], _info)

    def stop_then_start():
        _all_done([gevent.spawn(w.stop) for w in watchers])
        _all_done([gevent.spawn(w.start) for w in watchers if w.autostart])
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
    plan = _config_errors_reply(arbiter.plan_reload)  # validated now, so a bad file is this command's error reply
    if props["dry_run"]:
        return {"plan": plan}
    if props["waiting"]:  # plans again under the reload lock: another reload may have been applied meanwhile
        return Deferred(lambda: {"plan": _config_errors_reply(arbiter.reload_from_config)})
    arbiter.request_reload()  # casts coalesce: one reload running, at most one more pending
    return {"plan": plan}
