"""The old image's side of a hand-over: refuse it, or stop answering, drain the streams, write the snapshot, exec.

The reply to `upgrade` cannot come from this image once it exec'd, and a zmq ROUTER cannot route to a client across
the restart unless the client fixed its identity beforehand. So `upgrade` carries an id chosen by the client and is
answered at once (or with why it is refused: nothing is closed then, so that reply always arrives); gcircusctl then
polls `upgrade --status` until the new image reports that id done (or this image reports it failed). The immediate
reply may be lost when the exec comes before zmq wrote it out: the client's own id makes that harmless.
"""
from __future__ import annotations

import errno
import logging
import os
import sys
import time

import gevent
import gevent.pool

from gcircus import __version__
from gcircus.control.publisher import EventPublisher
from gcircus.handover import capture, snapshot, streams_bridge
from gcircus.logsetup import flush_log

log = logging.getLogger(__name__)

HANDOVER_OPTION = "--handover"
FAIL_EXEC_ENV = "GCIRCUS_TEST_FAIL_EXEC"  # tests: the exec fails, to exercise the undo (this image runs on)


class HandoverRefused(Exception):
    """The hand-over cannot happen now; the message says why (the old image keeps running as it was)."""


class Handover:
    """A daemon's hand-over to a fresh image of itself; `last` says how the last one ended (for `upgrade --status`)."""

    def __init__(self, daemon, pidfile=None):
        self.daemon = daemon
        self.arbiter = daemon.arbiter
        self.pidfile = pidfile  # gcircus.pidfile.Pidfile whose locked descriptor is carried over, if any
        self.greenlets = gevent.pool.Group()  # the hand-over under way (killed with the daemon's greenlets)
        self.last: dict | None = None  # {"id", "outcome": "done" | "failed", "reason", "old_version", "new_version"}
        self._running: dict | None = None

    def status(self) -> dict:
        return {"version": __version__, "pid": os.getpid(), "running": self._running is not None, "last": self.last}

    def request(self, reload: bool = False, handover_id: str | None = None) -> dict:
        """Start a hand-over in the background; HandoverRefused at once if it cannot happen now.

        `handover_id` is the client's own id for it: the reply to `upgrade` may be lost (the exec can come before
        zmq's I/O thread wrote it out), so gcircusctl chooses the id it then polls `upgrade --status` for.
        """
        self.check()
        self._running = {"id": handover_id or os.urandom(16).hex(), "old_version": __version__, "reload": bool(reload)}
        self.greenlets.spawn(self._run, dict(self._running))
        return {"handover": self._running["id"], "old_version": __version__, "pid": os.getpid()}

    def check(self) -> None:
        """HandoverRefused if a hand-over cannot start now; OSError if no memfd can be written."""
        if self._running is not None:
            raise HandoverRefused("a hand-over is already under way")
        self.check_quiet()
        fd = snapshot.write({"probe": True})  # a memfd can be made and written now
        os.close(fd)

    def check_quiet(self) -> None:
        """HandoverRefused unless nothing is half-done: no stop, reload, restart or command of a watcher under way,
        no process being stopped (its stop would be cut short, and a retiring process is in no snapshot)."""
        if self.daemon.stopper is not None or self.arbiter.shutting_down.is_set():
            raise HandoverRefused("gcircusd is stopping")
        if self.arbiter.reload_in_progress():
            raise HandoverRefused("a reloadconfig or restart is in progress; try again once it is done")
        busy = [w.name for w in self.arbiter.watchers if w.is_changing()]
        if busy:
            raise HandoverRefused(f"watchers are busy (a command, or processes being stopped): {', '.join(busy)}; "
                                  f"try again once they are done")

    def _run(self, request: dict) -> None:
        log.info("handing over to a new image of gcircusd (pid %d stays): %d watchers, %d processes", os.getpid(),
                 len(self.arbiter.watchers), self.arbiter.numprocesses())
        self.daemon.service_manager.handing_over()
        self._hold_events()
        channels = self._close_channels()
        kept = streams_bridge.detach_all(self.arbiter)
        flush_log()  # what this image logged is written before it is replaced
        if self.arbiter.audit is not None:
            self.arbiter.audit.flush()  # and what it audited
        try:
            self._exec(request, kept)  # returns only if it failed
        except Exception as exc:  # noqa: BLE001 - whatever failed, this image keeps running as it was
            log.error("hand-over failed, gcircusd keeps running as it was: %s", exc)
            self.last = {**request, "outcome": "failed", "reason": str(exc), "new_version": None}
        try:
            streams_bridge.resume_all(self.arbiter, kept)
        except Exception:  # noqa: BLE001 - the channels must come back whatever the streams do
            log.exception("hand-over failed: the output of some processes could not be read again")
        finally:
            for channel in channels:
                _reopen(channel)
            self._running = None
            self.daemon.service_manager.handover_failed()

    def _hold_events(self) -> None:
        """From now on the events are held back (carried in the snapshot, or published by this image's event channel
        again if the exec fails) until the subscribers of the event channel about to close are back."""
        publisher = next((c.opened for c in self.arbiter.started_services()
                          if isinstance(getattr(c, "opened", None), EventPublisher)), None)
        if publisher is not None:
            self.arbiter.hold_events(publisher.hold_back())

    def _close_channels(self) -> list:
        """Close the zmq channels (the new image binds their endpoints again); the ones closed, in start order."""
        channels = [s for s in self.arbiter.started_services() if getattr(s, "opened", None) is not None]
        for channel in reversed(channels):
            channel.stop()
        return channels

    def _exec(self, request: dict, kept: dict) -> None:
        """Write the snapshot and exec, without yielding to the hub from here on (no exit is reaped in between)."""
        self.check_quiet()  # again: something may have begun while the channels closed and the streams drained
        pidfile = None
        if self.pidfile is not None and self.pidfile.fd is not None:
            pidfile = {"path": self.pidfile.path, "fd": self.pidfile.fd}
        state = capture.take(self.arbiter, kept, request, pidfile)
        if self.arbiter.held_events is not None:
            state["events"] = self.arbiter.held_events.to_state()
        fds = capture.carried_fds(state)
        fd = snapshot.write(state)
        argv = [sys.executable, *strip_options(sys.orig_argv[1:]), HANDOVER_OPTION, str(fd)]
        capture.set_inheritable(fds, True)
        try:
            if os.environ.get(FAIL_EXEC_ENV):
                raise OSError(errno.ENOEXEC, f"exec refused ({FAIL_EXEC_ENV} is set)")
            os.execv(argv[0], argv)
        finally:
            capture.set_inheritable(fds, False)
            os.close(fd)


