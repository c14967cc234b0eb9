"""Output streams end to end: real gcircusd daemons, real children, real files (issue 4).

Every child is tests/support/children/stream_writer.py, which writes a known, deterministic output; the tests read
the files the daemon wrote and compare them with it byte for byte. This file: capture, file names and line framing.
"""
from __future__ import annotations

import json
import os
import re
import signal

import pytest

from tests.support.children import stream_writer as child
from tests.support.streams import CHILD, diff_at, file_holds, read
from tests.support.waiting import wait_for

# -- byte-exact capture --------------------------------------------------------------------------------------------


def test_binary_and_utf8_output_round_trips_byte_exact(tmp_path, gcircusd):
    payload = (os.urandom(300_000) + "héllo wörld ✓ 日本語 🚀\n".encode() * 2000 + bytes(range(256)) * 200
               + b"\r\n\x00no newline at the end")
    (tmp_path / "payload").write_bytes(payload)
    gcircusd(f"""
        [watcher:cat]
        cmd = {CHILD} cat {tmp_path / 'payload'}
        stdout_stream.class = FileStream
        stdout_stream.filename = {tmp_path / 'out.log'}
        """)
    wait_for(file_holds(tmp_path / "out.log", payload), timeout=30, message="the payload in out.log")


def test_stdout_and_stderr_go_to_their_own_files(tmp_path, gcircusd):
    gcircusd(f"""
        [watcher:both]
        cmd = {CHILD} outerr 2000
        stdout_stream.filename = {tmp_path / 'out.log'}
        stderr_stream.filename = {tmp_path / 'err.log'}
        """)
    wait_for(file_holds(tmp_path / "out.log", child.stream(2000, "OUT")), timeout=30, message="stdout in out.log")
    wait_for(file_holds(tmp_path / "err.log", child.stream(2000, "ERR")), timeout=30, message="stderr in err.log")


def test_wid_in_the_filename_gives_each_worker_its_own_file(tmp_path, gcircusd):
    running = gcircusd(f"""
        [watcher:workers]
        cmd = {CHILD} hello W$(circus.wid)
        numprocesses = 3
        stdout_stream.filename = {tmp_path}/out-$(circus.wid).log
        """)
    contents = {wid: wait_for(lambda wid=wid: read(tmp_path / f"out-{wid}.log"), timeout=30,
                              message=f"out-{wid}.log") for wid in (1, 2, 3)}
    pids = []
    for wid, data in contents.items():
        match = re.fullmatch(rb"W(\d) (\d+)\n", data)
        assert match and int(match[1]) == wid, (wid, data)
        pids.append(int(match[2]))
    assert sorted(pids) == running.pids("workers")
    assert sorted(os.listdir(tmp_path)) == sorted(["circus.ini", "gcircusd.out", "out-1.log", "out-2.log",
                                                   "out-3.log"])


def test_env_variable_in_the_filename_is_expanded(tmp_path, gcircusd):
    logdir = tmp_path / "logs"
    running = gcircusd(f"""
        [watcher:envfile]
        cmd = {CHILD} hello ENV
        stdout_stream.filename = $(circus.env.E2E_LOG_DIR)/out.log

        [watcher:envwid]
        cmd = {CHILD} hello ENVWID
        numprocesses = 2
        stdout_stream.filename = $(circus.env.e2e_log_dir)/w-$(circus.wid).log
        """, env={"E2E_LOG_DIR": str(logdir)})
    # gcircusd answers while its watchers still start: wait for the process rather than read the list at once.
    [pid] = wait_for(lambda: running.pids("envfile"), timeout=30, message="the envfile process")
    wait_for(file_holds(logdir / "out.log", b"ENV %d\n" % pid), timeout=30, message="logs/out.log")
    for wid in (1, 2):
        assert wait_for(lambda wid=wid: read(logdir / f"w-{wid}.log"), timeout=30).startswith(b"ENVWID ")
    assert sorted(os.listdir(logdir)) == ["out.log", "w-1.log", "w-2.log"]


# -- line framing --------------------------------------------------------------------------------------------------


