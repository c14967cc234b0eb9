"""gcircusd's own side of the sd_notify protocol: telling the service manager that runs it (systemd) how it is doing.

systemd starts a `Type=notify` service with NOTIFY_SOCKET set to an AF_UNIX datagram socket (a path, or an abstract
name written with a leading '@') and counts the service started when READY=1 arrives there. gcircusd says:

- `READY=1` once its autostart watchers have settled (Arbiter.wait_started: active, failed or stopped; a watcher
  that backs off forever counts as settled, as for `--daemon`), so units ordered After=gcircusd.service start once
  its processes are ready, not when its process exists;
- `STATUS=` a one-line summary (`3 watchers, 12 processes, 0 failed`), what `systemctl status` shows, updated when a
  watcher changes state or a process comes or goes, at most once per STATUS_INTERVAL;
- `RELOADING=1` with `MONOTONIC_USEC=` when a reloadconfig (SIGHUP or the command) starts applying the file, and
  `READY=1` when it is done, failed or not: a reload that changed nothing still ends;
- `RELOADING=1` with `MONOTONIC_USEC=` when gcircusd hands over to a new image of itself (`upgrade`, SIGUSR2: see
  gcircus.handover), right before the exec; the new image, which finds NOTIFY_SOCKET in the environment it inherits
  (only children have it stripped), says `READY=1` once its channels answer and its watchers settled, or the old
  image says it once an exec that failed left it running as it was;
- `STOPPING=1` as soon as a shutdown begins (SIGTERM, SIGINT, SIGQUIT, `quit`, a failed start);
- `WATCHDOG=1` every WATCHDOG_USEC / 2 when systemd asks for it (WatchdogSec=) and WATCHDOG_PID, if set, is ours:
  the pings come from a greenlet, so they stop when the hub stops turning, which is what the watchdog is for.

Nothing here may hold up supervision: messages go out from the greenlet that has something to say, through a gevent
socket with a bounded wait, one at a time. A failure to send is logged once (and its recovery once), never raised.
Children never see these variables: the watcher strips them from every child's environment.
"""
from __future__ import annotations

import contextlib
import logging
import os
import socket
import time
from collections.abc import Iterator, Mapping

import gevent
import gevent.event
import gevent.lock
import gevent.pool
import gevent.socket

from gcircus.states import FAILED

log = logging.getLogger(__name__)

STATUS_INTERVAL = 1.0  # seconds between two STATUS= updates at most
SEND_TIMEOUT = 5.0  # seconds one message may wait for room in the service manager's queue
# The events that change the summary: a watcher's state, a process coming or going, a watcher added or removed.
STATUS_EVENTS = frozenset({"state", "spawn", "reap", "add", "remove"})


def socket_address(value: str) -> str:
    """The address to send to for a NOTIFY_SOCKET value: '@name' is the abstract name (leading NUL), '/path' a
    path; ValueError for anything else (systemd's vsock: addresses are not supported)."""
    if value.startswith("@") and len(value) > 1:
        return "\0" + value[1:]
    if value.startswith("/"):
        return value
    raise ValueError(f"NOTIFY_SOCKET={value!r} is neither an absolute path nor an abstract '@name'")


def watchdog_interval(environ: Mapping[str, str], pid: int) -> float | None:
    """Seconds between WATCHDOG=1 pings (half of WATCHDOG_USEC), or None when the watchdog is not ours to feed:
    unset, or WATCHDOG_PID names another process. ValueError for a value that is not a positive number."""
    usec = environ.get("WATCHDOG_USEC")
    if not usec:
        return None
    watchdog_pid = environ.get("WATCHDOG_PID")
    if watchdog_pid and watchdog_pid.strip() != str(pid):
        return None
    try:
        value = int(usec)
    except ValueError:
        value = 0
    if value <= 0:
        raise ValueError(f"WATCHDOG_USEC={usec!r} is not a positive number of microseconds")
    return value / 2e6


def monotonic_usec() -> int:
    """CLOCK_MONOTONIC in microseconds, what systemd compares MONOTONIC_USEC with."""
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000


class NotifySocket:
    """Sends sd_notify messages to one address, one at a time, waiting cooperatively and for SEND_TIMEOUT at most.

    The socket is connected, so that a full queue on systemd's side makes us wait for room (a connected datagram
    socket polls writable only when the peer can take a message) instead of spinning; after an error it is
    reconnected at the next message (systemd re-executing itself makes a new socket).
    """

    def __init__(self, address: str):
        self.address = address
        self._socket: gevent.socket.socket | None = None
        self._lock = gevent.lock.Semaphore()
        self._failing = False

    def send(self, fields: Mapping[str, object]) -> bool:
        """Send `KEY=VALUE` lines as one datagram; False (logged once until it works again) if it could not go."""
        data = "\n".join(f"{key}={value}" for key, value in fields.items()).encode("utf-8", "replace")
        with self._lock:
            try:
                self._connected().send(data)
            except OSError as exc:  # socket.timeout is one too
                self._close_socket()
                if not self._failing:
                    self._failing = True
                    log.error("cannot notify the service manager at NOTIFY_SOCKET (%s): %s",
                              self.address.replace("\0", "@"), exc)
                return False
        if self._failing:
            self._failing = False
            log.info("notifying the service manager works again")
        return True

    def close(self) -> None:
        self._close_socket()

    def _connected(self) -> gevent.socket.socket:
        if self._socket is None:
            sock = gevent.socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)  # close-on-exec: children never get it
            sock.settimeout(SEND_TIMEOUT)
            try:
                sock.connect(self.address)
            except OSError:
                sock.close()
                raise
            self._socket = sock
        return self._socket

    def _close_socket(self) -> None:
        sock, self._socket = self._socket, None
        if sock is not None:
            sock.close()


