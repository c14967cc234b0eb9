"""The two plugin forms: `CircusPlugin` (a separate process talking to gcircusd over zmq, Circus's API) and
`NativePlugin` (a greenlet inside gcircusd that receives events on the arbiter's notify path and acts on watchers
directly).

Both read their options from a flat dict of strings, as a `[plugin:NAME]` section gives them.
"""
from __future__ import annotations

import json
import logging
import re
import time

import gevent
import gevent.event
import gevent.pool
import gevent.queue
import zmq
import zmq.green as gzmq

from gcircus.events import TOPIC_PREFIX, Event, split_topic
from gcircus.options import to_bool

log = logging.getLogger(__name__)


def cfg_to_str(cfg: dict) -> str:
    """Serialise plugin options as Circus's `--config` value: `k:v:::k2:v2`, sorted by key."""
    return ":::".join(f"{key}:{value}" for key, value in sorted(cfg.items()))


def str_to_cfg(data: str | None) -> dict:
    """Parse a `--config` value back into a dict of strings (items without a colon are skipped)."""
    cfg: dict[str, str] = {}
    for item in (data or "").split(":::"):
        key, sep, value = item.partition(":")
        if sep:
            cfg[key.strip()] = value.strip()
    return cfg


class CircusPlugin:
    """Circus's plugin API, run on gevent: a SUB socket feeding `handle_recv`, a DEALER client for `call`/`cast`.

    Subclasses override `handle_recv(data)` (data = [topic_bytes, json_bytes]) and optionally `handle_init()` and
    `handle_stop()`. `start()` blocks until `stop()` is called (from another greenlet, or a signal handler). An
    inactive plugin (`active = false`) starts, stays idle and stops on request: it does not exit and get respawned.
    """

    name = ""
    call_timeout = 30.0

    def __init__(self, endpoint: str, pubsub_endpoint: str, check_delay: float, ssh_server=None, **config):
        self.config = config
        self.active = to_bool(config.get("active", True))
        self.endpoint = endpoint
        self.pubsub_endpoint = pubsub_endpoint
        self.check_delay = float(check_delay)
        self.ssh_server = ssh_server
        self.running = False
        self.client = None
        self.sub_socket = None
        self._greenlets = gevent.pool.Group()  # the event reader
        self._stopped = gevent.event.Event()

    # -- lifecycle -------------------------------------------------------------------------------------------------

    def start(self) -> None:
        """Connect, call handle_init, deliver events until stop(); an inactive plugin only waits for stop()."""
        if self.ssh_server:
            raise ValueError("gcircus plugins do not support SSH tunnels")
        self.running = True
        if not self.active:
            log.info("plugin %s is inactive: idle until stopped", self.name or type(self).__name__)
            self._wait_stopped()
            return
        self.handle_init()
        from gcircus.client import Client  # (the plugin's own process: gcircusd has no use for it)

        self.client = Client(self.endpoint, timeout=self.call_timeout, green=True)
        self.sub_socket = gzmq.Context.instance().socket(zmq.SUB)
        self.sub_socket.linger = 0
        self.sub_socket.setsockopt(zmq.SUBSCRIBE, TOPIC_PREFIX.encode())
        self.sub_socket.connect(self.pubsub_endpoint)
        self._greenlets.spawn(self._read_events)
        try:
            self._wait_stopped()
        finally:
            self._close()

    def _wait_stopped(self) -> None:
        # A timed wait: signal handlers alone do not keep gevent's loop alive, and an idle plugin has nothing else.
        while not self._stopped.wait(3600):
            pass

    def stop(self) -> None:
        """Call handle_stop (once) and make start() return."""
        if not self.running:
            self._stopped.set()
            return
        self.running = False
        current = gevent.getcurrent()  # stop() called from handle_recv: _close ends that greenlet later
        gevent.killall([g for g in self._greenlets if g is not current])  # no event after handle_stop
        try:
            if self.active:
                self.handle_stop()
        finally:
            self._stopped.set()

    def _read_events(self) -> None:
        while True:
            frames = self.sub_socket.recv_multipart()
            data = [frames[0], frames[-1] if len(frames) > 1 else b""]
            try:
                self.handle_recv(data)
            except Exception:  # noqa: BLE001 - one bad event must not end the plugin
                log.exception("plugin %s failed on %r", self.name or type(self).__name__, data[0])

    def _close(self) -> None:
        self._greenlets.kill(block=True)
        if self.sub_socket is not None:
            self.sub_socket.close(linger=0)
        if self.client is not None:
            self.client.close()

    # -- talking to the daemon -------------------------------------------------------------------------------------

    def call(self, command: str, **props) -> dict:
        """Send a command and wait (at most call_timeout seconds) for the reply with the same id."""
        return self.client.call(command, **props)

    def cast(self, command: str, **props) -> None:
        """Send a command without waiting for a reply."""
        self.client.cast(command, **props)

    # -- to override -----------------------------------------------------------------------------------------------

    def handle_recv(self, data: list) -> None:
        """Every event gcircusd publishes: data = [topic_bytes, json_bytes]."""
        raise NotImplementedError

    def handle_init(self) -> None:
        """Called before the sockets are connected."""

    def handle_stop(self) -> None:
        """Called when the plugin is stopped."""

    # -- helpers ---------------------------------------------------------------------------------------------------

    @staticmethod
    def split_data(data: list) -> tuple[str, str, bytes]:
        """[topic, msg] -> (watcher res_name, action, msg)."""
        topic, msg = data
        name, action = split_topic(topic)
        return name, action, msg

    @staticmethod
    def load_message(msg: bytes | str) -> dict:
        return json.loads(msg)