REOPEN_WITHIN = 10.0  # seconds a channel of the old image has to bind its endpoint again after a failed exec


def _reopen(channel) -> None:
    """Start a channel closed for the exec again. Its endpoint may not be free at once: zmq's I/O thread releases
    a closed socket's port in its own time (under load, later than this greenlet runs), so a refused bind is tried
    again until it works, at most REOPEN_WITHIN seconds; then the failure is logged (gcircusd is deaf on it)."""
    deadline = time.monotonic() + REOPEN_WITHIN
    while True:
        try:
            channel.start()
            return
        except OSError as exc:
            if time.monotonic() > deadline:
                log.error("hand-over failed and %r cannot listen again: %s", channel, exc)
                return
            gevent.sleep(0.05)


def strip_options(argv: list[str]) -> list[str]:
    """gcircusd's command line without what must not run twice: --daemon (it detached already), --handover FD."""
    kept, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == HANDOVER_OPTION:
            skip = True
        elif arg != "--daemon" and not arg.startswith(HANDOVER_OPTION + "="):
            kept.append(arg)
    return kept


def handed_over(state: dict) -> dict:
    """What `upgrade --status` reports in the new image about the hand-over that started it."""
    request = state.get("request") or {}
    return {"id": request.get("id"), "outcome": "done", "reason": "", "old_version": state["gcircus_version"],
            "new_version": __version__}
