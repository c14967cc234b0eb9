"""The readiness and health checks of one watcher's processes, followed on the hub.

A process is checked for readiness from its spawn (`ready`), and once ready for health (`health`), each in a
greenlet of its own in one group this object owns (a process's greenlets are killed when it is forgotten, all of
them when the watcher stops). What the checks find reaches the watcher through its callbacks; this module decides
nothing about respawning or states. sd_notify messages arrive on the watcher's NotifySocket and are credited to the
supervised process that sent them (or whose descendant did).
"""
from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import gevent
import gevent.event
import gevent.pool

from gcircus.checks.fdready import wait_fd_ready
from gcircus.checks.notify import MAX_ANCESTRY, NotifySocket, owner_of, parent_of
from gcircus.checks.outcome import Outcome
from gcircus.checks.probes import probe
from gcircus.checks.spec import FD, NONE, NOTIFY, WATCHDOG, Check, parse_check

log = logging.getLogger(__name__)

FIRST_POLL, MAX_POLL = 0.05, 1.0  # seconds between two readiness probes: from quick to at most 1 s
# sd_notify messages from senders not followed (yet) are kept this long, this many at most: a child may say READY=1
# before its spawn is over (while Popen waits for the exec, or an after_spawn hook runs), see ProcessChecks.follow.
EARLY_SECONDS, EARLY_MESSAGES = 60.0, 64


@dataclass
class Callbacks:
    """What the watcher does with what the checks find; each takes the process first."""

    ready: Callable[[Any, str], None]  # (process, detail): it passed its readiness check (again)
    not_ready: Callable[[Any, str], None]  # (process, detail): RELOADING=1: it is not ready until READY=1 again
    start_failed: Callable[[Any, str], None]  # (process, reason): not ready within ready_timeout, or its check said no
    unhealthy: Callable[[Any, str], None]  # (process, detail): health_retries failures in a row, or a missed watchdog
    stopping: Callable[[Any], None]  # STOPPING=1: the process says it is going down


class _Followed:
    """What the checks know of one process: its notify messages and watchdog pings, and its greenlets."""

    __slots__ = ("process", "greenlets", "ready_sent", "pinged", "deadline")

    def __init__(self, process, deadline: float | None):
        self.process = process
        self.greenlets: list[gevent.Greenlet] = []
        self.ready_sent = gevent.event.Event()  # READY=1 arrived (notify)
        self.pinged = gevent.event.Event()  # a WATCHDOG=1 arrived since the last look
        self.deadline = deadline  # monotonic time by which it must be ready (None: no limit); EXTEND_TIMEOUT_USEC


