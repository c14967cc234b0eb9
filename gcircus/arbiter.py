"""The arbiter owns all watchers (and, as later layers land, sockets, plugins and the control channels).

It starts watchers by descending priority, stops them by ascending priority (each priority level in parallel), and
forwards every watcher event to its subscribers. All methods block only the calling greenlet. As in Circus, `start()`
blocks until the arbiter is stopped (and, in the main thread, stops it on SIGTERM or SIGINT for that time) unless the
arbiter was made with `background=True`: then it returns once the watchers are started, installs no signal handlers,
and the arbiter keeps supervising on the caller's hub, which is how a gevent application embeds it.
"""
from __future__ import annotations

import itertools
import logging
import os
import signal
import threading

import gevent
import gevent.event

from gcircus import linux
from gcircus.sockets import OnDemand, Sockets
from gcircus.watcher import Watcher

log = logging.getLogger(__name__)

DEFAULT_ENDPOINT = "tcp://127.0.0.1:5555"
DEFAULT_PUBSUB = "tcp://127.0.0.1:5556"
DEFAULT_STATS = "tcp://127.0.0.1:5557"


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
                 max_message_size: int = 1 << 20, watcher_defaults: dict | None = None,
                 stats_interval: float = 1.0, background: bool = False, **extra):
        self.endpoint = endpoint
        self.pubsub_endpoint = pubsub_endpoint
        self.check_delay = check_delay
        self.prereload_fn = prereload_fn
        self.context = context
        self.statsd = statsd  # config and get_arbiter turn it on for a stats_endpoint given alone, as Circus does
        self.stats_endpoint = stats_endpoint or (DEFAULT_STATS if statsd else None)
        self.multicast_endpoint = multicast_endpoint
        self.plugins = list(plugins or [])
        self.sockets = Sockets(sockets)  # name -> CircusSocket; bound in start(), closed in stop()
        self._on_demand: dict[Watcher, OnDemand] = {}
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
        self.subreaper = subreaper
        self.config_path = config_path
        self.allow_remote_endpoints = allow_remote_endpoints
        self.watcher_defaults = dict(watcher_defaults or {})
        self.stats_interval = float(stats_interval)
        self.background = bool(background)  # start() returns once started instead of blocking until stopped
        self.stats = None
        self.max_message_size = max_message_size
        self.controller = None
        self.publisher = None
        self.discovery = None
        self._channels_closer: gevent.Greenlet | None = None
        self.extra_options = extra
        self.watchers: list[Watcher] = []
        self._watchers_by_name: dict[str, Watcher] = {}
        self._listeners: list = []
        self._starter: gevent.Greenlet | None = None
        self._background_stop: gevent.Greenlet | None = None
        self._stopped = gevent.event.Event()
        self._stopped.set()
        self._stopping = False
        self.running = False
        for watcher in watchers:
            self._register(watcher)
        from gcircus.plugins import PluginManager

        # Imports every plugin class now: a plugin that cannot be loaded is a configuration error, not a surprise.
        self.plugin_manager = PluginManager(self, self.plugins, endpoint, pubsub_endpoint)
        for watcher in self.plugin_manager.watchers():  # external plugins run as plugin:NAME watchers
            self._register(watcher)

    # -- construction ----------------------------------------------------------------------------------------------

    @classmethod
    def load_from_config(cls, config_file: str, **overrides) -> Arbiter:
        """Build an arbiter from a Circus ini file; ConfigError if the file or any watcher in it is invalid."""
        from gcircus.config import load_config
        from gcircus.errors import ConfigError

        cfg = load_config(config_file)
        watchers = []
        for spec in cfg.watchers:
            try:
                watchers.append(Watcher(**spec))
            except (ValueError, TypeError, ImportError) as exc:
                raise ConfigError(f"{cfg.path}: [watcher:{spec.get('name')}] cannot be built: {exc}") from None
        options = dict(cfg.circus)
        for key in ("include", "include_dir", "pdeathsig", "prefix_output"):
            options.pop(key, None)
        from gcircus.control.endpoints import EndpointNotAllowed, check_bind_allowed

        if options.get("multicast_endpoint"):
            from gcircus.control.discovery import DiscoveryError, parse_multicast_endpoint
            try:
                parse_multicast_endpoint(options["multicast_endpoint"])
            except DiscoveryError as exc:
                raise ConfigError(str(exc), file=cfg.path, section="circus", option="multicast_endpoint",
                                  value=options["multicast_endpoint"]) from None
        checked = ("endpoint", "pubsub_endpoint") + (("stats_endpoint",) if options.get("statsd") else ())
        for key in checked:
            try:
                check_bind_allowed(key, options.get(key) or "", bool(options.get("allow_remote_endpoints")))
            except EndpointNotAllowed as exc:
                raise ConfigError(str(exc), file=cfg.path, section="circus", option=key,
                                  value=options.get(key)) from None
            except ValueError as exc:  # e.g. a port that is not a number: urllib's own message
                raise ConfigError(f"not a valid endpoint ({exc})", file=cfg.path, section="circus", option=key,
                                  value=options.get(key)) from None
        options.update(overrides)
        try:
            arbiter = cls(watchers, plugins=cfg.plugins, sockets=cfg.sockets, config_path=cfg.path,
                          watcher_defaults=cfg.watcher_defaults, **options)
        except ValueError as exc:  # a plugin that cannot be loaded, or a bad plugin option
            raise ConfigError(f"{cfg.path}: {exc}") from None
        arbiter.loaded_config = cfg  # what reloadconfig compares the file with (see gcircus.reload)
        return arbiter

    def _register(self, watcher: Watcher) -> None:
        key = watcher.name.lower()
        if key in self._watchers_by_name:
            raise DuplicateWatcher(f"{watcher.name!r} already exists")
        watcher.arbiter = self
        watcher.subscribe(self._forward_event)
        self.watchers.append(watcher)
        self._watchers_by_name[key] = watcher

    # -- sockets ---------------------------------------------------------------------------------------------------

    def get_socket(self, name: str):
        """The managed socket called `name` (case-insensitive); KeyError if there is none."""
        return self.sockets[name.lower()]

    def _give_sockets(self, watcher: Watcher) -> None:
        """Hand a watcher the bound sockets it may use (see gcircus.sockets: named ones, else all)."""
        watcher.sockets = self.sockets.for_watcher(watcher)

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
        """Watchers sorted by priority, highest first unless `reverse` is False; ties keep their order."""
        ordered = sorted(self.watchers, key=lambda w: w.priority)
        return ordered[::-1] if reverse else ordered

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
        self.sockets.bind_and_listen_all()  # before any watcher starts; SocketError (an OSError) if one cannot bind
        for watcher in self.watchers:
            self._give_sockets(watcher)
        try:
            self._open_channels()
        except BaseException:
            self.sockets.close_all()
            raise
        self.plugin_manager.start()  # native plugins subscribe before the first spawn
        self.running = True
        self._stopping = False
        for watcher in self.watchers:
            watcher.refuse_commands(None)
        self._stopped.clear()
        for watcher in self.watchers:
            self._arm_on_demand(watcher)
        self._starter = gevent.spawn(self._start_watchers)
        try:
            self._starter.get()
        except gevent.GreenletExit:
            pass
        finally:
            self._starter = None

    def _open_channels(self) -> None:
        """Bind the event (PUB) and control (ROUTER) sockets, if endpoints are configured.

        The PUB socket comes first so that subscribers connected early see the spawns of the first watchers.
        """
        from gcircus.control.publisher import EventPublisher
        from gcircus.control.server import ControlServer

        if self.pubsub_endpoint and self.publisher is None:
            self.publisher = EventPublisher(self, self.pubsub_endpoint, self.context, self.allow_remote_endpoints)
            self.publisher.start()
        if self.statsd and self.stats_endpoint and self.stats is None:
            from gcircus.stats import StatsService

            self.stats = StatsService.for_arbiter(self)
            self.stats.start()
        if self.httpd:
            log.warning("httpd = true is ignored: gcircus has no HTTP server yet, so httpd, httpd_host and httpd_port "
                        "do nothing (circusd refuses to start without circus-web, which is no longer shipped)")
        if self.multicast_endpoint and self.endpoint and self.discovery is None:
            from gcircus.control.discovery import DiscoveryResponder

            self.discovery = DiscoveryResponder(self.multicast_endpoint, self.endpoint)
            try:
                self.discovery.start()
            except OSError as exc:
                log.warning("multicast discovery is disabled: %s", exc)
                self.discovery = None
        if self.endpoint and self.controller is None:
            self.controller = ControlServer(self, self.endpoint, self.context, self.max_message_size,
                                            self.endpoint_owner, self.allow_remote_endpoints)
            try:
                self.controller.start()
            except Exception:
                self.controller = None
                if self.publisher is not None:
                    self.publisher.close()
                    self.publisher = None
                if self.stats is not None:
                    self.stats.close()
                    self.stats = None
                raise

    def _close_channels(self) -> None:
        """Close the channels once replies in flight (a waiting `quit`'s included) have been sent."""
        controller, self.controller = self.controller, None
        publisher, self.publisher = self.publisher, None
        discovery, self.discovery = self.discovery, None
        if discovery is not None:
            discovery.close()
        stats, self.stats = self.stats, None
        if stats is not None:
            stats.close()
        if controller is not None:
            controller.close()
        if publisher is not None:
            publisher.close()

    def wait_channels_closed(self, timeout: float | None = None) -> None:
        closer = self._channels_closer
        if closer is not None:
            closer.join(timeout)

    def _start_watchers(self) -> None:
        first = True
        for watcher in self.iter_watchers():
            if not watcher.autostart or watcher.on_demand:
                continue
            if not first and self.warmup_delay > 0:
                gevent.sleep(self.warmup_delay)
            first = False
            watcher.start()

    def run(self) -> None:
        """Start, then block until the arbiter is stopped (start() without signal handling)."""
        self._start()
        self._stopped.wait()

    def stop(self, graceful: bool = True) -> None:
        """Stop every watcher, lowest priority first, and block until every child is gone.

        `graceful=False` skips the graceful period (SIGKILL right after the stop signal), for a fast shutdown.
        """
        self._stopping = True
        for watcher in self.watchers:  # queued commands would run before the stop: cancel them, refuse new ones
            watcher.refuse_commands("cancelled: gcircusd is shutting down")
        self.plugin_manager.stop()  # plugins must not act on a system that is shutting down
        for watcher in list(self._on_demand):
            self._disarm_on_demand(watcher)
        starter = self._starter
        if starter is not None and starter is not gevent.getcurrent():
            starter.kill(block=True)
        grace = None if graceful else 0.0
        for _, group in itertools.groupby(self.iter_watchers(reverse=False), key=lambda w: w.priority):
            gevent.joinall([gevent.spawn(w.stop, grace) for w in group])
        self.sockets.close_all()  # only now: the listen queues outlive every worker restart until shutdown
        self.running = False
        # In a greenlet of its own: the caller may be a `quit` command whose reply must still go out.
        self._channels_closer = gevent.spawn(self._close_channels)
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
            for process in list(watcher.processes.values()) + list(watcher._retiring.values()):
                process.kill_tree()

    def wait_stopped(self, timeout: float | None = None) -> bool:
        return self._stopped.wait(timeout)

    def reload(self, graceful: bool = True, sequential: bool = False) -> None:
        """Reload every watcher in priority order (new processes first unless graceful is False)."""
        if self.prereload_fn is not None:
            self.prereload_fn(self)
        for watcher in self.iter_watchers():
            watcher.reload(graceful=graceful, sequential=sequential)

    def reload_from_config(self, dry_run: bool = False) -> dict:
        """Re-read config_path and apply what changed (gcircus.reload); return the plan. ConfigError changes nothing."""
        from gcircus import reload as reload_config

        return reload_config.reload_from_config(self, dry_run=dry_run)

    def start_watchers(self) -> None:
        self._start_watchers()

    def restart(self) -> None:
        """Stop every watcher (lowest priority first), then start the autostart ones (highest first).

        An arbiter loaded from a config file re-reads it first, as Circus does: the file is validated (ConfigError,
        nothing changed, if it is bad) and, once every watcher is stopped, applied as reloadconfig applies it.
        """
        if self.config_path and getattr(self, "loaded_config", None) is not None:
            from gcircus import reload as reload_config

            reload_config.restart_from_config(self)
            return
        self.stop_watchers()
        self._start_watchers()

    def stop_watchers(self) -> None:
        for _, group in itertools.groupby(self.iter_watchers(reverse=False), key=lambda w: w.priority):
            gevent.joinall([gevent.spawn(w.stop) for w in group])

    def add_watcher(self, name: str, cmd: str, start: bool = False, **kwargs) -> Watcher:
        """Create and register a watcher (stopped unless `start`); publishes `add`.

        DuplicateWatcher if the name (case-insensitive) is taken; ValueError/TypeError for bad options.
        """
        if name.lower() in self._watchers_by_name:
            raise DuplicateWatcher(f"{name!r} already exists")
        watcher = Watcher(name, cmd, **{**self.watcher_defaults, **kwargs})
        self._register(watcher)
        if self.running:
            self._give_sockets(watcher)
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
        watcher.unsubscribe(self._forward_event)


