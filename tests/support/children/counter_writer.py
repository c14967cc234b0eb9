"""A child for the output hand-over tests: numbered lines, each cut at random places into separate writes.

Run as `python counter_writer.py STREAMS COUNT STOPFILE [SEED]`: STREAMS is `out`, `err` or `outerr`; it writes
`C <n>` lines on stdout and `E <n>` lines on stderr (n from 0), a line about every millisecond, each line in up to
four pieces with a short pause between them (so a reader often holds the head of a line), until COUNT lines were
written (COUNT 0: until STOPFILE exists), then `END <n>` on each stream, and exits.
"""
from __future__ import annotations

import os
import random
import sys
import time


def counter_line(tag: str, i: int) -> bytes:
    return b"%s %08d %s\n" % (tag.encode(), i, b"x" * (i % 23))


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def write_in_pieces(fd: int, data: bytes, rng: random.Random) -> None:
    cuts = sorted(rng.sample(range(1, len(data)), k=min(len(data) - 1, rng.randint(0, 3))))
    for start, end in zip([0, *cuts], [*cuts, len(data)]):
        write_all(fd, data[start:end])
        if end < len(data):
            time.sleep(0.0002)


def main(streams: str, count: str, stopfile: str, seed: str = "1") -> None:
    rng = random.Random(int(seed))
    targets = [(fd, tag) for fd, tag, name in ((1, "C", "out"), (2, "E", "err")) if name in streams]
    i = 0
    while (i < int(count)) if int(count) else not os.path.exists(stopfile):
        for fd, tag in targets:
            write_in_pieces(fd, counter_line(tag, i), rng)
        i += 1
        time.sleep(0.001)
    for fd, _tag in targets:
        write_all(fd, b"END %d\n" % i)


if __name__ == "__main__":
    main(*sys.argv[1:])
