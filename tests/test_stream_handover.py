"""Handing a child's output pipes from one gcircusd image to the next (in-place upgrade): no line lost or doubled.

Each test plays both images in one process: WatcherOutputs.export in the old one, its description through JSON,
the old one closed, then WatcherOutputs.adopt in a NEW WatcherOutputs on the same fds, with real children writing
numbered lines cut into random pieces, and real files (or gcircusd's own stdout/stderr, captured) as sinks.
"""
from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import struct
import termios
import time
import types

import pytest
from gevent import subprocess as gsubprocess

from gcircus.streams import pump
from gcircus.streams.handover import HandoverError
from gcircus.streams.outputs import WatcherOutputs
from tests.support.children import counter_writer, handover_adopter
from tests.support.children.counter_writer import counter_line
from tests.support.processes import PYTHON
from tests.support.streams import REPO, file_holds, read
from tests.support.waiting import wait_for

NAME = "counter"


@pytest.fixture
def children():
    """Starts counter_writer children (and other scripts) with piped output; kills and reaps them at the end."""
    started: list[gsubprocess.Popen] = []

    def start(*args: str, script: str = counter_writer.__file__) -> gsubprocess.Popen:
        proc = gsubprocess.Popen([PYTHON, script, *args], stdout=gsubprocess.PIPE, stderr=gsubprocess.PIPE)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


@contextlib.contextmanager
def console_in_files(tmp_path):
    """gcircusd's own stdout and stderr (fds 1 and 2) sent to files, as paths to read them by.

    capfd does not fit: its readouterr truncates the capture while the console threads may be writing to it. Used
    in the test body: pytest's own capture sets fds 1 and 2 again between a fixture's setup and the test.
    """
    paths = {"out": tmp_path / "console.out", "err": tmp_path / "console.err"}
    saved = {fd: os.dup(fd) for fd in (1, 2)}
    try:
        for fd, path in zip((1, 2), paths.values()):
            target = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            os.dup2(target, fd)
            os.close(target)
        yield paths
    finally:
        for fd, copy in saved.items():
            os.dup2(copy, fd)
            os.close(copy)


def process_of(proc, piped: bool = True) -> types.SimpleNamespace:
    """What WatcherOutputs needs of a process; the adopting image has no pipe objects, only the exported fds."""
    return types.SimpleNamespace(pid=proc.pid, wid=1, env={}, stdout=proc.stdout if piped else None,
                                 stderr=proc.stderr if piped else None)


def hand_over(old: WatcherOutputs, proc, confs: dict, prefix_output: bool = False, **export) -> tuple:
    """The old image exports and goes away; a new one adopts the description (through JSON, as across the exec)."""
    exported = json.loads(json.dumps(old.export(process_of(proc, piped=False), **export)))
    old.close()
    new = WatcherOutputs(NAME, confs, prefix_output=prefix_output)
    new.adopt(process_of(proc, piped=False), exported)
    return new, exported


def expected(tag: str, count: int, prefix: bytes = b"") -> bytes:
    return b"".join(prefix + counter_line(tag, i) for i in range(count)) + prefix + b"END %d\n" % count


def ended(data: bytes) -> int | None:
    """The count in the END line `data` finishes with, or None before it."""
    if not data.endswith(b"\n"):
        return None
    last = data[:-1].rpartition(b"\n")[2]
    return int(last.rpartition(b"END ")[2]) if b"END " in last else None


def more_lines(path, than: int):
    """A wait_for predicate: the file holds more than `than` lines."""
    return lambda: read(path).count(b"\n") > than


def test_counter_lines_cross_five_hand_overs_once_each_in_order(tmp_path, children):
    out, err = tmp_path / "out.log", tmp_path / "err.log"
    confs = {"stdout": {"filename": str(out)}, "stderr": {"filename": str(err)}}
    proc = children("outerr", "0", str(tmp_path / "stop"), "7")
    outputs = WatcherOutputs(NAME, confs)
    outputs.prepare()
    outputs.attach(process_of(proc))
    try:
        for round_ in range(5):
            wait_for(more_lines(out, read(out).count(b"\n") + 50), message=f"output before hand-over {round_}")
            wait_for(more_lines(err, 50), message="output on stderr")
            outputs, exported = hand_over(outputs, proc, confs)
            assert set(exported["streams"]) == {"stdout", "stderr"}
            assert all(stream["fd"] is not None for stream in exported["streams"].values())
        (tmp_path / "stop").touch()
        count = wait_for(lambda: ended(read(out)) is not None and ended(read(err)), message="END on both streams")
        assert read(out) == expected("C", ended(read(out)))
        assert read(err) == expected("E", count)
    finally:
        outputs.close()


