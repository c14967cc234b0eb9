"""gcircusctl upgrade / SIGUSR2: gcircusd re-executes itself in place and every child, socket and pipe carries over.

Real daemons, real children: the daemon's pid, its children's pids and wids stay; a child that dies during the
hand-over is reaped and replaced after it; a listening socket keeps its inode; a counter's output is byte-exact.
"""
from __future__ import annotations

import os
import signal
import socket
import stat

import pytest
from gevent import subprocess as gsubprocess

from gcircus.handover import capture, snapshot
from gcircus.handover.adopt import BROKEN_ENV
from gcircus.handover.reexec import FAIL_EXEC_ENV
from gcircus.process import Process, SpawnSpec, kick_reaper
from tests.support.daemons import run_cli
from tests.support.gcircusctl import GCIRCUSCTL, ctl_env
from tests.support.ports import free_port
from tests.support.processes import alive
from tests.support.waiting import wait_for

SLEEPERS = """
    [watcher:sl]
    cmd = sleep 1000
    numprocesses = 3
    graceful_timeout = 2
    """


def upgrade(running, *args: str) -> gsubprocess.CompletedProcess:
    return gsubprocess.run([*GCIRCUSCTL, "--endpoint", running.endpoint, "upgrade", *args], capture_output=True,
                           text=True, timeout=90, env=ctl_env())


def wids(running, watcher: str) -> dict[int, tuple]:
    """pid -> (wid, start time, state, ready time, restarts), from `procs`: what must carry over unchanged."""
    rows = running.call("procs", name=watcher)["processes"]
    return {row["pid"]: (row["wid"], row["started"], row["state"], row["ready_at"], row["restarts"]) for row in rows}


def test_upgrade_keeps_the_daemon_and_every_child(gcircusd):
    running = gcircusd(SLEEPERS)
    before = wids(running, "sl")
    assert len(before) == 3
    done = upgrade(running)
    assert done.returncode == 0, done.stderr
    assert " -> " in done.stdout
    assert running.daemon.proc.poll() is None  # the same process: its pid did not change
    assert wids(running, "sl") == before
    assert running.call("status", name="sl")["status"] == "active"
    assert "hand-over done" in running.daemon.output()
    status = running.call("upgrade", status=True)
    assert status["pid"] == running.daemon.pid and status["last"]["outcome"] == "done"


def test_sigusr2_hands_over_too(gcircusd):
    running = gcircusd(SLEEPERS)
    before = running.pids("sl")
    running.daemon.signal(signal.SIGUSR2)
    wait_for(lambda: "hand-over done" in running.daemon.output(), timeout=30, message="the hand-over")
    wait_for(lambda: _answers_with(running, "sl", before), timeout=30, message="the same pids after SIGUSR2")


def test_a_child_killed_during_the_hand_over_is_reaped_and_replaced(gcircusd):
    running = gcircusd(SLEEPERS)
    before = running.pids("sl")
    victim = before[0]
    os.kill(victim, signal.SIGKILL)  # dies while (or just before) the daemon re-executes itself
    done = upgrade(running)
    assert done.returncode == 0, done.stderr

    def replaced():
        pids = running.pids("sl")
        return len(pids) == 3 and victim not in pids and set(before[1:]) <= set(pids)
    wait_for(replaced, timeout=30, message="the killed child replaced, the others kept")
    wait_for(lambda: not alive(victim), message="the killed child reaped")


def test_a_listening_socket_carries_over(gcircusd):
    port = free_port()
    running = gcircusd(f"""
        [socket:web]
        host = 127.0.0.1
        port = {port}

        [watcher:web]
        cmd = sleep 1000
        use_sockets = True
        numprocesses = 2
        graceful_timeout = 2
        """)
    before = _socket_inodes(running.daemon.pid)
    pids = running.pids("web")
    with socket.create_connection(("127.0.0.1", port), timeout=5):  # waits in the listen queue across the exec
        done = upgrade(running)
        assert done.returncode == 0, done.stderr
    assert _listening_inode(port) in _socket_inodes(running.daemon.pid)
    assert _listening_inode(port) in before
    assert running.pids("web") == pids
    with socket.create_connection(("127.0.0.1", port), timeout=5):
        pass