class PluginCrashed(Exception):
    """A helper greenlet of a native plugin died: the whole plugin is restarted."""


class NativePlugin:
    """A plugin run as a greenlet inside gcircusd.

    It receives events through `arbiter.subscribe` (the notify path every subscriber uses) in `handle_event`, calls
    `look_after()` every `loop_rate` seconds when loop_rate is set, and acts by calling the arbiter and its watchers
    directly: blocking calls block this plugin's greenlet only. `run()` does all of that until the greenlet is
    killed; an exception from any of it ends `run()`, and the PluginManager restarts the plugin with back-off.
    """

    name = ""
    loop_rate: float | None = None

    def __init__(self, arbiter, plugin_name: str = "", **config):
        self.arbiter = arbiter
        self.plugin_name = plugin_name or self.name or type(self).__name__
        self.config = config
        self.active = to_bool(config.get("active", True))
        self._helpers = gevent.pool.Group()
        self._runner: gevent.Greenlet | None = None

    def option(self, key: str, default=None, convert=str):
        """The option `key` converted with `convert`; ValueError naming the plugin and the option if it is bad."""
        raw = self.config.get(key)
        if raw is None or raw == "":
            return default
        try:
            return convert(raw)
        except (TypeError, ValueError, re.error) as exc:
            raise ValueError(f"{self.plugin_name}: invalid {key} {raw!r}: {exc}") from None

    # -- running ---------------------------------------------------------------------------------------------------

    def run(self) -> None:
        """Serve events and timer rounds until killed (GreenletExit); handle_stop runs on the way out."""
        self._runner = gevent.getcurrent()
        if not self.active:
            log.info("plugin %s is inactive: idle", self.plugin_name)
            gevent.event.Event().wait()
        events: gevent.queue.Queue = gevent.queue.Queue()
        self.arbiter.subscribe(events.put)  # never blocks: the watcher publishing the event goes on at once
        try:
            self.handle_init()
            rate = float(self.loop_rate) if self.loop_rate else None
            due = time.monotonic() + rate if rate else None
            while True:
                timeout = None if due is None else max(0.0, due - time.monotonic())
                try:
                    event = events.get(timeout=timeout)
                except gevent.queue.Empty:
                    pass
                else:
                    self.handle_event(event)
                if due is not None and time.monotonic() >= due:
                    self.look_after()
                    due = time.monotonic() + rate
        finally:
            self.arbiter.unsubscribe(events.put)
            self._helpers.kill(block=False)
            try:
                self.handle_stop()
            except Exception:  # noqa: BLE001 - cleaning up must not hide why the plugin ended
                log.exception("plugin %s failed to stop cleanly", self.plugin_name)

    def spawn(self, func, *args, **kwargs) -> gevent.Greenlet:
        """Run `func` in a helper greenlet tied to this plugin: killed when it stops; its crash restarts the plugin."""
        helper = self._helpers.spawn(func, *args, **kwargs)
        runner = self._runner

        def crashed(g: gevent.Greenlet) -> None:
            if runner is not None and not runner.dead:
                runner.kill(PluginCrashed(f"helper {func.__name__} failed: {g.exception!r}"), block=False)

        helper.link_exception(crashed)
        return helper

    # -- finding watchers ------------------------------------------------------------------------------------------

    def watcher_for(self, res_name: str):
        """The watcher whose name or published res_name is `res_name`, or None."""
        try:
            return self.arbiter.get_watcher(res_name)
        except KeyError:
            return next((watcher for watcher in list(self.arbiter.watchers) if watcher.res_name == res_name), None)

    def supervised_watchers(self) -> list:
        """Every watcher except the ones running external plugins (`plugin:*`)."""
        return [w for w in list(self.arbiter.watchers) if not w.name.startswith("plugin:")]

    # -- to override -----------------------------------------------------------------------------------------------

    def handle_init(self) -> None:
        """Called in the plugin's greenlet before events flow (open sockets here, not in __init__)."""

    def handle_event(self, event: Event) -> None:
        """Every watcher event (gcircus.events.Event: the watcher's name, the event's name, fields and time)."""

    def look_after(self) -> None:
        """Called every loop_rate seconds."""

    def handle_stop(self) -> None:
        """Called when the plugin stops (killed, or after a crash): close what handle_init opened."""