def test_prefixed_output_crosses_hand_overs_byte_exact(tmp_path, children):
    """prefix_output: the `counter[1] | ` sinks on gcircusd's own stdout and stderr, line by line, once each."""
    with console_in_files(tmp_path) as console:
        prefixed_output_crosses_hand_overs(tmp_path, children, console)


def prefixed_output_crosses_hand_overs(tmp_path, children, console) -> None:
    proc = children("outerr", "0", str(tmp_path / "stop"), "11")
    outputs = WatcherOutputs(NAME, {}, prefix_output=True)
    outputs.attach(process_of(proc))
    try:
        for round_ in range(3):
            wait_for(more_lines(console["out"], read(console["out"]).count(b"\n") + 50),
                     message=f"output before hand-over {round_}")
            outputs, _exported = hand_over(outputs, proc, {}, prefix_output=True)
        (tmp_path / "stop").touch()
        wait_for(lambda: ended(read(console["out"])) is not None and ended(read(console["err"])), message="END on both")
        prefix = f"{NAME}[1] | ".encode()
        assert read(console["out"]) == expected("C", ended(read(console["out"])), prefix)
        assert read(console["err"]) == expected("E", ended(read(console["err"])), prefix)
    finally:
        outputs.close()


HEAD_THEN_REST = """import os, sys, time
os.write(1, b"head of a line ")
open(sys.argv[1] + ".wrote", "w").close()
while not os.path.exists(sys.argv[1]):
    time.sleep(0.005)
os.write(1, b"and its rest\\nnext line\\n")
"""


def pipe_holds(fd: int) -> int:
    return struct.unpack("i", fcntl.ioctl(fd, termios.FIONREAD, b"\0\0\0\0"))[0]


def test_the_line_head_the_reader_holds_is_handed_over(tmp_path, children, monkeypatch):
    """The reader read `head of a line ` and waits for its newline: the new image continues that very line."""
    monkeypatch.setattr(pump, "IDLE_FLUSH", 600.0)  # the head is held, not passed on as a partial record
    script, go, log = tmp_path / "head.py", tmp_path / "go", tmp_path / "out.log"
    script.write_text(HEAD_THEN_REST)
    confs = {"stdout": {"filename": str(log)}}
    proc = children(str(go), script=str(script))
    probe = os.dup(proc.stdout.fileno())  # the same pipe: how much of it the reader has not read yet
    outputs = WatcherOutputs(NAME, confs)
    outputs.attach(process_of(proc))
    try:
        wait_for(lambda: (tmp_path / "go.wrote").exists() and pipe_holds(probe) == 0, message="the head read")
        outputs, exported = hand_over(outputs, proc, confs)
        assert base64.b64decode(exported["streams"]["stdout"]["partial"]) == b"head of a line "
        assert read(log) == b""
        go.touch()
        wait_for(file_holds(log, b"head of a line and its rest\nnext line\n"), message="the whole line once")
    finally:
        os.close(probe)
        outputs.close()


def test_a_line_left_open_in_a_prefixed_sink_is_continued_not_prefixed_again(tmp_path, children):
    """The head went out as a partial record (the child paused): the new sink continues the line, no new prefix."""
    with console_in_files(tmp_path) as console:
        line_left_open_is_continued(tmp_path, children, console)


