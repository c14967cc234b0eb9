"""Sinks named by dotted path in the stream tests (tests.support.sinks.NAME), imported by gcircusd from the
repository root (its cwd in those tests)."""
from __future__ import annotations

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
