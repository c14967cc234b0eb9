"""reloadconfig: re-read the configuration file and apply what changed (see gcircus.reload)."""
from __future__ import annotations

import logging
import weakref

import gevent

from gcircus import reload as reload_config
from gcircus.control.errors import MessageError
from gcircus.control.executors.base import Deferred, executes
from gcircus.errors import ConfigError


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
                logging.getLogger(__name__).exception("reloadconfig failed while applying its plan")
