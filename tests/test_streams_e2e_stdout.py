"""Output streams end to end, gcircusd's own output and live changes: unconfigured streams inherit gcircusd's
stdout/stderr, `prefix_output`, StdoutStream and FancyStdoutStream, and `set stdout_stream.filename` (issue 4)."""
from __future__ import annotations

import os
import re

from tests.support.children import stream_writer as child
from tests.support.streams import CHILD, file_holds, read
from tests.support.waiting import wait_for


def output_lines(running) -> list[bytes]:
    return read(running.daemon.log_path).splitlines(keepends=True)


def fd_target(pid: int, fd: int) -> str:
    return os.readlink(f"/proc/{pid}/fd/{fd}")


def test_unconfigured_streams_are_gcircusds_own_stdout_and_stderr(gcircusd):
    running = gcircusd(f"""
        [watcher:plain]
        cmd = {CHILD} outerr 20
        """)
    [pid] = running.pids("plain")
    for fd in (1, 2):
        assert fd_target(pid, fd) == fd_target(running.daemon.pid, fd)
        assert not fd_target(pid, fd).startswith("pipe:")
    expected = [child.line(i, tag) for tag in ("OUT", "ERR") for i in range(20)]
    wait_for(lambda: set(expected) <= set(output_lines(running)), timeout=30, message="the lines in gcircusd's output")


def test_prefix_output_gives_name_wid_lines_in_gcircusds_output(gcircusd):
    running = gcircusd(f"""
        [watcher:web]
        cmd = {CHILD} outerr 50
        numprocesses = 2
        """, circus="prefix_output = true")
    for pid in running.pids("web"):
        assert fd_target(pid, 1).startswith("pipe:") and fd_target(pid, 2).startswith("pipe:")
    expected = {b"web[%d] | %s" % (wid, child.line(i, tag)) for wid in (1, 2) for tag in ("OUT", "ERR")
                for i in range(50)}
    wait_for(lambda: expected <= set(output_lines(running)), timeout=30, message="prefixed lines in gcircusd's output")
    assert not [line for line in output_lines(running) if line.startswith((b"OUT ", b"ERR "))]


def test_stdout_and_fancy_stdout_streams_write_to_gcircusds_stdout(gcircusd):
    running = gcircusd(f"""
        [watcher:plainout]
        cmd = {CHILD} hello PLAIN
        stdout_stream.class = StdoutStream

        [watcher:fancy]
        cmd = {CHILD} hello FANCY
        stdout_stream.class = FancyStdoutStream
        stdout_stream.color = red
        """)
    [plain] = running.pids("plainout")
    [fancy] = running.pids("fancy")
    assert fd_target(plain, 1).startswith("pipe:") and fd_target(fancy, 1).startswith("pipe:")
    wait_for(lambda: b"PLAIN %d\n" % plain in output_lines(running), timeout=30, message="StdoutStream's line")
    colored = re.compile(rb"\x1b\[0;31;40m\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \[%d\] \| FANCY %d\x1b\[0m\n"
                         % (fancy, fancy))
    wait_for(lambda: any(colored.fullmatch(line) for line in output_lines(running)), timeout=30,
             message="FancyStdoutStream's red line")


def test_live_set_of_the_filename_sends_new_processes_to_the_new_file_and_keeps_the_class(tmp_path, gcircusd):
    first, second = tmp_path / "first.log", tmp_path / "second.log"
    running = gcircusd(f"""
        [watcher:tagged]
        cmd = {CHILD} hello GEN
        stdout_stream.class = tests.support.sinks.TaggedFileStream
        stdout_stream.filename = {first}
        """)
    [old] = running.pids("tagged")
    wait_for(file_holds(first, b"TAG GEN %d\n" % old), timeout=30, message="the first process in first.log")
    running.call("set", name="tagged", options={"stdout_stream.filename": str(second)})
    running.call("restart", name="tagged", waiting=True)
    [new] = running.pids("tagged")
    assert new != old
    # Still a TaggedFileStream (TAG), now on the new file; the old file kept only the old process's line.
    wait_for(file_holds(second, b"TAG GEN %d\n" % new), timeout=30, message="the new process in second.log")
    assert read(first) == b"TAG GEN %d\n" % old
