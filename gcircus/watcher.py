"""A watcher keeps N identical processes of one command in the state an operator asked for.

Every lifecycle change (start, stop, restart, reload, incr/decr, set) takes the watcher's own lock, so two
concurrent commands on one watcher run one after the other and end in a consistent state, while different watchers
never wait for each other. Exits are handled outside the lock: a child's death is noticed, published and replaced
even while a long command runs on its watcher. Every method blocks only the calling greenlet.
"""
from __future__ import annotations

import collections
import contextlib
import logging
import operator
import os
import pwd
import random
import re
import signal
import time
from typing import TYPE_CHECKING, Any

import gevent
import gevent.event
import gevent.lock
import gevent.pool

from gcircus import cgroups, runtime_options, watcher_handover, watcher_spec
from gcircus.checks.follow import Callbacks, ProcessChecks
from gcircus.command_queue import CommandQueue
from gcircus.environment import build_env
from gcircus.events import Event, res_name
from gcircus.hooks import Hooks, add_env_pythonpath
from gcircus.options import RESPAWN, family_member
from gcircus.process import TRANSIENT_SPAWN_ERRNOS, Process, SpawnError, SpawnSpec, resolve_user
from gcircus.process_table import ProcessTable, WidAllocator
from gcircus.respawn import GIVE_UP, QUICK_EXIT, RETRY, Decision, RespawnPolicy
from gcircus.slot_history import SlotHistory, describe_exit
from gcircus.states import (
    ACTIVE,
    BACKOFF,
    FAILED,
    PROCESS_STOPPING,
    READY,
    RUNNING,
    SPAWNED,
    STARTING,
    STOPPED,
    STOPPING,
    UNHEALTHY,
    check_move,
)
from gcircus.streams.outputs import WatcherOutputs
from gcircus.watcher_counters import WatcherCounters
from gcircus.watcher_spec import WatcherSpec

log = logging.getLogger(__name__)


class HookRefused(Exception):
    """before_spawn or after_spawn returned a falsy value: the watcher stops, as in Circus."""


