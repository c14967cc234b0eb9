"""The daemon's wiring: an arbiter with its channels and plugins attached, built from a config file or from
Circus-style arguments.

gcircus.arbiter supervises and opens nothing; the control server, the event publisher, the stats channel, multicast
discovery and the plugin manager sit above it and know it only as the object they serve. This module is the layer
above all of them that puts them together, so that none imports another upwards or sideways.
"""
from __future__ import annotations

import contextlib
import grp
import logging
import os
import signal
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import gevent
import gevent.event
import gevent.lock
import gevent.pool

from gcircus import __version__, linux
from gcircus import arbiter as core
from gcircus import reload as config_reload
from gcircus.config import Config, load_config
from gcircus.control.audit import AuditLog
from gcircus.control.commands.reloadconfig import format_plan
from gcircus.control.discovery import DiscoveryError, DiscoveryResponder, parse_multicast_endpoint
from gcircus.control.publisher import EventPublisher, HeldEvents
from gcircus.control.runner import RequestCounts
from gcircus.control.server import ControlServer
from gcircus.errors import ConfigError
from gcircus.essential import EssentialWatch
from gcircus.handover.adopt import Adoption
from gcircus.handover.reexec import Handover, HandoverRefused, handed_over
from gcircus.logsetup import reopen_log_files
from gcircus.options import CIRCUS_OPTIONS, PARSE
from gcircus.pidfile import Pidfile
from gcircus.plugins import PluginManager
from gcircus.service import CoalescedRuns
from gcircus.service_manager import ServiceManager
from gcircus.stats import StatsService
from gcircus.watcher import Watcher
from gcircus.wire.curve import CurveKeyError, read_client_keys, read_secret_certificate
from gcircus.wire.endpoints import EndpointNotAllowed, IpcMode, check_bind_allowed, check_ipc_directory

if TYPE_CHECKING:
    from gcircus.control.zap import CurveAuthority

log = logging.getLogger(__name__)

# gcircusd's exit codes (2, a bad command line or configuration, is gcircus.cli.usage.EXIT_USAGE, every CLI's).
EXIT_OK = 0  # stopped cleanly: TERM, INT, QUIT or `quit`
EXIT_START_FAILED = 1  # could not start (pidfile, endpoint or socket in use; with --daemon, a watcher that failed)
EXIT_ESSENTIAL_FAILED = 3  # an essential watcher failed: everything was stopped (wins over EXIT_STOP_TIMEOUT)
EXIT_STOP_TIMEOUT = 4  # the shutdown outlasted [circus] stop_timeout: what was left was SIGKILLed
IDLE_WAKEUP = 3600.0
KILL_SETTLE = 5.0  # seconds a stop past stop_timeout gets to end after its SIGKILLs before gcircusd exits anyway


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


# The channels, in the order they open (and close in reverse, once the watchers are stopped): the PUB socket first,
# so that subscribers connected early see the spawns of the first watchers; the control socket last. With
# curve_secret_key, their tcp:// endpoints are CURVE servers (a.curve_keys), vetted by the arbiter's CurveAuthority.
CHANNELS = (
    ("the event publisher", lambda a: a.pubsub_endpoint,
     lambda a: EventPublisher(a, a.pubsub_endpoint, a.context, a.allow_remote_endpoints, a.take_held_events(),
                              a.curve_keys), False),
    ("the stats channel", lambda a: a.statsd and a.stats_endpoint,
     lambda a: StatsService.for_arbiter(a, a.curve_keys), False),
    ("multicast discovery", lambda a: a.multicast_endpoint and a.endpoint,
     lambda a: DiscoveryResponder(a.multicast_endpoint, a.endpoint), True),  # a host without multicast still runs
    ("the control server", lambda a: a.endpoint, lambda a: ControlServer(
        a, a.endpoint, a.context, a.max_message_size, a.endpoint_owner, a.allow_remote_endpoints,
        a.request_counts, a.audit, IpcMode.of(a, owned=True), a.curve_keys), False),
    ("the HTTP server", lambda a: a.http, lambda a: _http_service(a), False),
)


