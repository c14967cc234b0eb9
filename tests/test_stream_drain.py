"""StreamWriter.wait_written: what a child's exit report waits for (its own last records, not a failing disk)."""
from __future__ import annotations

import time

import gevent

from gcircus.streams.pump import StreamWriter


class SlowSink:
    """Takes `delay` seconds per record; raises ENOSPC while `failing`."""

    def __init__(self, delay: float = 0.0):
        self.delay = delay
        self.failing = False
        self.data: list[bytes] = []

    def __call__(self, record):
        time.sleep(self.delay)
        if self.failing:
            raise OSError(28, "No space left on device")
        self.data.append(record["data"])


def record(i: int) -> dict:
    return {"data": b"line %d\n" % i, "pid": 1, "name": "stdout", "wid": 1, "partial": False}


def test_wait_written_waits_for_the_records_up_to_the_mark_only():
    sink = SlowSink(delay=0.002)
    writer = StreamWriter(sink, "test")
    for i in range(20):
        writer.put(record(i))
    mark = writer.mark()
    sibling = gevent.spawn(lambda: [writer.put(record(i)) or gevent.sleep(0.001) for i in range(20, 10**6)])
    try:
        assert writer.wait_written(mark, timeout=5)
        assert sink.data[:20] == [record(i)["data"] for i in range(20)]
        assert not writer.flush(0.2)  # the whole queue never empties while the sibling writes
    finally:
        sibling.kill()
        writer.close()


def test_wait_written_gives_up_at_once_while_the_sink_fails():
    sink = SlowSink(delay=0.05)
    sink.failing = True
    errors = []
    writer = StreamWriter(sink, "test", on_error=errors.append)
    writer.put(record(0))
    started = time.monotonic()
    try:
        assert not writer.wait_written(writer.mark(), timeout=5)  # gives up when the failure shows
        assert time.monotonic() - started < 1 and len(errors) == 1
        assert not writer.wait_written(writer.mark(), timeout=5)  # and at once while it lasts
        assert time.monotonic() - started < 1
        sink.failing = False
        assert writer.flush(5) and errors == [errors[0], None]  # recovered: the kept record is written
        assert sink.data == [b"line 0\n"]
        writer.put(record(1))
        assert writer.wait_written(writer.mark(), timeout=5)
    finally:
        writer.close()
