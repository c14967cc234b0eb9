"""The watchers' output pipes across a re-exec, until gcircus.streams exports and adopts them itself
(WatcherOutputs.export / adopt): each reader is drained into its sink and stopped, its pipe kept on a duplicate
descriptor the new image reads again. Output written meanwhile waits in the pipe.

Known limit of this stand-in: a line still without its newline when the readers stop is written out as a partial
record (the bytes stay exact in a file sink, but the line is split in two records).
"""
from __future__ import annotations

import io
import os
import time

from gcircus.streams.outputs import DRAIN_WAIT


def detach_all(arbiter) -> dict[int, dict[str, int]]:
    """Drain and stop every reader; return pid -> {stream name: kept descriptor}. Waits (bounded) for the sinks."""
    kept: dict[int, dict[str, int]] = {}
    writers = {}
    for watcher in arbiter.watchers:
        outputs = watcher.outputs
        for pid, readers in list(outputs._readers.items()):
            for reader in readers:
                if reader.eof.is_set():
                    continue
                kept.setdefault(pid, {})[reader.name] = os.dup(reader.fd)
                reader.close()  # what the pipe holds now goes to the sink; later output stays in the pipe
                outputs._open_readers.discard(reader)
                writers[id(reader.writer)] = reader.writer
            outputs._readers.pop(pid, None)
    deadline = time.monotonic() + DRAIN_WAIT
    for writer in writers.values():
        writer.wait_written(writer.mark(), max(0.0, deadline - time.monotonic()))
    return kept


def reattach(watcher, process, streams: dict[str, int]) -> None:
    """Read `process`'s kept pipes again (the exec failed, or this is the new image): the watcher's own attach path."""
    for name, fd in streams.items():
        setattr(process, name, io.FileIO(fd, "rb", closefd=True))
    watcher.outputs.attach(process)


def resume_all(arbiter, kept: dict[int, dict[str, int]]) -> None:
    """Undo detach_all in the old image (the exec failed)."""
    for watcher in arbiter.watchers:
        for pid, process in watcher.processes.items():
            if pid in kept:
                reattach(watcher, process, kept.pop(pid))
    for streams in kept.values():  # processes gone meanwhile: nothing reads their pipes any more
        for fd in streams.values():
            os.close(fd)

