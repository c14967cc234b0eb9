"""Output streams end to end, file management: rotation by size and time under load, logrotate-style renames
(WatchedFileStream, SIGUSR1, `reopen`), and a failing sink that must not stall anything else (issue 4)."""
from __future__ import annotations

import errno
import json
import os
import re
import signal
import subprocess

import gevent
import pytest

from tests.support.children import stream_writer as child
from tests.support.streams import CHILD, file_holds, read
from tests.support.waiting import wait_for

END = re.compile(rb"END (\d+)\n\Z")


def whole_lines(*chunks: bytes) -> bool:
    return all(chunk.endswith(b"\n") for chunk in chunks)


def rotated_chain(log) -> list[str]:
    """A size-rotated file and its backups, oldest first: log.N ... log.1, log."""
    directory, base = os.path.split(str(log))
    numbered = sorted((int(name[len(base) + 1:]) for name in os.listdir(directory)
                       if re.fullmatch(re.escape(base) + r"\.\d+", name)), reverse=True)
    return [f"{log}.{n}" for n in numbered] + [str(log)]


def rotating_writer(gcircusd, log, count: int, block: int, pause: float) -> bytes:
    """Run a child writing `count` lines in `block`-byte writes into a FileStream rotating at 64 KB; its output."""
    gcircusd(f"""
        [watcher:rot]
        cmd = {CHILD} lines {count} L {block} - {pause}
        stdout_stream.filename = {log}
        stdout_stream.max_bytes = 64KB
        stdout_stream.backup_count = 500
        """)
    expected = child.stream(count)
    wait_for(lambda: sum(len(read(path)) for path in rotated_chain(log)) == len(expected), timeout=30,
             message="all the output on disk")
    return expected


@pytest.mark.parametrize("pause", [0, 0.0005], ids=["full-speed", "paced"])
def test_size_rotation_under_load_loses_duplicates_and_splits_nothing(tmp_path, gcircusd, pause):
    log = tmp_path / "rot.log"
    expected = rotating_writer(gcircusd, log, 30000, 4096, pause)
    files = rotated_chain(log)
    parts = [read(path) for path in files]
    assert b"".join(parts) == expected
    assert whole_lines(*parts), "a line was split across two files"
    assert len(files) >= (2 if pause == 0 else 10), f"only {len(files)} files: rotation did not keep up"


def test_size_rotation_keeps_files_near_max_bytes_at_full_speed(tmp_path, gcircusd):
    log = tmp_path / "rot.log"
    rotating_writer(gcircusd, log, 15000, 1 << 20, 0)
    sizes = {os.path.basename(path): os.path.getsize(path) for path in rotated_chain(log)}
    longest_line = max(map(len, child.stream(15000).splitlines()))
    assert all(size <= 64 * 1024 + longest_line for size in sizes.values()), sizes


def test_timed_rotation_with_lowercase_when_under_load_is_exact(tmp_path, gcircusd):
    log = tmp_path / "timed.log"
    gcircusd(f"""
        [watcher:timed]
        cmd = {CHILD} timed 1.5
        stdout_stream.class = TimedRotatingFileStream
        stdout_stream.filename = {log}
        stdout_stream.rotate_when = s
        """)
    # The last record always goes to the current file (a rotation happens before a record is written).
    end = wait_for(lambda: END.search(read(log)), timeout=30, message="END in timed.log")
    rotated = sorted(name for name in os.listdir(tmp_path) if re.fullmatch(r"timed\.log\.\d{14}", name))
    parts = [read(tmp_path / name) for name in rotated] + [read(log)]
    assert rotated, "1.5 s of output at rotate_when = s never rotated"
    assert b"".join(parts) == child.stream(int(end[1])) + end[0]
    assert whole_lines(*parts), "a line was split across two files"
    assert all(parts[:-1]), "an empty file was rotated"


