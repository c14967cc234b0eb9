"""upgrade: start a hand-over (gcircus.handover), or say how the last one ended (--status)."""
from __future__ import annotations

from gcircus.control.executors.base import executes
from gcircus.wire.errors import ControlError


@executes("upgrade")
def upgrade(arbiter, props):
    handover = getattr(arbiter, "handover", None)  # set by gcircus.daemon.Daemon: gcircusd runs this arbiter
    if handover is None:
        raise ControlError("upgrade refused: this arbiter is embedded in another program, whose process gcircus "
                           "does not replace; it keeps running as it is")
    if props["status"]:
        return handover.status()
    try:
        return handover.request(reload=props["reload"], handover_id=props["handover"])
    except Exception as exc:  # noqa: BLE001 - a refusal (busy, stopping) or a state that cannot be written
        raise ControlError(f"upgrade refused, gcircusd keeps running as it is: {exc}") from None
