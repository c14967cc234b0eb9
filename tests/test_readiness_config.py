"""Readiness and health written in a config file and run by gcircusd: a tcp readiness check and an http health
check parsed from the ini do their job; a malformed check stops gcircusd with exit 2 naming file, section and
option; gcircusd's own NOTIFY_SOCKET (a service manager's) never reaches a child.
"""
from __future__ import annotations

import json

from gcircus.consumer import Consumer
from tests.support.daemons import make_config, run_cli
from tests.support.ports import free_port
from tests.support.readiness import child, read_env
from tests.support.waiting import wait_for


def test_tcp_readiness_and_http_health_from_the_ini(gcircusd, tmp_path):
    ready_port, health_port, go = free_port(), free_port(), tmp_path / "go"
    ok = f"{tmp_path}/ok-%PID%"  # each process creates its own: the test makes one sick by removing it
    running = gcircusd(f"""
        [watcher:app]
        cmd = {child(f"touch={ok}", f"http={health_port}:{ok}", f"wait={go}", f"tcp={ready_port}")}
        ready = tcp:127.0.0.1:{ready_port}
        ready_timeout = 60
        health = http://127.0.0.1:{health_port}/health
        health_interval = 0.2
        health_retries = 2
        health_timeout = 2
        graceful_timeout = 5
        """, started=False)  # it starts only once ready, which this test controls
    [pid] = wait_for(lambda: running.pids("app"), 30, message="the app process")
    assert running.call("status", name="app")["status"] == "starting"
    with Consumer([b"watcher.app."], endpoint=running.pubsub, timeout=0.1) as events:
        go.touch()
        wait_for(lambda: running.call("status", name="app")["status"] == "active", 60, message="active")
        (tmp_path / f"ok-{pid}").unlink()
        topic, body = events.wait_for(b"watcher.app.unhealthy", 60) or (None, None)
    assert topic is not None, "no unhealthy event"
    unhealthy = json.loads(body)
    assert unhealthy["process_pid"] == pid and unhealthy["detail"] == "2 health checks failed: http 503"
    wait_for(lambda: (lambda pids: len(pids) == 1 and pid not in pids)(running.pids("app")), 60,
             message="the replacement")
    wait_for(lambda: running.call("status", name="app")["status"] == "active", 60, message="active again")


def test_a_malformed_check_in_the_ini_is_refused_with_exit_2(tmp_path):
    config = make_config(tmp_path, """
        [watcher:web]
        cmd = sleep 1000
        ready = tcp:nohostport
        """)
    done = run_cli(config)
    assert done.returncode == 2, done
    assert f"{config}: [watcher:web] ready = 'tcp:nohostport': expected HOST:PORT" in done.stderr


def test_gcircusds_own_notify_socket_never_reaches_a_child(gcircusd, tmp_path):
    service_manager = {"NOTIFY_SOCKET": "@systemd-notify-of-gcircusd", "WATCHDOG_USEC": "30000000",
                       "WATCHDOG_PID": "1"}
    running = gcircusd(f"""
        [watcher:plain]
        cmd = {child(f"env={tmp_path}/plain.json")}
        copy_env = true

        [watcher:notified]
        cmd = {child(f"env={tmp_path}/notified.json", "notify=READY=1")}
        copy_env = true
        ready = notify
        """, env=service_manager)
    plain, notified = read_env(tmp_path / "plain.json"), read_env(tmp_path / "notified.json")
    assert not set(service_manager) & set(plain)
    assert plain["PATH"]  # copy_env copied gcircusd's environment
    assert notified["NOTIFY_SOCKET"].startswith("@gcircus/") and "WATCHDOG_USEC" not in notified
    wait_for(lambda: running.call("status", name="notified")["status"] == "active", 60, message="active")