@pytest.mark.parametrize("how", ["WatchedFileStream", "SIGUSR1", "reopen", "reopen app"])
def test_logrotate_rename_new_lines_go_to_the_new_file_and_nothing_is_lost(tmp_path, gcircusd, how):
    log, moved, stop = tmp_path / "app.log", tmp_path / "app.log.1", tmp_path / "stop"
    running = gcircusd(f"""
        [watcher:app]
        cmd = {CHILD} until {stop}
        stdout_stream.class = {"WatchedFileStream" if how == "WatchedFileStream" else "FileStream"}
        stdout_stream.filename = {log}
        """)
    wait_for(lambda: read(log).count(b"\n") >= 20, timeout=30, message="lines in app.log")
    os.rename(log, moved)  # what logrotate does (without copytruncate)
    if how == "SIGUSR1":
        running.daemon.signal(signal.SIGUSR1)
    elif how.startswith("reopen"):
        running.call("reopen", **({"name": "app"} if how == "reopen app" else {}))
    wait_for(lambda: read(log).count(b"\n") >= 20, timeout=30, message="new lines in a new app.log")
    stop.touch()
    end = wait_for(lambda: END.search(read(log)), timeout=30, message="END in the new app.log")
    old, new = read(moved), read(log)
    assert old + new == child.stream(int(end[1])) + end[0]
    assert whole_lines(old, new)
    assert old.count(b"\n") >= 20


@pytest.fixture
def tiny_fs(tmp_path):
    """A 1 MiB tmpfs (root only); requested before gcircusd, so it is unmounted after the daemon stopped."""
    mountpoint = tmp_path / "tiny"
    mountpoint.mkdir()
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mountpoint)],
                            capture_output=True, text=True)
    if result.returncode:
        pytest.skip(f"cannot mount a tmpfs: {result.stderr.strip()}")
    try:
        yield mountpoint
    finally:
        if subprocess.run(["umount", str(mountpoint)], capture_output=True).returncode:
            subprocess.run(["umount", "-l", str(mountpoint)], check=True)


def fill(path) -> None:
    """Write `path` until its file system is full."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        while True:
            os.write(fd, b"\0" * 65536)
    except OSError as exc:
        assert exc.errno == errno.ENOSPC, exc
    finally:
        os.close(fd)


def test_a_full_disk_sink_stalls_nothing_else_reports_once_and_recovers_losslessly(tiny_fs, tmp_path, gcircusd):
    go, stop, count = tmp_path / "go", tmp_path / "stop", 4000
    full_log, fine_log = tiny_fs / "full.log", tmp_path / "fine.log"
    running = gcircusd(f"""
        [watcher:full]
        cmd = {CHILD} lines {count} A 4096 {go} 0
        stdout_stream.filename = {full_log}

        [watcher:fine]
        cmd = {CHILD} until {stop}
        stdout_stream.filename = {fine_log}
        """)
    events: list[tuple[bytes, dict]] = []
    with running.consumer("watcher.") as consumer:
        collector = gevent.spawn(lambda: [events.append((topic, json.loads(message))) for topic, message in consumer])
        try:
            wait_for(lambda: running.call("set", name="fine", options={"respawn": True})
                     and any(topic == b"watcher.fine.updated" for topic, _ in events), message="the subscription")
            fill(tiny_fs / "filler")
            go.touch()
            stream_events = lambda: [(t, m) for t, m in events if t.endswith(b".stream")]  # noqa: E731
            wait_for(stream_events, timeout=30, message="a stream event")
            [(topic, failure)] = stream_events()
            assert topic == b"watcher.full.stream" and failure["name"] == "stdout"
            assert "No space left on device" in failure["error"]

            # While `full` cannot write, `fine` keeps flowing and the daemon answers.
            lines = read(fine_log).count(b"\n")
            wait_for(lambda: read(fine_log).count(b"\n") > lines + 25, timeout=30, message="fine's output flowing")
            assert running.call("status", name="fine")["status"] == "active"
            assert len(stream_events()) == 1, "the failure was reported more than once"

            os.remove(tiny_fs / "filler")
            wait_for(file_holds(full_log, child.stream(count, "A")), timeout=30, message="full's output after recovery")
            wait_for(lambda: len(stream_events()) == 2, timeout=30, message="the recovery event")
            assert stream_events()[1] == (b"watcher.full.stream", {**stream_events()[1][1], "error": None})
        finally:
            consumer.stop()
            collector.join(2)
    stop.touch()
    end = wait_for(lambda: END.search(read(fine_log)), timeout=30, message="END in fine.log")
    assert read(fine_log) == child.stream(int(end[1])) + end[0]
