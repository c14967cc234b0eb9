"""Sinks named by dotted path in the stream tests (tests.support.sinks.NAME), imported by gcircusd from the
repository root (its cwd in those tests)."""
from __future__ import annotations

import errno
import os
import time

from gcircus.streams.sinks import FileStream


class SlowFileStream(FileStream):
    """A FileStream on a slow disk: each record takes 1 s per `bytes_per_second` of its size before it is written."""

    def __init__(self, filename: str, bytes_per_second="10000000", **options):
        super().__init__(filename, **options)
        self.bytes_per_second = int(bytes_per_second)

    def __call__(self, record: dict) -> None:
        time.sleep(len(record["data"]) / self.bytes_per_second)
        super().__call__(record)


class TaggedFileStream:
    """A third-party style sink: appends each line of the output to `filename` behind `TAG `."""

    def __init__(self, filename: str):
        self.filename = filename

    def __call__(self, record: dict) -> None:
        with open(self.filename, "ab") as f:
            f.write(b"".join(b"TAG " + line for line in record["data"].splitlines(keepends=True)))


class FailingFileStream(FileStream):
    """A FileStream on a disk that is full while the file `full_while` exists: every write raises ENOSPC then."""

    def __init__(self, filename: str, full_while: str, **options):
        super().__init__(filename, **options)
        self.full_while = full_while

    def __call__(self, record: dict) -> None:
        if os.path.exists(self.full_while):
            raise OSError(errno.ENOSPC, "No space left on device")
        super().__call__(record)