def get_arbiter(watchers: list[dict], controller: str | None = None, pubsub_endpoint: str | None = None,
                statsd: bool = False, stats_endpoint: str | None = None, statsd_close_outputs: bool = False,
                multicast_endpoint: str | None = None, env=None, name=None, context=None, background: bool = False,
                stream_backend: str = "gevent", httpd: bool = False, plugins=None, debug: bool = False,
                proc_name: str = "gcircusd", loop=None, check_delay: float = 1.0, **kw) -> Arbiter:
    """Circus's library entry point: an Arbiter for a list of watcher dicts (Watcher keyword arguments).

    A dict without `name` is named after its command's basename. Unlike Circus, the control and event channels
    are bound only when `controller` / `pubsub_endpoint` are given (an embedded supervisor does not open
    tcp://127.0.0.1:5555 behind its host's back), multicast discovery stays off unless `multicast_endpoint` is
    given. `arbiter.start()` blocks until the arbiter is stopped, as in Circus; with `background=True` it returns once
    the watchers are started and the arbiter supervises on the caller's gevent hub (Circus runs it in a thread).
    """
    statsd = statsd or stats_endpoint is not None  # Circus runs its stats for a stats_endpoint given alone
    built = []
    for spec in watchers:
        spec = dict(spec)
        spec.setdefault("name", os.path.basename(str(spec["cmd"]).split()[0]))
        built.append(Watcher(**spec))
    return Arbiter(built, endpoint=controller, pubsub_endpoint=pubsub_endpoint,
                   statsd=statsd, stats_endpoint=stats_endpoint, statsd_close_outputs=statsd_close_outputs,
                   multicast_endpoint=multicast_endpoint, context=context, plugins=plugins, debug=debug,
                   proc_name=proc_name, check_delay=check_delay, background=background, **kw)
