"""The daemon's wiring: an arbiter with its channels and plugins attached, built from a config file or from
Circus-style arguments.

gcircus.arbiter supervises and opens nothing; the control server, the event publisher, the stats channel, multicast
discovery and the plugin manager sit above it and know it only as the object they serve. This module is the layer
above all of them that puts them together, so that none imports another upwards or sideways.
"""
from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable

import gevent.lock

from gcircus import arbiter as core
from gcircus import reload as config_reload
from gcircus.config import Config, load_config
from gcircus.control.discovery import DiscoveryError, DiscoveryResponder, parse_multicast_endpoint
from gcircus.control.publisher import EventPublisher
from gcircus.control.server import ControlServer
from gcircus.errors import ConfigError
from gcircus.options import CIRCUS_OPTIONS, PARSE
from gcircus.plugins import PluginManager
from gcircus.service import CoalescedRuns
from gcircus.stats import StatsService
from gcircus.watcher import Watcher
from gcircus.wire.endpoints import EndpointNotAllowed, check_bind_allowed

log = logging.getLogger(__name__)


class Channel:
    """A channel the arbiter opens at each start, if its options ask for it, and closes at each stop: a Service.

    It is built when the arbiter starts, not with the arbiter: a zmq context must belong to the process that serves
    it, and gcircusd --daemon forks after loading the file. An `optional` channel that cannot be opened (OSError)
    is logged as disabled instead of failing the start.
    """

    def __init__(self, arbiter, name: str, wanted: Callable, build: Callable, optional: bool = False):
        self.arbiter, self.name, self.wanted, self.build, self.optional = arbiter, name, wanted, build, optional
        self.opened = None

    def start(self) -> None:
        if not self.wanted(self.arbiter):
            return
        channel = self.build(self.arbiter)
        try:
            channel.start()
        except OSError as exc:
            if not self.optional:
                raise
            log.warning("%s is disabled: %s", self.name, exc)
            return
        self.opened = channel

    def stop(self) -> None:
        opened, self.opened = self.opened, None
        if opened is not None:
            opened.close()


class HttpdRefusal:
    """`httpd = true` is accepted, as circusd accepts it, and said at each start to do nothing: a Service."""

    def __init__(self, arbiter):
        self.arbiter = arbiter

    def start(self) -> None:
        if self.arbiter.httpd:
            log.warning("httpd = true is ignored: gcircus has no HTTP server yet, so httpd, httpd_host and httpd_port "
                        "do nothing (circusd refuses to start without circus-web, which is no longer shipped)")

    def stop(self) -> None:
        pass


# The channels, in the order they open (and close in reverse, once the watchers are stopped): the PUB socket first,
# so that subscribers connected early see the spawns of the first watchers; the control socket last.
CHANNELS = (
    ("the event publisher", lambda a: a.pubsub_endpoint,
     lambda a: EventPublisher(a, a.pubsub_endpoint, a.context, a.allow_remote_endpoints), False),
    ("the stats channel", lambda a: a.statsd and a.stats_endpoint, StatsService.for_arbiter, False),
    ("multicast discovery", lambda a: a.multicast_endpoint and a.endpoint,
     lambda a: DiscoveryResponder(a.multicast_endpoint, a.endpoint), True),  # a host without multicast still runs
    ("the control server", lambda a: a.endpoint, lambda a: ControlServer(
        a, a.endpoint, a.context, a.max_message_size, a.endpoint_owner, a.allow_remote_endpoints), False),
)


