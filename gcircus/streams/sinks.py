"""Stream sinks: where the whole-line records of a child's stdout/stderr are written.

A sink is called as `sink(record)` with `record = {"data": bytes, "pid": int, "name": "stdout"|"stderr", "wid": int,
"partial": bool}` from one worker thread at a time, never on the gevent hub, so plain blocking I/O is right here.
`data` holds whole lines, except that a record may end with the head of a line whose rest comes in the next record
of the same process (the reader flushes long or idle lines early).

Every byte goes out with os.write on an O_APPEND descriptor, with no buffer in between: what a sink accepted is on
disk even if gcircusd dies. A write that fails (full disk, unwritable path) raises OSError after remembering how far it
got; the writer calls again with the same record later and the sink writes only the rest, so nothing is lost or
written twice. File sinks rotate and reopen only between records, and never between a line's head and its rest, so
a line is never split across two files.
"""
from __future__ import annotations

import datetime
import errno
import logging
import os
import queue
import random
import re
import time
from collections.abc import Callable

from gcircus import integrity, journal
from gcircus.options import to_bool, to_int, to_size
from gcircus.streams.rotation import TimeSchedule, expired_backups, rotate_numbered

log = logging.getLogger(__name__)

Source = tuple  # (pid, stream name): the records of one pipe


def _source(record: dict) -> Source:
    return record.get("pid"), record.get("name")


def _same_record(a: dict, b: dict) -> bool:
    return a is b or (a.get("data") == b.get("data") and _source(a) == _source(b))


def _option(cls_name: str, option: str, value, convert: Callable):
    try:
        return convert(value)
    except ValueError as exc:
        raise ValueError(f"{cls_name} option {option}: {exc}") from None


def _warn_ignored(cls_name: str, extra: dict) -> None:
    # Circus's classes swallow unknown options too; say so instead of failing a config that works there.
    if extra:
        log.warning("%s ignores the option(s) %s", cls_name, ", ".join(sorted(extra)))


def _time_text(record: dict, time_format: str, clock: Callable[[], float]) -> str:
    stamp = record.get("timestamp")
    return datetime.datetime.fromtimestamp(clock() if stamp is None else stamp).strftime(time_format)


class LineFormat:
    """Puts a prefix at the start of every line (between an optional head and tail), across partial records.

    It remembers which source left the output in the middle of a line: the next record of that source continues the
    line without a new prefix; a record of another source first ends that line with b"\\n" (in a prefixed format
    the output stays line-structured, and the continuation, when it comes, gets a prefix of its own).
    """

    def __init__(self, head: bytes = b"", tail: bytes = b""):
        self.head = head
        self.tail = tail
        self.open_source: Source | None = None

    def continues(self, record: dict) -> bool:
        """Whether `record` carries the rest of a line its source left unfinished."""
        return self.open_source is not None and self.open_source == _source(record)

    def render(self, record: dict, prefix: bytes | None) -> tuple[bytes, Source | None]:
        """The bytes to write for `record` and the source left mid-line afterwards; commit with `open_source = …`.

        With `prefix` None the data is returned as it is (byte-exact) and only the line state is followed.
        """
        data = record["data"]
        if not data:
            return b"", self.open_source
        complete = data.endswith(b"\n")
        left_open = None if complete else _source(record)
        if prefix is None:
            return data, left_open
        start = b""
        if self.open_source is not None and not self.continues(record):
            start = b"\n"
        start += self.head if self.continues(record) else self.head + prefix
        lines = (data[:-1] if complete else data).split(b"\n")
        separator = self.tail + b"\n" + self.head + prefix
        return start + separator.join(lines) + self.tail + (b"\n" if complete else b""), left_open


