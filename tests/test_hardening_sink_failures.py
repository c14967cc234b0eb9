"""Failing and stalled sinks: reported once each way, no traceback per retry, and what a stop loses is counted exactly.

A full disk is a real one: a 64 KiB tmpfs mounted for the test (the tiny_disk fixture).
"""
from __future__ import annotations

import logging
import re
import types

from gevent import subprocess as gsubprocess

from gcircus.streams.outputs import WatcherOutputs
from tests.support.processes import PYTHON
from tests.support.waiting import wait_for

LINE = 100  # bytes per numbered line the writer prints


def writer(tmp_path, count: int) -> str:
    """A command printing `count` numbered lines of LINE bytes, then sleeping."""
    script = tmp_path / "writer.py"
    script.write_text(f"""import os, sys
for i in range({count}):
    sys.stdout.write(("line %06d " % i).ljust({LINE - 1}, "x") + "\\n")
sys.stdout.flush()
os.execvp("sleep", ["sleep", "1000"])
""")
    return f"{PYTHON} {script}"


def _argv0(pid: int) -> bytes:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().split(b"\0")[0]
    except OSError:
        return b""


def complete_lines(path) -> int:
    data = path.read_bytes()
    return len(re.findall(rb"line \d{6} x*\n", data))


def test_a_full_disk_is_reported_once_and_its_recovery_once(tiny_disk, gcircusd):
    filler = tiny_disk / "filler"
    filler.write_bytes(b"f" * 40 * 1024)
    log = tiny_disk / "out.log"
    count = 600  # 60 KB: more than is left beside the filler, less than the whole disk
    running = gcircusd(f"""
        [watcher:writer]
        cmd = {writer(tiny_disk.parent, count)}
        stdout_stream.filename = {log}
        """)
    wait_for(lambda: "writing failed" in running.daemon.output(), 30, message="the sink failing")
    filler.unlink()
    wait_for(lambda: "writing works again" in running.daemon.output(), 30, message="the sink recovering")
    wait_for(lambda: complete_lines(log) == count, 30, message="every line written")
    output = running.daemon.output()
    assert output.count("writing failed") == 1 and output.count("writing works again") == 1
    assert "Traceback" not in output


def test_a_stop_on_a_full_disk_logs_exactly_what_was_not_written(tiny_disk, gcircusd):
    log = tiny_disk / "out.log"
    count = 2000  # 200 KB into 64 KiB
    running = gcircusd(f"""
        [watcher:writer]
        cmd = {writer(tiny_disk.parent, count)}
        stdout_stream.filename = {log}
        """)
    wait_for(lambda: "writing failed" in running.daemon.output(), 30, message="the sink failing")
    # Every line has left the child (it execs sleep once its last write returned): the loss is then exactly known.
    [pid] = running.call("list", name="writer")["pids"]
    wait_for(lambda: _argv0(pid) == b"sleep", 60, message="the writer done writing")
    running.call("stop", name="writer")  # the writer retries for a while (pump.CLOSE_FLUSH), then gives up
    lost = re.compile(r"(\d+) lines \((\d+) bytes\) of output not written at close: the sink kept failing")
    match = wait_for(lambda: lost.search(running.daemon.output()), 30, message="the loss reported")
    lines, size = int(match.group(1)), int(match.group(2))
    assert size == count * LINE - log.stat().st_size  # exactly the bytes missing from the file
    assert lines == count - complete_lines(log)  # a line cut short by the full disk counts as lost
    output = running.daemon.output()
    assert output.count("writing failed") == 1 and "Traceback" not in output


def test_a_stop_with_leftover_writers_on_a_pipe_loses_nothing_written_before(tmp_path, caplog):
    """A pipe held open by a process the watcher left behind no longer keeps the writer from finishing.

    The writer used to be fed for as long as the pipe lived, so its close timed out and reported megabytes "not
    written" to /dev/null, a sink that never fails.
    """
    outputs = WatcherOutputs("leftovers", {"stdout": {"filename": "/dev/null"}})
    leftover = gsubprocess.Popen(["yes", "y" * 200], stdout=gsubprocess.PIPE)
    try:
        outputs.attach(types.SimpleNamespace(pid=leftover.pid, wid=1, env={}, stdout=leftover.stdout, stderr=None))
        writer = next(iter(outputs._writers.values()))
        wait_for(lambda: writer.queued > 0 or writer.mark() > 100, 30, message="output flowing")
        with caplog.at_level(logging.WARNING, logger="gcircus"):
            outputs.close()
        messages = [record.getMessage() for record in caplog.records]
        assert not [m for m in messages if "not written" in m]
        assert any("1 output pipes still held open by leftover processes" in m for m in messages)
    finally:
        leftover.kill()
        leftover.wait()