class Watcher:
    """N processes of one command. Usable alone (`Watcher(...).start()`) or owned by an Arbiter."""

    if TYPE_CHECKING:  # the spec's fields, read as attributes, are properties generated below the class
        def __getattr__(self, name: str) -> Any: ...

    def __init__(self, name: str, cmd: str, *args, prereload_fn=None, **options):
        """Circus's constructor: options as keywords (or Circus's positional order), checked into a WatcherSpec.

        A misspelt option is refused with the one it probably meant; other unknown keywords are kept as free-form
        options, as Circus keeps them for plugins. `prereload_fn(watcher)` runs before each reload.
        """
        self._adopt(watcher_spec.from_kwargs(name, cmd, args, options))
        self.prereload_fn = prereload_fn

    @classmethod
    def from_spec(cls, spec: WatcherSpec) -> Watcher:
        """A watcher built from a spec the config loader or `add` already checked."""
        watcher = cls.__new__(cls)
        watcher._adopt(spec)
        return watcher

    def _adopt(self, spec: WatcherSpec) -> None:
        self.prereload_fn = None
        self.name = spec.name
        self.res_name = res_name(spec.name)
        self._set_spec(spec)
        self.hooks = Hooks(spec.hooks, timeout=spec.hook_timeout)
        self.respawn_policy = RespawnPolicy.of(spec.name, spec.flapping, spec.check_flapping, spec.max_retry)
        self.checks = ProcessChecks(spec.name, self.spec, Callbacks(
            ready=self._process_ready, not_ready=self._process_not_ready, start_failed=self._process_start_failed,
            unhealthy=self._process_unhealthy, stopping=self._process_stopping))
        self.outputs = WatcherOutputs(spec.name, {"stdout": spec.stdout_stream, "stderr": spec.stderr_stream},
                                      spec.prefix_output, notify=self.notify)

        # By pid; their wids are counted as they come and go (gcircus.process_table), so a spawn finds its wid
        # without a look at every process.
        self._wids = WidAllocator()
        self._format_vars_cache: tuple[Any, dict] = (None, {})  # (the spec they were read from, the placeholders)
        self.processes: ProcessTable = self._wids.table()
        self._retiring: ProcessTable = self._wids.table()
        self._reuse_wid: int | None = None  # the wid the next spawn takes first (a max_age replacement keeps its wid)
        self._rotating_wids: set[int] = set()  # old-first max_age rotations under way: their slot is spoken for
        self._handled: dict[int, gevent.event.Event] = {}
        self._expiry: dict[int, gevent.Greenlet] = {}
        self._leftover_stops: dict[gevent.Greenlet, Process] = {}  # see _stop_leftovers
        # The watcher's own background work (exit handling, back-offs...): killed when it is detached.
        self._tasks = gevent.pool.Group()
        self._exits: collections.deque[Process] = collections.deque()  # reaped, their handling not started yet
        self._exit_dispatcher: gevent.Greenlet | None = None  # starts it, a few per hub turn (see _on_exit)
        self._stops_started = gevent.event.Event()  # clear while a mass stop is sending its signals (see _on_exit)
        self._stops_started.set()
        self._stop_bursts = 0  # mass stops sending their signals now (a kill and a stop may overlap)
        self._status = STOPPED
        self.reason = ""  # why the watcher is in its state, when there is more to say (back-off, failure, waiting)
        self._state_changed = gevent.event.Event()  # set (and replaced) at each move: see wait_for_state
        self._readiness_changed = gevent.event.Event()  # set (and replaced) when a process is ready or gone
        self._awaited: list[set[int]] = []  # the pids each _await_ready still waits for (taken out as they settle)
        self._in_start = False  # _spawn_all runs: it decides on active itself, once (see _check_active)
        # The watchers this one depends on, as the arbiter sees them (depends_on); None: it depends on nothing.
        self.dependencies: Any = None
        self._dependency_wait: gevent.Greenlet | None = None  # a start waiting for them (see _start)
        self._history: dict[int, SlotHistory] = {}  # per wid: restarts and last exit, for `procs`
        self.counters = WatcherCounters()  # totals since the watcher was built, for gcircusd's metrics
        self._lock = gevent.lock.RLock()
        self._commands = CommandQueue(spec.name, self._lock)
        self._interrupt = gevent.event.Event()
        self._fill_greenlet: gevent.Greenlet | None = None  # the respawn waiting its turn (_schedule_fill)
        self._generation = 0  # bumped by each operator start/restart: a back-off decided before it is void
        self.spawn_error: str | None = None  # why the last spawn attempt failed; None once a spawn succeeds
        self._retry_timer: gevent.Greenlet | None = None
        self.arbiter: Any = None  # the Arbiter that registered it, if any
        # Its cgroup (gcircus.cgroups.WatcherCgroup) when the arbiter has a cgroup_root; None: no cgroups.
        self.cgroup: cgroups.WatcherCgroup | None = None
        self.sockets: dict = {}
        self._listeners: list = []

    def _set_spec(self, spec: WatcherSpec) -> None:
        """Make `spec` current (its working_dir resolved); compose the child environment again only when an option
        it comes from changed (incr/decr change the spec too, and must not look users up again)."""
        old = getattr(self, "spec", None)
        self.spec = spec if spec.working_dir else spec.replace(working_dir=_daemon_cwd())
        if old is None or any(old[key] != spec[key] for key in ENV_SOURCES):
            self.env = build_env(spec.env, spec.copy_env, spec.copy_path, spec.virtualenv, spec.virtualenv_py_ver)
            for inherited in SERVICE_MANAGER_ENV:  # gcircusd's own, when a service manager runs it: not the child's
                if inherited not in spec.env:
                    self.env.pop(inherited, None)
            self._apply_user_identity_env()
            add_env_pythonpath(self.env)

    @property
    def hooks_config(self) -> dict:
        """The configured hooks: {name: (dotted path, ignore_failure)}."""
        return self.spec.hooks

    @property
    def options_extra(self) -> dict:
        """Free-form options (unknown keys kept for plugins, flapping.* overrides)."""
        return self.spec.options

    def _apply_user_identity_env(self) -> None:
        """A child running as another user gets that user's HOME, USER and LOGNAME, unless configured explicitly.

        With copy_env the inherited values are gcircusd's own (HOME=/root for a daemon run by root), which must not
        leak into a child that runs as `nobody`.
        """
        if self.uid is None:
            return
        _, _, username = resolve_user(self.uid, self.gid)
        if username is None:
            return
        identity = {"HOME": pwd.getpwnam(username).pw_dir, "USER": username, "LOGNAME": username}
        self.env.update({key: value for key, value in identity.items() if key not in self.spec.env})

    def reopen_streams(self) -> None:
        """Reopen the file sinks of this watcher's streams (logrotate's postrotate, SIGUSR1, `reopen`)."""
        self.outputs.reopen()

    # -- wiring --------------------------------------------------------------------------------------------------

    def subscribe(self, listener) -> None:
        """Call `listener(event)` with a gcircus.events.Event for every event this watcher publishes."""
        self._listeners.append(listener)

    def unsubscribe(self, listener) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)

    def notify(self, event: str, /, **fields) -> None:
        """Publish `event` with exactly the fields gcircus.events.EVENTS declares for it (`time` defaults to now)."""
        published = Event.of(self.name, event, fields)
        for listener in list(self._listeners):
            try:
                listener(published)
            except Exception:  # noqa: BLE001 - a broken subscriber must not break the watcher
                log.exception("event listener failed on %s.%s", self.res_name, event)

    def call_hook(self, name: str, **kwargs):
        return self.hooks.call(name, self, self.arbiter, self.notify, **kwargs)

    # -- state ---------------------------------------------------------------------------------------------------

    def status(self) -> str:
        return self._status

    def _move_to(self, state: str, detaching: bool = False, reason: str = "") -> None:
        """The one way the watcher changes state: the move is checked against gcircus.states.TRANSITIONS, and
        published (the `state` event) to subscribers and to whoever waits for a state (wait_for_state)."""
        previous = self._status
        check_move(self.name, previous, state, detaching)
        self._status, self.reason = state, reason
        if state != previous:
            self.notify("state", state=state, previous=previous, reason=reason)
        self._wake_state_waiters()

    def _explain(self, reason: str) -> None:
        """A new reason for the state the watcher stays in (what it waits for now), published like a move."""
        if reason != self.reason:
            self.reason = reason
            self.notify("state", state=self._status, previous=self._status, reason=reason)
            self._wake_state_waiters()

    def _wake_state_waiters(self) -> None:
        changed, self._state_changed = self._state_changed, gevent.event.Event()
        changed.set()

    def wait_for_state(self, states: set[str] | frozenset[str], timeout: float | None = None) -> str:
        """Block the calling greenlet until the watcher is in one of `states`; return it (TimeoutError after
        `timeout` seconds)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while self._status not in states:
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise TimeoutError(f"watcher {self.name!r} is {self._status}, not {'/'.join(sorted(states))}")
            self._state_changed.wait(remaining)
        return self._status

    def state_changed(self) -> gevent.event.Event:
        """An event set at the watcher's next move (for waiting on several watchers at once, gevent.wait)."""
        return self._state_changed

    def waits_for_stopped(self) -> bool:
        """Whether the watcher waits for a dependency nobody is starting (it is stopped)."""
        return self._dependency_wait is not None and any(w.status() == STOPPED for w in self._unmet_dependencies())

    def start_problem(self) -> str | None:
        """Why a start of this watcher failed (it gave up, or waits for a dependency that did), naming the watcher
        and the cause; None otherwise (gcircus.control.settling and Arbiter.wait_started say when to ask)."""
        if self._status == FAILED:
            return f"watcher {self.name!r} failed: {self.reason or 'it gave up'}"
        failed = [w.name for w in (self.dependencies() if self.dependencies else []) if w.status() == FAILED]
        if self._status == STARTING and self._dependency_wait is not None and failed:
            return f"watcher {self.name!r} waits for {', '.join(map(repr, failed))}, which failed"
        return None

    def is_active(self) -> bool:
        return self._status == ACTIVE

    def is_stopped(self) -> bool:
        return self._status == STOPPED

    def is_stopping(self) -> bool:
        return self._status == STOPPING

    @property
    def pids(self) -> list[int]:
        return list(self.processes)

    def get_active_processes(self) -> list[Process]:
        return [p for p in self.processes.values() if p.is_alive()]

    def get_active_pids(self) -> list[int]:
        """The pids of the processes not reaped yet (`list NAME`): `exit` is set when the child is reaped, so this
        reads one attribute per process instead of calling is_alive (a quarter of the time at 10,000 processes)."""
        return [pid for pid, p in self.processes.items() if p.exit is None]

    def settle(self, timeout: float = 10.0, interval: float = 0.01) -> None:
        """Return once the watcher is quiet: no command running or queued, no exit waiting to be handled, no stop,
        respawn, back-off retry or leftover stop pending; TimeoutError if it is not quiet within `timeout` seconds.

        Whoever must show that something does *not* happen (no respawn after an exit, say) waits for this rather
        than for a while: once the watcher is quiet, nothing more happens until something new reaches it. Each
        check follows a yield, so greenlets spawned by what just happened have started and show in that state.
        """
        deadline = time.monotonic() + timeout
        while True:
            gevent.sleep(0)
            if not self._busy():
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"watcher {self.name!r} still busy after {timeout}s")
            gevent.sleep(interval)

    def _busy(self) -> bool:
        return bool(len(self._commands) or self._lock.locked() or self._status == STOPPING
                    or (self._status == STARTING and self._dependency_wait is None)
                    or self._retiring or self._leftover_stops or self._fill_greenlet is not None
                    or self._retry_timer is not None or len(self._tasks)
                    or any(p.exit is not None for p in self.processes.values()))

    # -- the watcher's greenlets: each kept by its owner (the task group, a timer or a slot), errors logged --------

    def _task(self, func, *args) -> gevent.Greenlet:
        """Run `func(*args)` in the watcher's task group (killed on detach, waited for by settle)."""
        return self._tasks.spawn(self._logged, func, *args)

    def _greenlet(self, func, *args) -> gevent.Greenlet:
        """A greenlet whose owner keeps it (a slot, a list it joins); an exception in it names the watcher."""
        return gevent.spawn(self._logged, func, *args)

    def _later(self, seconds: float, func, *args) -> gevent.Greenlet:
        """A timer greenlet, kept by its owner (the retry timer, the max_age timers); `due` is when it fires (monotonic
        time: the same clock after gcircusd re-executed itself, so a hand-over re-arms it for what is left)."""
        timer = gevent.spawn_later(seconds, self._logged, func, *args)
        timer.due = time.monotonic() + seconds
        return timer

    def _logged(self, func, *args):
        try:
            return func(*args)
        except Exception:  # noqa: BLE001 - one failing task must not go unnoticed, nor take the watcher down
            log.exception("watcher %r: %s failed", self.name, getattr(func, "__name__", func))
            return None

    # -- lifecycle: operator commands, queued one at a time (gcircus.command_queue), each under the lock ----------

    def start(self) -> dict:
        """Start the processes; return {'started': [pids], 'kept': [pids]}. Blocks until they are spawned."""
        return self.submit_start().get()

    def stop(self, graceful_timeout: float | None = None) -> None:
        """Stop every process (and their trees) and block until all are gone.

        `graceful_timeout` overrides the watcher's own for this stop only (0 for a fast shutdown).
        """
        self.submit_stop(graceful_timeout).get()

    def restart(self) -> dict:
        """Stop then start the processes; like `start`, an operator's restart forgets the crash-loop history."""
        return self.submit_restart().get()

    def reload(self, graceful: bool = True, sequential: bool = False) -> dict:
        """Replace the processes: new ones first, then the old ones stopped (or SIGHUP with send_hup)."""
        return self.submit_reload(graceful, sequential).get()

    # The submit_* methods queue the command and return its AsyncResult at once, so the control server holds no
    # greenlet per waiting request. They raise QueueFull or Cancelled (command_queue.QueueRefused) when refused.

    def submit_start(self) -> gevent.event.AsyncResult:
        return self._commands.submit(("start",), self._run_start)

    def submit_stop(self, graceful_timeout: float | None = None) -> gevent.event.AsyncResult:
        """A stop preempts: the commands queued behind the running one are cancelled, and the running one is told
        to give up starting processes."""
        self._cancel_retry()
        result = self._commands.submit(("stop", graceful_timeout), lambda: self._run_stop(graceful_timeout),
                                       preempt=True)
        self._interrupt.set()  # a start or respawn loop in progress gives up its turn
        return result

    def submit_restart(self) -> gevent.event.AsyncResult:
        result = self._commands.submit(("restart",), self._run_restart)
        self._interrupt.set()
        return result

    def submit_reload(self, graceful: bool = True, sequential: bool = False) -> gevent.event.AsyncResult:
        return self._commands.submit(("reload", graceful, sequential), lambda: self._reload(graceful, sequential))

    def refuse_commands(self, reason: str | None) -> None:
        """gcircusd is shutting down: cancel the queued commands and refuse new ones but stops, with `reason`.

        The command running keeps the lock, but stops starting processes. None accepts commands again.
        """
        self._commands.refuse(reason)
        if reason is not None:
            self._commands.cancel_waiting(reason)
            self._interrupt.set()

    def _run_start(self) -> dict:
        self._begin_by_hand()
        return self._start()

    def _run_stop(self, graceful_timeout: float | None) -> None:
        self._cancel_retry()  # also one a back-off that held the lock just set
        self._interrupt.clear()
        self._stop(graceful_timeout)

    def _run_restart(self) -> dict:
        self._begin_by_hand()
        self._interrupt.clear()
        return self._restart()

    def _begin_by_hand(self) -> None:
        """An operator starts the watcher (lock held): forget the crash-loop history, void a back-off decided before.

        Under the lock, so a back-off that took it first has finished (its retry is cancelled here), and one still
        waiting for it sees the new generation and does nothing.
        """
        self._generation += 1
        self._cancel_retry()
        self.respawn_policy.reset()

    # -- run-time option changes (the `set` command) ------------------------------------------------------------

    def check_options(self, changes: dict) -> WatcherSpec:
        """The spec these converted changes (see runtime_options.parse) lead to; ValueError if it cannot run.

        Checks what needs the watcher or the system: options in conflict, that users and groups exist (when they
        change), that the command splits, that hooks import and the working directory exists.
        """
        spec = self.spec
        for key, value in changes.items():
            spec = spec.changed(key, value)
        problem = spec.problem(identity="uid" in changes or "gid" in changes)
        if problem is not None:
            raise ValueError(problem[1])
        if changes.get("working_dir") and not os.path.isdir(changes["working_dir"]):
            raise ValueError(f"working_dir {changes['working_dir']!r} is not a directory")
        Hooks(spec.hooks, timeout=spec.hook_timeout)
        if any(key in changes for key in cgroups.LIMIT_FILES):
            refused = cgroups.limits_problem(self.cgroup.daemon if self.cgroup is not None else None,
                                             {key: spec[key] for key in cgroups.LIMIT_FILES})
            if refused is not None:
                raise ValueError(refused)
        return spec

    def set_options(self, changes: dict, guard=None) -> None:
        """Convert `changes` (runtime_options.parse_set: UnknownKey or ValueError) and apply them (apply_options)."""
        self.apply_options({key: runtime_options.parse_set(key, value) for key, value in changes.items()}, guard)

    def apply_options(self, changes: dict, guard=None) -> None:
        """Apply converted changes all together, under the lock: each one, then one reload or one re-count.

        A reload (new processes, old ones stopped) runs if any key needs new processes and the watcher runs;
        otherwise the processes are counted again (numprocesses). Nothing runs for a stopped watcher. `guard`, if
        given, is called under the lock first and may raise to refuse (the control channel's endpoint_owner check,
        which must see the watcher as the changes will find it). The rules between options are checked again under
        the lock: the watcher may have changed since the caller checked them.
        """
        with self._lock:
            if guard is not None:
                guard()
            self.check_options(changes)
            for key, value in changes.items():
                self._apply_option(key, value)
                self.notify("updated")
            if not self._may_spawn():
                return
            if any(runtime_options.action_for(key) == RESPAWN for key in changes):
                self._reload(graceful=True, sequential=False, hup=False)
            else:
                self._manage()

    def _apply_option(self, key: str, value) -> None:
        """Make one checked change current, and rebuild what is derived from it (hooks, sinks, crash guard)."""
        self._set_spec(self.spec.changed(key, value))
        self.checks.configure(self.spec)
        field, member = family_member(key) or (key, key)
        if field == "hooks":
            self.hooks = Hooks(self.spec.hooks, timeout=self.hook_timeout)
        elif field in ("stdout_stream", "stderr_stream"):
            self.outputs.update(field[:6], getattr(self.spec, field))
        elif field in ("flapping", "retry_in"):
            self.respawn_policy.configure({member: value})
        elif key == "check_flapping":
            self.respawn_policy.check_flapping = value
        elif key == "max_retry":
            self.respawn_policy.spawn_max_retry = value

    def incr(self, nb: int = 1) -> int:
        """Add `nb` processes (a no-op for a singleton); return the new numprocesses."""
        return self.numprocesses if self.singleton else self._change_numprocesses(lambda n: n + nb)

    def decr(self, nb: int = 1) -> int:
        """Stop the `nb` oldest processes (down to 0; a no-op for a singleton); return the new numprocesses."""
        return self.numprocesses if self.singleton else self._change_numprocesses(lambda n: max(0, n - nb))

    def set_numprocesses(self, n: int) -> int:
        """Run `n` processes; ValueError, worded as the option table words it, for a count the spec refuses."""
        problem = self.spec.replace(numprocesses=runtime_options.parse("numprocesses", n)).problem(False)
        if problem is not None:
            raise ValueError(problem[1])
        return self._change_numprocesses(lambda _: n)

    def _change_numprocesses(self, change) -> int:
        # The new value is computed under the lock, so concurrent incr/decr compose instead of overwriting.
        with self._lock:
            self._set_spec(self.spec.replace(numprocesses=change(self.numprocesses)))
            if self._may_spawn():
                self._manage()
            return self.numprocesses

    def kill(self, pid: int | None = None, signum: int | None = None, graceful_timeout: float | None = None) -> None:
        """Gracefully stop one process (or all) with optional overrides, then replace them (unless respawn is off).

        Like Circus's `kill`, this takes no lock: a kill goes through while a long command runs on the watcher.
        The replacements are spawned under the lock, and only while the watcher is active.
        """
        if pid is None:
            targets = list(self.processes.values())
        else:
            targets = [self.processes[pid]] if pid in self.processes else []
        self._stop_processes(targets, graceful_timeout, signum)
        if targets and self.respawn and self._may_spawn():
            with self._lock:
                if self._may_spawn():
                    self._fill()

    def kill_trees(self) -> None:
        """SIGKILL the tree of every process, running or being stopped, now (a forced shutdown)."""
        for process in [*self.processes.values(), *self._retiring.values()]:
            process.kill_tree()
        if self.cgroup is not None:
            self.cgroup.kill_now()  # and what escaped them; the stops in progress wait for the cgroup to empty

    def detach(self) -> None:
        """Give up managing the processes without stopping them (`rm --nostop`): they run on, unsupervised.

        Nothing is respawned, expired or stopped any more; their exits are still reaped. They still get the
        parent-death signal when gcircusd exits (unless pdeathsig is off).
        """
        self._cancel_retry()
        self._cancel_dependency_wait()
        self._tasks.kill(block=False)
        # Exits whose handling was queued or killed before it ran are never handled now: wake whoever waits for
        # them (a stop in progress holds the lock taken below).
        self._exits.clear()
        for handled in self._handled.values():
            handled.set()
        self._handled.clear()
        self.checks.close()
        with self._lock:
            for timer in self._expiry.values():
                timer.kill(block=False)
            self._expiry.clear()
            self._move_to(STOPPED, detaching=True)
            self.processes.clear()
            self._retiring.clear()

    # -- lifecycle internals (lock held) -------------------------------------------------------------------------

    def _start(self) -> dict:
        if self._status in RUNNING:
            kept = list(self.processes)
            return {"started": self._fill(), "kept": kept}
        if not self.call_hook("before_start"):
            log.warning("watcher %r: before_start hook failed, not starting", self.name)
            return {"started": [], "kept": []}
        self._cancel_retry()
        self._move_to(STARTING)
        waiting = self._unmet_dependencies()
        if waiting:
            # Spawned once they are active (see _wait_for_dependencies); the control channel answers meanwhile.
            self._explain(self._waiting_text(waiting))
            self._dependency_wait = self._greenlet(self._wait_for_dependencies, self._generation)
            return {"started": [], "kept": []}
        return self._spawn_all()

    def _spawn_all(self) -> dict:
        """Spawn every process of a start, wait for their readiness, then run after_start (lock held)."""
        self._cancel_fill()
        self.respawn_policy.retrying()  # a fresh start (operator, or a retry after a back-off) spawns at full pace
        self.outputs.prepare()  # stream files exist from the start, as in Circus, even before the first line
        self._in_start = True
        try:
            started = self._fill()
            self._await_ready(started)
        finally:
            self._in_start = False
        if self._status not in RUNNING:  # spawning failed (back-off or failed), or a hook refused: not started
            return {"started": [], "kept": []}
        if self.numprocesses == 0 or not self.call_hook("after_start"):
            if self.numprocesses:
                log.warning("watcher %r: after_start hook failed, stopping", self.name)
            self._stop()
            return {"started": [], "kept": []}
        self.notify("start")
        self._check_active()
        ready = sum(p.state == READY for p in self.processes.values())
        log.info("watcher %r started (%d processes, %d ready)", self.name, len(self.processes), ready)
        return {"started": [pid for pid in started if pid in self.processes], "kept": []}

    def _may_spawn(self) -> bool:
        """Whether processes may be spawned now: the watcher runs, and does not wait for its dependencies."""
        return self._status in RUNNING and self._dependency_wait is None

    def _check_active(self) -> None:
        """Move a starting watcher to active once all its processes are spawned and ready (not while a start is
        spawning them: it checks once at its end, so a start of N processes costs N checks, not N squared)."""
        if (self._status == STARTING and not self._in_start and self._dependency_wait is None and self.numprocesses
                and len(self.processes) >= self.numprocesses
                and all(p.state == READY for p in self.processes.values())):
            self._move_to(ACTIVE)

    # -- dependencies (depends_on) -----------------------------------------------------------------------------

    def _unmet_dependencies(self) -> list[Watcher]:
        return [w for w in (self.dependencies() if self.dependencies else []) if w.status() != ACTIVE]

    @staticmethod
    def _waiting_text(waiting: list[Watcher]) -> str:
        return "waiting for " + ", ".join(
            f"{w.name!r} ({w.status()}{', which failed' if w.status() == FAILED else ''})" for w in waiting)

    def _wait_for_dependencies(self, generation: int) -> None:
        """Spawn the processes once every dependency is active; until then the watcher is starting, and says why.

        A dependency that fails leaves this watcher waiting (its reason says so) until an operator acts.
        """
        try:
            while waiting := self._unmet_dependencies():
                self._explain(self._waiting_text(waiting))
                gevent.wait([w.state_changed() for w in waiting], count=1)
            with self._lock:
                if generation != self._generation or self._status != STARTING or self._interrupt.is_set():
                    return
                self._dependency_wait = None
                self._explain("")
                self._spawn_all()
        finally:
            if self._dependency_wait is gevent.getcurrent():
                self._dependency_wait = None

    def _cancel_dependency_wait(self) -> None:
        greenlet, self._dependency_wait = self._dependency_wait, None
        if greenlet is not None and greenlet is not gevent.getcurrent():
            greenlet.kill(block=False)

    def _stop(self, graceful_timeout: float | None = None, then: str = STOPPED, reason: str = "") -> None:
        """Stop every process, then move to `then`: stopped, or backoff/failed when the respawn policy says so."""
        self._cancel_fill()
        self._cancel_dependency_wait()
        if self._status in (STOPPED, BACKOFF, FAILED) and not self.processes and not self._retiring:
            if self._status != then:
                self._move_to(then, reason=reason)
            return
        self._move_to(STOPPING)
        self.call_hook("before_stop")
        self._stop_processes([*self.processes.values(), *self._retiring.values()], graceful_timeout)
        self._wait_leftovers(graceful_timeout)  # what exited processes left behind is gone too
        self._empty_cgroup()  # and what escaped the process groups and trees (setsid, daemonized programs)
        self.outputs.close()  # as in Circus, streams close on stop (and open again with the next spawn)
        self.checks.close()  # and so does the notify socket
        self._move_to(then, reason=reason)
        self.notify("stop")
        self.call_hook("after_stop")
        log.info("watcher %r stopped%s", self.name, "" if then == STOPPED else f" ({then})")

    def _empty_cgroup(self) -> None:
        """Kill whatever is still in the watcher's cgroup once its processes were stopped, and wait (bounded) until
        the cgroup is empty: with a cgroup, `stopped` means nothing the watcher started still runs."""
        if self.cgroup is None:
            return
        left = self.cgroup.kill_rest()
        if left:
            log.info("watcher %r: killed %d process(es) left in its cgroup: %s", self.name, len(left),
                     ", ".join(map(str, left)))

    def cgroup_limits(self) -> dict:
        """The cgroup limits of the watcher's options (cgroup v2 values; None: unset)."""
        return {key: getattr(self, key) for key in cgroups.LIMIT_FILES}

    def _prepare_cgroup(self) -> None:
        """Make the watcher's cgroup and write its limits before a spawn; SpawnError if that fails."""
        if self.cgroup is not None:
            try:
                self.cgroup.prepare(self.cgroup_limits())
            except cgroups.CgroupError as exc:
                raise SpawnError(str(exc)) from None

    def _restart(self) -> dict:
        """Stop every process, then start afresh: the start's result, with the pids stopped."""
        stopped = list(self.processes)
        self._stop()
        return {**self._start(), "stopped": stopped}

    def _reload(self, graceful: bool, sequential: bool, hup: bool = True) -> dict:
        if self.prereload_fn is not None:
            self.prereload_fn(self)
        if not graceful:
            return self._restart()
        if self._status not in RUNNING:
            return {**self._start(), "stopped": []}
        if self.send_hup and hup:
            for process in list(self.processes.values()):
                process.send_signal(signal.SIGHUP)
            self.notify("reload")
            return {"stopped": [], "started": [], "kept": list(self.processes)}
        old = sorted(self.processes.values())
        stopped, started = [], []
        if sequential:
            for process in old:
                self._stop_processes([process])
                stopped.append(process.pid)
                started.extend(self._await_ready(self._fill()))
                if self.warmup_delay:
                    gevent.sleep(self.warmup_delay)
        else:
            for process in old:
                self._retire(process)
            # New first: the old processes stop only once their replacements are ready, so capacity never drops.
            started = self._await_ready(self._fill(warmup=False))
            replaced = self._keep_unreplaced(old, started)
            self._stop_processes(replaced)
            stopped = [p.pid for p in replaced]
        self.notify("reload")
        return {"stopped": stopped, "started": started, "kept": [p.pid for p in old if p.pid not in stopped]}

    def _keep_unreplaced(self, retired: list[Process], started: list[int]) -> list[Process]:
        """Spawning fell short of replacing `retired` (retried in the background): return the ones to stop.

        The newest of those not replaced run on instead, so a reload or a max_age rotation while the command cannot
        be spawned (or its replacements do not become ready) never takes the watcher below the processes it had.
        """
        short = min(len(retired) - len(started), self.numprocesses - len(self.processes))
        if short <= 0 or self._status not in RUNNING:
            return retired
        kept = [p for p in retired if p.pid in self._retiring][-short:]
        for process in kept:
            self.processes[process.pid] = self._retiring.pop(process.pid)
        return [p for p in retired if p not in kept]

    def _manage(self) -> None:
        """Bring the number of processes to numprocesses: spawn the missing (and wait for their readiness), stop
        the oldest extras."""
        extra = len(self.processes) - self.numprocesses
        if extra > 0:
            self._stop_processes(sorted(self.processes.values())[:extra])
        elif extra < 0:
            self._await_ready(self._fill())
        self._check_active()
        # Scaled down to 0, the watcher stays active with no processes, as in Circus: `incr` brings them back.

    def _await_ready(self, pids: list[int]) -> list[int]:
        """Wait until each of `pids` is ready or gone (exited, or stopped by its ready_timeout); return the ready.

        Bounded by ready_timeout (the checks stop a process not ready in time), and interrupted by a stop.
        """
        pending = {pid for pid in pids if not self._settled_readiness(pid)}
        self._awaited.append(pending)
        try:
            while pending and not self._interrupt.is_set() and self._status in RUNNING:
                gevent.wait([self._readiness_changed, self._interrupt], count=1)
        finally:
            self._awaited = [waited for waited in self._awaited if waited is not pending]
        return [pid for pid in pids if pid in self.processes and self.processes[pid].state == READY]

    def _settled_readiness(self, pid: int) -> bool:
        """Whether process `pid` is ready or gone: what _await_ready waits for."""
        process = self.processes.get(pid)
        return process is None or process.state == READY

    def _readiness_moved(self, process: Process) -> None:
        """`process` became ready, not ready, or left: wake _await_ready, and maybe make the watcher active."""
        if self._settled_readiness(process.pid):
            for pending in self._awaited:
                pending.discard(process.pid)
        changed, self._readiness_changed = self._readiness_changed, gevent.event.Event()
        changed.set()
        self._check_active()

    def _fill(self, warmup: bool = True) -> list[int]:
        """Spawn processes until numprocesses run; a failed spawn is retried, or the watcher backs off or fails, as
        the respawn policy decides."""
        started = []
        # A fixed count, not "until full": a child that dies while we fill is the exit path's business (respawn
        # and back-off), otherwise a crash loop would spin here.
        missing = self.numprocesses - len(self.processes) - len(self._rotating_wids)
        for _ in range(missing):
            if self._interrupt.is_set() or not self._may_spawn():
                break
            began = time.monotonic()
            try:
                process = self.spawn_process()
            except SpawnError as exc:
                self._spawn_failed(exc)
                break
            except HookRefused as exc:
                log.warning("watcher %r: %s; watcher stopped", self.name, exc)
                self._stop()
                break
            started.append(process.pid)
            remaining = self.warmup_delay - (time.monotonic() - began)
            if warmup and remaining > 0 and len(started) < missing:
                if self._interrupt.wait(remaining):
                    break
            else:
                _let_the_hub_poll()  # exits, signals and commands get through between spawns
        return started

    def _spawn_failed(self, exc: SpawnError) -> None:
        """A spawn failed (lock held): retry in the background, back off when no process runs, or give up."""
        self.spawn_error = str(exc)
        self.counters.spawn_failures += 1
        decision = self.respawn_policy.spawn_failed(exc.transient)
        failures = self.respawn_policy.spawn_failures
        if decision.action == GIVE_UP:
            self._give_up(f"cannot spawn: {exc} ({decision.reason})")
            return
        if failures == 1:
            why = "gcircusd is short of resources; retrying until it is not" if exc.transient else "retrying"
            log.error("watcher %r: cannot spawn: %s (%s)", self.name, exc, why)
        else:
            log.debug("watcher %r: spawn attempt %d failed: %s", self.name, failures, exc)
        if self.processes or self._retiring:
            self._schedule_fill(decision.delay)  # the running processes are left alone
        else:
            self._wait_out(decision.delay, f"cannot spawn: {exc}", nothing_ran=True)

    def _give_up(self, reason: str) -> None:
        """Stop everything and stay failed until an operator starts the watcher (lock held)."""
        log.error("watcher %r: giving up (%s); it stays failed until an operator starts it (gcircusctl start %s)",
                  self.name, reason, self.name)
        self._stop(then=FAILED, reason=reason)

    def _wait_out(self, delay: float, reason: str, nothing_ran: bool = False) -> None:
        """Stop what runs, then back off: the watcher starts again by itself after `delay` seconds (lock held).

        A crash loop goes through a whole stop (the `stop` event, the stop hooks), as Circus's flapping plugin stops
        the watcher; a watcher that could not spawn anything has nothing to stop and moves to backoff at once.
        """
        self.respawn_policy.backing_off(delay)
        self.counters.backoffs += 1
        reason = f"{reason}; retrying in {delay:g}s"
        if nothing_ran and not self.processes and not self._retiring:
            self._cancel_fill()
            self.outputs.close()
            self._move_to(BACKOFF, reason=reason)
        else:
            self._stop(then=BACKOFF, reason=reason)
        self._retry_timer = self._later(delay, self._retry_after_backoff, self._generation)

    def spawn_process(self, recovery_wid: int | None = None) -> Process:
        """Spawn one process now (no retries), between the before_spawn and after_spawn hooks."""
        if recovery_wid is None and not self.call_hook("before_spawn"):
            raise HookRefused("before_spawn hook failed")
        wid = recovery_wid or self._next_wid()
        self._prepare_cgroup()
        process = Process(self.name, wid, spec=self._spawn_spec(), watcher=self, spawn=False, on_exit=self._on_exit)
        process.spawn()
        self.processes[process.pid] = process  # supervised from the fork on, whatever fails next
        self._handled[process.pid] = gevent.event.Event()
        try:
            self.outputs.attach(process)
        except Exception as exc:
            # Out of fds (or a sink that cannot be built) after the fork: the child must not run unread and
            # unsupervised. It is killed and reaped, and the spawn fails like any other (a shortage is retried).
            self._retire(process)
            process.stop(signal.SIGKILL, 0, self.stop_children)
            if (handled := self._handled.get(process.pid)) is not None:
                handled.wait()
            raise SpawnError(f"cannot read the output of pid {process.pid}, killed: {exc}",
                             transient=isinstance(exc, OSError) and exc.errno in TRANSIENT_SPAWN_ERRNOS) from None
        if self.max_age > 0:
            lifetime = self.max_age + random.uniform(0, self.max_age_variance)
            self._expiry[process.pid] = self._later(lifetime, self._expire, process)
        if not self.call_hook("after_spawn", pid=process.pid):
            log.warning("watcher %r: after_spawn hook failed for pid %d; stopping it", self.name, process.pid)
            self._retire(process)
            self._task(self._stop_process, process)
            raise HookRefused(f"after_spawn hook failed for pid {process.pid}")
        if failures := self.respawn_policy.spawned():
            log.info("watcher %r: spawning again after %d failed attempts", self.name, failures)
        self.spawn_error = None
        self._history.setdefault(wid, SlotHistory())
        self.notify("spawn", process_pid=process.pid, time=process.started)  # Circus: time = process.started
        self.checks.follow(process, process.spec.env or {})
        return process

    # -- readiness and health: the checks (gcircus.checks.follow) report here --------------------------------------

    def _process_ready(self, process: Process, detail: str = "") -> None:
        """`process` passed its readiness check (at once with `ready = none`), or said READY=1 after RELOADING=1:
        publish it, maybe become active. Only a spawned process becomes ready: one found unhealthy or stopping
        (sd_notify STOPPING=1) stays so whatever it says next."""
        if process.pid not in self.processes or process.state != SPAWNED:
            return
        process.state, process.ready_at, process.check_detail = READY, time.time(), detail
        self.counters.became_ready(max(0.0, process.ready_at - process.started))
        self.notify("ready", process_pid=process.pid, wid=process.wid)
        self._readiness_moved(process)
        if self._status == ACTIVE and self.reason:
            self._explain("")  # a replacement got ready: whatever kept failing works again

    def _process_not_ready(self, process: Process, detail: str) -> None:
        """The process says it is not ready for now (sd_notify RELOADING=1), until it sends READY=1 again."""
        if process.pid in self.processes and process.state == READY:
            process.state, process.check_detail = SPAWNED, detail
            self.notify("not_ready", process_pid=process.pid, wid=process.wid, detail=detail)
            self._readiness_moved(process)

    def _process_start_failed(self, process: Process, reason: str) -> None:
        """Not ready in time (or its readiness check failed for good): stopped, and a failed start for the back-off,
        however long it lived."""
        if process.pid not in self.processes:
            return
        log.warning("watcher %r: pid %d did not become ready: %s; stopping it", self.name, process.pid, reason)
        process.check_detail = reason
        self._history.setdefault(process.wid, SlotHistory()).lost(process, f"not ready: {reason}")
        self.counters.restarts += 1
        self._retire(process)
        self._task(self._stop_process, process)
        if self._status in RUNNING:
            self._after_loss(self.respawn_policy.start_failed())

    def _process_unhealthy(self, process: Process, detail: str) -> None:
        """Its health check failed health_retries times in a row (or its watchdog went silent): replace it, once
        (a WATCHDOG=trigger sent again before the replacement took it out is no new failure)."""
        if process.pid not in self.processes or process.state == UNHEALTHY:
            return
        log.warning("watcher %r: pid %d is unhealthy (%s); replacing it", self.name, process.pid, detail)
        process.state, process.check_detail = UNHEALTHY, detail
        self._history.setdefault(process.wid, SlotHistory()).lost(process, f"unhealthy: {detail}")
        self.counters.restarts += 1
        self.notify("unhealthy", process_pid=process.pid, wid=process.wid, detail=detail)
        self._readiness_moved(process)
        # As an exit would: a process unhealthy right after its spawn is part of a crash loop (paced, backed off).
        decision = self.respawn_policy.process_exited(self._lived(process))
        if decision.action == RETRY:
            self._task(self._replace_unhealthy, process, decision.delay)
            return
        self._retire(process)
        self._task(self._stop_process, process)
        self._after_loss(decision)

    def _process_stopping(self, process: Process) -> None:
        """The process says it is going down (sd_notify STOPPING=1); its exit is handled as any other."""
        if process.pid in self.processes:
            process.state = PROCESS_STOPPING
            self._readiness_moved(process)

    def _spawn_spec(self) -> SpawnSpec:
        """What the next process runs, from the current spec, sinks and sockets."""
        spec = self.spec
        same = ("cmd", "args", "working_dir", "shell", "shell_args", "uid", "gid", "rlimits", "executable", "umask",
                "close_child_stdin", "close_child_stdout", "close_child_stderr")
        fds = {name: s.fileno() for name, s in self.sockets.items()}
        if spec.stdin_socket and spec.stdin_socket not in fds:
            raise SpawnError(f"stdin_socket {spec.stdin_socket!r} does not exist")
        return SpawnSpec(
            self.name, **{key: getattr(spec, key) for key in same}, env={**self.env, **self.checks.child_env()},
            ready_fd=self.checks.ready_fd, use_fds=spec.use_sockets,
            pipe_stdout=self.outputs.wants_pipe("stdout"), pipe_stderr=self.outputs.wants_pipe("stderr"),
            pdeathsig=self._pdeathsig_signal(), stdin_fd=fds[spec.stdin_socket] if spec.stdin_socket else None,
            sockets=fds, pass_fds=tuple(fds.values()) if spec.use_sockets else (), format_vars=self._format_vars(),
            cgroup=self.cgroup)

    def _next_wid(self) -> int:
        """The wid of the next spawn: the lowest no process holds (running or being stopped), or the one a rotation
        hands over. Constant time (amortized): the tables count their wids."""
        if self._reuse_wid is not None and not self.processes.holds(self._reuse_wid):
            return self._reuse_wid  # the wid of the process being replaced, even while it still stops
        return self._wids.next_free()

    def _pdeathsig_signal(self) -> int | None:
        if self.pdeathsig is True:
            return self.stop_signal
        return int(self.pdeathsig) if self.pdeathsig else None

    def _format_vars(self) -> dict:
        """The watcher's options as $(circus.NAME) placeholders of cmd and args: built once per spec (a spec never
        changes, `set` makes a new one), not at each spawn. Shared by the spawn specs, which only read it."""
        spec, built = self._format_vars_cache
        if spec is not self.spec:
            names = (*watcher_spec.PLAIN, *SPEC_GROUPS[1:])
            built = {"name": self.name, **{name: getattr(self, name) for name in names}}
            self._format_vars_cache = (self.spec, built)
        return built

    # -- stopping processes --------------------------------------------------------------------------------------

    def _retire(self, process: Process) -> None:
        """Take a process out of the running set before stopping it, so it is neither counted nor replaced."""
        if self.processes.pop(process.pid, None) is not None:
            self._retiring[process.pid] = process
            self._readiness_moved(process)

    def _stop_processes(self, processes: list[Process], graceful_timeout: float | None = None,
                        signum: int | None = None) -> None:
        """Retire `processes` (their exits are expected: neither a crash nor a respawn) and stop them together."""
        for process in processes:
            self._retire(process)
        if len(processes) == 1:
            self._stop_process(processes[0], signum, graceful_timeout)
        elif processes:
            # Started a few at a time, the hub polling in between: the first steps of a stop (the process tree, two
            # signals, a `kill` event) take about 0.2 ms each, and 1000 greenlets started at once run before any
            # request that arrives meanwhile (the hub runs them in order): a 200 ms silence at each mass restart.
            stoppers = []
            self._stop_bursts += 1
            self._stops_started.clear()
            try:
                for index, process in enumerate(processes, 1):
                    stoppers.append(self._greenlet(self._stop_process, process, signum, graceful_timeout))
                    if index % BURST_BATCH == 0:
                        _let_the_hub_poll_once()
            finally:
                self._stop_bursts -= 1
                if not self._stop_bursts:
                    self._stops_started.set()
            gevent.joinall(stoppers)

    def _stop_process(self, process: Process, signum: int | None = None, graceful_timeout: float | None = None):
        # Its checks end here, not when it was retired: a reload that cannot replace it keeps it, checked as before.
        process.state = PROCESS_STOPPING
        self.checks.forget(process)
        process.stop(self.stop_signal if signum is None else signum,
                     self.graceful_timeout if graceful_timeout is None else graceful_timeout,
                     self.stop_children, send=self._send_stop_signal)
        if (handled := self._handled.get(process.pid)) is not None:
            handled.wait()

    def _send_stop_signal(self, pid: int, signum: int, deliver=None) -> None:
        """Deliver one signal of a stop, through the signal hooks, and publish `kill` as Circus does. `deliver(pid,
        signum)`, when given, sends it (a main process with stop_children: to its whole group, once)."""
        if signum == signal.SIGKILL or self.call_hook("before_signal", pid=pid, signum=signum):
            try:
                if deliver is not None:
                    deliver(pid, signum)
                else:
                    os.kill(pid, signum)
                    if signum not in (signal.SIGKILL, signal.SIGCONT):
                        os.kill(pid, signal.SIGCONT)  # a stopped (SIGSTOPped, hung) process must get to handle it
            except ProcessLookupError:
                return
        self.notify("kill", process_pid=pid)
        self.call_hook("after_signal", pid=pid, signum=signum)

    # -- exits ---------------------------------------------------------------------------------------------------

    def _on_exit(self, process: Process) -> None:
        """Called from the hub's SIGCHLD callback: the rest runs in a greenlet per exit (hooks may block).

        Those greenlets are started BURST_BATCH at a time, the hub polling in between: when a thousand children
        die at once (a killall, an OOM sweep) their callbacks all run in one turn of the loop, and a thousand
        greenlets started there would run before any request that arrives meanwhile (150 ms of silence measured).
        During a mass stop they wait until every stop has started: the exits of its first processes would otherwise
        share each hub turn with the signals still to send, and the last process got its stop signal 70 % later.
        """
        self._exits.append(process)
        if self._exit_dispatcher is None or self._exit_dispatcher.dead:  # (dead: killed before it ever ran)
            self._exit_dispatcher = self._task(self._dispatch_exits)

    def _dispatch_exits(self) -> None:
        try:
            while self._exits:
                self._stops_started.wait()
                for _ in range(min(BURST_BATCH, len(self._exits))):
                    self._task(self._handle_exit, self._exits.popleft())
                if self._exits:
                    _let_the_hub_poll_once()
        finally:
            self._exit_dispatcher = None

    def _handle_exit(self, process: Process) -> None:
        pid = process.pid
        expected = pid in self._retiring or process.stopping
        if (timer := self._expiry.pop(pid, None)) is not None:
            timer.kill(block=False)
        exit_time = process.exit.time if process.exit else time.time()
        try:
            self.outputs.drain(process)  # every byte the child wrote is taken before its exit is reported
            self.call_hook("before_reap", process_pid=pid, time=exit_time)
            self.processes.pop(pid, None)
            self._retiring.pop(pid, None)
            self.checks.forget(process)
            self._readiness_moved(process)
            exit_code = process.exit.returncode if process.exit else None
            self.counters.last_exit_code = exit_code
            self.notify("reap", process_pid=pid, time=exit_time, exit_code=exit_code)
            self.call_hook("after_reap", process_pid=pid, time=exit_time, exit_code=exit_code,
                           process_status=process.status)
        finally:
            if (handled := self._handled.pop(pid, None)) is not None:
                handled.set()
        if not expected:
            self._stop_leftovers(process)
        if expected or self._status not in RUNNING:
            return
        self._history.setdefault(process.wid, SlotHistory()).exited(process)
        self.counters.restarts += 1
        decision = self.respawn_policy.process_exited(self._lived(process))
        level = logging.DEBUG if self.respawn_policy.quiet else logging.INFO
        log.log(level, "watcher %r: process %d exited with %s", self.name, pid, describe_exit(process))
        self._after_loss(decision)

    def _after_loss(self, decision: Decision) -> None:
        """A process was lost (it exited, or never became ready): replace it, or back off, as `decision` says."""
        if decision.action != RETRY:
            self._task(self._back_off, decision, self._generation)
            return
        if self.on_demand and not self.processes:
            self._task(self._back_to_waiting)  # the last process is gone: wait for the next connection
        elif self.respawn:
            self._schedule_fill(decision.delay)
        elif not self.processes and not self.on_demand:
            self._task(self.stop)

    def _stop_leftovers(self, process: Process) -> None:
        """A process exited on its own: stop what it left in its group, in the background (`_stop` waits for it).

        Otherwise a shell wrapper's background jobs would run on unsupervised, and outlive a `stop` of the watcher.
        """
        def stop_them():
            try:
                process.stop_leftovers(self.stop_signal, self.graceful_timeout, send=self._send_stop_signal)
            finally:
                self._leftover_stops.pop(greenlet, None)

        greenlet = self._greenlet(stop_them)
        self._leftover_stops[greenlet] = process

    def _wait_leftovers(self, graceful_timeout: float | None) -> None:
        """Wait for the leftover stops in progress; a stop with its own (shorter) grace period SIGKILLs them after it.

        Without that a fast shutdown (SIGQUIT: no grace period) would still wait the watcher's graceful_timeout for
        a leftover that ignores the stop signal.
        """
        if graceful_timeout is not None:
            gevent.joinall(list(self._leftover_stops), timeout=graceful_timeout)
            for process in list(self._leftover_stops.values()):
                process.kill_tree()
        gevent.joinall(list(self._leftover_stops))

    def _back_to_waiting(self) -> None:
        """An on_demand watcher whose processes all exited is stopped again (no `stop` event, as in Circus); the
        arbiter's on-demand waiter starts it on the next connection."""
        with self._lock:
            if self._status == ACTIVE and not self.processes and not self._retiring:
                self.outputs.close()
                self._move_to(STOPPED)
                log.info("watcher %r: no process left, waiting for a connection again (on_demand)", self.name)

    @staticmethod
    def _lived(process: Process) -> float:
        return (process.exit.time if process.exit else time.time()) - process.started

    def _schedule_fill(self, delay: float = 0.0) -> None:
        if self._fill_greenlet is not None:
            return

        def fill():
            if delay:
                began = time.monotonic()
                gevent.sleep(delay)
                self.respawn_policy.record_pause(began, time.monotonic())
            with self._lock:
                if self._fill_greenlet is not gevent.getcurrent():
                    return  # a start or stop cancelled it while it waited
                self._fill_greenlet = None
                if self._may_spawn():
                    self._fill()
        self._fill_greenlet = self._greenlet(fill)

    def _cancel_fill(self) -> None:
        """Drop the respawn waiting its turn (lock held): a start or stop begins again at full pace."""
        greenlet, self._fill_greenlet = self._fill_greenlet, None
        if greenlet is not None and greenlet is not gevent.getcurrent():
            greenlet.kill(block=False)

    def _back_off(self, decision: Decision, generation: int) -> None:
        """Wait out a crash loop, or give up, as the respawn policy decided."""
        with self._lock:  # held to the end, so a start or stop waiting for it sees (and cancels) the retry
            # An operator's start or restart since the decision voids it: the watcher it judged is gone.
            if generation != self._generation or self._status not in RUNNING:
                return
            if self._spare_established(decision):
                return
            if decision.action == GIVE_UP:
                log.error("watcher %r is flapping and gave up after %d retries (%s): it stays failed until an"
                          " operator starts it (gcircusctl start %s)", self.name, self.respawn_policy.max_retry,
                          decision.reason, self.name)
                self._stop(then=FAILED, reason=f"crash loop: {decision.reason}")
                return
            policy = self.respawn_policy
            retries = "unlimited" if policy.max_retry == -1 else f"{policy.tries} of {policy.max_retry}"
            log.warning("watcher %r is flapping (%s): stopped, retrying in %gs (retry %s)",
                        self.name, decision.reason, decision.delay, retries)
            self._wait_out(decision.delay, f"crash loop ({decision.reason}), retry {retries}")

    def _spare_established(self, decision: Decision) -> bool:
        """A crash loop of new processes (a reload to a version that crashes or never gets ready, one worker that
        keeps dying) while established ones serve: keep those, and retry the missing ones after retry_in, instead
        of stopping the whole watcher. Whether that is the case (lock held)."""
        policy = self.respawn_policy
        established = [p for p in self.processes.values()
                       if p.state == READY and self._lived(p) >= max(policy.window, QUICK_EXIT)]
        if not established:
            return False
        log.warning("watcher %r: new processes keep failing (%s); its %d established processes keep running, the"
                    " missing ones are retried in %gs", self.name, decision.reason, len(established), policy.retry_in)
        self._explain(f"new processes keep failing ({decision.reason}); retrying in {policy.retry_in:g}s")
        self._schedule_fill(policy.retry_in)
        return True

    def _retry_after_backoff(self, generation: int) -> None:
        self._retry_timer = None
        with self._lock:
            if self._status == BACKOFF and generation == self._generation:
                self._start()

    def _cancel_retry(self) -> None:
        timer, self._retry_timer = self._retry_timer, None
        if timer is not None and timer is not gevent.getcurrent():
            timer.kill(block=False)

    def uses_wid(self) -> bool:
        """Whether the wid shows in what a process gets: command, args, env or stream options ($(circus.wid), $WID)."""
        args = self.args if isinstance(self.args, (list, tuple)) else [self.args]
        values = [self.cmd, self.shell_args, *args, *self.spec.env.values(),
                  *self.stdout_stream.values(), *self.stderr_stream.values()]
        return any(isinstance(v, str) and (_WID_PLACEHOLDER.search(v) or "$WID" in v) for v in values)

    def _fill_as(self, wid: int) -> list[int]:
        """_fill, the first spawn taking `wid` (that of the process it replaces) unless a running process has it."""
        self._reuse_wid = wid
        try:
            return self._fill()
        finally:
            self._reuse_wid = None

    def _expire(self, process: Process) -> None:
        """max_age reached: start the replacement first, then stop the old process gracefully.

        The replacement takes the old process's wid. When the wid shows in the command, args, env or stream file
        names (uses_wid), two processes must not hold it at once: the old one is stopped first.
        """
        self._expiry.pop(process.pid, None)
        self._rotate(process, stop_first=self.uses_wid(), keep_unreplaced=True)

    def _replace_unhealthy(self, process: Process, delay: float = 0.0) -> None:
        """Replace a process that failed its health checks, after the respawn pacing's `delay`: new first when the
        watcher has more than one process (capacity never drops), stopped first when it is the only one (it may
        hold what its replacement needs) or when the wid shows in the command (a port per wid: see _expire)."""
        if delay:
            gevent.sleep(delay)
        self._rotate(process, stop_first=self.uses_wid() or self.numprocesses <= 1, keep_unreplaced=False)

    def _rotate(self, process: Process, stop_first: bool, keep_unreplaced: bool) -> None:
        """Replace `process` by a new process with its wid, the new one first (once it is ready the old one stops)
        unless `stop_first`. With `keep_unreplaced`, an old process whose replacement could not be spawned runs on
        and is rotated again later (max_age); otherwise it is stopped anyway."""
        with self._lock:
            if process.pid not in self.processes or not self._may_spawn():
                return
            self._retire(process)
            if stop_first:
                self._rotating_wids.add(process.wid)  # other fills leave its slot (and wid) to the replacement
            else:
                replacements = self._await_ready(self._fill_as(process.wid))
                if keep_unreplaced and not self._keep_unreplaced([process], replacements):
                    # Not replaced (the spawn is retried in the background): it runs on, and expires again later.
                    delay = self.respawn_policy.spawn_delay()
                    self._expiry[process.pid] = self._later(delay, self._expire, process)
                    return
        # Stopped outside the lock: a stop or quit must not wait out graceful_timeout behind a rotation (its own
        # stop of this retired process escalates as it says).
        try:
            self._stop_process(process)
        finally:
            self._rotating_wids.discard(process.wid)
        if stop_first:
            with self._lock:
                if self._may_spawn():
                    self._fill_as(process.wid)  # a failed spawn is retried in the background, and takes the wid

    # -- signals -------------------------------------------------------------------------------------------------

    def send_signal(self, pid: int, signum: int) -> None:
        process = self.processes.get(pid)
        if process is None:
            return
        if self.call_hook("before_signal", pid=pid, signum=signum):
            process.send_signal(signum)
        self.call_hook("after_signal", pid=pid, signum=signum)

    def send_signal_child(self, pid: int, child_pid: int, signum: int) -> None:
        if pid in self.processes:
            self.processes[pid].send_signal_child(child_pid, signum)

    def send_signal_children(self, pid: int, signum: int, recursive: bool = False) -> None:
        if pid in self.processes:
            self.processes[pid].send_signal_children(signum, recursive)

    # -- introspection -------------------------------------------------------------------------------------------

    def process_rows(self) -> list[dict]:
        """For each process (running, then being stopped), what `procs` shows: pid, wid, state, age, restarts of its
        wid, how the last process of that wid ended, its readiness/health detail and its own status text."""
        now = time.time()
        rows = []
        for process in sorted([*self.processes.values(), *self._retiring.values()], key=lambda p: (p.wid, p.pid)):
            history = self._history.get(process.wid) or SlotHistory()
            rows.append({"pid": process.pid, "wid": process.wid, "state": process.state,
                         "age": round(now - process.started, 3), "started": process.started,
                         "restarts": history.restarts, "last_exit": history.last_exit,
                         "ready_at": process.ready_at, "detail": process.check_detail,
                         "status": process.status_text})
        return rows

    def lifecycle(self) -> dict:
        """The watcher's state, why, and where its respawn policy stands (the header of `procs`)."""
        return {"state": self._status, "reason": self.reason, "numprocesses": self.numprocesses,
                "ready": sum(p.state == READY for p in self.processes.values()),
                "depends_on": list(self.depends_on), **self.respawn_policy.describe(), **self.cgroup_usage()}

    def cgroup_usage(self) -> dict:
        """{"cgroup": {path, procs, memory_current}} when the watcher has a cgroup, else {} (replies keep their shape
        without cgroups)."""
        return {"cgroup": self.cgroup.usage()} if self.cgroup is not None else {}

    def options(self) -> list[tuple[str, object]]:
        """Every option and its current value, free-form ones included (the `options` command)."""
        items = {name: getattr(self, name) for name in ("name", *watcher_spec.PLAIN, *SPEC_GROUPS)}
        items["env"] = self.spec.env
        items["hooks"] = {k: (v[0] if isinstance(v, (tuple, list)) else v) for k, v in self.spec.hooks.items()}
        items.update(self.spec.options)
        return sorted(items.items())

    # -- gcircusd re-executing itself (gcircus.handover); the watcher's part is gcircus.watcher_handover -----------

    def is_changing(self) -> bool:
        """A command runs or waits, or processes are being stopped or rotated: what a hand-over must not cut short."""
        return bool(self._lock.locked() or len(self._commands) or self._retiring or self._leftover_stops
                    or self._rotating_wids)

    def handover_state(self, streams: dict[int, dict]) -> dict:
        """What the new image needs of this watcher; `streams`: pid -> its exported output (see WatcherOutputs)."""
        return watcher_handover.state(self, streams)

    def adopt_handover(self, state: dict) -> list[dict]:
        """Take back what handover_state() wrote in the replaced image instead of spawning; return the process
        entries not adopted (no longer our children: the caller logs them and never signals them)."""
        return watcher_handover.rebuild(self, state)

    def forget_handover(self) -> None:
        """Undo an adopt_handover() that failed halfway, so that its processes can be adopted again."""
        watcher_handover.forget(self)

    def __repr__(self) -> str:
        return f"<Watcher {self.name!r} {self._status} {len(self.processes)}/{self.numprocesses}>"


