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

import gevent.event

from gcircus.handover import streams_bridge
from gcircus.process import Process, ProcessExit, kick_reaper
from gcircus.sockets import CircusSocket
from gcircus.states import BACKOFF, READY, RUNNING, SPAWNED, STARTING
from gcircus.watcher import SlotHistory

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
                rebuild(watcher, state)
            except Exception as exc:  # noqa: BLE001 - never lose children over a state this image cannot read
                log.error("watcher %r: its state could not be rebuilt (%s): adopting its processes by pid only",
                          watcher.name, exc)
                self.fallbacks.append(watcher.name)
                _forget_partial(watcher)
                rebuild(watcher, _identity_only(state))
            self.adopted.add(watcher.name)
        kick_reaper()  # exits that happened during the exec are reaped now, with their status and `reap` events


def rebuild(watcher, state: dict) -> None:
    """Give `watcher` its processes and lifecycle back from its snapshot `state`."""
    with watcher._lock:
        watcher._status, watcher.reason = state["state"], state["reason"]
        watcher.refuse_commands(None)
        if watcher._status in RUNNING:
            watcher.outputs.prepare()
        watcher.checks.adopt_notify_socket(state.get("notify_socket"))  # before the spawn specs name it
        for entry in state["processes"]:
            adopt_process(watcher, entry)
        for key, value in state["policy"].items():
            setattr(watcher.respawn_policy, key, [tuple(v) for v in value] if key == "pauses" else value)
        for wid, history in state["history"].items():
            slot = watcher._history.setdefault(int(wid), SlotHistory())
            slot.restarts, slot.last_exit = history["restarts"], history["last_exit"]
        if watcher._status == STARTING and state.get("waits_for_dependencies") is True:  # absent: an older image
            watcher._dependency_wait = watcher._greenlet(watcher._wait_for_dependencies, watcher._generation)
        elif watcher._status == BACKOFF and state["retry_in"] is not None:
            watcher._retry_timer = watcher._later(state["retry_in"], watcher._retry_after_backoff, watcher._generation)
        elif watcher._status in RUNNING and len(watcher.processes) < watcher.numprocesses:
            watcher._schedule_fill()
        watcher._wake_state_waiters()
    log.info("watcher %r adopted: %s, %d processes", watcher.name, watcher._status, len(watcher.processes))


def adopt_process(watcher, entry: dict) -> None:
    """One process of the snapshot, supervised again; a pid that is not our child is logged and left alone."""
    pid, wid = entry["pid"], entry["wid"]
    spec = watcher._spawn_spec()
    if entry["exit_status"] is not None:  # reaped by the old image, not handled yet: handled here
        process = Process(watcher.name, wid, spec=spec, watcher=watcher, spawn=False, on_exit=watcher._on_exit)
        process.pid, process.started, process.exit = pid, entry["started"], ProcessExit(entry["exit_status"])
        process._exited.set()
        if entry.get("ready_fd") is not None:
            streams_bridge.close_fd(entry["ready_fd"])
    else:
        try:
            process = Process.adopt(watcher.name, wid, spec, pid, entry["started"], watcher=watcher,
                                    on_exit=watcher._on_exit, ready_fd=entry.get("ready_fd"))
        except ChildProcessError:
            log.error("watcher %r: pid %d (wid %d) is in the hand-over state but is not a child of this gcircusd"
                      " (gone already?): not adopted, not signalled", watcher.name, pid, wid)
            _close_streams(entry)
            return
    process.state = entry["state"] if entry["state"] else SPAWNED
    process.ready_at, process.status_text, process.check_detail = (entry["ready_at"], entry["status_text"],
                                                                    entry["check_detail"])
    watcher.processes[pid] = process
    watcher._handled[pid] = gevent.event.Event()
    streams_bridge.reattach(watcher, process, entry["streams"])
    if process.exit is not None:
        watcher._on_exit(process)
        return
    watcher.checks.adopt(process, process.spec.env or {}, ready=process.state == READY, carried=entry)
    if entry["expires_in"] is not None:
        watcher._expiry[pid] = watcher._later(entry["expires_in"], watcher._expire, process)


def _identity_only(state: dict) -> dict:
    """The fallback: what identifies the processes (pid, wid, start, pipes), nothing of the lifecycle."""
    return {**state, "state": "active", "reason": "", "history": {}, "policy": {}, "retry_in": None,
            "processes": [{**p, "expires_in": None, "ready_fd": None} for p in state["processes"]]}


def _forget_partial(watcher) -> None:
    """Undo what a failed rebuild adopted already (child watchers disarmed, pipes closed), to adopt it again."""
    for process in watcher.processes.values():
        if process._child_watcher is not None:
            process._child_watcher.stop()
        watcher.checks.forget(process)
        if process.ready_pipe is not None:  # its fd:N readiness check fails: not adopted twice
            process.ready_pipe.close()
    watcher.processes.clear()
    watcher._handled.clear()


def _leave_alone(state: dict, why: str) -> None:
    for entry in state["processes"]:
        log.error("pid %d (watcher %r, wid %d) is not adopted, %s: it keeps running unsupervised, not killed",
                  entry["pid"], state["name"], entry["wid"], why)
        _close_streams(entry)


def _close_streams(entry: dict) -> None:
    streams_bridge.close(entry["streams"])
    if entry.get("ready_fd") is not None:
        streams_bridge.close_fd(entry["ready_fd"])