class ProcessChecks:
    """The checks of one watcher: `settings` is its spec (ready, ready_timeout, health, health_*, watchdog_sec)."""

    def __init__(self, watcher_name: str, settings, callbacks: Callbacks):
        self.watcher_name = watcher_name
        self.callbacks = callbacks
        self._group = gevent.pool.Group()
        self._followed: dict[int, _Followed] = {}
        # (when, the sender and its ancestors as they were then, fields): see _replay_early
        self._early: deque[tuple[float, tuple[int, ...], dict[str, str]]] = deque(maxlen=EARLY_MESSAGES)
        self._socket: NotifySocket | None = None
        self.configure(settings)

    def configure(self, settings) -> None:
        """Take the (new) options; a process already followed keeps the checks it started with."""
        self.settings = settings
        self.ready: Check = parse_check(settings.ready)
        self.health: Check = parse_check(settings.health, health=True)

    @property
    def wants_notify_socket(self) -> bool:
        return self.ready.kind == NOTIFY or self.health.kind == WATCHDOG

    @property
    def ready_fd(self) -> int | None:
        """The descriptor a child writes its readiness newline to (ready = fd:N), for the spawn spec."""
        return self.ready.fd if self.ready.kind == FD else None

    def child_env(self) -> dict[str, str]:
        """What this watcher's children get besides their environment: the notify socket and the watchdog period."""
        env = {}
        if self.wants_notify_socket:
            env["NOTIFY_SOCKET"] = self._open_socket().env_value
        if self.health.kind == WATCHDOG and self.settings.watchdog_sec > 0:
            env["WATCHDOG_USEC"] = str(int(self.settings.watchdog_sec * 1_000_000))
        return env

    def _open_socket(self, carried: tuple[int, str] | None = None) -> NotifySocket:
        if self._socket is None:
            self._socket = NotifySocket(self.watcher_name, self._on_notify, carried)
            self._socket.start()
        return self._socket

    # -- a re-exec of gcircusd (gcircus.handover) ------------------------------------------------------------------

    def notify_socket_state(self) -> dict | None:
        """The notify socket to carry over a re-exec (its descriptor and address), or None without one."""
        if self._socket is None:
            return None
        return {"fd": self._socket.fileno(), "address": self._socket.address}

    def adopt_notify_socket(self, state: dict | None) -> None:
        """Read the socket the replaced image carried (`notify_socket_state`): the children's NOTIFY_SOCKET stays
        valid and what they sent during the exec is read now. Before any process is adopted."""
        if state is not None:
            self._open_socket((state["fd"], state["address"]))

    def readiness_state(self, process) -> dict:
        """What a re-exec must carry of a process still waiting to be ready: its deadline (time.monotonic(): the
        system's clock, the same across exec) and whether READY=1 came already (not acted on yet)."""
        followed = self._followed.get(process.pid)
        if followed is None:
            return {"ready_deadline": None, "ready_sent": False}
        return {"ready_deadline": followed.deadline, "ready_sent": followed.ready_sent.is_set()}

    # -- following processes ---------------------------------------------------------------------------------------

    def follow(self, process, wid_env: dict[str, str], carried: dict | None = None) -> None:
        """Check `process` (just spawned) for readiness, then for health. With `ready = none` it is ready at once.
        `carried`: its readiness_state() from before a re-exec (the same deadline; READY=1 already said)."""
        timeout = self.settings.ready_timeout
        deadline = time.monotonic() + timeout if timeout > 0 else None
        if carried is not None and carried.get("ready_deadline") is not None:
            deadline = carried["ready_deadline"]
        followed = _Followed(process, deadline)
        self._followed[process.pid] = followed
        if carried is not None and carried.get("ready_sent"):
            followed.ready_sent.set()
        self._replay_early(followed)
        if self.ready.kind == NONE:
            self.callbacks.ready(process, "")
            self._watch_health(followed, wid_env)
            return
        followed.greenlets.append(self._group.spawn(self._await_ready, followed, wid_env))

    def adopt(self, process, wid_env: dict[str, str], ready: bool, carried: dict | None = None) -> None:
        """Check a process carried over a re-exec of gcircusd: one that was ready stays so (its health is
        followed again from now), any other is followed on, until the deadline it had (`carried`, its
        readiness_state() in the replaced image; without it, as a fresh spawn)."""
        if not ready:
            self.follow(process, wid_env, carried)
            return
        followed = _Followed(process, None)
        self._followed[process.pid] = followed
        self._watch_health(followed, wid_env)

    def forget(self, process) -> None:
        """The process is gone or being stopped: its checks end (killed, not waited for)."""
        followed = self._followed.pop(process.pid, None)
        if followed is not None:
            for greenlet in followed.greenlets:
                if greenlet is not gevent.getcurrent():
                    greenlet.kill(block=False)

    def close(self) -> None:
        """End every check and close the notify socket (the watcher stopped or was removed)."""
        self._followed.clear()
        self._early.clear()
        self._group.kill(block=True)
        if self._socket is not None:
            self._socket.close()
            self._socket = None

    def _await_ready(self, followed: _Followed, env: dict[str, str]) -> None:
        process = followed.process
        outcome = self._readiness(followed, env)
        if self._followed.get(process.pid) is not followed:
            return  # forgotten meanwhile
        if outcome.ok:
            self.callbacks.ready(process, outcome.detail)
            self._watch_health(followed, env)
        else:
            self.callbacks.start_failed(process, outcome.detail)

    def _readiness(self, followed: _Followed, env: dict[str, str]) -> Outcome:
        kind = self.ready.kind
        if kind == FD:
            if followed.process.ready_pipe is None:  # adopted by pid only after a re-exec (gcircus.handover)
                return Outcome.failed(f"fd {self.ready.fd}: its readiness pipe was not carried over")
            outcome = wait_fd_ready(followed.process.ready_pipe, _remaining(followed), child_fd=self.ready.fd or 0)
            if not outcome.ok and _remaining(followed) == 0:
                return Outcome.failed(f"no newline on fd {self.ready.fd} within {self.settings.ready_timeout:g}s")
            return outcome
        if kind == NOTIFY:
            while not followed.ready_sent.wait(_remaining(followed)):
                if _remaining(followed) == 0:  # not extended meanwhile (EXTEND_TIMEOUT_USEC)
                    return Outcome.failed(f"no READY=1 within {self.settings.ready_timeout:g}s")
            return Outcome(True, "READY=1")
        return self._poll_until_ready(followed, env)

    def _poll_until_ready(self, followed: _Followed, env: dict[str, str]) -> Outcome:
        """Probe (tcp, http, exec) until it passes, quickly at first, then at most every MAX_POLL seconds."""
        delay, outcome = FIRST_POLL, Outcome.failed("not probed yet")
        while True:
            remaining = _remaining(followed)
            if remaining == 0:
                return Outcome.failed(f"not ready within {self.settings.ready_timeout:g}s: {outcome.detail}")
            timeout = min(self.settings.health_timeout, remaining) if remaining is not None else \
                self.settings.health_timeout
            outcome = self._probe(self.ready, followed.process, env, timeout)
            if outcome.ok:
                return outcome
            followed.process.check_detail = outcome.detail
            gevent.sleep(delay if remaining is None else min(delay, _remaining(followed) or 0))
            delay = min(delay * 2, MAX_POLL)

    def _probe(self, check: Check, process, env: dict[str, str], timeout: float) -> Outcome:
        spec = process.spec
        return probe(check, wid=process.wid, env=env, timeout=timeout, cwd=spec.working_dir, uid=spec.uid,
                     gid=spec.gid)

    # -- health ------------------------------------------------------------------------------------------------------

    def _watch_health(self, followed: _Followed, env: dict[str, str]) -> None:
        if self.health.kind == NONE or self._followed.get(followed.process.pid) is not followed:
            return
        run = self._watch_pings if self.health.kind == WATCHDOG else self._probe_health
        followed.greenlets.append(self._group.spawn(run, followed, env))

    def _probe_health(self, followed: _Followed, env: dict[str, str]) -> None:
        """Probe every health_interval; health_retries failures in a row make the process unhealthy."""
        failures = 0
        while True:
            gevent.sleep(self.settings.health_interval)
            outcome = self._probe(self.health, followed.process, env, self.settings.health_timeout)
            failures = 0 if outcome.ok else failures + 1
            if failures and failures < self.settings.health_retries:
                log.info("watcher %r: pid %d failed a health check (%d of %d): %s", self.watcher_name,
                         followed.process.pid, failures, self.settings.health_retries, outcome.detail)
            if failures >= self.settings.health_retries:
                self.callbacks.unhealthy(followed.process, f"{failures} health checks failed: {outcome.detail}")
                return

    def _watch_pings(self, followed: _Followed, env: dict[str, str]) -> None:
        """With `health = watchdog`: a process silent for watchdog_sec is unhealthy, as systemd's WatchdogSec=."""
        period = self.settings.watchdog_sec
        if period <= 0:
            return
        followed.pinged.clear()  # pings before it was ready do not count
        while followed.pinged.wait(period):
            followed.pinged.clear()
        self.callbacks.unhealthy(followed.process, f"no WATCHDOG=1 within {period:g}s")

    # -- sd_notify ---------------------------------------------------------------------------------------------------

    def _on_notify(self, sender: int, fields: dict[str, str]) -> None:
        owner = owner_of(sender, self._followed)
        followed = self._followed.get(owner) if owner is not None else None
        if followed is None:
            log.debug("watcher %r: notify message from pid %d, which is none of its processes (yet)",
                      self.watcher_name, sender)
            self._early.append((time.monotonic(), _ancestry(sender), fields))
            return
        self._apply(followed, fields)

    def _replay_early(self, followed: _Followed) -> None:
        """Apply the messages the process (or a child of it) sent before it was followed; forget stale ones.

        The sender's ancestry was read when its message came, so a helper that said READY=1 and exited at once
        (`sh -c 'notify-ready; exec app'`) still counts for the process it ran under."""
        now, pid = time.monotonic(), followed.process.pid
        early, self._early = self._early, deque(maxlen=EARLY_MESSAGES)
        for received, ancestry, fields in early:
            if now - received > EARLY_SECONDS:
                continue
            if pid in ancestry:
                self._apply(followed, fields)
            else:
                self._early.append((received, ancestry, fields))

    def _apply(self, followed: _Followed, fields: dict[str, str]) -> None:
        """Act on one message of a followed process."""
        process = followed.process
        if "STATUS" in fields:
            process.status_text = fields["STATUS"][:200]
        if "EXTEND_TIMEOUT_USEC" in fields and followed.deadline is not None:
            extension = _usec(fields["EXTEND_TIMEOUT_USEC"])
            if extension is not None:
                followed.deadline = max(followed.deadline, time.monotonic() + extension)
        if fields.get("WATCHDOG") == "1":
            followed.pinged.set()
        elif fields.get("WATCHDOG") == "trigger":
            self.callbacks.unhealthy(process, "WATCHDOG=trigger")
        if fields.get("RELOADING") == "1":
            followed.ready_sent.clear()
            self.callbacks.not_ready(process, "RELOADING=1")
        if fields.get("READY") == "1":
            followed.ready_sent.set()  # the first one ends _readiness; a later one follows a RELOADING=1
            # Whatever the readiness check: a RELOADING=1 made the process not ready, whatever told us it was ready
            # (with `health = watchdog` the socket is there with `ready = none` or a probe too).
            if "RELOADING" not in fields and _was_ready(process):
                self.callbacks.ready(process, "READY=1")
        if fields.get("STOPPING") == "1":
            self.callbacks.stopping(process)
        if "MAINPID" in fields:
            process.check_detail = f"MAINPID={fields['MAINPID'][:20]}"


def _remaining(followed: _Followed) -> float | None:
    """Seconds left until the process must be ready (None: no limit), never negative."""
    if followed.deadline is None:
        return None
    return max(0.0, followed.deadline - time.monotonic())


def _ancestry(pid: int) -> tuple[int, ...]:
    """`pid` and its ancestors (up to MAX_ANCESTRY of them, below init), as far as /proc tells now."""
    chain = [pid]
    while len(chain) < MAX_ANCESTRY and chain[-1] > 1:
        try:
            chain.append(parent_of(chain[-1]))
        except (OSError, ValueError, IndexError):
            break
    return tuple(chain)


def _usec(text: str) -> float | None:
    try:
        return max(0, int(text)) / 1_000_000
    except ValueError:
        return None


def _was_ready(process) -> bool:
    """Whether the watcher already took the process as ready once (it sets ready_at)."""
    return process.ready_at is not None
