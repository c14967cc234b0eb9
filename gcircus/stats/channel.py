"""The stats channel: a PUB socket and the periodic loop that samples processes and publishes them (PROTOCOL.md 3.4).

Topics and payloads are circusd-stats's: `stat.<watcher>.<pid>` (a process), `stat.<watcher>` (the watcher's
total), `stat.circus.<pid>` / `stat.circus` (the supervisor itself) and `stat.sockets`. The loop runs in the
caller's hub and yields to it every few milliseconds of work, so sampling a thousand processes never stalls
supervision for long; it records how long each sample took and its longest stretch without yielding.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Callable

import gevent
import zmq
import zmq.green as gzmq

from gcircus.procinfo import YIELD_AFTER
from gcircus.stats.sampler import ProcessGone, ProcessSampler, aggregate
from gcircus.wire.connection_cap import ConnectionCap
from gcircus.wire.curve import KeyPair
from gcircus.wire.endpoints import IpcMode, bind_private, close_bound

log = logging.getLogger(__name__)

SEND_HWM = 50_000  # a sample of thousands of processes is thousands of messages: keep them for a slow subscriber

# The sources the loop asks on each tick: {watcher topic name: [pids]} and {pid: name} for the supervisor itself.
Groups = Callable[[], dict[str, list[int]]]
CircusPids = Callable[[], dict[int, str]]


class StatsPublisher:
    """A bound PUB socket sending `[topic, json]` pairs; never blocks (a full queue drops, as any PUB does)."""

    def __init__(self, endpoint: str, context=None, allow_remote: bool = False, option: str = "stats_endpoint",
                 ipc: IpcMode | None = None, curve: KeyPair | None = None):
        self.endpoint = endpoint
        self.ipc = ipc
        self.context = context or gzmq.Context.instance()
        self.allow_remote = allow_remote
        self.option = option
        self.curve = curve  # the daemon's key pair: a tcp:// endpoint is then a CURVE server
        self.socket = None
        self._send = None
        self._cap: ConnectionCap | None = None

    def bind(self) -> None:
        sock = self.context.socket(gzmq.PUB)
        sock.linger = 0
        sock.sndhwm = SEND_HWM
        try:
            secured = bind_private(sock, self.option, self.endpoint, self.allow_remote, self.ipc, self.curve)
        except Exception:
            sock.close()
            raise
        self.socket = sock
        # Idle subscribers cannot use up gcircusd's fds either.
        self._cap = ConnectionCap(sock, self.option, curve=secured)
        self._cap.start()
        # Sends never wait (NOBLOCK: a full queue drops), so they can skip the green socket's event bookkeeping,
        # a third of the cost of publishing a message: a plain socket object over the same zmq socket.
        self._send = zmq.Socket.shadow(sock.underlying).send_multipart

    def publish(self, topic: str, payload: dict) -> None:
        if self._send is None:
            return
        try:
            self._send([topic.encode(), json.dumps(payload).encode()], zmq.NOBLOCK)
        except zmq.ZMQError as exc:
            if exc.errno != zmq.EAGAIN:
                log.warning("could not publish %s: %s", topic, exc)

    def close(self) -> None:
        self._send = None
        close_bound(self.socket, self.endpoint, self._cap)
        self.socket = self._cap = None


@dataclasses.dataclass(slots=True)
class SampleTiming:
    """The cost of the last sample: processes, total seconds, and the longest run without yielding to the hub."""

    processes: int = 0
    duration: float = 0.0
    longest_pause: float = 0.0
    count: int = 0  # samples taken


class StatsLoop:
    """Every `interval` seconds, sample the pids `groups()` names and publish them with their totals."""

    def __init__(self, publisher: StatsPublisher, groups: Groups, circus_pids: CircusPids, interval: float = 1.0):
        if not interval > 0:
            raise ValueError(f"the stats interval must be a positive number of seconds, not {interval!r}")
        self.publisher = publisher
        self.groups = groups
        self.circus_pids = circus_pids
        self.interval = float(interval)
        self.sampler = ProcessSampler()
        self.timing = SampleTiming()
        self._slice_start = self._longest = 0.0
        self._greenlet: gevent.Greenlet | None = None

    def start(self) -> None:
        if self._greenlet is None:
            self._greenlet = gevent.spawn(self._run)

    def stop(self) -> None:
        greenlet, self._greenlet = self._greenlet, None
        if greenlet is not None:
            greenlet.kill()

    def _run(self) -> None:
        due = time.monotonic()
        while True:
            try:
                self.sample_once()
            except Exception:  # noqa: BLE001 - a failed sample must not end the channel
                log.exception("stats sample failed")
            now = time.monotonic()
            due = max(due + self.interval, now)  # after a sample longer than the interval, no catching up
            gevent.sleep(due - now)

    def sample_once(self) -> None:
        """Sample and publish everything once (the loop's tick; callable directly).

        All processes are sampled first, then all messages are sent in one burst: zmq's I/O thread then carries
        many messages per wake-up, which costs half the CPU of sending each message as soon as it is ready.
        """
        started = time.monotonic()
        self._slice_start, self._longest = started, 0.0
        outbox: list[tuple[str, dict]] = []
        circus = self.circus_pids()
        sections = [*self.groups().items(), ("circus", list(circus))]
        count = 0
        for name, pids in sections:
            infos = []
            for pid in pids:
                try:
                    info = self.sampler.sample(pid)
                except ProcessGone:
                    continue
                except Exception:  # noqa: BLE001 - one unreadable process must not hide the others
                    log.exception("cannot sample pid %s of %s", pid, name)
                    continue
                info["subtopic"] = pid
                info["name"] = circus.get(pid) if name == "circus" else None
                outbox.append((f"stat.{name}.{pid}", info))
                infos.append(info)
                self._maybe_yield()
            count += len(infos)
            outbox.append((f"stat.{name}", aggregate(infos)))
        outbox.append(("stat.sockets", {"addresses": [], "reads": 0}))  # circusd-stats's topic; no socket stats here
        self.sampler.forget_unseen()
        for topic, payload in outbox:
            self.publisher.publish(topic, payload)
            self._maybe_yield()
        end = time.monotonic()
        timing = self.timing
        timing.processes, timing.duration = count, end - started
        timing.longest_pause = max(self._longest, end - self._slice_start)
        timing.count += 1
        log.debug("stats sample: %d processes in %.1f ms (longest hub pause %.2f ms)",
                  count, timing.duration * 1000, timing.longest_pause * 1000)

    def _maybe_yield(self) -> None:
        """Let the hub run once YIELD_AFTER seconds of work have passed since it last did."""
        now = time.monotonic()
        if now - self._slice_start > YIELD_AFTER:
            self._longest = max(self._longest, now - self._slice_start)
            gevent.sleep(0.0001)  # a timed sleep: sleep(0) would not let the hub poll for I/O
            self._slice_start = time.monotonic()
