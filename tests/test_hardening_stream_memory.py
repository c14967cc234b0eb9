"""Reading a child's pipe allocates what was read, not the read size.

os.read(fd, 1 MiB) mallocs a megabyte and shrinks it to the line it got: each small line left a hole in the C heap
that glibc never gave back, and a daemon respawning processes with a stream grew by about 100 bytes per spawn
(benchmarks/run_soak.py shows the heap flat now). The allocation is visible to tracemalloc while it lasts.
"""
from __future__ import annotations

import os
import tracemalloc

from gcircus.streams.pump import READ_SIZE, PipeReader, StreamWriter
from tests.support.waiting import wait_for


def test_reading_small_lines_never_allocates_the_read_size():
    written: list[bytes] = []
    writer = StreamWriter(lambda record: written.append(record["data"]), "memory test")
    read_end, write_end = os.pipe()
    reader = PipeReader(read_end, writer, pid=os.getpid(), name="stdout", wid=1)
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        for number in range(20):
            os.write(write_end, b"line %d\n" % number)
            wait_for(lambda n=number: len(written) == n + 1, 30, message="the line read and written")
        current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        os.close(write_end)
        reader.eof.wait(30)
        writer.close()
    assert written == [b"line %d\n" % number for number in range(20)]
    assert peak - current < READ_SIZE // 4
