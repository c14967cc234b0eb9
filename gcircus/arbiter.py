"""The arbiter owns all watchers and their sockets, and runs the services attached to it (gcircus.service).

It starts watchers in dependency order (`depends_on`: a watcher after everything it depends on), by descending
priority among those free to start; it stops them in the reverse dependency order, by ascending priority, each
group free to stop at once in parallel (without depends_on: each priority level), and forwards every watcher
event to its subscribers. All methods block only the calling greenlet. As in Circus, `start()`
blocks until the arbiter is stopped (and, in the main thread, stops it on SIGTERM or SIGINT for that time) unless the
arbiter was made with `background=True`: then it returns once the watchers are started, installs no signal handlers,
and the arbiter keeps supervising on the caller's hub, which is how a gevent application embeds it.

This class supervises; it opens no channel. The channel options of its Circus-compatible signature (endpoint,
pubsub_endpoint, statsd, multicast_endpoint, plugins...) are kept as settings for the daemon's wiring,
gcircus.daemon, whose Arbiter subclass attaches the control server, publisher, stats, discovery and plugins.
"""
from __future__ import annotations

import functools
import itertools
import logging
import os
import signal
import threading
from types import SimpleNamespace
from typing import Any

import gevent
import gevent.event

from gcircus import cgroups, dependencies, linux
from gcircus.grants import Grants
from gcircus.options import CIRCUS_OPTIONS, DEFAULT_STATS_ENDPOINT, to_names
from gcircus.service import Service
from gcircus.sockets import OnDemand, Sockets
from gcircus.states import ACTIVE, BACKOFF, STOPPED, STOPPING
from gcircus.watcher import Watcher

log = logging.getLogger(__name__)



class DuplicateWatcher(ValueError):
    """A watcher of that name (case-insensitive) already exists."""


