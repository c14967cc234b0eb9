"""The built-in native plugins against real processes: statsd counters and gauges over UDP, watchdog heartbeats,
resource limits (a CPU-burning child), command reloading (a touched script) and the HTTP observer."""
from __future__ import annotations

import os
import random
import signal
import sys
import time

import gevent
from gevent import pywsgi
from gevent import socket as gsocket

from gcircus.plugins.resource_watcher import ResourceWatcher, _memory_limit
from gcircus.plugins.statsd import StatsdClient
from tests.support.plugins import plugin, supervised, udp_listener
from tests.support.ports import free_port
from tests.support.processes import alive
from tests.support.waiting import wait_for

SLEEPER = {"cmd": "/bin/sleep 1000", "graceful_timeout": 5}


def test_statsd_emitter_counts_every_event_of_a_watcher_under_its_res_name():
    with udp_listener() as statsd:
        plugins = [plugin("statsd", "circus.plugins.statsd.StatsdEmitter", host="127.0.0.1", port=statsd.port,
                          application_name="shop")]
        with supervised([{"name": "Web Worker", **SLEEPER}], plugins) as (arbiter, _):
            statsd.wait("circus.shop.watcher.web_worker.spawn:1|c")
            statsd.wait("circus.shop.watcher.web_worker.start:1|c")
            pid = arbiter.get_watcher("web worker").pids[0]
            os.kill(pid, signal.SIGKILL)
            statsd.wait("circus.shop.watcher.web_worker.reap:1|c")
            wait_for(lambda: len(statsd.matching("circus.shop.watcher.web_worker.spawn:1|c")) == 2,
                     message="replacement spawn counted")


def test_statsd_client_samples_counters_at_the_rate_it_announces():
    with udp_listener() as statsd:
        client = StatsdClient("127.0.0.1", statsd.port, "p", sample_rate=0.5, rng=random.Random(7))
        try:
            for _ in range(200):
                client.increment("hits")
            client.gauge("level", 3)
            wait_for(lambda: statsd.matching("p.level:3|g"), message="gauge")
            counts = statsd.matching("p.hits:")
            assert 60 < len(counts) < 140
            assert set(counts) == {"p.hits:1|c|@0.5"}
        finally:
            client.close()


def test_full_stats_publishes_gauges_per_watcher_every_loop_rate():
    with udp_listener() as statsd:
        plugins = [plugin("stats", "circus.plugins.statsd.FullStats", host="127.0.0.1", port=statsd.port,
                          loop_rate=0.1)]
        with supervised([{"name": "pool", "numprocesses": 2, **SLEEPER}], plugins):
            statsd.wait("circus.app.watcher._stats.pool.watchers_num:2|g")
            for gauge in ("cpu_max", "cpu_sum", "mem_pct_max", "mem_pct_sum"):
                statsd.wait(f"circus.app.watcher._stats.pool.{gauge}:")
            mem_sum = statsd.wait("circus.app.watcher._stats.pool.mem_sum:")
            mem_max = statsd.wait("circus.app.watcher._stats.pool.mem_max:")
            assert int(mem_sum.split(":")[1].split("|")[0]) >= int(mem_max.split(":")[1].split("|")[0]) > 0


def test_watchdog_kills_the_silent_process_gracefully_and_spares_the_one_sending_heartbeats():
    port = free_port()
    events: list = []
    plugins = [plugin("dog", "circus.plugins.watchdog.WatchDog", loop_rate=0.2, max_count=2, port=port)]
    with supervised([{"name": "svc", "numprocesses": 2, **SLEEPER}], plugins, events) as (arbiter, _):
        watcher = arbiter.get_watcher("svc")
        chatty, silent = watcher.pids
        sender = gsocket.socket(gsocket.AF_INET, gsocket.SOCK_DGRAM)

        def beat():
            while True:
                sender.sendto(f"{chatty};{time.time()}".encode(), ("127.0.0.1", port))
                gevent.sleep(0.05)

        beats = gevent.spawn(beat)
        try:
            wait_for(lambda: not alive(silent) and len(watcher.pids) == 2, timeout=30, message="silent one replaced")
            assert chatty in watcher.pids and alive(chatty)
            reaps = [m for t, m in events if t == "watcher.svc.reap" and m["process_pid"] == silent]
            assert reaps and reaps[0]["exit_code"] == -signal.SIGTERM
        finally:
            beats.kill()
            sender.close()


BURN = f"{sys.executable} -c 'while True: pass'"
PARENT_OF_BURNER = (f"{sys.executable} -c \"import subprocess, sys, time; "
                    f"subprocess.Popen([sys.executable, '-c', 'while True: pass']).wait(); time.sleep(1000)\"")


def test_resource_watcher_restarts_a_watcher_over_its_cpu_limit():
    plugins = [plugin("rw", "circus.plugins.resource_watcher.ResourceWatcher", watcher="burner", max_cpu=40,
                      max_mem=99, health_threshold=0, loop_rate=0.15, max_count=1, port=free_port())]
    with supervised([{"name": "burner", "cmd": BURN, "graceful_timeout": 2}], plugins) as (arbiter, _):
        watcher = arbiter.get_watcher("burner")
        first = watcher.pids[0]
        wait_for(lambda: watcher.pids and watcher.pids[0] != first, timeout=30, message="burner restarted")
        assert not alive(first)


