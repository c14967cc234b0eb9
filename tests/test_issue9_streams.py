"""Issue 9, streams: a watcher's stream files exist from its start, empty until the first line, as with circusd.

Tools that tail or ship a log file from start-up expect the file to be there. A file that cannot be created is a
sink failure like a failing write: reported once (`stream` event), retried, and created once the path works.
"""
from __future__ import annotations

import json
import os

import gevent

from tests.support.waiting import wait_for


def exists_empty(*paths) -> bool:
    return all(os.path.exists(p) and os.path.getsize(p) == 0 for p in paths)


def test_every_file_sink_creates_its_file_when_the_watcher_starts(tmp_path, gcircusd):
    files = {name: tmp_path / f"{name}.log" for name in ("err", "out", "watched", "wid-1", "wid-2")}
    running = gcircusd(f"""
        [watcher:silent]
        cmd = /bin/sleep 1000
        stderr_stream.class = FileStream
        stderr_stream.filename = {files["err"]}
        stdout_stream.class = TimedRotatingFileStream
        stdout_stream.filename = {files["out"]}
        stdout_stream.rotate_when = H

        [watcher:watched]
        cmd = /bin/sleep 1000
        stdout_stream.class = WatchedFileStream
        stdout_stream.filename = {files["watched"]}

        [watcher:perwid]
        cmd = /bin/sleep 1000
        numprocesses = 2
        stdout_stream.filename = {tmp_path}/wid-$(circus.wid).log
        """)
    wait_for(lambda: exists_empty(*files.values()), message="every stream file created, empty")
    assert len(running.pids("silent")) == 1


def test_a_stream_file_that_cannot_be_created_is_a_retried_sink_failure(tmp_path, gcircusd):
    blocker = tmp_path / "logs"
    blocker.write_text("a file where the log directory should be\n")
    log = blocker / "out.log"
    running = gcircusd(f"""
        [watcher:quiet]
        cmd = /bin/sleep 1000
        autostart = false
        stdout_stream.filename = {log}
        """)
    events: list[tuple[bytes, dict]] = []
    with running.consumer("watcher.quiet.") as consumer:
        collector = gevent.spawn(lambda: [events.append((topic, json.loads(message))) for topic, message in consumer])
        try:
            wait_for(lambda: running.call("set", name="quiet", options={"respawn": True})
                     and any(topic == b"watcher.quiet.updated" for topic, _ in events), message="the subscription")
            running.call("start", name="quiet")
            stream_events = lambda: [m for t, m in events if t == b"watcher.quiet.stream"]  # noqa: E731
            [failure] = wait_for(stream_events, timeout=30, message="a stream event")
            assert failure["name"] == "stdout" and str(blocker) in failure["error"]
            assert running.call("status", name="quiet")["status"] == "active"
            assert running.daemon.output().count("writing failed") == 1

            os.remove(blocker)
            wait_for(lambda: exists_empty(log), timeout=60, message="the file created once the path works")
            wait_for(lambda: len(stream_events()) == 2, timeout=30, message="the recovery event")
            assert stream_events()[1]["error"] is None
            assert running.daemon.output().count("writing failed") == 1
        finally:
            consumer.stop()
            collector.join(2)
