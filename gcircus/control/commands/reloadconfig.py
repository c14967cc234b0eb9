"""reloadconfig: re-read the configuration file and apply what changed (see gcircus.reload)."""
from __future__ import annotations

import gevent

from gcircus.control.commands.base import Command, Deferred, Flag, Prop, register
from gcircus.control.errors import MessageError
from gcircus.errors import ConfigError


@register
class ReloadConfig(Command):
    """Re-read the configuration file and apply what changed; a bad file changes nothing.

    reloadconfig [--waiting] [--dry-run]

    The whole file is validated first: on any error the reply is that error (naming file, section and option) and
    nothing changes. Otherwise the plan is applied: a numprocesses-only change scales the watcher without touching
    its running processes, a changed watcher is reloaded gracefully (new processes first) or replaced, new
    watchers are added, removed ones stopped, unchanged ones left alone. [circus] and socket changes that cannot
    be applied live are listed as needing a restart. The reply carries the plan: {"plan": {...}}.
    --dry-run only computes and shows the plan. With --waiting the reply comes once the plan is applied.
    """

    name = "reloadconfig"
    properties = (Prop("waiting", "bool", default=False), Prop("dry_run", "bool", default=False))
    flags = (Flag("waiting", "waiting", help="reply only once the new configuration is applied"),
             Flag("dry-run", "dry_run", help="show the plan without applying it"))

    def execute(self, arbiter, props):
        from gcircus import reload as reload_config

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
        gevent.spawn(_apply_in_background, run)
        return {"plan": plan.as_dict()}

    def console(self, reply: dict) -> str:
        from gcircus.reload import format_plan

        return format_plan(reply.get("plan") or {})


def _apply_in_background(run) -> None:
    import logging

    try:
        run()
    except Exception:  # noqa: BLE001 - nobody waits for this reply: log it
        logging.getLogger(__name__).exception("reloadconfig failed while applying its plan")