class _Sink:
    """Writes rendered records to a descriptor, finishing a record interrupted by an error on the next call."""

    def __init__(self):
        self._pending: tuple[dict, bytes] | None = None
        self.line_format = LineFormat()

    def __call__(self, record: dict) -> None:
        if self._pending is not None:
            failed, rest = self._pending
            self._write(failed, rest)
            if _same_record(record, failed):
                return
        self._write(record, self._payload(record))

    def reopen(self) -> None:
        """Nothing to reopen (file sinks override this)."""

    def unwritten(self, record: dict) -> bytes | None:
        """What of `record` a failed write left unwritten (to be written by the next call), or None if nothing of
        it was written yet."""
        if self._pending is not None and _same_record(record, self._pending[0]):
            return self._pending[1]
        return None

    def close(self) -> None:
        """Write what an earlier failure left pending, if possible."""
        if self._pending is not None:
            failed, rest = self._pending
            self._write(failed, rest)

    def _payload(self, record: dict) -> bytes:
        data, self.line_format.open_source = self.line_format.render(record, self._prefix(record))
        return data

    def _prefix(self, record: dict) -> bytes | None:
        return None

    def _descriptor(self) -> int:
        raise NotImplementedError

    def _write(self, record: dict, data: bytes) -> None:
        view = memoryview(data)
        done = 0
        try:
            fd = self._descriptor()
            while done < len(view):
                written = os.write(fd, view[done:])
                if written <= 0:
                    raise OSError(errno.EIO, "write accepted no bytes")
                done += written
        except OSError:
            self._pending = (record, bytes(view[done:]))
            raise
        self._pending = None


def _check_filename(cls_name: str, filename) -> None:
    if filename is not None and not str(filename):
        raise ValueError(f"{cls_name} needs a non-empty filename")


class _FileSink(_Sink):
    """A sink appending to a file by path, reopened on demand."""

    def __init__(self, filename: str | None, time_format: str | None, clock: Callable[[], float] = time.time):
        super().__init__()
        if filename is None:
            import tempfile  # (with shutil, bz2 and lzma: only for a sink given no file name)

            fd, filename = tempfile.mkstemp()
            os.close(fd)
        _check_filename(type(self).__name__, filename)
        self.filename = str(filename)
        self.time_format = time_format or None
        self._clock = clock
        self._fd: int | None = None
        self._identity = (-1, -1)
        self._open()

    def reopen(self) -> None:
        """Close and reopen the file by its path (for logrotate's postrotate): later writes go to the new file."""
        self._close_fd()
        self._open()

    def close(self) -> None:
        """Finish a pending write if possible, then close the file (a later record would reopen it)."""
        try:
            super().close()
        finally:
            self._close_fd()

    def _prefix(self, record: dict) -> bytes | None:
        if self.time_format is None:
            return None
        return f"{_time_text(record, self.time_format, self._clock)} [{record.get('pid')}] | ".encode()

    def _open(self) -> int:
        directory = os.path.dirname(self.filename)
        if directory:
            os.makedirs(directory, exist_ok=True)
        # As root, not through a symbolic link another user planted: an OSError, so a sink failure (retried).
        fd = integrity.open_unplanted(self.filename, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644,
                                      "stream file")
        try:
            stat = os.fstat(fd)
        except OSError:
            os.close(fd)
            raise
        identity = (stat.st_dev, stat.st_ino)
        if identity != self._identity:
            # A new file starts at a line start; whatever line the old one left open stays there.
            self.line_format.open_source = None
        self._fd, self._identity = fd, identity
        return fd

    def _payload(self, record: dict) -> bytes:
        self._descriptor()  # a lazy reopen may start a new file, which changes how the record renders
        return super()._payload(record)

    def _close_fd(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)

    def _descriptor(self) -> int:
        return self._fd if self._fd is not None else self._open()


def _split_lines(record: dict, size: int) -> list[dict]:
    """Cut a record into records of whole lines of about `size` bytes (a longer line stays whole)."""
    data, records, start = record["data"], [], 0
    while start < len(data):
        end = data.rfind(b"\n", start, start + size) + 1
        if end <= start:  # no newline within `size`: take the whole (long) line
            end = data.find(b"\n", start + size) + 1 or len(data)
        partial = record.get("partial", False) if end == len(data) else False
        records.append({**record, "data": data[start:end], "partial": partial})
        start = end
    return records