class ServiceManager:
    """Keeps the service manager that runs gcircusd informed about one arbiter (see the module docstring).

    Inert when NOTIFY_SOCKET is not set. Built by the daemon, it attaches itself to the arbiter as a Service stopped
    before the watchers (so STOPPING=1 goes out as any shutdown begins) and wraps the arbiter's reloads. Its greenlets
    (readiness, status, watchdog) belong to it: `close()` kills and joins them once the daemon is done.
    """

    def __init__(self, arbiter, environ: Mapping[str, str] | None = None):
        environ = os.environ if environ is None else environ
        self.arbiter = arbiter
        self.notify_socket: NotifySocket | None = None
        self.watchdog_interval: float | None = None
        self.phase = "starting"  # starting, running, reloading, stopping: the word STATUS= starts with
        self._changed = gevent.event.Event()
        self._greenlets = gevent.pool.Group()
        self._last_status: str | None = None
        self._configure(environ)
        if self.notify_socket is not None:
            arbiter.attach(self, stop_before_watchers=True)
            arbiter.reload_reporter = self.reloading
            arbiter.subscribe(self._on_event)

    def _configure(self, environ: Mapping[str, str]) -> None:
        value = environ.get("NOTIFY_SOCKET")
        if not value:
            return
        try:
            self.notify_socket = NotifySocket(socket_address(value))
        except ValueError as exc:
            log.error("not notifying the service manager: %s", exc)
            return
        try:
            self.watchdog_interval = watchdog_interval(environ, os.getpid())
        except ValueError as exc:
            log.error("not feeding the service manager's watchdog: %s", exc)

    @property
    def enabled(self) -> bool:
        return self.notify_socket is not None

    # -- the arbiter's Service -------------------------------------------------------------------------------------

    def start(self) -> None:
        """The arbiter starts: begin the watchdog pings and the status updates."""
        if self.watchdog_interval is not None:
            self._greenlets.spawn(self._feed_watchdog_forever)
            log.info("feeding the service manager's watchdog every %gs", self.watchdog_interval)
        self._greenlets.spawn(self._report_status_forever)
        self._changed.set()

    def stop(self) -> None:
        """The arbiter begins to stop (first thing in Arbiter.stop): STOPPING=1. Pings go on until close()."""
        self.phase = "stopping"
        self.send(STOPPING=1, STATUS=self.summary())

    # -- what the daemon calls -------------------------------------------------------------------------------------

    def watch_startup(self) -> None:
        """The arbiter's start returned: say READY=1 once its autostart watchers have settled (in a greenlet)."""
        if self.enabled:
            self._greenlets.spawn(self._ready_when_settled)

    def close(self) -> None:
        """gcircusd is done: stop every greenlet (killed and joined) and close the socket."""
        self._greenlets.kill(block=True)
        if self.notify_socket is not None:
            self.arbiter.unsubscribe(self._on_event)
            self.notify_socket.close()

    @contextlib.contextmanager
    def reloading(self) -> Iterator[None]:
        """Around an applied reloadconfig: RELOADING=1 (with MONOTONIC_USEC), then READY=1 however it ended."""
        previous, self.phase = self.phase, "reloading"
        self.send(RELOADING=1, MONOTONIC_USEC=monotonic_usec(), STATUS="reloading the configuration")
        try:
            yield
        finally:
            if self.phase == "reloading":
                self.phase = previous
            self.send(READY=1, STATUS=self.summary())

    def handing_over(self) -> None:
        """gcircusd is about to re-execute itself: RELOADING=1; the new image says READY=1 (handover_failed: this)."""
        self.phase = "reloading"
        self.send(RELOADING=1, MONOTONIC_USEC=monotonic_usec(), STATUS="handing over to a new image of gcircusd")

    def handover_failed(self) -> None:
        """The exec failed and this image runs on as it was: READY=1 ends the RELOADING=1."""
        if self.phase == "reloading":
            self.phase = "running"
        self.send(READY=1, STATUS=self.summary())

    def send(self, **fields: object) -> bool:
        """Send one message (KEY=VALUE per keyword); does nothing when there is no NOTIFY_SOCKET."""
        if self.notify_socket is None:
            return False
        if "STATUS" in fields:
            self._last_status = str(fields["STATUS"])
        return self.notify_socket.send(fields)

    def summary(self) -> str:
        """`3 watchers, 12 processes, 0 failed`, after the phase unless gcircusd is simply running."""
        watchers = self.arbiter.watchers
        failed = sum(1 for watcher in watchers if watcher.status() == FAILED)
        text = f"{len(watchers)} watchers, {self.arbiter.numprocesses()} processes, {failed} failed"
        return text if self.phase == "running" else f"{self.phase}: {text}"

    # -- the greenlets ---------------------------------------------------------------------------------------------

    def _ready_when_settled(self) -> None:
        failed, retrying = self.arbiter.wait_started()
        if self.phase != "starting":  # a stop (or a reload, which says READY=1 itself) came first
            return
        self.phase = "running"
        self.send(READY=1, STATUS=self.summary())
        if failed or retrying:
            log.warning("told the service manager gcircusd is ready, with %d watcher(s) failed and %d retrying",
                        len(failed), len(retrying))

    def _on_event(self, event) -> None:
        if event.name in STATUS_EVENTS:
            self._changed.set()

    def _report_status_forever(self) -> None:
        while True:
            self._changed.wait()
            self._changed.clear()
            status = self.summary()
            if status != self._last_status:
                self.send(STATUS=status)
            gevent.sleep(STATUS_INTERVAL)

    def _feed_watchdog_forever(self) -> None:
        interval = self.watchdog_interval or 1.0
        while True:
            self.send(WATCHDOG=1)
            gevent.sleep(interval)
