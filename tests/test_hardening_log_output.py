"""gcircusd's own output (its log, prefix_output) never blocks the hub, whatever its stdout/stderr pipe does."""
from __future__ import annotations

import fcntl
import os
import re
import signal

import gevent
import pytest
from gevent import subprocess as gsubprocess
from gevent.socket import wait_read

from gcircus.client import Client, NoDaemonError
from tests.support.daemons import GCIRCUSD, make_config
from tests.support.hookfuncs import FLOOD
from tests.support.processes import terminate_child
from tests.support.waiting import wait_for

F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)


def full_pipe() -> tuple[int, int]:
    """A pipe (read end, write end) whose buffer is already full: every write to it blocks until it is read."""
    read_end, write_end = os.pipe()
    fcntl.fcntl(write_end, F_SETPIPE_SZ, 4096)
    flags = fcntl.fcntl(write_end, fcntl.F_GETFL)
    fcntl.fcntl(write_end, fcntl.F_SETFL, flags | os.O_NONBLOCK)
    try:
        while True:
            os.write(write_end, b"#" * 512)
    except BlockingIOError:
        pass
    fcntl.fcntl(write_end, fcntl.F_SETFL, flags)  # the daemon gets a blocking pipe, as from a stalled `| tee`
    return read_end, write_end


def read_to_eof(fd: int, chunks: list[bytes]) -> None:
    os.set_blocking(fd, False)
    while True:
        try:
            data = os.read(fd, 1 << 16)
        except BlockingIOError:
            wait_read(fd)
            continue
        if not data:
            return
        chunks.append(data)


@pytest.fixture
def stalled_daemon(tmp_path):
    """Start gcircusd with stdout and stderr on a full pipe nobody reads; yields (daemon, client, read end)."""
    started = []

    def start(watchers: str, *args: str, circus: str = ""):
        config = make_config(tmp_path, watchers, circus)
        endpoint = re.search(r"endpoint = (\S+)", open(config).read()).group(1)
        read_end, write_end = full_pipe()
        proc = gsubprocess.Popen(GCIRCUSD + [config, *args], stdout=write_end, stderr=write_end)
        os.close(write_end)
        client = Client(endpoint, timeout=10)
        started.append((proc, client, read_end))
        return proc, client, read_end

    yield start
    for proc, client, read_end in started:
        client.close()
        reader = gevent.spawn(read_to_eof, read_end, [])  # let a stuck daemon write, so that it can stop
        terminate_child(proc)
        reader.kill()
        os.close(read_end)


def pids(client) -> list[int]:
    """The watcher's pids; [] while the daemon is not listening yet (a hub blocked for good stays there)."""
    try:
        return client.call("list", name="sleeper", check=True)["pids"]
    except NoDaemonError:
        return []


def watcher_status(client) -> str | None:
    try:
        return client.call("status", name="sleeper", check=True)["status"]
    except NoDaemonError:
        return None


def test_a_stalled_log_output_does_not_stop_supervision(stalled_daemon):
    proc, client, read_end = stalled_daemon("""
        [watcher:sleeper]
        cmd = sleep 1000
        hooks.before_start = tests.support.hookfuncs.flood_the_log
        """, "--log-level", "debug")
    # The log has been blocked since its first line, and the hook logged FLOOD records on top of that.
    first = wait_for(lambda: pids(client), 30, message="the watcher's process")
    os.kill(first[0], signal.SIGKILL)
    wait_for(lambda: pids(client) not in ([], first), 30, message="the killed process replaced")
    assert client.call("list", check=True)["watchers"] == ["sleeper"]

    chunks: list[bytes] = []
    reader = gevent.spawn(read_to_eof, read_end, chunks)

    def gap_reported() -> bool:
        # The count is written with the first record that finds room again: SIGUSR1 logs one each time.
        proc.send_signal(signal.SIGUSR1)
        return b"log records dropped" in b"".join(chunks)

    wait_for(gap_reported, 30, interval=0.2, message="the dropped count written once the pipe is read")
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 0
    reader.join(30)
    output = b"".join(chunks).decode()
    dropped = [int(n) for n in re.findall(r"\[WARNING\] (\d+) log records dropped", output)]
    written = len(re.findall(r"flood record \d+", output))
    assert dropped and sum(dropped) >= 1
    assert written + sum(dropped) >= FLOOD  # every flood record was either written or counted as dropped
    assert output.rstrip().endswith("gcircusd stopped")  # what was queued at exit was written


