"""upgrade: gcircusd replaces itself in place with a fresh image of the installed code (gcircus.handover)."""
from __future__ import annotations

from gcircus.control.commands.base import Command, Flag, Prop, register
from gcircus.roles import DEFINE


@register
class Upgrade(Command):
    """Re-execute gcircusd in place: every process, socket and output pipe carries over; nothing is restarted.

    upgrade [--reload] [--status]

    The pid stays, so the children stay gcircusd's own. gcircusctl replies once the new image answers, with the old
    and new versions (exit 0), or with why the hand-over was refused or failed, the old image running on (exit 3).
    --reload applies the configuration file after the hand-over (as reloadconfig); otherwise it is read only to
    rebuild the watchers. --status asks how the last hand-over ended, without starting one. Refused for an arbiter
    embedded in another program (it is not gcircusd's process to replace) and while a reload or stop runs.
    """

    role = DEFINE

    properties = (Prop("handover"),)  # the hand-over's id, chosen by the client (see gcircus.handover.reexec)
    flags = (Flag("reload", "reload", help="apply the configuration file after the hand-over"),
             Flag("status", "status", help="how the last hand-over ended (starts none)"),
             Flag("id", "handover", takes_value=True, help="the id to give the hand-over (gcircusctl picks one)"))
    completes_watchers = False

    def run_client(self, session, props):
        return session.run_upgrade(self, props)

    def console(self, reply: dict) -> str:
        last = reply.get("last")
        if "old_version" in reply and "new_version" in reply:
            return f"gcircusd upgraded in place: {reply['old_version']} -> {reply['new_version']} (pid {reply['pid']})"
        if last:
            return (f"last hand-over {last.get('id')}: {last.get('outcome')} ({last.get('old_version')} -> "
                    f"{last.get('new_version') or last.get('reason')}); running gcircusd {reply.get('version')}")
        return f"no hand-over yet; running gcircusd {reply.get('version')} (pid {reply.get('pid')})"
