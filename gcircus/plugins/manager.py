"""PluginManager: import the plugins of a config, run native ones as greenlets (restarted with back-off when they
crash) and external ones as singleton `plugin:NAME` watchers running gcircus-plugin."""
from __future__ import annotations

import logging
import sys
import time

import gevent

from gcircus import options as opts
from gcircus.hooks import resolve_name
from gcircus.plugins.base import CircusPlugin, NativePlugin, cfg_to_str
from gcircus.watcher import Watcher

log = logging.getLogger(__name__)

# Circus's plugin classes and the native equivalents a Circus config gets instead.
BUILTINS = {
    "circus.plugins.statsd.StatsdEmitter": "gcircus.plugins.statsd.StatsdEmitter",
    "circus.plugins._statsd.StatsdEmitter": "gcircus.plugins.statsd.StatsdEmitter",
    "circus.plugins.statsd.FullStats": "gcircus.plugins.statsd.FullStats",
    "circus.plugins.resource_watcher.ResourceWatcher": "gcircus.plugins.resource_watcher.ResourceWatcher",
    "circus.plugins.watchdog.WatchDog": "gcircus.plugins.watchdog.WatchDog",
    "circus.plugins.command_reloader.CommandReloader": "gcircus.plugins.command_reloader.CommandReloader",
    "circus.plugins.http_observer.HttpObserver": "gcircus.plugins.http_observer.HttpObserver",
    "circus.plugins.flapping.Flapping": "gcircus.plugins.flapping.Flapping",
}

# Keys of a plugin spec that are not the plugin's own settings: the [plugin:X] options, its name and the config dict.
_RESERVED = ("name", "config", *opts.PLUGIN_OPTIONS)


def is_circus_plugin_class(cls) -> bool:
    """True for a subclass of Circus's own CircusPlugin (checked by name: circus need not be imported here)."""
    return any(base.__module__ == "circus.plugins" and base.__name__ == "CircusPlugin" for base in cls.__mro__)


def _circus_missing_hint(exc: Exception) -> str:
    """What to do when a plugin written for Circus cannot be imported because Circus is not installed."""
    missing = getattr(exc, "name", None) or ""
    if missing != "circus" and not missing.startswith("circus."):
        return ""
    return ("; the plugin is written for Circus, which is not installed: install circus (pip install circus) and "
            "gcircus runs it unchanged with gcircus-plugin, or base it on gcircus.plugins.CircusPlugin")


def load_plugin_class(use: str, name: str = ""):
    """The class `use` names, a Circus built-in being replaced by its native equivalent; ValueError if unusable."""
    label = name or use
    target = BUILTINS.get(use.replace(":", "."), use)
    try:
        cls = resolve_name(target)
    except (ImportError, AttributeError, ValueError) as exc:
        raise ValueError(f"[{label}]: cannot import the plugin class {use!r}: {exc}{_circus_missing_hint(exc)}") \
            from None
    except Exception as exc:  # noqa: BLE001 - importing user code may fail in any way; it is a config error
        raise ValueError(f"[{label}]: importing the plugin class {use!r} failed: {exc!r}") from None
    if not isinstance(cls, type) or not (issubclass(cls, (NativePlugin, CircusPlugin)) or is_circus_plugin_class(cls)):
        raise ValueError(f"[{label}]: {use!r} is not a plugin class (a NativePlugin or a CircusPlugin subclass)")
    return cls


class NativeRunner:
    """Runs one native plugin in a greenlet; a crash is logged and the plugin rebuilt after a doubling delay."""

    def __init__(self, manager: PluginManager, name: str, cls, config: dict):
        self.manager = manager
        self.name = name
        self.cls = cls
        self.config = config
        self.plugin = cls(manager.arbiter, name, **config)  # built now, so bad options are config errors
        self.crashes = 0
        self.greenlet: gevent.Greenlet | None = None

    def start(self) -> None:
        if self.greenlet is None or self.greenlet.dead:
            self.greenlet = gevent.spawn(self._supervise)

    def stop(self, timeout: float = 10.0) -> None:
        if self.greenlet is not None:
            self.greenlet.kill(block=True, timeout=timeout)
            self.greenlet = None

    def _supervise(self) -> None:
        delay = self.manager.restart_delay
        while True:
            started = time.monotonic()
            try:
                if self.plugin is None:
                    self.plugin = self.cls(self.manager.arbiter, self.name, **self.config)
                self.plugin.run()
                return  # run() returns only if a subclass chose to end
            except Exception:  # noqa: BLE001 - a plugin's crash is logged and retried, never fatal to gcircusd
                self.crashes += 1
                if time.monotonic() - started > self.manager.max_restart_delay:
                    delay = self.manager.restart_delay  # it had been healthy for a while: start the back-off over
                log.exception("plugin %s crashed; restarting it in %g s", self.name, delay)
            self.plugin = None
            gevent.sleep(delay)
            delay = min(delay * 2, self.manager.max_restart_delay)