def test_gcircusd_exits_while_its_log_output_stays_blocked(stalled_daemon):
    proc, client, read_end = stalled_daemon("""
        [watcher:sleeper]
        cmd = sleep 1000
        """)
    wait_for(lambda: pids(client), 30, message="the watcher's process")
    proc.send_signal(signal.SIGTERM)
    # What is still queued gets logqueue.STOP_TIMEOUT seconds to be written, then gcircusd exits regardless.
    assert proc.wait(30) == 0


CHATTY = 12  # watchers whose output goes through gcircusd's stdout: more than gevent's thread pool has workers


def blocked_in_pipe_write(pid: int, thread: str) -> bool:
    try:
        with open(f"/proc/{pid}/task/{thread}/wchan") as f:
            return "pipe_write" in f.read()
    except OSError:
        return False


def test_prefix_output_on_a_stalled_stdout_holds_up_only_its_own_children(stalled_daemon, tmp_path):
    ticks = tmp_path / "ticks.log"
    chatty = "".join(f"""
        [watcher:chatty{n}]
        cmd = sh -c 'echo chatty{n} says hi; exec sleep 1000'
        graceful_timeout = 5
        """ for n in range(CHATTY))
    proc, client, read_end = stalled_daemon(f"""
        [watcher:ticker]
        cmd = sh -c 'while :; do echo tick; sleep 0.05; done'
        stdout_stream.class = FileStream
        stdout_stream.filename = {ticks}
        {chatty}
        """, circus="prefix_output = true")

    def chatty_pids() -> list[int]:
        try:
            return [pid for n in range(CHATTY) for pid in client.call("list", name=f"chatty{n}", check=True)["pids"]]
        except NoDaemonError:
            return []

    wait_for(lambda: len(chatty_pids()) == CHATTY, 30, message="the chatty watchers' processes")
    # Every chatty process has said hi (its line is in gcircusd, which cannot write it): it now runs sleep.
    wait_for(lambda: all(open(f"/proc/{pid}/comm").read().strip() == "sleep" for pid in chatty_pids()), 30,
             message="the chatty processes said hi")
    # Those writes are stuck; a file sink of another watcher still gets its lines.
    size = ticks.stat().st_size if ticks.exists() else 0
    wait_for(lambda: ticks.exists() and ticks.stat().st_size >= size + 10 * len(b"tick\n"), 30,
             message="ticks still written to the file sink")
    assert any(blocked_in_pipe_write(proc.pid, thread) for thread in os.listdir(f"/proc/{proc.pid}/task"))
    assert len(client.call("list", check=True)["watchers"]) == CHATTY + 1

    chunks: list[bytes] = []
    reader = gevent.spawn(read_to_eof, read_end, chunks)
    wait_for(lambda: all(f"chatty{n}[1] | chatty{n} says hi".encode() in b"".join(chunks) for n in range(CHATTY)),
             30, message="every chatty line written once stdout is read again (none dropped)")
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 0
    reader.join(30)


def test_a_failed_greenlet_or_hook_is_logged_through_the_queue_not_printed_on_the_hub(stalled_daemon):
    """gevent prints the traceback of what failed in a greenlet or a pool thread on the hub, to stderr."""
    proc, client, read_end = stalled_daemon("""
        [watcher:sleeper]
        cmd = sleep 1000
        hooks.before_start = tests.support.hookfuncs.explode
        """)
    wait_for(lambda: watcher_status(client) == "stopped", 30, message="the watcher refused by its hook")
    chunks: list[bytes] = []
    reader = gevent.spawn(read_to_eof, read_end, chunks)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 0
    reader.join(30)
    output = b"".join(chunks).decode()
    assert re.search(r"\[ERROR\] .*Traceback.*RuntimeError: hook exploded", output, re.DOTALL)