def counter_watcher(out) -> str:
    """A watcher `count` writing 1, 2, 3... one per line to the file `out`: any gap or repeat shows a lost byte."""
    return f"""
        [watcher:count]
        cmd = sh -c 'i=0; while :; do i=$((i+1)); echo $i; sleep 0.001; done'
        stdout_stream.class = FileStream
        stdout_stream.filename = {out}
        graceful_timeout = 2
        """


def test_stream_output_is_byte_exact_across_upgrades(gcircusd, tmp_path):
    out = tmp_path / "count.log"
    running = gcircusd(counter_watcher(out))
    pids = running.pids("count")
    for _ in range(2):
        seen = _lines(out)
        done = upgrade(running)
        assert done.returncode == 0, done.stderr
        wait_for(lambda seen=seen: _lines(out) > seen + 200, timeout=30, message="more output after the upgrade")
    assert running.pids("count") == pids
    numbers = [int(line) for line in out.read_text().splitlines()[:-1]]  # the last line may still be partial
    assert numbers == list(range(1, len(numbers) + 1))


def test_a_broken_rebuild_falls_back_to_adopting_the_children(gcircusd):
    running = gcircusd(SLEEPERS, env={BROKEN_ENV: "1"})
    before = wids(running, "sl")
    done = upgrade(running)
    assert done.returncode == 0, done.stderr
    assert wids(running, "sl") == before
    assert "adopting its processes by pid only" in running.daemon.output()


def test_a_failed_exec_keeps_the_old_image_running_as_it_was(gcircusd, tmp_path):
    out = tmp_path / "count.log"
    running = gcircusd(counter_watcher(out), env={FAIL_EXEC_ENV: "1"})
    pids = running.pids("count")
    seen = _lines(out)
    done = upgrade(running)
    assert done.returncode == 3, running.daemon.output()[-3000:]
    assert "keeps running as it was" in done.stderr and FAIL_EXEC_ENV in done.stderr
    assert running.pids("count") == pids
    wait_for(lambda: _lines(out) > seen + 200, timeout=30, message="its output read again after the undo")
    numbers = [int(line) for line in out.read_text().splitlines()[:-1]]
    assert numbers == list(range(1, len(numbers) + 1))
    assert running.call("upgrade", status=True)["last"]["outcome"] == "failed"


def test_a_crash_looping_watcher_keeps_its_back_off(gcircusd):
    running = gcircusd("""
        [watcher:crash]
        cmd = sh -c 'exit 1'
        retry_in = 600
        """, started=False)

    def backing_off():
        header = running.call("procs", name="crash")["watcher"]
        return header if header["state"] == "backoff" else None
    before = wait_for(backing_off, timeout=30, message="the watcher backing off")
    done = upgrade(running)
    assert done.returncode == 0, done.stderr
    after = running.call("procs", name="crash")["watcher"]
    assert (after["state"], after["reason"], after["backoffs"], after["retry_at"]) == (
        before["state"], before["reason"], before["backoffs"], before["retry_at"])


def test_upgrade_reload_applies_the_file_after_the_hand_over(gcircusd):
    running = gcircusd(SLEEPERS)
    before = running.pids("sl")
    config = running.daemon.config
    with open(config, "a") as f:
        f.write("\n[watcher:more]\ncmd = sleep 1000\n")
    done = upgrade(running, "--reload")
    assert done.returncode == 0, done.stderr
    wait_for(lambda: len(running.pids("more")) == 1 if "more" in running.call("list")["watchers"] else False,
             timeout=30, message="the new watcher added by the reload")
    assert running.pids("sl") == before


