"""The JSON-safe description of a process's output plumbing, handed from one gcircusd image to the next.

At an in-place upgrade the old image stops reading a child's pipes (WatcherOutputs.export) and the new image reads
them again (WatcherOutputs.adopt). What must cross the exec so that a sink sees every byte once, in order:

- the pipe's fd (left open; the caller makes it inheritable): output written meanwhile simply waits in the pipe;
- the head of a line read but not passed on yet (the reader holds it until its newline comes): `partial`;
- records already read but not taken by a slow or failing sink within the export's wait: `unwritten`;
- the sink's line state: whether this process's output left the sink in the middle of a line (`line_open`), so that
  a prefixing sink continues that line instead of starting it again, and the time of a TimedRotatingFileStream's
  next rollover (`rollover_at`), so that the new image rotates when the old one would have.

Bytes go as base64 text so the whole description is plain JSON. The description of one process:

    {"version": 1, "pid": int, "image": str,          # image: which WatcherOutputs exported it
     "streams": {"stdout"|"stderr": {                 # only the piped streams
         "fd": int | None,                            # None: the pipe was at end of file, all of it passed on
         "partial": base64,                           # head of a line the reader held (empty: none)
         "unwritten": [{"data": base64, "partial": bool, "in_flight": bool}, ...],
         "line_open": bool, "rollover_at": float | None}}}

File sinks need nothing else: the new image opens the same path in append mode (O_APPEND) when it builds the sink,
so it writes after the last byte the old one wrote. Per sink class:
- FileStream (size rotation): no state; the size is read from the file at each record, the numbered chain from
  the directory, so rotation goes on exactly as before.
- WatchedFileStream: no state; the new image opens the path, which is the file the old one would have reopened at
  its next record anyway (after a logrotate move, the new file).
- TimedRotatingFileStream: its next rollover time is handed over (`rollover_at`). Built anew it would compute it
  from the file's mtime, the time of the last write, and could rotate up to an interval late.
- PrefixedStdoutStream / StdoutStream / FancyStdoutStream: gcircusd's own fds 1 and 2 survive the exec; only the
  line state matters. JournalStream and QueueStream: no state (a new journal connection; a queue is in-process).
A third-party sink is built anew from its options; it gets the records, nothing else.
"""
from __future__ import annotations

import base64
import dataclasses
import os
import stat

VERSION = 1


class HandoverError(ValueError):
    """An exported description that cannot be adopted (wrong process, unknown version, malformed field)."""


def encode(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def decode(text: str, what: str) -> bytes:
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (ValueError, AttributeError) as exc:
        raise HandoverError(f"{what}: not base64 ({exc})") from None


def sink_line_state(sink) -> tuple[tuple | None, float | None]:
    """(source left mid-line, next rollover time) of a sink as built now; (None, None) for sinks without them."""
    sink = getattr(sink, "built", sink)  # a lazily built sink: the real one, if built yet
    line_format = getattr(sink, "line_format", None)
    open_source = getattr(line_format, "open_source", None)
    rollover_at = getattr(sink, "rollover_at", None)
    return open_source, rollover_at if isinstance(rollover_at, (int, float)) else None


def restore_sink_state(sink, open_source: tuple | None, rollover_at: float | None) -> None:
    """Give a sink the line state the old image's sink had; runs in the sink's thread (it may build the sink)."""
    prepare = getattr(sink, "prepare", None)
    if callable(prepare) and hasattr(sink, "built"):
        prepare()  # build it now: restoring into a sink built later would be overwritten by its first open
    sink = getattr(sink, "built", sink)
    line_format = getattr(sink, "line_format", None)
    if line_format is not None and open_source is not None:
        line_format.open_source = open_source
    if rollover_at is not None and hasattr(sink, "rollover_at"):
        sink.rollover_at = rollover_at


def describe_stream(fd: int | None, partial: bytes, unwritten: list[tuple[dict, bool]], line_open: bool,
                    rollover_at: float | None) -> dict:
    """The description of one stream of a process (see the module docstring)."""
    return {"fd": fd, "partial": encode(partial),
            "unwritten": [{"data": encode(record["data"]), "partial": bool(record.get("partial")),
                           "in_flight": in_flight} for record, in_flight in unwritten],
            "line_open": line_open, "rollover_at": rollover_at}


@dataclasses.dataclass
class Stream:
    """One stream of an exported description, validated and decoded (see `parse`)."""

    fd: int | None
    partial: bytes
    unwritten: list[tuple[bytes, bool, bool]]  # (data, partial, in_flight)
    line_open: bool
    rollover_at: float | None


def parse(process, exported) -> dict[str, Stream]:
    """The streams of `exported`, checked against the adopting process before anything is done with them.

    HandoverError names what does not fit: the version, the pid, a stream, an fd that is not an open pipe, bad base64.
    Checking all of it first lets `adopt` take all streams or none.
    """
    where = f"output hand-over of pid {process.pid}"
    if not isinstance(exported, dict) or exported.get("version") != VERSION:
        raise HandoverError(f"{where}: unknown description version "
                            f"{exported.get('version') if isinstance(exported, dict) else exported!r}")
    if exported.get("pid") != process.pid:
        raise HandoverError(f"{where}: the description is of pid {exported.get('pid')}")
    streams = exported.get("streams")
    if not isinstance(streams, dict) or not set(streams) <= {"stdout", "stderr"}:
        raise HandoverError(f"{where}: bad streams {streams!r}")
    parsed = {}
    for name, stream in streams.items():
        try:
            parsed[name] = Stream(_pipe_fd(stream.get("fd")), decode(stream.get("partial") or "", "partial"),
                                  [(decode(item["data"], "unwritten data"), bool(item.get("partial")),
                                    bool(item.get("in_flight"))) for item in stream.get("unwritten") or []],
                                  bool(stream.get("line_open")), _number(stream.get("rollover_at")))
        except (HandoverError, AttributeError, KeyError, TypeError) as exc:
            raise HandoverError(f"{where}: {name}: {exc}") from None
    return parsed


def _pipe_fd(fd) -> int | None:
    if fd is None:
        return None
    if not isinstance(fd, int) or isinstance(fd, bool) or fd < 0:
        raise HandoverError(f"fd {fd!r} is not a descriptor")
    try:
        mode = os.fstat(fd).st_mode
    except OSError as exc:
        raise HandoverError(f"fd {fd} is not open ({exc.strerror})") from None
    if not stat.S_ISFIFO(mode):
        raise HandoverError(f"fd {fd} is not a pipe")
    return fd


def _number(value) -> float | None:
    if value is not None and (not isinstance(value, (int, float)) or isinstance(value, bool)):
        raise HandoverError(f"rollover_at {value!r} is not a time")
    return value