def line_left_open_is_continued(tmp_path, children, console) -> None:
    script, go = tmp_path / "head.py", tmp_path / "go"
    script.write_text(HEAD_THEN_REST)
    proc = children(str(go), script=str(script))
    outputs = WatcherOutputs(NAME, {}, prefix_output=True)
    outputs.attach(process_of(proc))
    try:
        wait_for(lambda: read(console["out"]) == b"counter[1] | head of a line ", message="the head passed on")
        outputs, exported = hand_over(outputs, proc, {}, prefix_output=True)
        assert exported["streams"]["stdout"]["line_open"] is True
        go.touch()
        wait_for(file_holds(console["out"], b"counter[1] | head of a line and its rest\ncounter[1] | next line\n"),
                 message="the rest, continuing the line")
    finally:
        outputs.close()


def test_export_after_the_child_exited_still_yields_everything(tmp_path, children):
    out, err = tmp_path / "out.log", tmp_path / "err.log"
    confs = {"stdout": {"filename": str(out)}, "stderr": {"filename": str(err)}}
    proc = children("outerr", "300", str(tmp_path / "unused"), "3")
    outputs = WatcherOutputs(NAME, confs)
    outputs.attach(process_of(proc))
    try:
        assert proc.wait() == 0  # all of its output is in the pipes or already read, the pipes at end of file
        outputs, _exported = hand_over(outputs, proc, confs)
        wait_for(file_holds(out, expected("C", 300)), message="all of stdout")
        wait_for(file_holds(err, expected("E", 300)), message="all of stderr")
    finally:
        outputs.close()


def test_export_while_the_sink_is_slow_waits_boundedly_and_hands_over_the_rest(tmp_path, children):
    """The old sink takes ~3 kB/s: the export gives up at its timeout and the new image writes what was left."""
    log = tmp_path / "out.log"
    slow = {"stdout": {"class": "tests.support.sinks.SlowFileStream", "filename": str(log), "bytes_per_second": "3000"}}
    fast = {"stdout": {"class": "tests.support.sinks.SlowFileStream", "filename": str(log),
                       "bytes_per_second": "100000000"}}
    proc = children("out", "400", str(tmp_path / "unused"), "5")
    outputs = WatcherOutputs(NAME, slow)
    outputs.attach(process_of(proc))
    try:
        assert proc.wait() == 0
        wait_for(lambda: log.exists() and log.stat().st_size > 0, message="the slow sink writing")
        outputs, exported = hand_over(outputs, proc, fast, timeout=0.05)
        stdout = exported["streams"]["stdout"]
        assert stdout["unwritten"] and not any(item["in_flight"] for item in stdout["unwritten"])
        wait_for(file_holds(log, expected("C", 400)), message="all of it, once, in order")
    finally:
        outputs.close()


def test_the_description_and_the_fds_are_enough_across_a_fork_and_exec(tmp_path, children):
    """A new Python program, fork+exec'd with only the fds and the JSON description, carries the output on."""
    out, err = tmp_path / "out.log", tmp_path / "err.log"
    confs = {"stdout": {"filename": str(out)}, "stderr": {"filename": str(err)}}
    proc = children("outerr", "0", str(tmp_path / "stop"), "13")
    old = WatcherOutputs(NAME, confs)
    old.attach(process_of(proc))
    wait_for(more_lines(out, 50), message="output before the hand-over")
    exported = old.export(process_of(proc, piped=False))
    old.close()
    fds = [stream["fd"] for stream in exported["streams"].values()]
    state = {"pid": proc.pid, "wid": 1, "confs": confs, "prefix_output": False, "exported": exported}
    adopter = gsubprocess.Popen([PYTHON, handover_adopter.__file__], pass_fds=fds, cwd=REPO,
                                env={**os.environ, "GCIRCUS_TEST_HANDOVER": json.dumps(state)})
    try:
        for fd in fds:
            os.close(fd)  # the old image is gone: only the new program reads the pipes now
        wait_for(more_lines(out, read(out).count(b"\n") + 50), message="the new program writing")
        (tmp_path / "stop").touch()
        assert adopter.wait(timeout=60) == 0
        assert read(out) == expected("C", ended(read(out)))
        assert read(err) == expected("E", ended(read(err)))
    finally:
        if adopter.poll() is None:
            adopter.kill()
            adopter.wait()


