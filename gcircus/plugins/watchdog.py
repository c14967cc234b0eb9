"""WatchDog: processes send UDP heartbeats; a process silent for loop_rate x max_count seconds is killed gracefully
and its watcher spawns a replacement."""
from __future__ import annotations

import logging
import re
import time

import gevent.pool
from gevent import socket as gsocket

from gcircus.events import Event
from gcircus.options import to_signal
from gcircus.plugins.base import NativePlugin

log = logging.getLogger(__name__)

DEFAULT_MSG_REGEX = re.compile(r"^(?P<pid>.*);(?P<timestamp>.*)$")


class WatchDog(NativePlugin):
    """Options: loop_rate (60), watchers_regex (.*), msg_regex (^(?P<pid>.*);(?P<timestamp>.*)$), max_count (3),
    ip (127.0.0.1), port (1664), watchers_stop_signal, watchers_graceful_timeout."""

    name = "watchdog"

    def __init__(self, arbiter, plugin_name: str = "", **config):
        super().__init__(arbiter, plugin_name, **config)
        self.loop_rate = self.option("loop_rate", 60.0, float)
        self.watchers_regex = self.option("watchers_regex", re.compile(".*"), re.compile)
        self.msg_regex = self.option("msg_regex", DEFAULT_MSG_REGEX, re.compile)
        if "pid" not in self.msg_regex.groupindex:
            raise ValueError(f"{self.plugin_name}: msg_regex needs a (?P<pid>...) group")
        self.max_count = self.option("max_count", 3, int)
        self.ip = self.option("ip", "127.0.0.1")
        self.port = self.option("port", 1664, int)
        self.stop_signal = self.option("watchers_stop_signal", None, to_signal)
        self.graceful_timeout = self.option("watchers_graceful_timeout", None, float)
        self.pid_status: dict[int, dict] = {}
        self.sock = None
        # Not helpers of this plugin (killed when it stops): a kill under way finishes, and stopping waits for it.
        self.kills = gevent.pool.Group()

    def handle_init(self) -> None:
        self.sock = gsocket.socket(gsocket.AF_INET, gsocket.SOCK_DGRAM)
        try:
            self.sock.bind((self.ip, self.port))
        except OSError:
            self.sock.close()
            raise
        log.info("%s listening for heartbeats on udp %s:%d", self.plugin_name, self.ip, self.port)
        now = time.time()
        for watcher in self.supervised_watchers():
            if self._monitored(watcher.name, watcher.res_name):
                for pid in list(watcher.processes):
                    self.pid_status[pid] = {"watcher": watcher, "last_activity": now}
        self.spawn(self._receive_heartbeats)

    def handle_stop(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None
        self.kills.join()

    def _monitored(self, *names: str) -> bool:
        if any(name.startswith("plugin:") for name in names):
            return False
        return any(self.watchers_regex.match(name) for name in names)

    def handle_event(self, event: Event) -> None:
        if event.name == "spawn":
            target = self.watcher_for(event.watcher)
            if target is not None and self._monitored(target.name, target.res_name):
                self.pid_status[event.fields["process_pid"]] = {"watcher": target, "last_activity": time.time()}
        elif event.name == "reap":
            self.pid_status.pop(event.fields["process_pid"], None)

    def _receive_heartbeats(self) -> None:
        while True:
            data, _ = self.sock.recvfrom(1024)
            match = self.msg_regex.match(data.decode("utf-8", "replace").strip())
            if match is None:
                log.warning("%s: unreadable heartbeat %r", self.plugin_name, data)
                continue
            try:
                pid = int(match.group("pid"))
            except ValueError:
                log.warning("%s: heartbeat with a bad pid %r", self.plugin_name, data)
                continue
            status = self.pid_status.get(pid)
            if status is None:
                log.warning("%s: heartbeat from pid %d, which is not monitored", self.plugin_name, pid)
            else:
                status["last_activity"] = time.time()

    def look_after(self) -> None:
        limit = self.loop_rate * self.max_count
        now = time.time()
        for pid, status in list(self.pid_status.items()):
            if now - status["last_activity"] > limit:
                del self.pid_status[pid]
                watcher = status["watcher"]
                log.warning("%s: no heartbeat from pid %d of %s for %.1f s: killing it", self.plugin_name, pid,
                            watcher.name, now - status["last_activity"])
                self.kills.spawn(watcher.kill, pid, self.stop_signal, self.graceful_timeout)
