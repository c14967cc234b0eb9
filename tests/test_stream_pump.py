"""The output pump with real child processes: whole-line records, nothing lost, bounded memory, failing sinks."""
from __future__ import annotations

import gc
import os
import subprocess
import sys
import threading

import gevent
import greenlet

from gcircus.streams import pump
from gcircus.streams.pump import PipeReader, StreamWriter
from tests.support.waiting import wait_for


class ListSink:
    """Collects records; optionally fails while `failing` is set, or blocks while `gate` is closed."""

    def __init__(self):
        self.records: list[dict] = []
        self.failing = False
        self.failures = 0
        self.gate = threading.Event()
        self.gate.set()
        self.reopened = 0

    def __call__(self, record):
        self.gate.wait(10)
        if self.failing:
            self.failures += 1
            raise OSError(28, "No space left on device")
        self.records.append(record)

    def reopen(self):
        self.reopened += 1

    def data(self) -> bytes:
        return b"".join(r["data"] for r in self.records)


def spawn_writer(code: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)


def pump_child(code: str, sink, **writer_kwargs):
    child = spawn_writer(code)
    fd = os.dup(child.stdout.fileno())
    child.stdout.close()
    writer = StreamWriter(sink, "test", **writer_kwargs)
    reader = PipeReader(fd, writer, child.pid, "stdout", 1)
    return child, writer, reader


def finish(child, writer, reader):
    assert reader.eof.wait(30), "the reader never saw EOF"  # cooperative: the hub keeps pumping meanwhile
    child.wait()
    writer.close()


PAYLOAD = "bytes(range(256)) * 400 + 'héllo wörld ✓\\n'.encode() * 1000"


def test_binary_and_utf8_data_round_trip_byte_exact_in_whole_lines():
    payload = eval(PAYLOAD)  # noqa: S307 - the same expression the child evaluates
    code = f"import sys; sys.stdout.buffer.write({PAYLOAD}); sys.stdout.flush()"
    sink = ListSink()
    finish(*pump_child(code, sink))
    assert sink.data() == payload
    for record in sink.records:
        assert record["partial"] or record["data"].endswith(b"\n")
        assert record["pid"] > 0 and record["name"] == "stdout" and record["wid"] == 1


def test_a_line_longer_than_a_read_comes_whole_or_in_marked_pieces():
    size = 3 * pump.READ_SIZE + 17
    line = b"x" * size + b"\n"
    code = f"import sys; sys.stdout.buffer.write(b'short\\n' + b'x' * {size} + b'\\ntail\\n'); sys.stdout.flush()"
    sink = ListSink()
    finish(*pump_child(code, sink))
    assert sink.data() == b"short\n" + line + b"tail\n"
    pieces = [r for r in sink.records if r["partial"]]
    assert all(len(r["data"]) == pump.MAX_LINE for r in pieces)


def test_a_line_without_newline_is_flushed_after_idle_time_marked_partial():
    code = "import sys, time; sys.stdout.write('prompt> '); sys.stdout.flush(); time.sleep(30)"
    sink = ListSink()
    child, writer, reader = pump_child(code, sink)
    try:
        wait_for(lambda: sink.records, timeout=5, message="partial flush")
        assert sink.records[0] == {"data": b"prompt> ", "pid": child.pid, "name": "stdout", "wid": 1,
                                   "partial": True}
    finally:
        child.kill()
        finish(child, writer, reader)


def test_output_of_a_child_killed_mid_burst_is_all_drained():
    code = ("import os, sys\n"
            "for i in range(20000):\n"
            "    sys.stdout.write('line %05d ' % i + 'y' * 50 + '\\n')\n"
            "sys.stdout.flush()\n"
            "os.kill(os.getpid(), 9)\n")
    sink = ListSink()
    child, writer, reader = pump_child(code, sink)
    wait_for(lambda: child.poll() is not None, timeout=30, message="child killed")
    reader.drain()  # what the watcher does before reporting the exit
    reader.eof.wait(10)
    writer.close()
    lines = sink.data().splitlines()
    assert len(lines) == 20000 and lines[-1].startswith(b"line 19999 ")


