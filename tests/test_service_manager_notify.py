"""gcircusd speaks sd_notify to the service manager that runs it: the test binds the datagram socket systemd would
and gives gcircusd its NOTIFY_SOCKET; what arrives there is what systemd would see."""
from __future__ import annotations

import signal
import time

import pytest
from gevent import subprocess as gsubprocess

from gcircus import service_manager
from gcircus.handover.reexec import FAIL_EXEC_ENV
from tests.support.datagrams import DatagramReceiver
from tests.support.gcircusctl import GCIRCUSCTL, ctl_env
from tests.support.readiness import child, read_env
from tests.support.waiting import wait_for


@pytest.fixture
def notify_socket(tmp_path):
    receiver = DatagramReceiver(str(tmp_path / "notify.sock"))
    yield receiver
    receiver.close()


def test_ready_status_reloading_and_stopping_arrive_when_they_happen(gcircusd, notify_socket, tmp_path):
    go = tmp_path / "go"
    running = gcircusd(f"""
        [watcher:app]
        cmd = {child(f"wait={go}", "notify=READY=1")}
        ready = notify
        numprocesses = 2
        graceful_timeout = 5
        """, env={"NOTIFY_SOCKET": notify_socket.address}, started=False)
    notify_socket.wait_notification("STATUS")
    assert running.call("status", name="app")["status"] == "starting"
    assert not any("READY" in message for message in notify_socket.notifications())
    go.touch()
    ready = notify_socket.wait_notification("READY", "1")
    assert running.call("status", name="app")["status"] == "active"  # READY=1 came after the watcher was active
    assert notify_socket.notifications()[ready]["STATUS"] == "1 watchers, 2 processes, 0 failed"

    running.call("reloadconfig")
    reloading = notify_socket.wait_notification("RELOADING", "1", after=ready + 1)
    assert 0 < int(notify_socket.notifications()[reloading]["MONOTONIC_USEC"]) <= time.monotonic_ns() // 1000
    after_reload = notify_socket.wait_notification("READY", "1", after=reloading + 1)

    running.daemon.signal(signal.SIGHUP)
    reloading = notify_socket.wait_notification("RELOADING", "1", after=after_reload + 1)
    notify_socket.wait_notification("READY", "1", after=reloading + 1)

    running.daemon.signal(signal.SIGTERM)
    stopping = notify_socket.wait_notification("STOPPING", "1")
    assert stopping > reloading
    assert running.daemon.wait() == 0


def upgrade(running) -> gsubprocess.CompletedProcess:
    return gsubprocess.run([*GCIRCUSCTL, "--endpoint", running.endpoint, "upgrade"], capture_output=True,
                           text=True, timeout=90, env=ctl_env())


def test_an_upgrade_says_reloading_then_the_new_image_says_ready(gcircusd, notify_socket, tmp_path):
    running = gcircusd(f"""
        [watcher:app]
        cmd = {child(f"env={tmp_path}/env-%PID%.json")}
        graceful_timeout = 5
        """, env={"NOTIFY_SOCKET": notify_socket.address})
    ready = notify_socket.wait_notification("READY", "1")
    done = upgrade(running)
    assert done.returncode == 0, done.stderr
    reloading = notify_socket.wait_notification("RELOADING", "1", after=ready + 1)
    assert 0 < int(notify_socket.notifications()[reloading]["MONOTONIC_USEC"]) <= time.monotonic_ns() // 1000
    again = notify_socket.wait_notification("READY", "1", after=reloading + 1)
    assert notify_socket.notifications()[again]["STATUS"] == "1 watchers, 1 processes, 0 failed"
    assert running.call("upgrade", status=True)["last"]["outcome"] == "done"  # the new image said READY=1
    # The new image kept NOTIFY_SOCKET for itself; a child it spawns does not get it.
    before = set(running.pids("app"))
    running.call("incr", name="app", nb=1, waiting=True)
    (new,) = set(running.pids("app")) - before
    assert "NOTIFY_SOCKET" not in read_env(tmp_path / f"env-{new}.json")
    running.daemon.signal(signal.SIGTERM)
    assert notify_socket.wait_notification("STOPPING", "1", after=again + 1) > again


def test_a_failed_exec_says_ready_again_from_the_old_image(gcircusd, notify_socket):
    running = gcircusd("""
        [watcher:app]
        cmd = sleep 1000
        graceful_timeout = 2
        """, env={"NOTIFY_SOCKET": notify_socket.address, FAIL_EXEC_ENV: "1"})
    ready = notify_socket.wait_notification("READY", "1")
    done = upgrade(running)
    assert done.returncode == 3, done.stderr
    reloading = notify_socket.wait_notification("RELOADING", "1", after=ready + 1)
    again = notify_socket.wait_notification("READY", "1", after=reloading + 1)
    assert notify_socket.notifications()[again]["STATUS"] == "1 watchers, 1 processes, 0 failed"


def test_status_follows_processes_and_failures(gcircusd, notify_socket):
    running = gcircusd("""
        [watcher:sleeper]
        cmd = sleep 1000
        graceful_timeout = 2

        [watcher:broken]
        cmd = /nonexistent/program
        max_retry = 1
        retry_in = 0
        """, env={"NOTIFY_SOCKET": notify_socket.address})
    notify_socket.wait_notification("READY", "1")
    notify_socket.wait_notification("STATUS", "2 watchers, 1 processes, 1 failed")
    running.call("incr", name="sleeper", nb=2)
    notify_socket.wait_notification("STATUS", "2 watchers, 3 processes, 1 failed")


def test_watchdog_pings_at_half_watchdog_usec_to_an_abstract_socket(gcircusd, tmp_path):
    receiver = DatagramReceiver(f"@gcircus-test-notify/{tmp_path.name}")
    try:
        gcircusd("""
            [watcher:sleeper]
            cmd = sleep 1000
            """, env={"NOTIFY_SOCKET": receiver.address, "WATCHDOG_USEC": "200000"})
        receiver.wait_notification("READY", "1")
        wait_for(lambda: sum("WATCHDOG" in m for m in receiver.notifications()) >= 3, 30, message="3 pings")
        assert all(m["WATCHDOG"] == "1" for m in receiver.notifications() if "WATCHDOG" in m)
    finally:
        receiver.close()


def test_the_watchdog_is_fed_only_by_the_process_it_names():
    assert service_manager.watchdog_interval({"WATCHDOG_USEC": "30000000"}, 42) == 15.0
    assert service_manager.watchdog_interval({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "42"}, 42) == 15.0
    assert service_manager.watchdog_interval({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "7"}, 42) is None
    assert service_manager.watchdog_interval({}, 42) is None
    with pytest.raises(ValueError, match="WATCHDOG_USEC='soon'"):
        service_manager.watchdog_interval({"WATCHDOG_USEC": "soon"}, 42)


def test_notify_socket_addresses():
    assert service_manager.socket_address("@systemd/notify") == "\0systemd/notify"
    assert service_manager.socket_address("/run/systemd/notify") == "/run/systemd/notify"
    with pytest.raises(ValueError, match="vsock"):
        service_manager.socket_address("vsock:2:1234")


def test_without_notify_socket_nothing_is_attached(make_arbiter):
    arbiter, _, _ = make_arbiter()
    manager = service_manager.ServiceManager(arbiter, environ={})
    assert not manager.enabled and manager.send(READY=1) is False
    manager.close()