class Arbiter(core.Arbiter):
    """The Circus-compatible arbiter: gcircus.arbiter.Arbiter with the channels its options name and its plugins.

    Building it imports every plugin class (ValueError if one cannot be loaded: a configuration error, not a
    surprise at start); external plugins run as `plugin:NAME` watchers registered with the others. The channels
    open when it starts and close once its watchers are stopped; the plugins start after the channels (native
    ones subscribe before the first spawn) and stop before the watchers do. The audit log (`audit_log`) opens before
    the channels and closes after them.
    """

    def __init__(self, watchers: list[Watcher], *args, stop_timeout: float | None = None, http: dict | None = None,
                 audit_log: str | None = None, **options):
        super().__init__(watchers, *args, **options)
        self.stop_timeout = stop_timeout  # [circus] stop_timeout: read by Daemon when a shutdown begins
        self.http = http  # the HTTP server's settings (gcircus.http), None when it is off
        self.request_counts = RequestCounts()  # control requests answered, zmq and HTTP together (for /metrics)
        # Opened first and closed last, so that every request the control server answers can be recorded.
        self.audit = AuditLog(audit_log)
        self.attach(self.audit)
        self.shutting_down = gevent.event.Event()  # set when a stop of the whole arbiter begins (see Daemon)
        self.plugin_manager = PluginManager(self, self.plugins, self.endpoint, self.pubsub_endpoint)
        for watcher in self.plugin_manager.watchers():
            self.register(watcher)
        # Attached before the channels, so its ZAP handler listens before any of them binds and stops after them.
        self.curve = self._curve_authority()
        if self.curve is not None:
            self.attach(self.curve)
        for name, wanted, build, optional in CHANNELS:
            self.attach(Channel(self, name, wanted, build, optional))
        self.attach(self.plugin_manager, stop_before_watchers=True)
        self.loaded_config: Config | None = None  # what it was built from, updated by each applied reload
        # Events held back over a hand-over for the subscribers to reconnect: the next event channel publishes them.
        self.held_events: HeldEvents | None = None
        self._reload_lock = gevent.lock.Semaphore()  # one reload or restart from the file at a time
        # Entered around each applied reload: gcircusd's service manager notifier (RELOADING=1 ... READY=1) sets it.
        self.reload_reporter: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext
        # Attached last, so stopped first: the file is not applied to a system that is shutting down.
        self._background_reloads = CoalescedRuns(self.reload_from_config, "reloadconfig")
        self._background_restarts = CoalescedRuns(self.restart, "restart")
        for runs in (self._background_reloads, self._background_restarts):
            self.attach(runs, stop_before_watchers=True)

    def _curve_authority(self) -> CurveAuthority | None:
        """The CURVE side when curve_secret_key is set (its files are read now: ValueError if one is bad)."""
        if not self.curve_secret_key and not self.curve_clients:
            return None
        if not (self.curve_secret_key and self.curve_clients):
            raise ValueError(_CURVE_PAIR)
        from gcircus.control.zap import CurveAuthority  # (and the client module it shares code with: CURVE only)

        return CurveAuthority(self, self.curve_secret_key, self.curve_clients)

    @property
    def curve_keys(self):
        """The daemon's CURVE key pair, which makes its tcp:// channels CURVE servers; None without CURVE."""
        return self.curve.keys if self.curve is not None else None

    def hold_events(self, held: HeldEvents | None) -> None:
        """Hold the events back from now on (`held` collects them) until the event channel opens again."""
        if self.held_events is not None:
            self.held_events.detach()
        self.held_events = held
        if held is not None:
            held.attach(self)

    def take_held_events(self) -> HeldEvents | None:
        """The events held back, for the event channel opening now (once: the next opening holds nothing)."""
        held, self.held_events = self.held_events, None
        return held

    def stop(self, graceful: bool = True) -> None:
        """Stop everything (core.Arbiter.stop), first saying a shutdown began: whoever asked for it (a signal, `quit`,
        an essential watcher's failure), gcircusd bounds it by stop_timeout from now."""
        self.shutting_down.set()
        super().stop(graceful)

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
                plan = config_reload.reload_from_config(self)
            if self.curve is not None:  # keys added to or removed from the directory count from now
                self.curve.reload_clients()
            return plan

    def reload_in_progress(self) -> bool:
        """Whether a reloadconfig or a restart from the file is being applied now."""
        return self._reload_lock.locked()

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
        _check_http(cfg)
        options.update(overrides)
        try:
            arbiter = cls(watchers, plugins=cfg.plugins, sockets=cfg.sockets, config_path=cfg.path,
                          watcher_defaults=cfg.watcher_defaults, access=cfg.access, http=cfg.http, **options)
        except ValueError as exc:  # a plugin that cannot be loaded, or a bad plugin option
            raise ConfigError(f"{cfg.path}: {exc}") from None
        arbiter.loaded_config = cfg  # what reloadconfig compares the file with (see gcircus.reload)
        return arbiter


