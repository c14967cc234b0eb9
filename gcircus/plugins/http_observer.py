"""HttpObserver: GET a URL every loop_rate seconds; on an error, count it and optionally restart a watcher."""
from __future__ import annotations

import logging
import time
import urllib.error
import urllib.request

import gevent
from gevent import monkey

from gcircus.plugins.statsd import PeriodicEmitter

log = logging.getLogger(__name__)


def fetch(url: str, timeout: float) -> int:
    """The HTTP status of a GET of `url`; raises OSError (URLError, HTTPError, timeouts) on failure."""
    with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - the URL is the operator's
        response.read()
        return response.status


class HttpObserver(PeriodicEmitter):
    """Options: check_url (http://localhost/), timeout (10), restart_on_error (a watcher name), loop_rate (60), plus
    the statsd options (application_name defaults to http_observer)."""

    name = "http_observer"
    default_app_name = "http_observer"

    def __init__(self, arbiter, plugin_name: str = "", **config):
        super().__init__(arbiter, plugin_name, **config)
        self.check_url = self.option("check_url", "http://localhost/")
        self.timeout = self.option("timeout", 10.0, float)
        self.restart_on_error = self.option("restart_on_error")

    def _get(self) -> int:
        if monkey.is_module_patched("socket"):
            return fetch(self.check_url, self.timeout)  # urllib already uses gevent sockets
        # Plain sockets would block the hub: the request runs in gevent's thread pool instead.
        return gevent.get_hub().threadpool.spawn(fetch, self.check_url, self.timeout).get()

    def look_after(self) -> None:
        started = time.monotonic()
        try:
            self._get()
        except (OSError, ValueError) as exc:
            code = exc.code if isinstance(exc, urllib.error.HTTPError) else 599
            log.warning("%s: %s failed: %s", self.plugin_name, self.check_url, exc)
            self.statsd.increment("http_stats.error")
            self.statsd.increment(f"http_stats.error.{code}")
            if self.restart_on_error:
                watcher = self.watcher_for(self.restart_on_error)
                if watcher is None:
                    log.warning("%s: no watcher named %r to restart", self.plugin_name, self.restart_on_error)
                    return
                self.statsd.increment("http_stats.restart_on_error")
                watcher.restart()
            return
        self.statsd.timed("http_stats.request_time", int((time.monotonic() - started) * 1000))