def test_a_slow_sink_bounds_memory_and_pauses_only_its_child():
    sink = ListSink()
    sink.gate.clear()  # the sink blocks: the writer's queue must stop growing at its limit
    code = "import sys\nfor i in range(200):\n    sys.stdout.write('z' * 65535 + '\\n')\nsys.stdout.flush()\n"
    child, writer, reader = pump_child(code, sink, limit=1 << 20)
    try:
        wait_for(lambda: writer.queued >= (1 << 20), timeout=5, message="queue full")
        peak = writer.queued
        other = [0]
        ticker = gevent.spawn(lambda: [other.__setitem__(0, other[0] + 1) or gevent.sleep(0.01) for _ in range(20)])
        ticker.join(5)
        assert other[0] == 20  # the hub keeps running while the sink is stuck
        assert writer.queued <= peak + pump.READ_SIZE + 65536 and child.poll() is None  # child waits on the pipe
    finally:
        sink.gate.set()
        finish(child, writer, reader)
    assert sink.data() == (b"z" * 65535 + b"\n") * 200


def test_a_failing_sink_reports_once_keeps_the_data_and_recovers():
    sink = ListSink()
    sink.failing = True
    errors = []
    code = "import sys\nfor i in range(100):\n    print('record', i)\n"
    child, writer, reader = pump_child(code, sink, on_error=errors.append)
    try:
        wait_for(lambda: sink.failures >= 2, timeout=10, message="retries")
        assert len(errors) == 1 and "No space left" in errors[0]
        sink.failing = False
        wait_for(lambda: len(errors) == 2, timeout=10, message="recovery reported")
        assert errors[1] is None
    finally:
        finish(child, writer, reader)
    assert sink.data() == b"".join(b"record %d\n" % i for i in range(100))


def test_reopen_is_run_in_order_by_the_writer():
    sink = ListSink()
    writer = StreamWriter(sink, "test")
    writer.put({"data": b"a\n", "pid": 1, "name": "stdout", "wid": 1, "partial": False})
    writer.reopen()
    writer.put({"data": b"b\n", "pid": 1, "name": "stdout", "wid": 1, "partial": False})
    assert writer.flush(5)
    writer.close()
    assert sink.reopened == 1 and sink.data() == b"a\nb\n"


def test_continuous_output_split_mid_line_never_yields_partial_records():
    # Each write ends in the middle of a line and the next one finishes it, 0.05 s apart, for longer than the
    # idle flush time: the child is never silent, so no line may be passed on in pieces.
    code = ("import os, time\n"
            "for i in range(16):\n"
            "    os.write(1, b'end %d\\nstart %d ' % (i, i + 1))\n"
            "    time.sleep(0.05)\n"
            "os.write(1, b'last\\n')\n")
    sink = ListSink()
    finish(*pump_child(code, sink))
    assert not [r for r in sink.records if r["partial"]]
    assert sink.data().endswith(b"start 16 last\n")


def live_greenlets() -> int:
    return sum(1 for o in gc.get_objects() if isinstance(o, greenlet.greenlet) and o and not o.dead)


def test_an_idle_reader_holds_no_greenlet_and_wakes_up_for_later_output():
    """Between two bursts of output a reader keeps only an io watcher on the pipe (a parked greenlet held ~10 KiB,
    a lot at 10,000 processes); output arriving later, then EOF, are read as usual."""
    code = "import sys; print('one', flush=True); sys.stdin.readline(); print('two', flush=True)"
    child = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    fd = os.dup(child.stdout.fileno())
    child.stdout.close()
    sink = ListSink()
    writer = StreamWriter(sink, "test")
    before = live_greenlets()
    reader = PipeReader(fd, writer, child.pid, "stdout", 1)
    try:
        wait_for(lambda: sink.data() == b"one\n", timeout=30, message="the first line")
        wait_for(lambda: live_greenlets() <= before, timeout=30, message="the reader parked (no greenlet of its own)")
        child.stdin.write(b"go\n")
        child.stdin.flush()
        finish(child, writer, reader)
        assert sink.data() == b"one\ntwo\n"
    finally:
        child.stdin.close()
        if child.poll() is None:
            child.kill()
            child.wait()