def test_an_embedded_arbiter_refuses_to_upgrade(make_arbiter):
    arbiter, client, _ = make_arbiter({"name": "sl", "cmd": "sleep 1000"})
    reply = client.call("upgrade")
    assert reply["status"] == "error"
    assert "embedded" in reply["reason"]
    assert arbiter.get_watcher("sl").pids  # nothing changed


@pytest.mark.parametrize(("content", "message"), [
    (b"{", "not valid JSON"),
    (b'{"version": 1}', "'gcircus_version' is missing"),
    (b"[]", "must be an object"),
])
def test_a_bad_snapshot_is_refused_with_a_clear_error(content, message):
    fd = os.memfd_create("test", 0)
    os.write(fd, content)
    os.lseek(fd, 0, os.SEEK_SET)
    with pytest.raises(snapshot.SnapshotError, match=message):
        snapshot.read(fd)


def _answers_with(running, watcher: str, pids: list[int]) -> bool:
    try:
        return running.pids(watcher) == pids
    except Exception:  # noqa: BLE001 - the new image is not listening yet
        return False


def _lines(path) -> int:
    try:
        return path.read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


def _socket_inodes(pid: int) -> set[int]:
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            info = os.stat(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if stat.S_ISSOCK(info.st_mode):
            inodes.add(info.st_ino)
    return inodes


def _listening_inode(port: int) -> int:
    """The inode of the socket listening on 127.0.0.1:port (from /proc/net/tcp)."""
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            fields = line.split()
            if fields[1].endswith(f":{port:04X}") and fields[3] == "0A":
                return int(fields[9])
    raise AssertionError(f"nothing listens on port {port}")


def test_the_snapshot_holds_what_the_new_image_needs(make_arbiter):
    """max_age deadlines as the time left, readiness, and a round trip through the memfd that validates."""
    arbiter, _, _ = make_arbiter({"name": "aged", "cmd": "sleep 1000", "numprocesses": 2, "max_age": 600,
                                   "max_age_variance": 0})
    watcher = arbiter.get_watcher("aged")
    wait_for(lambda: len(watcher.pids) == 2 and watcher.status() == "active", message="2 ready processes")
    fd = snapshot.write(capture.take(arbiter, {}, None, None))
    state = snapshot.read(fd)
    entries = state["watchers"][0]["processes"]
    assert sorted(entry["pid"] for entry in entries) == sorted(watcher.pids)
    assert [entry["wid"] for entry in entries] == [1, 2]
    assert all(0 < entry["expires_in"] <= 600 and entry["state"] == "ready" for entry in entries)
    assert state["watchers"][0]["state"] == "active"


def test_the_pidfile_stays_locked_across_the_upgrade(gcircusd, tmp_path):
    pidfile = tmp_path / "gcircusd.pid"
    running = gcircusd(SLEEPERS, circus=f"pidfile = {pidfile}\n")
    done = upgrade(running)
    assert done.returncode == 0, done.stderr
    assert pidfile.read_text().split() == [str(running.daemon.pid)]
    second = run_cli(running.daemon.config, timeout=30)
    assert second.returncode == 1
    assert "is locked by a running gcircusd" in second.stderr + second.stdout


def test_adopting_a_child_that_already_exited_reports_its_status():
    """A child that exited while gcircusd re-executed itself is a zombie: adopted, it is reaped with its status."""
    pid = os.posix_spawn("/bin/sh", ["sh", "-c", "exit 7"], dict(os.environ))
    os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)  # a zombie now, not reaped (the hub has not run)
    exits = []
    process = Process.adopt("gone", 1, SpawnSpec("gone", "true"), pid, 0.0, on_exit=exits.append)
    kick_reaper()
    assert process.wait(timeout=10) == 7
    assert exits == [process]


def test_adopting_a_pid_that_is_not_a_child_is_refused():
    with pytest.raises(ChildProcessError):
        Process.adopt("init", 1, SpawnSpec("init", "true"), 1, 0.0)
