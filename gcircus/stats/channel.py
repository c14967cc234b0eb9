"""The stats channel: a PUB socket and the periodic loop that samples processes and publishes them (PROTOCOL.md 3.4).

Topics and payloads are circusd-stats's: `stat.<watcher>.<pid>` (a process), `stat.<watcher>` (the watcher's
total), `stat.circus.<pid>` / `stat.circus` (the supervisor itself) and `stat.sockets`. The loop runs in the
caller's hub and yields to it every few milliseconds of work, so sampling thousands of processes never stalls
supervision for long; it records how long each sample took and its longest stretch without yielding. Its cost is
bounded too: past BUDGET of a core, a tick samples only part of the processes, round robin (10,000 processes at
the default 1 s interval: each is sampled about every 10-12 s instead of taking 40 % of a core).
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
# The share of one core the sampling may take. Reading a process costs ~30-60 µs (two /proc files, its message): up
# to ~1,000-1,500 processes per second fit; beyond, each tick samples a part of them, round robin (see sample_once).
BUDGET = 0.04
# Up to this many processes, every one is sampled on every tick whatever it costs, as before the budget (a loaded
# machine makes each read dearer, and must not thin out small setups); beyond, at least MIN_SHARE per tick.
MIN_PER_TICK = 1000
MIN_SHARE = 100
PROBE_EVERY = 16  # one call in this many is timed, to know what a process costs
SAMPLING, PUBLISHING = 0, 1  # the steps timed

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
    sampled: int = 0  # processes read by the last one (the others reported with their previous sample)


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
        self._slice_start = self._longest = self._work = 0.0
        self._calls = 0
        self._probed = [[0.0, 0], [0.0, 0]]  # per step (SAMPLING, PUBLISHING): CPU seconds and calls timed
        self.per_process: float | None = None  # seconds of work one sampled process costs (moving average)
        self._cursor = 0  # where the next tick's round robin starts
        self._latest: dict[int, dict] = {}  # each process's latest info, for the totals of the ticks that skip it
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

    def quota(self, total: int) -> int:
        """How many of `total` processes this tick samples: all of them up to MIN_PER_TICK or while they fit in
        BUDGET of a core, else as many as fit (at least MIN_SHARE), the others on the next ticks, round robin."""
        if self.per_process is None or total <= MIN_PER_TICK:
            return total
        return max(MIN_SHARE, min(total, int(BUDGET * self.interval / self.per_process)))

    def sample_once(self) -> None:
        """Sample and publish once (the loop's tick; callable directly).

        Processes are sampled first, then all messages are sent in one burst: zmq's I/O thread then carries many
        messages per wake-up, which costs half the CPU of sending each message as soon as it is ready. When
        sampling every process would take more than BUDGET of a core, a tick samples the next `quota` of them
        (round robin): each process is then sampled every few ticks (its cpu is its use since its previous sample,
        as always), and a watcher's total is built from each process's latest sample.
        """
        started = time.monotonic()
        self._slice_start, self._longest, self._work = started, 0.0, 0.0
        circus = self.circus_pids()
        sections = [*self.groups().items(), ("circus", list(circus))]
        chosen = self._choose([pid for _, pids in sections for pid in pids])
        outbox: list[tuple[str, dict]] = []
        latest: dict[int, dict] = {}
        count = 0
        for name, pids in sections:
            infos = []
            for pid in pids:
                if pid in chosen:
                    info = self._measured(SAMPLING, self._sample, name, pid, circus, outbox)
                else:
                    info = self._latest.get(pid)
                if info is not None:
                    latest[pid] = info
                    infos.append(info)
                self._maybe_yield()
            count += len(infos)
            outbox.append((f"stat.{name}", aggregate(infos)))
        outbox.append(("stat.sockets", {"addresses": [], "reads": 0}))  # circusd-stats's topic; no socket stats here
        self._latest = latest
        self.sampler.forget_except(latest)
        for topic, payload in outbox:
            self._measured(PUBLISHING, self.publisher.publish, topic, payload)
            self._maybe_yield()
        self._record(started, count, len(chosen))

    def _measured(self, step: int, func, *args):
        """`func(*args)`, its CPU time measured one call in PROBE_EVERY (a thread-time read is a system call: timing
        every call cost a tenth of a sample). CPU time, not wall time: on a loaded machine the wall clock would count
        other processes' turns."""
        self._calls += 1
        if self._calls % PROBE_EVERY:
            return func(*args)
        began = time.thread_time()
        try:
            return func(*args)
        finally:
            probe = self._probed[step]
            probe[0] += time.thread_time() - began
            probe[1] += 1

    def _choose(self, pids: list[int]) -> set[int]:
        """The pids this tick samples: the next quota of them from where the previous tick stopped."""
        quota = self.quota(len(pids))
        if quota >= len(pids):
            self._cursor = 0
            return set(pids)
        start = self._cursor % len(pids)
        self._cursor = start + quota
        return set(pids[start:start + quota]) | set(pids[:max(0, start + quota - len(pids))])

    def _sample(self, name: str, pid: int, circus: dict, outbox: list) -> dict | None:
        """One process's info, its message queued; None if it is gone or unreadable."""
        try:
            info = self.sampler.sample(pid)
        except ProcessGone:
            return None
        except Exception:  # noqa: BLE001 - one unreadable process must not hide the others
            log.exception("cannot sample pid %s of %s", pid, name)
            return None
        info["subtopic"] = pid
        info["name"] = circus.get(pid) if name == "circus" else None
        outbox.append((f"stat.{name}.{pid}", info))
        return info

    def _record(self, started: float, count: int, sampled: int) -> None:
        """Keep the sample's cost: its timing, and the work one sampled process costs (reading it, publishing its
        message: what the next quota is made of; what every tick costs whatever it samples is left out)."""
        end = time.monotonic()
        self._work += end - self._slice_start
        if all(calls for _, calls in self._probed):
            # One sample and one message per sampled process.
            cost = sum(seconds / calls for seconds, calls in self._probed)
            self.per_process = cost if self.per_process is None else 0.7 * self.per_process + 0.3 * cost
            self._probed = [[0.0, 0], [0.0, 0]]
        timing = self.timing
        timing.processes, timing.duration = count, end - started
        timing.longest_pause = max(self._longest, end - self._slice_start)
        timing.sampled = sampled
        timing.count += 1
        log.debug("stats sample: %d processes in %.1f ms (longest hub pause %.2f ms, %d sampled, %.1f ms of work)",
                  count, timing.duration * 1000, timing.longest_pause * 1000, sampled, self._work * 1000)

    def _maybe_yield(self) -> None:
        """Let the hub run once YIELD_AFTER seconds of work have passed since it last did."""
        now = time.monotonic()
        if now - self._slice_start > YIELD_AFTER:
            self._longest = max(self._longest, now - self._slice_start)
            self._work += now - self._slice_start
            gevent.sleep(0.0001)  # a timed sleep: sleep(0) would not let the hub poll for I/O
            self._slice_start = time.monotonic()
