"""The new image's side of a hand-over: rebuild what the snapshot describes instead of spawning it.

Called from the arbiter's start (Arbiter.adoption) before the channels open: the sockets are rebuilt around their
carried descriptors (no rebind: the listen queue carries over), then each watcher gets its processes back as
Process objects around the same pids, their output pipes read again, readiness and health followed, max_age timers
re-armed for what was left, the respawn policy and per-wid history restored. A process that cannot be carried is
logged precisely and left alone: it is never killed, since it cannot be accounted for.

If rebuilding a watcher fails, it falls back to adopting the processes it can identify (pid and wid only).
"""
from __future__ import annotations

import logging
import os

from gcircus.handover import streams_bridge
from gcircus.process import kick_reaper
from gcircus.sockets import CircusSocket

log = logging.getLogger(__name__)

BROKEN_ENV = "GCIRCUS_TEST_BROKEN_HANDOVER"  # tests: make the full rebuild fail, to exercise the fallback


class Adoption:
    """What the snapshot says is running; `adopted` names the watchers rebuilt from it (not started again)."""

    def __init__(self, snapshot: dict):
        self.snapshot = snapshot
        self.adopted: set[str] = set()
        self.fallbacks: list[str] = []  # watchers adopted by pid only (their full rebuild failed)

    def relock(self, arbiter) -> None:
        """Take the cgroup directory's lock again (its descriptor was close-on-exec); its processes are ours."""
        if arbiter.cgroups is not None:
            arbiter.cgroups.lock()

    def adopt_sockets(self, arbiter) -> None:
        for name, fd in self.snapshot["sockets"].items():
            current = arbiter.sockets.get(name)
            if current is None:
                log.warning("socket %r is no longer in the configuration: its carried descriptor %d is closed",
                            name, fd)
                os.close(fd)
                continue
            os.set_inheritable(fd, False)  # inheritable for the exec only; children get it through pass_fds
            current.close()  # built from the file, never bound
            arbiter.sockets[name] = CircusSocket.adopt_bound(current.config, fd)
            log.info("%s carried over (fd %d)", arbiter.sockets[name], fd)

    def adopt_watchers(self, arbiter) -> None:
        for state in self.snapshot["watchers"]:
            try:
                watcher = arbiter.get_watcher(state["name"])
            except KeyError:
                _leave_alone(state, "its watcher is no longer in the configuration")
                continue
            try:
                if os.environ.get(BROKEN_ENV):
                    raise RuntimeError(f"{BROKEN_ENV} is set")
                refused = watcher.adopt_handover(state)
            except Exception as exc:  # noqa: BLE001 - never lose children over a state this image cannot read
                log.error("watcher %r: its state could not be rebuilt (%s): adopting its processes by pid only",
                          watcher.name, exc)
                self.fallbacks.append(watcher.name)
                watcher.forget_handover()  # closes the readiness pipes it wrapped already
                _close_ready_fds(state)  # and those it did not: the fallback does not read them
                refused = watcher.adopt_handover(_identity_only(state))
            for entry in refused:
                log.error("watcher %r: pid %d (wid %d) is in the hand-over state but is not a child of this "
                          "gcircusd (gone already?): not adopted, not signalled", watcher.name, entry["pid"],
                          entry["wid"])
                _close_streams(entry)
            self.adopted.add(watcher.name)
        kick_reaper()  # exits that happened during the exec are reaped now, with their status and `reap` events


def _identity_only(state: dict) -> dict:
    """The fallback: what identifies the processes (pid, wid, start, output pipes), nothing of the lifecycle (a
    process still waiting for fd:N readiness fails it: its pipe is not read)."""
    return {**state, "state": "active", "reason": "", "history": {}, "policy": {}, "retry_in": None,
            "processes": [{**p, "expires_in": None, "ready_fd": None} for p in state["processes"]]}


def _close_ready_fds(state: dict) -> None:
    """Close the fd:N readiness pipes a watcher's state carries (one already closed: nothing happens; nothing
    was opened since forget_handover closed those it had wrapped, so no number was reused)."""
    for entry in state["processes"]:
        if entry.get("ready_fd") is not None:
            streams_bridge.close_fd(entry["ready_fd"])


def _leave_alone(state: dict, why: str) -> None:
    for entry in state["processes"]:
        log.error("pid %d (watcher %r, wid %d) is not adopted, %s: it keeps running unsupervised, not killed",
                  entry["pid"], state["name"], entry["wid"], why)
        _close_streams(entry)


def _close_streams(entry: dict) -> None:
    streams_bridge.close(entry["streams"])
    if entry.get("ready_fd") is not None:
        streams_bridge.close_fd(entry["ready_fd"])