def test_lines_longer_than_the_read_size_arrive_whole(tmp_path, gcircusd):
    size = 2_200_000  # more than two reads (and two MAX_LINE pieces) of the pump
    expected = bytes(range(32, 127)) * (size // 95) + b"\nshort\n" + b"x" * (size // 2) + b"\n"
    gcircusd(f"""
        [watcher:raw]
        cmd = {CHILD} huge {size}
        stdout_stream.filename = {tmp_path / 'raw.log'}

        [watcher:stamped]
        cmd = {CHILD} huge {size}
        stdout_stream.filename = {tmp_path / 'stamped.log'}
        stdout_stream.time_format = %H:%M:%S
        """)
    wait_for(file_holds(tmp_path / "raw.log", expected), timeout=30, message="the long lines in raw.log")
    stamped = wait_for(lambda: read(tmp_path / "stamped.log").count(b"\n") >= 3 and read(tmp_path / "stamped.log"),
                       timeout=4, message="three lines in stamped.log")
    lines = stamped.split(b"\n")
    assert lines[-1] == b"" and len(lines) == 4  # one prefix per line: no line was cut where a read ended
    prefix = re.compile(rb"\d\d:\d\d:\d\d \[\d+\] \| ")
    assert [prefix.sub(b"", line, count=1) for line in lines[:-1]] == expected.split(b"\n")[:-1]
    assert all(prefix.match(line) for line in lines[:-1])


@pytest.mark.parametrize("sink", ["FileStream", "tests.support.sinks.SlowFileStream"])
def test_child_killed_mid_burst_has_all_its_output_in_the_file_at_reap(tmp_path, gcircusd, sink):
    # The slow sink (20 MB/s) makes sure a backlog is still queued when the child dies.
    counter = tmp_path / "counter"
    running = gcircusd(f"""
        [watcher:burst]
        cmd = {CHILD} burst {counter}
        respawn = false
        stdout_stream.class = {sink}
        stdout_stream.filename = {tmp_path / 'burst.log'}
        {"stdout_stream.bytes_per_second = 20000000" if "Slow" in sink else ""}
        """)
    [pid] = running.pids("burst")
    with running.consumer("watcher.burst.") as consumer:
        # A subscription reaches the daemon asynchronously: make events until one gets through.
        wait_for(lambda: running.call("set", name="burst", options={"respawn": False})
                 and consumer.wait_for("watcher.burst.updated", 0.2), message="the subscription")
        wait_for(lambda: len(read(counter)) == 8 and int.from_bytes(read(counter), "little") > 2_000_000,
                 timeout=60, message="2 MB written")
        os.kill(pid, signal.SIGKILL)
        topic, message = consumer.wait_for("watcher.burst.reap", 30) or (None, None)
        data = read(tmp_path / "burst.log")  # right at the reap event
    assert topic == b"watcher.burst.reap" and json.loads(message)["process_pid"] == pid
    written = int.from_bytes(read(counter), "little")
    assert len(data) >= written, f"{written - len(data)} bytes the child wrote were not in the file at its reap"
    expected, count = b"", 0
    while len(expected) < len(data):
        expected += child.stream_block(count, 4096)
        count += 4096
    assert data == expected[:len(data)], f"output differs at byte {diff_at(data, expected)}"


def test_two_children_writing_into_one_file_never_break_a_line(tmp_path, gcircusd):
    count = 10000
    go = tmp_path / "go"
    running = gcircusd(f"""
        [watcher:pair]
        cmd = {CHILD} lines {count} W$(circus.wid) 3000 {go} 0.02
        numprocesses = 2
        stdout_stream.filename = {tmp_path / 'pair.log'}
        """)
    wait_for(lambda: len(running.pids("pair")) == 2, message="both children")
    go.touch()  # both write at once, for about 3 s each (134 writes 20 ms apart), so a busy machine still overlaps them
    data = wait_for(lambda: read(tmp_path / "pair.log").count(b"\n") >= 2 * count and read(tmp_path / "pair.log"),
                    timeout=60, message="both children's lines")
    lines = data.splitlines(keepends=True)
    by_tag = {b"W1": [], b"W2": []}
    for line in lines:
        by_tag[line[:2]].append(line)
    assert b"".join(by_tag[b"W1"]) == child.stream(count, "W1")
    assert b"".join(by_tag[b"W2"]) == child.stream(count, "W2")
    # The two really wrote at the same time (else this test proves nothing about interleaving).
    assert sum(a[:2] != b[:2] for a, b in zip(lines, lines[1:])) >= 3


def test_time_format_prefixes_every_line_not_every_chunk(tmp_path, gcircusd):
    running = gcircusd(f"""
        [watcher:pieces]
        cmd = {CHILD} pieces 300 P$(circus.wid)
        numprocesses = 3
        stdout_stream.filename = {tmp_path / 'pieces.log'}
        stdout_stream.time_format = %Y-%m-%d %H:%M:%S

        [watcher:blocks]
        cmd = {CHILD} lines 3000 B 8192
        stdout_stream.filename = {tmp_path / 'blocks.log'}
        stdout_stream.time_format = %Y-%m-%d %H:%M:%S
        """)
    stamped = re.compile(rb"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \[(\d+)\] \| (.*\n)")
    pieces = wait_for(lambda: read(tmp_path / "pieces.log").count(b"\n") >= 900 and read(tmp_path / "pieces.log"),
                      timeout=4, message="900 lines in pieces.log")
    pids = set(running.pids("pieces"))
    by_tag: dict[bytes, list[bytes]] = {}
    pid_of: dict[bytes, set[int]] = {}
    for line in pieces.splitlines(keepends=True):
        match = stamped.fullmatch(line)
        assert match, f"not a stamped line: {line!r}"
        by_tag.setdefault(match[2][:2], []).append(match[2])
        pid_of.setdefault(match[2][:2], set()).add(int(match[1]))
    assert sorted(by_tag) == [b"P1", b"P2", b"P3"]
    for tag, lines in by_tag.items():
        assert b"".join(lines) == child.stream(300, tag.decode())
        assert len(pid_of[tag]) == 1 and pid_of[tag] <= pids
    blocks = wait_for(lambda: read(tmp_path / "blocks.log").count(b"\n") >= 3000 and read(tmp_path / "blocks.log"),
                      timeout=4, message="3000 lines in blocks.log")
    matches = [stamped.fullmatch(line) for line in blocks.splitlines(keepends=True)]
    assert all(matches)
    assert b"".join(m[2] for m in matches) == child.stream(3000, "B")