class Arbiter(core.Arbiter):
    """The Circus-compatible arbiter: gcircus.arbiter.Arbiter with the channels its options name and its plugins.

    Building it imports every plugin class (ValueError if one cannot be loaded: a configuration error, not a
    surprise at start); external plugins run as `plugin:NAME` watchers registered with the others. The channels
    open when it starts and close once its watchers are stopped; the plugins start after the channels (native
    ones subscribe before the first spawn) and stop before the watchers do.
    """

    def __init__(self, watchers: list[Watcher], *args, **options):
        super().__init__(watchers, *args, **options)
        self.plugin_manager = PluginManager(self, self.plugins, self.endpoint, self.pubsub_endpoint)
        for watcher in self.plugin_manager.watchers():
            self.register(watcher)
        for name, wanted, build, optional in CHANNELS:
            self.attach(Channel(self, name, wanted, build, optional))
        self.attach(HttpdRefusal(self))
        self.attach(self.plugin_manager, stop_before_watchers=True)
        self.loaded_config: Config | None = None  # what it was built from, updated by each applied reload
        self._reload_lock = gevent.lock.Semaphore()  # one reload or restart from the file at a time
        # Entered around each applied reload: gcircusd's service manager notifier (RELOADING=1 ... READY=1) sets it.
        self.reload_reporter: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext
        # Attached last, so stopped first: the file is not applied to a system that is shutting down.
        self._background_reloads = CoalescedRuns(self.reload_from_config, "reloadconfig")
        self._background_restarts = CoalescedRuns(self.restart, "restart")
        for runs in (self._background_reloads, self._background_restarts):
            self.attach(runs, stop_before_watchers=True)

    # -- the configuration file (gcircus.reload) --------------------------------------------------------------------

    def plan_reload(self) -> dict:
        """What reloadconfig would change (the plan, as a dict); ConfigError if the file is bad. Changes nothing."""
        return config_reload.prepare(self).as_dict()

    def reload_from_config(self, dry_run: bool = False) -> dict:
        """Re-read config_path and apply what changed (gcircus.reload); return the plan. ConfigError changes nothing."""
        with self._reload_lock:
            if dry_run:
                return config_reload.reload_from_config(self, dry_run=True)
            with self.reload_reporter():
                return config_reload.reload_from_config(self)

    def request_reload(self) -> None:
        """reload_from_config() in the background: one run at a time, requests made meanwhile served by one more."""
        self._background_reloads.request()

    @property
    def loaded_from_file(self) -> bool:
        return bool(self.config_path) and self.loaded_config is not None

    def check_restart(self) -> None:
        """ConfigError if restart() would fail before stopping anything: the file does not load or its new sockets
        cannot be bound (nothing changes either way). Nothing to check for an arbiter not loaded from a file."""
        if self.loaded_from_file:
            config_reload.check_restart(self)

    def restart(self) -> None:
        """Stop every watcher, then start the autostart ones; one loaded from a file re-reads it first, as Circus
        does: the file is validated (ConfigError, nothing changed, if it is bad) and, once every watcher is stopped,
        applied as reloadconfig applies it."""
        if not self.loaded_from_file:
            super().restart()
            return
        with self._reload_lock:
            config_reload.restart_from_config(self)

    def request_restart(self) -> None:
        """restart() in the background, coalesced as request_reload() is; a failure is logged."""
        self._background_restarts.request()

    @classmethod
    def load_from_config(cls, config_file: str, **overrides) -> Arbiter:
        """Build an arbiter from a Circus ini file; ConfigError if the file or any watcher in it is invalid."""
        cfg = load_config(config_file)
        watchers = []
        for spec in cfg.watchers:
            try:
                watchers.append(Watcher.from_spec(spec))
            except (ValueError, TypeError, ImportError) as exc:
                raise ConfigError(f"{cfg.path}: [watcher:{spec.get('name')}] cannot be built: {exc}") from None
        options = {key: value for key, value in cfg.circus.items() if CIRCUS_OPTIONS[key].on_change != PARSE}
        _check_channels(cfg, options)
        options.update(overrides)
        try:
            arbiter = cls(watchers, plugins=cfg.plugins, sockets=cfg.sockets, config_path=cfg.path,
                          watcher_defaults=cfg.watcher_defaults, **options)
        except ValueError as exc:  # a plugin that cannot be loaded, or a bad plugin option
            raise ConfigError(f"{cfg.path}: {exc}") from None
        arbiter.loaded_config = cfg  # what reloadconfig compares the file with (see gcircus.reload)
        return arbiter


def _check_channels(cfg: Config, options: dict) -> None:
    """ConfigError naming the option if a channel's endpoint is malformed or may not be bound (a remote one)."""
    if options.get("multicast_endpoint"):
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
    built = [Watcher(**{"name": os.path.basename(str(spec["cmd"]).split()[0]), **spec}) for spec in watchers]
    return Arbiter(built, endpoint=controller, pubsub_endpoint=pubsub_endpoint,
                   statsd=statsd, stats_endpoint=stats_endpoint, statsd_close_outputs=statsd_close_outputs,
                   multicast_endpoint=multicast_endpoint, context=context, plugins=plugins, debug=debug,
                   proc_name=proc_name, check_delay=check_delay, background=background, **kw)