class PluginManager:
    """The plugins of one arbiter.

    Construction imports every `use` and builds the native plugins (ValueError naming the plugin when either
    fails). `watchers()` gives the `plugin:NAME` watcher specs of external plugins, for the arbiter to register
    with the others (so they start in priority order). As a Service of the arbiter, `start()` adds any of them not
    registered yet and starts the native plugins; `stop()` stops the native plugins (external plugin watchers stop
    with the arbiter). `add()` and `remove()` change the plugins of a running arbiter (reloadconfig).
    """

    def __init__(self, arbiter, plugin_dicts: list[dict], endpoint: str | None, pubsub_endpoint: str | None,
                 restart_delay: float = 1.0, max_restart_delay: float = 60.0):
        self.arbiter = arbiter
        self.endpoint = endpoint
        self.pubsub_endpoint = pubsub_endpoint
        self.restart_delay = float(restart_delay)
        self.max_restart_delay = float(max_restart_delay)
        loaded = [self._load(dict(spec)) for spec in plugin_dicts or []]
        self.native = {plugin.name: plugin for plugin in loaded if isinstance(plugin, NativeRunner)}
        self.external = [plugin for plugin in loaded if not isinstance(plugin, NativeRunner)]

    def _load(self, spec: dict) -> NativeRunner | dict:
        """The runner of a native plugin, or the watcher spec of an external one; ValueError if it is unusable."""
        use = spec.get("use")
        name = spec.get("name") or f"plugin:{use}"
        if not name.startswith("plugin:"):
            name = f"plugin:{name}"
        if not use:
            raise ValueError(f"[{name}]: missing 'use' (the plugin class)")
        config = spec.get("config")
        if config is None:  # a flat, Circus-style dict (get_arbiter(plugins=[...]))
            config = {k: v for k, v in spec.items() if k not in _RESERVED}
        config = {k: v for k, v in config.items() if k != "__name__"}
        config["active"] = spec.get("active", config.get("active", True))
        cls = load_plugin_class(use, name)
        if issubclass(cls, NativePlugin):
            try:
                return NativeRunner(self, name, cls, config)
            except (TypeError, ValueError) as exc:
                raise ValueError(f"[{name}]: {exc}") from None
        if not (self.endpoint and self.pubsub_endpoint):
            raise ValueError(f"[{name}]: an external plugin ({use}) needs the endpoint and pubsub_endpoint channels")
        return self._watcher_spec(name, use, spec.get("priority", 1), config)

    def _watcher_spec(self, name: str, use: str, priority, config: dict) -> dict:
        argv = ["-m", "gcircus.cli.gcircus_plugin", "--endpoint", self.endpoint, "--pubsub", self.pubsub_endpoint,
                "--check-delay", str(getattr(self.arbiter, "check_delay", 5.0))]
        plugin_config = {"name": name, **{k: str(v) for k, v in config.items()}}
        argv += ["--config", cfg_to_str(plugin_config)]
        debug = getattr(self.arbiter, "debug", False)
        loglevel = "debug" if debug else getattr(self.arbiter, "loglevel", None)
        if loglevel:
            argv += ["--log-level", str(loglevel)]
        logoutput = getattr(self.arbiter, "logoutput", None)
        if logoutput:
            argv += ["--log-output", str(logoutput)]
        argv.append(use)
        options = {"priority": int(priority), "singleton": True, "copy_env": True, "copy_path": True,
                   "close_child_stdout": not debug, "close_child_stderr": not debug}
        for key, raw in config.items():  # watcher options (numprocesses, graceful_timeout...) work here too
            option = opts.WATCHER_OPTIONS.get(key)
            if option is not None and key not in ("cmd", "args", "name"):
                try:
                    options[key] = option.convert(raw)
                except (TypeError, ValueError) as exc:
                    raise ValueError(f"[{name}]: invalid {key} {raw!r}: {exc}") from None
        return {"name": name, "cmd": sys.executable, "args": argv, **options}

    # -- wiring ----------------------------------------------------------------------------------------------------

    def watchers(self) -> list[Watcher]:
        """Watcher objects for the external plugins (not registered anywhere yet)."""
        return [Watcher(**spec) for spec in self.external]

    def start(self) -> None:
        """Start the native plugins, and add (and start) external plugin watchers the arbiter does not have yet."""
        for spec in self.external:
            try:
                self.arbiter.get_watcher(spec["name"])
            except KeyError:
                self.arbiter.add_watcher(start=True, **spec)
        for runner in self.native.values():
            runner.start()

    def stop(self) -> None:
        """Stop the native plugins (each runs its handle_stop)."""
        gevent.joinall([gevent.spawn(runner.stop) for runner in self.native.values()])

    def add(self, plugin_dicts: list[dict]) -> None:
        """Load more plugins, all or none (ValueError as at construction); start them if the arbiter is running.

        An external plugin's watcher is added to the arbiter either way (started only if it is running).
        """
        loaded = [self._load(dict(spec)) for spec in plugin_dicts]
        for plugin in loaded:
            if isinstance(plugin, NativeRunner):
                self.native[plugin.name] = plugin
                if self.arbiter.running:
                    plugin.start()
            else:
                self.external.append(plugin)
                self.arbiter.add_watcher(start=self.arbiter.running, **plugin)

    def remove(self, name: str) -> None:
        """Stop and forget the plugin called `name` (an external one's watcher is removed and stopped)."""
        runner = self.native.pop(name, None)
        if runner is not None:
            runner.stop()
        for spec in [s for s in self.external if s["name"] == name]:
            self.external.remove(spec)
            try:
                self.arbiter.rm_watcher(name)
            except KeyError:
                pass

    def statuses(self) -> dict[str, str]:
        """Native plugin name -> running / restarting / stopped."""
        return {name: "stopped" if runner.greenlet is None or runner.greenlet.dead
                else "running" if runner.plugin is not None else "restarting"
                for name, runner in self.native.items()}