class FileStream(_FileSink):
    """Appends to `filename`; with max_bytes and backup_count, rotates `f → f.1 … f.N` between whole lines."""

    def __init__(self, filename: str | None = None, max_bytes=0, backup_count=0, time_format: str | None = None,
                 **extra):
        _warn_ignored("FileStream", extra)
        self.max_bytes, self.backup_count = self._limits(max_bytes, backup_count)
        self._progress: tuple[dict, int] | None = None
        super().__init__(filename, time_format)
        if self.max_bytes > 0 and self.backup_count <= 0:
            log.warning("FileStream %s: max_bytes without backup_count never rotates (as in Circus); "
                        "set backup_count to keep the file size bounded", self.filename)

    @classmethod
    def check_options(cls, filename=None, max_bytes=0, backup_count=0, time_format=None, **extra) -> None:
        _check_filename("FileStream", filename)
        cls._limits(max_bytes, backup_count)

    @staticmethod
    def _limits(max_bytes, backup_count) -> tuple[int, int]:
        return (_option("FileStream", "max_bytes", max_bytes, to_size),
                _option("FileStream", "backup_count", backup_count, to_int))

    def __call__(self, record: dict) -> None:
        """Write a record in pieces of whole lines small enough that the file stays near max_bytes.

        A pipe read can hold a megabyte of lines; written as one piece it could overshoot a small max_bytes by all
        of it. The pieces depend only on the record and max_bytes, so a retry after a failure (the writer calls
        again with the same record) resumes at the piece that failed: nothing is written twice.
        """
        if self.max_bytes <= 0 or self.backup_count <= 0 or len(record["data"]) <= self._piece_size():
            super().__call__(record)
            return
        pieces = _split_lines(record, self._piece_size())
        done = self._progress[1] if self._progress is not None and self._progress[0] is record else 0
        for index in range(done, len(pieces)):
            super().__call__(pieces[index])
            self._progress = (record, index + 1)
        self._progress = None

    def _piece_size(self) -> int:
        return max(1, self.max_bytes // 16)

    def unwritten(self, record: dict) -> bytes | None:
        """The rest of `record` after the pieces written so far (see __call__)."""
        if self._progress is None or self._progress[0] is not record:
            return super().unwritten(record)
        pieces = _split_lines(record, self._piece_size())[self._progress[1]:]
        rest = super().unwritten(pieces[0]) if pieces else None
        return (pieces[0]["data"] if rest is None else rest) + b"".join(piece["data"] for piece in pieces[1:])

    def _payload(self, record: dict) -> bytes:
        self._descriptor()
        rendered = self.line_format.render(record, self._prefix(record))
        if self._rotation_due(record, len(rendered[0])):
            self._rotate()
            rendered = self.line_format.render(record, self._prefix(record))
        data, self.line_format.open_source = rendered
        return data

    def _rotation_due(self, record: dict, size: int) -> bool:
        if self.max_bytes <= 0 or self.backup_count <= 0 or self.line_format.continues(record):
            return False
        current = os.fstat(self._descriptor()).st_size
        return current > 0 and current + size >= self.max_bytes

    def _rotate(self) -> None:
        rotate_numbered(self.filename, self.backup_count)
        self.reopen()


class WatchedFileStream(_FileSink):
    """Appends to `filename`, reopening it when something else moved or deleted it (logrotate without copytruncate)."""

    def __init__(self, filename: str | None = None, time_format: str | None = None, **extra):
        _warn_ignored("WatchedFileStream", extra)
        super().__init__(filename, time_format)

    @classmethod
    def check_options(cls, filename=None, time_format=None, **extra) -> None:
        _check_filename("WatchedFileStream", filename)

    def _payload(self, record: dict) -> bytes:
        if not self.line_format.continues(record) and self._path_identity() != self._identity:
            self.reopen()
        return super()._payload(record)

    def _path_identity(self) -> tuple[int, int]:
        try:
            stat = os.stat(self.filename)
        except FileNotFoundError:
            return -1, -1
        return stat.st_dev, stat.st_ino


class TimedRotatingFileStream(_FileSink):
    """Appends to `filename` and renames it to `filename.<period>` at each rollover, keeping backup_count of them."""

    def __init__(self, filename: str | None = None, backup_count=0, time_format: str | None = None,
                 rotate_when: str | None = None, rotate_interval=1, utc=False,
                 clock: Callable[[], float] = time.time, **extra):
        _warn_ignored("TimedRotatingFileStream", extra)
        self.backup_count, self.schedule = self._rules(backup_count, rotate_when, rotate_interval, utc)
        if filename is not None and os.path.exists(filename):
            start = os.stat(filename).st_mtime
        else:
            start = clock()
        self.rollover_at = self.schedule.first_rollover(start)
        super().__init__(filename, time_format, clock)

    @classmethod
    def check_options(cls, filename=None, backup_count=0, time_format=None, rotate_when=None, rotate_interval=1,
                      utc=False, **extra) -> None:
        _check_filename("TimedRotatingFileStream", filename)
        cls._rules(backup_count, rotate_when, rotate_interval, utc)

    @staticmethod
    def _rules(backup_count, rotate_when, rotate_interval, utc) -> tuple[int, TimeSchedule]:
        name = "TimedRotatingFileStream"
        return (_option(name, "backup_count", backup_count, to_int),
                TimeSchedule(rotate_when, _option(name, "rotate_interval", rotate_interval, to_int),
                             _option(name, "utc", utc, to_bool)))

    def _payload(self, record: dict) -> bytes:
        if not self.line_format.continues(record):
            now = self._clock()
            if now >= self.rollover_at:
                self._rotate(now)
        return super()._payload(record)

    def _rotate(self, now: float) -> None:
        target = f"{self.filename}.{self.schedule.suffix(self.rollover_at)}"
        try:
            empty = os.stat(self.filename).st_size == 0
        except FileNotFoundError:
            empty = True
        if not empty:
            if os.path.exists(target):
                # Only after the clock went back; Circus deletes the older file here. Keep both instead: the
                # current file simply goes on until the next rollover.
                log.warning("%s already exists; %s is not rotated this time", target, self.filename)
            else:
                os.rename(self.filename, target)
                self._close_fd()  # the next write opens the new file
        self.rollover_at = self.schedule.next_rollover(now)
        for path in expired_backups(self.filename, self.schedule, self.backup_count):
            try:
                os.remove(path)
            except OSError as exc:
                log.warning("cannot remove the old log %s: %s", path, exc)


class StdoutStream(_Sink):
    """Writes the data as it is to gcircusd's standard output."""

    fd = 1

    def __init__(self, **extra):
        _warn_ignored(type(self).__name__, extra)
        super().__init__()

    def _descriptor(self) -> int:
        return self.fd


COLORS = {"red": 1, "green": 2, "yellow": 3, "blue": 4, "magenta": 5, "cyan": 6, "white": 7}


class FancyStdoutStream(StdoutStream):
    """Writes each line to gcircusd's stdout in a colour, as `<time> [<pid>] | <line>`."""

    def __init__(self, color: str | None = None, time_format: str = "%Y-%m-%d %H:%M:%S", **extra):
        super().__init__(**extra)
        code = COLORS.get(str(color).strip().lower()) if color is not None else None
        self.color = code if code is not None else random.choice(list(COLORS.values()))
        self.time_format = time_format or "%Y-%m-%d %H:%M:%S"
        self.line_format = LineFormat(head=b"\033[0;3%d;40m" % self.color, tail=b"\033[0m")

    def _prefix(self, record: dict) -> bytes:
        return f"{_time_text(record, self.time_format, time.time)} [{record.get('pid')}] | ".encode()


def output_fd_option(value) -> int:
    """PrefixedStdoutStream's `fd` option: 1 or 2, also spelt stdout or stderr."""
    text = str(value).strip().lower()
    fd = {"stdout": 1, "stderr": 2}.get(text)
    if fd is None:
        fd = _option("PrefixedStdoutStream", "fd", value, to_int)
    if fd not in (1, 2):
        raise ValueError(f"PrefixedStdoutStream option fd: expected 1 (stdout) or 2 (stderr), got {value!r}")
    return fd


class PrefixedStdoutStream(StdoutStream):
    """Writes each line to gcircusd's stdout (or stderr with fd=2) as `<watcher>[<wid>] | <line>`, for containers."""

    def __init__(self, watcher_name: str, fd=1, **extra):
        super().__init__(**extra)
        self.watcher_name = watcher_name
        self.fd = output_fd_option(fd)

    @classmethod
    def check_options(cls, watcher_name=None, fd=1, **extra) -> None:
        output_fd_option(fd)

    def _prefix(self, record: dict) -> bytes:
        return f"{self.watcher_name}[{record.get('wid', '?')}] | ".encode()


_LINES = re.compile(rb"[^\n]*\n|[^\n]+")


class JournalStream:
    """Sends each line to systemd-journald as an entry of its own (gcircus.journal's native protocol).

    Fields: MESSAGE (the line, without its newline; a line longer than journal.MAX_MESSAGE goes as several
    entries), PRIORITY 6 (info) for stdout and 3 (err) for stderr, SYSLOG_IDENTIFIER (the watcher's name, or
    `identifier`), GCIRCUS_WATCHER, GCIRCUS_PID and GCIRCUS_WID (journald's own _PID is gcircusd's, the sender's),
    GCIRCUS_STREAM. A journal that is missing or does not take an entry within journal.SEND_TIMEOUT raises OSError:
    a sink failure as for any sink (reported once, retried, the children wait). A retried record resumes at the
    first entry not sent: nothing is sent twice.
    """

    takes_watcher_name = True  # the stream factory passes the watcher's name

    def __init__(self, watcher_name: str = "", identifier: str | None = None, **extra):
        _warn_ignored("JournalStream", extra)
        self.watcher_name = watcher_name
        self.identifier = identifier or watcher_name or "gcircus"
        self._progress: tuple[dict, int] | None = None  # a record whose first N entries were sent before a failure
        self.journal = journal.JournalSocket()
        self.journal.connect()  # built when its watcher starts (off the hub): a missing journal is reported at once

    def __call__(self, record: dict) -> None:
        entries = self._entries(record)
        done = self._progress[1] if self._progress is not None and self._progress[0] is record else 0
        for index in range(done, len(entries)):
            try:
                self.journal.send(self._fields(record, entries[index]))
            except OSError:
                self._progress = (record, index)
                raise
        self._progress = None

    def reopen(self) -> None:
        """Connect again at the next entry (journald may have been restarted)."""
        self.journal.close()

    def close(self) -> None:
        self.journal.close()

    def unwritten(self, record: dict) -> bytes | None:
        """The lines of `record` not sent yet, after a failure midway; None if none was sent."""
        if self._progress is None or self._progress[0] is not record or not self._progress[1]:
            return None
        return b"".join(self._entries(record)[self._progress[1]:])

    @staticmethod
    def _entries(record: dict) -> list[bytes]:
        """The record's lines (with their newline), a long one cut into MAX_MESSAGE pieces."""
        entries = []
        for line in _LINES.findall(record["data"]):
            entries += [line[start:start + journal.MAX_MESSAGE] for start in range(0, len(line), journal.MAX_MESSAGE)]
        return entries

    def _fields(self, record: dict, entry: bytes) -> list[tuple[str, str | bytes]]:
        stream = record.get("name") or "stdout"
        return [("MESSAGE", entry.rstrip(b"\n")), ("PRIORITY", "3" if stream == "stderr" else "6"),
                ("SYSLOG_IDENTIFIER", self.identifier), ("GCIRCUS_WATCHER", self.watcher_name),
                ("GCIRCUS_PID", str(record.get("pid"))), ("GCIRCUS_WID", str(record.get("wid"))),
                ("GCIRCUS_STREAM", stream)]


class QueueStream(queue.Queue):
    """Puts every record on this queue, for library users who consume output themselves."""

    def __init__(self, **extra):
        _warn_ignored("QueueStream", extra)
        super().__init__()

    def __call__(self, record: dict) -> None:
        self.put(record)

    def reopen(self) -> None:
        """Nothing to reopen."""

    def close(self) -> None:
        """Nothing to close."""


# By the names gcircus.options.STREAM_CLASS_NAMES declares (a test checks the two agree).
STREAM_CLASSES = {cls.__name__: cls for cls in (FileStream, WatchedFileStream, TimedRotatingFileStream, QueueStream,
                                                 StdoutStream, FancyStdoutStream, PrefixedStdoutStream, JournalStream)}