_CURVE_PAIR = ("curve_secret_key and curve_clients go together: the daemon's secret certificate, and the directory "
               "of the public certificates of the clients it lets in")


def _check_curve(cfg: Config, options: dict) -> bool:
    """True when CURVE is on (curve_secret_key and curve_clients set); ConfigError naming the option whose file or
    directory cannot be used, or the one missing."""
    secret, clients = options.get("curve_secret_key"), options.get("curve_clients")
    if not secret and not clients:
        return False
    if not (secret and clients):
        missing = "curve_clients" if secret else "curve_secret_key"
        raise ConfigError(f"{missing} is missing: {_CURVE_PAIR}", file=cfg.path, section="circus", option=missing)
    for option, read in (("curve_secret_key", read_secret_certificate), ("curve_clients", read_client_keys)):
        try:
            read(options[option])
        except CurveKeyError as exc:
            raise ConfigError(str(exc), file=cfg.path, section="circus", option=option,
                              value=options[option]) from None
    return True


def _http_service(arbiter):
    """The HTTP server's service, its modules imported only now: the server, its routes, the dashboard and
    prometheus_client cost a gcircusd without `[http]` about 4 MiB of RSS and 20 ms of start-up."""
    from gcircus.http.server import HttpService

    return HttpService(arbiter, arbiter.http, arbiter.request_counts, arbiter.audit)


def _check_http(cfg: Config) -> None:
    """ConfigError naming the option if the HTTP server's settings break a rule (gcircus.http.settings)."""
    if not cfg.http:
        return
    from gcircus.http import settings as http_settings  # (with the auth and web modules: only for an [http])

    found = http_settings.problem(cfg.http)
    if found is None:
        return
    option, reason = found
    if cfg.http_from_httpd:  # httpd = true in [circus]: its host is what makes a bind remote
        raise ConfigError(reason.replace("in [http]", "in an [http] section"), file=cfg.path, section="circus",
                          option="httpd_host", value=cfg.circus["httpd_host"])
    raise ConfigError(reason, file=cfg.path, section="http", option=option, value=cfg.http.get(option))


def _check_channels(cfg: Config, options: dict) -> None:
    """ConfigError naming the option if a channel's endpoint is malformed or may not be bound (a remote one without
    CURVE), or if the CURVE files cannot be used."""
    curve = _check_curve(cfg, options)
    if options.get("multicast_endpoint"):
        try:
            parse_multicast_endpoint(options["multicast_endpoint"])
        except DiscoveryError as exc:
            raise ConfigError(str(exc), file=cfg.path, section="circus", option="multicast_endpoint",
                              value=options["multicast_endpoint"]) from None
    checked = ("endpoint", "pubsub_endpoint") + (("stats_endpoint",) if options.get("statsd") else ())
    _check_ipc_group(cfg, options)
    for key in checked:
        try:
            check_bind_allowed(key, options.get(key) or "", bool(options.get("allow_remote_endpoints")), curve)
            check_ipc_directory(key, options.get(key) or "")
        except EndpointNotAllowed as exc:
            raise ConfigError(str(exc), file=cfg.path, section="circus", option=key,
                              value=options.get(key)) from None
        except ValueError as exc:  # e.g. a port that is not a number: urllib's own message
            raise ConfigError(f"not a valid endpoint ({exc})", file=cfg.path, section="circus", option=key,
                              value=options.get(key)) from None


def _check_ipc_group(cfg: Config, options: dict) -> None:
    """ConfigError naming endpoint_group when it is no group of this host (the ipc:// files could not be given it)."""
    group = options.get("endpoint_group")
    if not group or group.isdigit():
        return
    try:
        grp.getgrnam(group)
    except KeyError:
        raise ConfigError(f"unknown group {group!r}", file=cfg.path, section="circus", option="endpoint_group",
                          value=group) from None


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
                   proc_name=proc_name, check_delay=check_delay, background=background, name=name, **kw)