class Arbiter:
    """All watchers of one supervisor, started, stopped and reloaded together in priority order."""

    def __init__(self, watchers: list[Watcher], endpoint: str | None = None,
                 pubsub_endpoint: str | None = None, check_delay: float = 1.0, prereload_fn=None,
                 context=None, loop=None, statsd: bool = False, stats_endpoint: str | None = None,
                 statsd_close_outputs: bool = False, multicast_endpoint: str | None = None,
                 plugins: list | None = None, sockets: list | None = None, warmup_delay: float = 0,
                 httpd: bool = False, httpd_host: str = "localhost", httpd_port: int = 8080,
                 httpd_close_outputs: bool = False, debug: bool = False, debug_gc: bool = False,
                 ssh_server=None, proc_name: str = "gcircusd", pidfile: str | None = None,
                 loglevel: str | None = None, logoutput: str | None = None, loggerconfig: str | None = None,
                 fqdn_prefix: str | None = None, umask: int | None = None, endpoint_owner: str | None = None,
                 subreaper: bool = False, config_path: str | None = None, allow_remote_endpoints: bool = False,
                 curve_secret_key: str | None = None, curve_clients: str | None = None,
                 max_message_size: int = CIRCUS_OPTIONS["max_message_size"].default,
                 watcher_defaults: dict | None = None, stats_interval: float = 1.0, background: bool = False,
                 name: str | None = None, cgroup_root: str | None = None, access: Grants | None = None,
                 endpoint_mode: int | None = None, endpoint_group: str | None = None, **extra):
        self.endpoint = endpoint
        self.pubsub_endpoint = pubsub_endpoint
        self.check_delay = check_delay
        self.prereload_fn = prereload_fn
        self.context = context
        self.statsd = statsd  # config and get_arbiter turn it on for a stats_endpoint given alone, as Circus does
        self.stats_endpoint = stats_endpoint or (DEFAULT_STATS_ENDPOINT if statsd else None)
        self.multicast_endpoint = multicast_endpoint
        self.plugins = list(plugins or [])
        self.sockets = Sockets(sockets)  # name -> CircusSocket; bound in start(), closed in stop()
        self.warmup_delay = float(warmup_delay or 0)
        self.httpd = httpd
        self.debug = debug
        self.proc_name = proc_name
        self.pidfile = pidfile
        self.loglevel = loglevel
        self.logoutput = logoutput
        self.loggerconfig = loggerconfig
        self.fqdn_prefix = fqdn_prefix
        self.umask = umask
        self.endpoint_owner = endpoint_owner
        self.access = access or Grants()  # the [access] grants, read at each request; reloadconfig replaces them
        self.endpoint_mode = endpoint_mode  # of the ipc:// channel files (None: 0600)
        self.endpoint_group = endpoint_group
        self.subreaper = subreaper
        self.config_path = config_path
        self.allow_remote_endpoints = allow_remote_endpoints
        self.curve_secret_key = curve_secret_key  # with curve_clients: the channels require CURVE (gcircus.daemon)
        self.curve_clients = curve_clients
        self.watcher_defaults = dict(watcher_defaults or {})
        self.stats_interval = float(stats_interval)
        self.background = bool(background)  # start() returns once started instead of blocking until stopped
        self.max_message_size = max_message_size
        self.name = name
        self.cgroup_root = cgroup_root
        self.cgroups = self._configure_cgroups()
        self._init_state()
        for watcher in watchers:
            self.register(watcher)
        self.check_dependencies(self.watchers)  # DependencyError (a ValueError): unknown or a cycle

    def _init_state(self) -> None:
        """What the arbiter runs: watchers, on-demand waiters, services, and the greenlets it owns."""
        self.watchers: list[Watcher] = []
        self._watchers_by_name: dict[str, Watcher] = {}
        self._listeners: list = []
        self._on_demand: dict[Watcher, OnDemand] = {}
        self._services: list[tuple[Service, bool]] = []  # (service, stop_before_watchers), in start order
        self._started_services: list[Service] = []
        self._services_stopper: gevent.Greenlet | None = None
        self._starter: gevent.Greenlet | None = None
        self._background_stop: gevent.Greenlet | None = None
        self._stopped = gevent.event.Event()
        self._stopped.set()
        self.running = False
        # Set by gcircusd re-executing itself (gcircus.handover.adopt.Adoption): the next start adopts what runs.
        self.adoption: Any = None
        # The daemon's hand-over (gcircus.handover.reexec.Handover) when gcircusd runs it; None when embedded.
        self.handover: Any = None
        # The daemon's audit log (gcircus.control.audit.AuditLog) when gcircusd runs it; None when embedded.
        self.audit: Any = None

    def register(self, watcher: Watcher) -> None:
        """Take a built watcher under supervision (not started); DuplicateWatcher if its name is taken."""
        key = watcher.name.lower()
        if key in self._watchers_by_name:
            raise DuplicateWatcher(f"{watcher.name!r} already exists")
        self._give_cgroup(watcher)
        watcher.arbiter = self
        watcher.dependencies = functools.partial(self.direct_dependencies, watcher)
        watcher.subscribe(self._forward_event)
        self.watchers.append(watcher)
        self._watchers_by_name[key] = watcher

    def _configure_cgroups(self) -> cgroups.DaemonCgroups | None:
        """The daemon's cgroup tree with `cgroup_root` (None without); ValueError naming the option if unusable."""
        if not self.cgroup_root:
            return None
        try:
            return cgroups.DaemonCgroups.configure(self.cgroup_root, self.name, self.config_path)
        except cgroups.CgroupError as exc:
            raise ValueError(f"[circus] cgroup_root = {self.cgroup_root}: {exc}") from None

    def _give_cgroup(self, watcher: Watcher) -> None:
        """Give `watcher` its cgroup; ValueError naming the watcher and option if it asks for a limit that cannot
        be had (no cgroup_root, or a controller the host does not delegate)."""
        problem = cgroups.limits_problem(self.cgroups, watcher.cgroup_limits())
        if problem is not None:
            raise ValueError(f"[watcher:{watcher.name}] {problem}")
        if self.cgroups is None:
            return
        watcher.cgroup = self.cgroups.watcher(watcher.name)

    def _stop_previous_run(self) -> None:
        """With cgroups: stop what a previous gcircusd on this configuration left running (see gcircus.cgroups)."""
        if self.cgroups is not None:
            self.cgroups.lock()  # CgroupError (an OSError) if another gcircusd runs with this directory
            configured = {os.path.basename(w.cgroup.path): (int(w.stop_signal), float(w.graceful_timeout))
                          for w in self.watchers if w.cgroup is not None}
            cgroups.stop_previous_run(self.cgroups, configured)

    def direct_dependencies(self, watcher: Watcher) -> list[Watcher]:
        """The registered watchers `watcher` names in depends_on (the config loader, add, set and reloadconfig refuse
        unknown names; one of a watcher being replaced by reloadconfig is missing for that moment)."""
        return [self._watchers_by_name[name.lower()] for name in to_names(watcher.depends_on)
                if name.lower() in self._watchers_by_name]

    def attach(self, service: Service, stop_before_watchers: bool = False) -> None:
        """Run `service` with the arbiter: started, in the order attached, before the watchers start (a failure
        stops those started and fails the start); stopped in reverse order once the watchers are stopped (in a
        greenlet: see wait_channels_closed), or before they are if `stop_before_watchers` (a service that acts on
        watchers must not act on a system that is shutting down)."""
        self._services.append((service, stop_before_watchers))

    # -- sockets ---------------------------------------------------------------------------------------------------

    def get_socket(self, name: str):
        """The managed socket called `name` (case-insensitive); KeyError if there is none."""
        return self.sockets[name.lower()]

    def give_sockets(self, watcher: Watcher, spec: dict | None = None) -> None:
        """Hand a watcher the bound sockets it may use (see gcircus.sockets: named ones, else all) and re-arm its
        on-demand waiter on them; with `spec`, those its cmd/args/stdin_socket name (a reload about to change them)."""
        probe = watcher if spec is None else SimpleNamespace(
            name=watcher.name, cmd=spec.get("cmd", watcher.cmd), args=spec.get("args"),
            stdin_socket=spec.get("stdin_socket"))
        watcher.sockets = self.sockets.for_watcher(probe)
        if watcher in self._on_demand:
            self._disarm_on_demand(watcher)
            self._arm_on_demand(watcher)

    def _arm_on_demand(self, watcher: Watcher) -> None:
        """An on_demand (autostart) watcher starts on the first connection to one of its sockets."""
        if watcher.on_demand and watcher.autostart and watcher not in self._on_demand:
            waiter = self._on_demand[watcher] = OnDemand(watcher, watcher.sockets)
            waiter.start()

    def _disarm_on_demand(self, watcher: Watcher) -> None:
        waiter = self._on_demand.pop(watcher, None)
        if waiter is not None:
            waiter.stop()

    # -- events ----------------------------------------------------------------------------------------------------

    def subscribe(self, listener) -> None:
        """Call `listener(event)` with the gcircus.events.Event of every watcher event."""
        self._listeners.append(listener)

    def unsubscribe(self, listener) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)

    def _forward_event(self, event) -> None:
        for listener in list(self._listeners):
            try:
                listener(event)
            except Exception:  # noqa: BLE001 - a broken subscriber must not break supervision
                log.exception("event subscriber failed on %s of watcher %r", event.name, event.watcher)

    # -- queries ---------------------------------------------------------------------------------------------------

    def get_watcher(self, name: str) -> Watcher:
        """The watcher called `name` (case-insensitive); KeyError if there is none."""
        return self._watchers_by_name[name.lower()]

    def iter_watchers(self, reverse: bool = True) -> list[Watcher]:
        """Watchers in start order (dependencies first, then higher priority first), or with `reverse` False in
        stop order (dependents first, then lower priority first).

        Equal ties keep today's order: the start order lists them last registered first, the stop order first
        registered first (what sorting by priority, then reversing, always gave).
        """
        if reverse:
            return self._ordered(dependencies.start_order, self.watchers[::-1])
        return self._ordered(dependencies.stop_order, self.watchers)

    def stop_stages(self) -> list[list[Watcher]]:
        """The groups stop_watchers stops one after the other, each in parallel (see dependencies.stop_stages)."""
        try:
            stages = dependencies.stop_stages(self._graph(self.watchers))
        except dependencies.DependencyError as exc:
            log.error("%s: stopping by priority only", exc)  # checked on every change: should not happen
            return [list(group) for _, group in itertools.groupby(
                sorted(self.watchers, key=lambda w: w.priority), key=lambda w: w.priority)]
        return [[self.get_watcher(name) for name in stage] for stage in stages]

    def dependencies_of(self, watcher: Watcher | str, recursive: bool = True) -> list[Watcher]:
        """The watchers `watcher` depends on (with `recursive`, theirs too), in start order; KeyError if unknown."""
        return self._related(dependencies.dependencies_of, watcher, recursive)

    def dependents_of(self, watcher: Watcher | str, recursive: bool = True) -> list[Watcher]:
        """The watchers depending on `watcher` (with `recursive`, on those too), in start order; KeyError if
        unknown. Stop them in reverse."""
        return self._related(dependencies.dependents_of, watcher, recursive)

    def check_dependencies(self, watchers: list[Watcher], depends_on: dict[str, tuple[str, ...]] | None = None) -> None:
        """DependencyError (a ValueError) unless these watchers' depends_on (or the one given here by watcher name)
        name only watchers of theirs and make no cycle: what the arbiter checks when it is built, and `set
        depends_on` with the changed one."""
        given = depends_on or {}
        dependencies.check_graph({w.name: (to_names(given.get(w.name, w.depends_on)), w.priority) for w in watchers})

    @staticmethod
    def _graph(watchers: list[Watcher]) -> dict[str, tuple[tuple[str, ...], int]]:
        """The graph the orders are read from. A name no watcher has is left out: reloadconfig replaces a watcher
        by removing it then adding it again, and its dependents keep their order meanwhile. A Watcher built in
        Python may hold its depends_on as one string (Python values are not converted): read as the ini reads it."""
        known = {w.name.lower() for w in watchers}
        return {w.name: (tuple(d for d in to_names(w.depends_on) if d.lower() in known), w.priority)
                for w in watchers}

    def _ordered(self, order, watchers: list[Watcher]) -> list[Watcher]:
        try:
            names = order(self._graph(watchers))
        except dependencies.DependencyError as exc:
            log.error("%s: ordering by priority only", exc)  # checked on every change: should not happen
            ranked = sorted(self.watchers, key=lambda w: w.priority)
            return ranked[::-1] if order is dependencies.start_order else ranked
        return [self.get_watcher(name) for name in names]

    def _related(self, relation, watcher: Watcher | str, recursive: bool) -> list[Watcher]:
        name = watcher if isinstance(watcher, str) else watcher.name
        names = relation(self._graph(self.watchers[::-1]), self.get_watcher(name).name, recursive)
        return [self.get_watcher(other) for other in names]

    def statuses(self) -> dict[str, str]:
        return {w.name: w.status() for w in self.watchers}

    def numprocesses(self) -> int:
        return sum(len(w.processes) for w in self.watchers)

    def numwatchers(self) -> int:
        return len(self.watchers)

    # -- lifecycle -------------------------------------------------------------------------------------------------

    BLOCKING_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def start(self, background: bool | None = None) -> None:
        """Start every autostart watcher, highest priority first, then block until the arbiter is stopped.

        With `background` (by default the arbiter's own, from `get_arbiter(background=...)`), return once they are
        started instead: the arbiter then keeps supervising on the caller's hub. A blocking start in the main thread
        stops the arbiter (gracefully) on SIGTERM or SIGINT and puts the previous handlers back when it returns, so
        Circus's `try: arbiter.start() finally: arbiter.stop()` scripts run their `finally` and exit 0. A `stop()`
        issued meanwhile (a signal during a long start) interrupts the start.
        """
        if self.background if background is None else background:
            self._start()
            return
        previous = self._catch_stop_signals()
        try:
            self._start()
            # A timed wait keeps the hub referenced: with no child left to watch it would otherwise end in LoopExit.
            while not self._stopped.wait(1.0):
                pass
            self.wait_channels_closed()
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)

    def _catch_stop_signals(self) -> dict:
        """SIGTERM and SIGINT stop the arbiter; the handlers they replace, to put back. Main thread only."""
        if threading.current_thread() is not threading.main_thread():
            return {}

        def on_signal(signum, frame):
            log.info("received %s: stopping the arbiter", signal.Signals(signum).name)
            self.stop_in_background()

        # A signal the process was started with ignored (SIGINT in a shell's background job) stays ignored.
        return {signum: signal.signal(signum, on_signal) for signum in self.BLOCKING_STOP_SIGNALS
                if signal.getsignal(signum) is not signal.SIG_IGN}

    def _start(self) -> None:
        """Start every autostart watcher, highest priority first; return once they are started."""
        if self.running:
            return
        if self.umask is not None:
            os.umask(self.umask)
        if self.subreaper:
            try:
                linux.set_child_subreaper(True)
            except OSError as exc:
                log.warning("cannot become a child subreaper (%s): escaped grandchildren re-parent to init", exc)
        try:
            if self.adoption is not None:  # re-executed: what runs is ours, not a previous run's (gcircus.handover)
                self.adoption.relock(self)
                self.adoption.adopt_sockets(self)
            else:
                # Before binding: a previous run's processes may still hold the sockets (and would duplicate the new).
                self._stop_previous_run()
            self.sockets.bind_and_listen_all()  # before any watcher starts; SocketError (an OSError) if one cannot
            for watcher in self.watchers:
                self.give_sockets(watcher)
            if self.adoption is not None:
                self.adoption.adopt_watchers(self)  # before the channels open: nobody sees a half-built state
            self._start_services()
        except BaseException:
            self.sockets.close_all()
            if self.cgroups is not None:
                self.cgroups.unlock()
            raise
        self.running = True
        for watcher in self.watchers:
            watcher.refuse_commands(None)
        self._stopped.clear()
        for watcher in self.watchers:
            self._arm_on_demand(watcher)
        self._starter = gevent.spawn(self.start_watchers)
        try:
            self._starter.get()
        except gevent.GreenletExit:
            pass
        finally:
            self._starter = None

    def _start_services(self) -> None:
        """Start the attached services in order; if one fails, stop those it follows (in reverse) and re-raise."""
        for service, _ in self._services:
            try:
                service.start()
            except BaseException:
                self._stop_services(before_watchers=None)
                raise
            self._started_services.append(service)

    def _stop_services(self, before_watchers: bool | None) -> None:
        """Stop the started services of one phase (None: of both) in reverse order; a failure is only logged."""
        early = [service for service, first in self._services if first]
        for service in reversed(list(self._started_services)):
            if before_watchers is None or (service in early) == before_watchers:
                self._started_services.remove(service)
                try:
                    service.stop()
                except Exception:  # noqa: BLE001 - one service failing to stop must not keep the others running
                    log.exception("stopping %r failed", service)

    def started_services(self) -> list[Service]:
        """The attached services running now, in the order they started."""
        return list(self._started_services)

    def wait_channels_closed(self, timeout: float | None = None) -> None:
        """Wait until the services stopped after the watchers (the channels) are stopped."""
        stopper = self._services_stopper
        if stopper is not None:
            stopper.join(timeout)

    def start_watchers(self) -> None:
        """Start the autostart watchers (not on-demand ones) in start order (dependencies first, then highest
        priority first), one after the other, warmup_delay apart."""
        adopted = self.adoption.adopted if self.adoption is not None else ()
        to_start = (w for w in self.iter_watchers() if w.autostart and not w.on_demand and w.name not in adopted)
        for index, watcher in enumerate(to_start):
            if index and self.warmup_delay > 0:
                gevent.sleep(self.warmup_delay)
            watcher.start()

    def wait_started(self) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
        """Wait until every autostart watcher has settled; return (failed, retrying) as (name, why) pairs.

        Settled: active; failed (or waiting for a dependency that failed); stopped (a hook refused, an operator
        stopped it); or, in the second list, backing off with no end (max_retry = -1, or gcircusd short of
        resources) or waiting for a dependency that is stopped (not autostart). A crash loop that can still end in
        failure is waited out. A stop of the arbiter ends the wait. The control channel answers meanwhile: this
        blocks only the calling greenlet.
        """
        pending = [w for w in self.iter_watchers() if w.autostart and not w.on_demand]
        failed: list[tuple[str, str]] = []
        retrying: list[tuple[str, str]] = []
        while pending and not self._stopped.is_set():
            for watcher in list(pending):
                if watcher.status() == STOPPING:
                    continue  # on its way to stopped, or (a crash loop's stop) to backoff or failed: no answer yet
                problem = watcher.start_problem()
                if watcher.status() in (ACTIVE, STOPPED) or problem is not None:
                    pending.remove(watcher)
                    if watcher.status() != STOPPED and problem is not None:
                        failed.append((watcher.name, problem))
                elif watcher.status() == BACKOFF and watcher.respawn_policy.endless:
                    pending.remove(watcher)
                    retrying.append((watcher.name, f"is backing off and retries forever: {watcher.reason}"))
                elif watcher.waits_for_stopped():
                    pending.remove(watcher)  # nothing changes until an operator starts what it needs
                    retrying.append((watcher.name, f"is {watcher.reason}"))
            if pending:
                gevent.wait([self._stopped, *(w.state_changed() for w in pending)], count=1)
        return failed, retrying

    def run(self) -> None:
        """Start, then block until the arbiter is stopped (start() without signal handling)."""
        self._start()
        self._stopped.wait()

    def stop(self, graceful: bool = True) -> None:
        """Stop every watcher, lowest priority first, and block until every child is gone.

        `graceful=False` skips the graceful period (SIGKILL right after the stop signal), for a fast shutdown.
        """
        for watcher in self.watchers:  # queued commands would run before the stop: cancel them, refuse new ones
            watcher.refuse_commands("cancelled: gcircusd is shutting down")
        self._stop_services(before_watchers=True)
        for watcher in list(self._on_demand):
            self._disarm_on_demand(watcher)
        starter = self._starter
        if starter is not None and starter is not gevent.getcurrent():
            starter.kill(block=True)
        self.stop_watchers(graceful)
        if self.cgroups is not None:
            self.cgroups.remove_if_empty()  # a clean exit leaves no cgroup behind
        self.sockets.close_all()  # only now: the listen queues outlive every worker restart until shutdown
        self.running = False
        # In a greenlet of its own: the caller may be a `quit` command whose reply must still go out.
        self._services_stopper = gevent.spawn(self._stop_services, before_watchers=False)
        self._stopped.set()

    def stop_in_background(self) -> gevent.Greenlet:
        """Stop (gracefully) in a greenlet and return it; while one such stop runs, every call returns that one.

        What `quit` uses: a thousand quits cost one stop, and the reply can wait for it without a greenlet of its own.
        """
        if self._background_stop is None or self._background_stop.ready():
            self._background_stop = gevent.spawn(self.stop)
        return self._background_stop

    def reopen_streams(self) -> None:
        """Reopen every watcher's file sinks (logrotate's postrotate: SIGUSR1 or `gcircusctl reopen`)."""
        for watcher in self.watchers:
            watcher.reopen_streams()

    def kill_all(self) -> None:
        """SIGKILL every process tree now; stops already in progress then finish at once (forced shutdown)."""
        for watcher in self.watchers:
            watcher.kill_trees()

    def wait_stopped(self, timeout: float | None = None) -> bool:
        return self._stopped.wait(timeout)

    def reload(self, graceful: bool = True, sequential: bool = False) -> None:
        """Reload every watcher in priority order (new processes first unless graceful is False)."""
        if self.prereload_fn is not None:
            self.prereload_fn(self)
        for watcher in self.iter_watchers():
            watcher.reload(graceful=graceful, sequential=sequential)

    def restart(self) -> None:
        """Stop every watcher (lowest priority first), then start the autostart ones (highest first)."""
        self.stop_watchers()
        self.start_watchers()

    def stop_watchers(self, graceful: bool = True) -> None:
        """Stop every watcher, dependents before what they depend on, lowest priority first, each group free to stop
        in parallel: without depends_on, each priority level (graceful: see stop())."""
        grace = None if graceful else 0.0
        for stage in self.stop_stages():
            gevent.joinall([gevent.spawn(w.stop, grace) for w in stage])

    def add_watcher(self, name: str, cmd: str, start: bool = False, **kwargs) -> Watcher:
        """Create and register a watcher (stopped unless `start`); publishes `add`.

        DuplicateWatcher if the name (case-insensitive) is taken; ValueError/TypeError for bad options,
        DependencyError (a ValueError) for a depends_on naming no watcher or making a cycle.
        """
        if name.lower() in self._watchers_by_name:
            raise DuplicateWatcher(f"{name!r} already exists")
        watcher = Watcher(name, cmd, **{**self.watcher_defaults, **kwargs})
        # Its own depends_on must hold; the others' are taken as they stand (one reloadconfig is replacing may be
        # missing for a moment: the new file was checked whole).
        graph = {**self._graph(self.watchers), watcher.name: (to_names(watcher.depends_on), watcher.priority)}
        dependencies.check_graph(graph)
        self.register(watcher)
        if self.running:
            self.give_sockets(watcher)
            self._arm_on_demand(watcher)
        watcher.notify("add")
        if start:
            watcher.start()
        return watcher

    def rm_watcher(self, name: str, nostop: bool = False) -> None:
        """Unregister a watcher (publishing `remove`), then stop it, or with `nostop` leave its processes running.

        With `nostop` the processes are no longer supervised at all: not respawned, not stopped with gcircusd.
        """
        self.finish_removal(self.unregister_watcher(name), nostop)

    def unregister_watcher(self, name: str) -> Watcher:
        """Take a watcher out of the arbiter (KeyError if unknown) and publish `remove`; its processes still run."""
        watcher = self.get_watcher(name)
        self._disarm_on_demand(watcher)
        watcher.notify("remove")
        self.watchers.remove(watcher)
        del self._watchers_by_name[watcher.name.lower()]
        return watcher

    def finish_removal(self, watcher: Watcher, nostop: bool = False) -> None:
        """Stop (or detach) an unregistered watcher; its stop events are still published, then it goes quiet."""
        if nostop:
            watcher.detach()
        else:
            watcher.stop()
            if watcher.cgroup is not None and watcher.cgroup.daemon.locked:
                watcher.cgroup.remove()
        watcher.unsubscribe(self._forward_event)