def sink_of(outputs: WatcherOutputs, name: str = "stdout"):
    """The sink of the watcher's one `name` writer, as built (reaches into the object: rotation state is internal)."""
    (writer,) = [writer for key, writer in outputs._writers.items() if key[0] == name]
    return writer.sink.built


def test_a_time_rotating_sink_keeps_its_rollover_time_across_the_hand_over(tmp_path, children):
    """Built anew, the sink would take its next rollover from the file's mtime (the last write), not the old time."""
    log = tmp_path / "out.log"
    log.touch()
    half_an_hour_ago = time.time() - 1800
    os.utime(log, (half_an_hour_ago, half_an_hour_ago))  # the file's hour started then: it rotates in 30 minutes
    confs = {"stdout": {"class": "TimedRotatingFileStream", "filename": str(log), "rotate_when": "H"}}
    proc = children("out", "0", str(tmp_path / "stop"), "17")
    outputs = WatcherOutputs(NAME, confs)
    outputs.prepare()
    outputs.attach(process_of(proc))
    try:
        wait_for(more_lines(log, 20), message="output before the hand-over")
        rollover_at = sink_of(outputs).rollover_at
        assert rollover_at == int(half_an_hour_ago) + 3600
        outputs, exported = hand_over(outputs, proc, confs)
        assert exported["streams"]["stdout"]["rollover_at"] == rollover_at
        wait_for(more_lines(log, read(log).count(b"\n") + 20), message="output after the hand-over")
        assert sink_of(outputs).rollover_at == rollover_at
        (tmp_path / "stop").touch()
        wait_for(lambda: ended(read(log)) is not None, message="END")
        assert read(log) == expected("C", ended(read(log)))
    finally:
        outputs.close()


def test_a_description_that_does_not_fit_is_refused_before_anything_is_read(tmp_path, children):
    log = tmp_path / "out.log"
    confs = {"stdout": {"filename": str(log)}}
    proc = children("out", "0", str(tmp_path / "stop"), "19")
    old = WatcherOutputs(NAME, confs)
    old.attach(process_of(proc))
    exported = json.loads(json.dumps(old.export(process_of(proc, piped=False))))
    old.close()
    new = WatcherOutputs(NAME, confs)
    adopted = process_of(proc, piped=False)
    not_a_pipe = os.open(os.devnull, os.O_RDONLY)
    try:
        with pytest.raises(HandoverError, match=f"the description is of pid {proc.pid}"):
            new.adopt(types.SimpleNamespace(pid=proc.pid + 1, wid=1, env={}), exported)
        with pytest.raises(HandoverError, match=r"stdout: fd \d+ is not a pipe"):
            new.adopt(adopted, {**exported, "streams": {"stdout": {**exported["streams"]["stdout"],
                                                                   "fd": not_a_pipe}}})
        new.adopt(adopted, exported)  # nothing was taken by the refused ones: the real description still works
        wait_for(more_lines(log, 20), message="output after the refusals")
    finally:
        os.close(not_a_pipe)
        new.close()


def test_records_a_failing_sink_holds_go_to_the_new_image(tmp_path, children):
    """The disk is full at the hand-over: the export does not wait, and the new image writes all the old one kept."""
    log, full = tmp_path / "out.log", tmp_path / "disk-full"
    confs = {"stdout": {"class": "tests.support.sinks.FailingFileStream", "filename": str(log),
                        "full_while": str(full)}}
    proc = children("out", "300", str(tmp_path / "unused"), "23")
    full.touch()
    failures = []
    outputs = WatcherOutputs(NAME, confs, notify=lambda event, **fields: failures.append(fields["error"]))
    outputs.attach(process_of(proc))
    try:
        assert proc.wait() == 0
        wait_for(lambda: failures, message="the sink failure reported")  # as today: a `stream` event
        outputs, exported = hand_over(outputs, proc, confs)  # the old writer gives up at its close: the disk is full
        unwritten = exported["streams"]["stdout"]["unwritten"]
        assert unwritten and unwritten[0]["in_flight"]  # the one it kept retrying, and the ones queued behind it
        full.unlink()
        wait_for(file_holds(log, expected("C", 300)), message="all of it, once, in order")
    finally:
        outputs.close()