class Daemon:
    """Runs an arbiter as the process's main job (gcircusd, maybe PID 1 of a container): signals, start-up, the
    essential watchers, a shutdown bounded by stop_timeout, the orphan sweep; run() returns the exit code.

    As PID 1 it also reaps every orphan the kernel re-parents to it: gevent's child watcher reaps any child on
    SIGCHLD (waitpid(-1)), not only those gcircus spawned, and a process gcircusd no longer supervises is
    stopped by the sweep at exit. (Not as PID 1, gcircusd is a child subreaper: the same holds for its own tree.)
    """

    def __init__(self, arbiter: Arbiter, handover_state: dict | None = None, pidfile: Pidfile | None = None):
        """`handover_state`: the snapshot of the image this one replaces (gcircusd --handover): its processes are
        adopted instead of spawned. `pidfile`: the locked pidfile, carried over by a hand-over."""
        self.arbiter = arbiter
        self.handover = Handover(self, pidfile)
        arbiter.handover = self.handover  # what `upgrade` finds; an embedded arbiter has none
        if handover_state is not None:
            arbiter.adoption = Adoption(handover_state)
            self.handover.last = handed_over(handover_state)
            if arbiter.pubsub_endpoint:  # the old image's subscribers get what is published until they are back
                arbiter.hold_events(HeldEvents.from_state(handover_state.get("events") or {}))
        self.stopper: gevent.Greenlet | None = None
        # The stopper, SIGHUP reloads and the stop_timeout guard: killed when run() returns.
        self.greenlets = gevent.pool.Group()
        self.start_failure: str | None = None  # why start-up failed (logged), for the CLI to tell once cleaned up
        self.essential = EssentialWatch(arbiter, self.on_essential_failure, stopping=arbiter.shutting_down.is_set)
        self.shutdown_deadline: float | None = None  # monotonic time stop_timeout ends at, once a shutdown began
        self.stop_timed_out = False
        # Set once the arbiter is stopped, or when a stop past stop_timeout does not end even after its SIGKILLs.
        self.finished = gevent.event.Event()
        self.service_manager = ServiceManager(arbiter)  # sd_notify to systemd, when NOTIFY_SOCKET is set

    def run(self, report_ready: Callable[[list[str]], None] | None = None) -> int:
        """Start, supervise until stopped, return the exit code. With `report_ready` (gcircusd --daemon), wait until
        every autostart watcher settled: a failure fails the start, else report_ready(warnings) is called."""
        handlers = self.install_signal_handlers()
        log.info("gcircusd %s starting (pid %d, config %s)", __version__, os.getpid(), self.arbiter.config_path)
        log.debug("watchers by start order: %s", ", ".join(
            f"{w.name} (priority {w.priority}, {w.numprocesses} processes)" for w in self.arbiter.iter_watchers()))
        self.essential.start()
        self.greenlets.spawn(self.bound_shutdown)
        started = False
        try:
            try:
                self.arbiter.start(background=True)  # this loop below waits, with its own signal handling
            except OSError as exc:  # a channel or socket could not be bound: say so plainly
                return self.fail_start(str(exc))
            if self.arbiter.adoption is not None:
                self.after_handover(self.arbiter.adoption)
            self.service_manager.watch_startup()  # READY=1 once the watchers settle
            failed, retrying = self.arbiter.wait_started() if report_ready is not None else ([], [])
            if failed and self.stopper is None:
                # A daemon whose launcher is told of a failure must not linger: stop what did start, then exit.
                return self.fail_start("\n".join(why for _, why in failed))
            if self.stopper is None:
                log.info("gcircusd running: %d watchers, %d processes", self.arbiter.numwatchers(),
                         self.arbiter.numprocesses())
            if report_ready is not None and self.essential.failure is not None:
                self.start_failure = self.essential.failure  # the launcher hears of it once everything stopped
            elif report_ready is not None:
                report_ready([f"gcircusd: warning: watcher {name!r} {why}" for name, why in retrying])
            started = True
            self.wait_stopped()
        except Exception as exc:
            log.exception("gcircusd crashed%s; stopping every process", "" if started else " while starting")
            self.stop_now()
            if not started:  # the terminal (or the --daemon launcher) hears of it too, not only the log
                self.start_failure = f"crashed while starting: {type(exc).__name__}: {exc}"
            return EXIT_START_FAILED
        finally:
            self.essential.stop()
            self.greenlets.kill()
            self.handover.greenlets.kill()
            self.sweep_orphans()
            self.service_manager.close()  # its watchdog pings went on until everything was stopped
            for handler in handlers:
                handler.cancel()
        return self.exit_code()

    def after_handover(self, adoption: Adoption) -> None:
        """The new image adopted what the old one ran: say so, and apply the file if `upgrade --reload` asked."""
        request = adoption.snapshot.get("request") or {}
        log.info("hand-over done: gcircusd %s replaced gcircusd %s (pid %d)%s", __version__,
                 adoption.snapshot["gcircus_version"], os.getpid(),
                 f"; adopted by pid only: {', '.join(adoption.fallbacks)}" if adoption.fallbacks else "")
        for name in sorted(adoption.adopted):
            self.arbiter.get_watcher(name).notify("upgrade", old_version=adoption.snapshot["gcircus_version"],
                                                  new_version=__version__)
        if request.get("reload"):
            self.arbiter.request_reload()

    def install_signal_handlers(self) -> list:
        """TERM/INT stop gracefully (a second INT kills), QUIT stops fast, HUP reloads the file, USR1 reopens logs."""
        signal.signal(signal.SIGWINCH, signal.SIG_IGN)
        return [gevent.signal_handler(signal.SIGTERM, self.on_stop_signal, signal.SIGTERM),
                gevent.signal_handler(signal.SIGINT, self.on_stop_signal, signal.SIGINT),
                gevent.signal_handler(signal.SIGQUIT, self.on_quit),
                gevent.signal_handler(signal.SIGHUP, self.on_reload),
                gevent.signal_handler(signal.SIGUSR1, self.on_reopen_logs),
                gevent.signal_handler(signal.SIGUSR2, self.on_upgrade)]

    def wait_stopped(self) -> None:
        """Block until the arbiter is stopped (by a signal, `quit`, an essential watcher) and its channels closed."""
        self.greenlets.spawn(self.finish_when_stopped)
        # A timed wait keeps the hub referenced: signal watchers do not, so a daemon left with no children
        # (every watcher stopped or given up) would otherwise end in LoopExit instead of waiting for signals.
        while not self.finished.wait(IDLE_WAKEUP):
            pass
        if not self.arbiter.wait_stopped(0):
            return  # given up past stop_timeout: run() kills what is left (its greenlets, then every child)
        if self.stopper is not None:
            self.stopper.join()
        self.arbiter.wait_channels_closed(5)

    def exit_code(self) -> int:
        """What gcircusd exits with once stopped: an essential watcher's failure, an overrun stop_timeout, or 0."""
        if self.essential.failure is not None:
            log.info("gcircusd stopped (exit code %d: %s)", EXIT_ESSENTIAL_FAILED, self.essential.failure)
            return EXIT_ESSENTIAL_FAILED
        if self.stop_timed_out:
            log.info("gcircusd stopped (exit code %d: stop_timeout expired)", EXIT_STOP_TIMEOUT)
            return EXIT_STOP_TIMEOUT
        log.info("gcircusd stopped")
        return EXIT_OK

    def bound_shutdown(self) -> None:
        """Once a shutdown begins, give it [circus] stop_timeout seconds (if set), then SIGKILL every process left.

        The watchers' own graceful timeouts still apply inside the bound: it is the runtime's limit (Kubernetes'
        terminationGracePeriodSeconds, systemd's TimeoutStopSec) that gcircusd keeps under, not a new grace period.
        """
        self.arbiter.shutting_down.wait()
        timeout = self.arbiter.stop_timeout  # as reloadconfig last set it
        if timeout is None:
            return
        self.shutdown_deadline = time.monotonic() + timeout
        if self.arbiter.wait_stopped(timeout):
            return
        self.stop_timed_out = True
        log.error("the shutdown outlasted stop_timeout (%gs): killing every process left", timeout)
        self.arbiter.kill_all()
        if not self.arbiter.wait_stopped(KILL_SETTLE):  # a hook or a plugin still holds the stop: exit regardless
            log.error("the stop is not over %gs after the SIGKILLs: gcircusd exits anyway", KILL_SETTLE)
            self.finished.set()

    def finish_when_stopped(self) -> None:
        self.arbiter.wait_stopped()
        self.finished.set()

    def fail_start(self, reason: str) -> int:
        """Start-up failed: log why and stop what did start (fast: it just started); the CLI says why once done."""
        log.error("%s", reason)
        self.start_failure = reason
        self.stop_now()
        return EXIT_START_FAILED

    def stop_now(self) -> None:
        """Kill every process tree, stop the arbiter without a grace period and wait for its channels to close."""
        self.arbiter.kill_all()
        self.arbiter.stop(graceful=False)
        self.arbiter.wait_channels_closed(5)

    def on_essential_failure(self, reason: str) -> None:
        """An essential watcher is gone for good: stop everything gracefully; gcircusd then exits 3."""
        if self.stopper is None:
            log.error("%s: stopping every watcher (gcircusd exits %d)", reason, EXIT_ESSENTIAL_FAILED)
            self.stopper = self.greenlets.spawn(self.arbiter.stop)

    def on_stop_signal(self, signum: int) -> None:
        if self.stopper is None:
            log.info("received %s: stopping every watcher", signal.Signals(signum).name)
            self.stopper = self.greenlets.spawn(self.arbiter.stop)
        elif signum == signal.SIGINT:
            log.warning("received SIGINT again: killing every process now")
            self.arbiter.kill_all()

    def on_quit(self) -> None:
        log.info("received SIGQUIT: fast stop")
        self.arbiter.kill_all()
        if self.stopper is None:
            self.stopper = self.greenlets.spawn(self.arbiter.stop, False)

    def on_reload(self) -> None:
        if self.stopper is None:
            log.info("received SIGHUP: reloading the configuration file %s", self.arbiter.config_path)
            self.greenlets.spawn(self.reload_config)

    def reload_config(self) -> None:
        """SIGHUP: what `reloadconfig` does. A bad file is logged and changes nothing; gcircusd keeps running."""
        try:
            plan = self.arbiter.reload_from_config()
        except ConfigError as exc:
            log.error("SIGHUP: the configuration was not reloaded, nothing changed: %s", exc)
            return
        except Exception:  # noqa: BLE001 - a failed reload must not bring the supervisor down
            log.exception("SIGHUP: reloading the configuration failed")
            return
        log.info("SIGHUP: configuration reloaded:\n%s", format_plan(plan))

    def on_upgrade(self) -> None:
        """SIGUSR2: what `upgrade` does (gcircus.handover); a refusal is logged, gcircusd keeps running."""
        try:
            started = self.handover.request()
        except HandoverRefused as exc:
            log.error("SIGUSR2: no hand-over, gcircusd keeps running: %s", exc)
            return
        except OSError as exc:
            log.error("SIGUSR2: no hand-over (the state cannot be written: %s), gcircusd keeps running", exc)
            return
        log.info("received SIGUSR2: handing over to a new image of gcircusd (hand-over %s)", started["handover"])

    def on_reopen_logs(self) -> None:
        reopen_log_files()
        self.arbiter.audit.reopen()
        self.arbiter.reopen_streams()
        log.info("received SIGUSR1: log files reopened (the audit log and stream files too)")

    def sweep_orphans(self, grace: float = 5.0) -> None:
        """Stop processes that were re-parented to us (PID 1, or a child subreaper) and no watcher owns any more.

        They are descendants of services that died on their own; gcircusd promises that nothing it started
        outlives it. Within stop_timeout, if set: once it expired they are SIGKILLed at once.
        """
        orphans = [pid for pid in linux.children(os.getpid()) if linux.is_running(pid)]
        if not orphans:
            return
        if self.shutdown_deadline is not None:
            grace = max(0.0, min(grace, self.shutdown_deadline - time.monotonic()))
        log.info("stopping %d orphaned descendant(s): %s", len(orphans), orphans)
        tree = linux.Tree()
        for pid in orphans:
            tree.add_tree(pid)
        tree.stop(signal.SIGTERM, grace)
        # Let the hub reap the last zombies (they are our children: SIGCHLD arrives for each).
        with gevent.Timeout(2, False):
            while linux.children(os.getpid()):
                gevent.sleep(0.01)