def test_resource_watcher_signals_the_child_over_its_limit_and_keeps_the_parent():
    plugins = [plugin("rw", "circus.plugins.resource_watcher.ResourceWatcher", watcher="parent", max_cpu=40,
                      max_mem=99, health_threshold=0, loop_rate=0.15, max_count=1, process_children="true",
                      child_signal="SIGTERM", port=free_port())]
    with supervised([{"name": "parent", "cmd": PARENT_OF_BURNER, "graceful_timeout": 2}], plugins) as (arbiter, _):
        process = next(iter(arbiter.get_watcher("parent").processes.values()))
        child = wait_for(lambda: process.children(), message="burning child")[0]
        wait_for(lambda: not alive(child), timeout=30, message="child signalled")
        # The parent (idle, under its limits) was neither restarted nor signalled: it sleeps on after its child.
        assert arbiter.get_watcher("parent").pids == [process.pid] and alive(process.pid)


def test_resource_watcher_memory_limits_with_units_are_absolute_bytes_min_mem_included():
    assert _memory_limit("85") == (85.0, True)
    assert _memory_limit("512M") == (512 * 1024**2, False)
    rw = ResourceWatcher(None, "plugin:rw", watcher="w", min_mem="1G", max_mem="2G", health_threshold="0",
                         max_cpu="0", port=str(free_port()))
    with udp_listener() as statsd:
        rw.statsd = StatsdClient("127.0.0.1", statsd.port)
        # 0.5 % of memory but 600 MB: under the absolute 1G floor, although far above "1 %".
        assert rw._check("parent", [(0.0, 0.5, 600 * 1024**2)]) is False
        assert rw.counters["parent"]["under_memory"] == 1
        assert rw.counters["parent"]["over_memory"] == 0
        rw.statsd.close()


def _script(path, body: str = "exec /bin/sleep 1000") -> str:
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)
    return str(path)


def test_command_reloader_restarts_a_watcher_whose_script_changes_even_with_arguments(tmp_path):
    script = _script(tmp_path / "serve.sh")
    plugins = [plugin("reloader", "circus.plugins.command_reloader.CommandReloader", loop_rate=0.05)]
    watchers = [{"name": "served", "cmd": f"{script} --port 80", **{"graceful_timeout": 2}},
                {"name": "other", **SLEEPER}]
    with supervised(watchers, plugins) as (arbiter, _):
        served, other = arbiter.get_watcher("served"), arbiter.get_watcher("other")
        before, other_pid = served.pids[0], other.pids[0]
        later = time.time() + 10
        os.utime(script, (later, later))
        wait_for(lambda: served.pids and served.pids[0] != before, timeout=30, message="restart after touch")
        assert other.pids == [other_pid]


def test_command_reloader_finds_a_bare_command_name_through_the_watcher_path(tmp_path):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    script = _script(bindir / "worker-bin")
    plugins = [plugin("reloader", "circus.plugins.command_reloader.CommandReloader", loop_rate=0.05)]
    watchers = [{"name": "w", "cmd": "worker-bin -v", "env": {"PATH": f"{bindir}:/usr/bin:/bin"},
                 "graceful_timeout": 2}]
    with supervised(watchers, plugins) as (arbiter, _):
        watcher = arbiter.get_watcher("w")
        before = watcher.pids[0]
        replacement = tmp_path / "new"
        _script(replacement)
        os.replace(replacement, script)  # a new file at the same path (an upgrade), same second possibly
        wait_for(lambda: watcher.pids and watcher.pids[0] != before, timeout=30, message="restart after replace")


def test_http_observer_times_good_checks_and_restarts_the_watcher_when_the_url_fails():
    state = {"status": "200 OK", "hits": 0}

    def app(environ, start_response):
        state["hits"] += 1
        start_response(state["status"], [("Content-Type", "text/plain")])
        return [b"ok"]

    server = pywsgi.WSGIServer(("127.0.0.1", 0), app, log=None)
    server.start()
    try:
        with udp_listener() as statsd:
            plugins = [plugin("http", "circus.plugins.http_observer.HttpObserver", host="127.0.0.1",
                              port=statsd.port, loop_rate=0.1, timeout=2, restart_on_error="web",
                              check_url=f"http://127.0.0.1:{server.server_port}/health")]
            with supervised([{"name": "web", **SLEEPER}], plugins) as (arbiter, _):
                watcher = arbiter.get_watcher("web")
                first = watcher.pids[0]
                statsd.wait("circus.http_observer.watcher.http_stats.request_time:")
                wait_for(lambda: state["hits"] >= 3, message="several good checks")
                assert watcher.pids == [first]
                state["status"] = "500 Internal Server Error"
                statsd.wait("circus.http_observer.watcher.http_stats.error.500:1|c")
                wait_for(lambda: watcher.pids and watcher.pids[0] != first, timeout=30, message="restart on error")
    finally:
        server.stop()
