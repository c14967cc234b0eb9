"""A child program for the stream end-to-end tests: writes known output, then waits to be stopped.

Run as `python stream_writer.py MODE ARGS...`. The tests import `line()` and `stream()` to know, byte for
byte, what a child wrote. Writes go through os.write with no buffer, so what the child wrote is what left it.
"""
from __future__ import annotations

import os
import struct
import sys
import time


def line(i: int, tag: str = "L", width: int = 40) -> bytes:
    """Line `i` of a deterministic output: `<tag> <i> <width varied filler>|<i>\\n`, so a broken line shows."""
    filler = b"abcdefghijklmnopqrstuvwxyz0123456789"[i % 36:i % 36 + 1] * (width + i % 17)
    return b"%s %07d %s|%d\n" % (tag.encode(), i, filler, i)


def stream(count: int, tag: str = "L", width: int = 40) -> bytes:
    return b"".join(line(i, tag, width) for i in range(count))


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def wait_forever() -> None:
    while True:
        time.sleep(1000)


def main(mode: str, *args: str) -> None:
    if mode == "cat":  # cat PATH: the file's bytes on stdout
        with open(args[0], "rb") as f:
            write_all(1, f.read())
    elif mode == "outerr":  # outerr N: N lines on stdout and N on stderr, alternating
        for i in range(int(args[0])):
            write_all(1, line(i, "OUT"))
            write_all(2, line(i, "ERR"))
    elif mode == "lines":  # lines N TAG BLOCK [GO PAUSE]: N lines tagged TAG in writes of BLOCK bytes (cut
        data = stream(int(args[0]), args[1])  # anywhere), once the file GO exists (- for at once), PAUSE s apart
        block = int(args[2])
        while len(args) > 3 and args[3] != "-" and not os.path.exists(args[3]):
            time.sleep(0.005)
        pause = float(args[4]) if len(args) > 4 else 0
        for start in range(0, len(data), block):
            write_all(1, data[start:start + block])
            if pause:
                time.sleep(pause)
    elif mode == "pieces":  # pieces N TAG: each line written in 3 pieces, cut mid-line
        for i in range(int(args[0])):
            data = line(i, args[1])
            for cut in (data[:5], data[5:11], data[11:]):
                write_all(1, cut)
    elif mode == "burst":  # burst COUNTER: lines forever; COUNTER holds the bytes fully written so far
        counter = os.open(args[0], os.O_RDWR | os.O_CREAT, 0o644)
        total = i = 0
        while True:
            data = stream_block(i, 64)
            write_all(1, data)
            i += 64
            total += len(data)
            os.pwrite(counter, struct.pack("<Q", total), 0)
    elif mode == "timed":  # timed SECONDS: lines for SECONDS (at most ~1 MB/s), then `END <count>`
        deadline = time.monotonic() + float(args[0])
        i = 0
        while time.monotonic() < deadline:
            write_all(1, stream_block(i, 16))
            i += 16
            time.sleep(0.001)
        write_all(1, b"END %d\n" % i)
    elif mode == "until":  # until STOPFILE: a line every 2 ms until STOPFILE exists, then `END <count>`
        i = 0
        while not os.path.exists(args[0]):
            write_all(1, line(i))
            i += 1
            time.sleep(0.002)
        write_all(1, b"END %d\n" % i)
    elif mode == "hello":  # hello TEXT: one line, `TEXT <pid>`
        write_all(1, b"%s %d\n" % (args[0].encode(), os.getpid()))
    elif mode == "huge":  # huge SIZE: one line of SIZE bytes, a short line, a long unterminated tail, a newline
        size = int(args[0])
        write_all(1, bytes(range(32, 127)) * (size // 95) + b"\nshort\n")
        write_all(1, b"x" * (size // 2))
        write_all(1, b"\n")
    else:
        raise SystemExit(f"unknown mode {mode!r}")
    wait_forever()


def stream_block(first: int, count: int) -> bytes:
    return b"".join(line(i) for i in range(first, first + count))


if __name__ == "__main__":
    main(*sys.argv[1:])