# What a service manager gives gcircusd itself (systemd's notify socket and watchdog): a child inherits none of it
# with copy_env; a watcher whose checks use sd_notify gives its children its own (gcircus.checks.follow).
SERVICE_MANAGER_ENV = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")

# The options the children's environment is composed from (see _set_spec).
ENV_SOURCES = ("env", "copy_env", "copy_path", "virtualenv", "virtualenv_py_ver", "uid", "gid")

# The spec's fields read as watcher attributes (`watcher.numprocesses`), as Circus's watchers have them; they change
# only through a new spec (set_options, incr/decr), never by assignment.
SPEC_GROUPS = ("rlimits", "stdout_stream", "stderr_stream")
for _field in (*watcher_spec.PLAIN, *SPEC_GROUPS):
    setattr(Watcher, _field, property(operator.attrgetter(f"spec.{_field}"), doc=f"The `{_field}` option."))

_WID_PLACEHOLDER = re.compile(r"\$\(circus\.wid\)|\(\(circus\.wid\)\)", re.IGNORECASE)


SPAWN_YIELD_LIMIT = 0.002  # seconds a spawn loop waits at most for the hub to be idle between two spawns
BURST_BATCH = 8  # processes whose stop, or exit handling, starts in one hub turn when many go at once


def _let_the_hub_poll() -> None:
    """Yield until the hub has polled for I/O and run what was ready (gevent.idle), or SPAWN_YIELD_LIMIT at most.

    sleep(0) would not poll: gevent runs 50 callbacks in a row before it looks at the clock, which at 1-2 ms per
    fork/exec kept control requests waiting 0.1-2 s during a 10,000-process start. The limit keeps a hub that is
    never idle (output flooding in on thousands of pipes) from holding the spawns back.
    """
    with gevent.Timeout(SPAWN_YIELD_LIMIT, False):
        gevent.idle()


def _let_the_hub_poll_once() -> None:
    """Yield until the hub has polled for I/O once (a zero timer fires only after the next poll), not until it is idle.

    Between two batches of a mass stop or of a burst of exits: what the poll found (a control request) runs right
    after the next batch. Waiting for the idle hub instead held each batch back while the exits of the batches
    before it were handled, and the hub is rarely idle then: a 1000-process stop took 0.35 s instead of 0.21 s.
    """
    hub = gevent.get_hub()
    timer = hub.loop.timer(0.0)
    try:
        hub.wait(timer)
    finally:
        timer.close()


def _daemon_cwd() -> str:
    """gcircusd's working directory, preferring $PWD when it is the same directory (keeps symlinked paths)."""
    cwd = os.getcwd()
    pwd_env = os.environ.get("PWD")
    with contextlib.suppress(OSError):  # $PWD names no directory any more
        if pwd_env and os.path.samefile(pwd_env, cwd):
            return pwd_env
    return cwd
