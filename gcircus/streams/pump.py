"""Moving child output from pipes to sinks: a reader per pipe (a greenlet while it has output to read), one writer
per sink.

Readers do large non-blocking reads and cut the data into records of whole lines, so a sink never sees half a line
(a line with no newline is flushed after a short idle time or past a maximum length, marked `partial`). A writer
owns a bounded queue and calls its sink in gevent's thread pool, so file I/O never runs on the hub; when the queue
is full the readers stop reading, the pipe fills and only that child waits (back-pressure). A failing sink is
logged once, reported through `on_error`, and retried until it recovers: nothing is dropped.
"""
from __future__ import annotations

import collections
import contextlib
import errno
import fcntl
import logging
import os
import time

import gevent
import gevent.event
from gevent.socket import wait_read

log = logging.getLogger(__name__)

READ_SIZE = 1 << 20  # bytes per read; the pipe is enlarged to match where the kernel allows it
PIPE_SIZE = 1 << 20
MAX_LINE = 1 << 20  # a line longer than this is passed on in pieces, each marked partial
IDLE_FLUSH = 0.2  # seconds a partial line may wait for its newline before it is passed on
QUEUE_LIMIT = 8 << 20  # bytes a writer holds before its readers pause
RETRY_DELAYS = (0.1, 0.5, 1.0, 2.0, 5.0)
CLOSE_FLUSH = 5.0  # seconds a writer has at close to write what is queued
CLOSE_WAIT = 2.0  # seconds a sink's close may take (a blocked output must not hold up a stop)
F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)


class StreamCounters:
    """What the sinks of one stream took (bytes and lines written) and how often a sink call failed, for metrics."""

    __slots__ = ("bytes", "lines", "failures")

    def __init__(self):
        self.bytes = self.lines = self.failures = 0

    def written(self, data: bytes) -> None:
        self.bytes += len(data)
        self.lines += data.count(b"\n") + (not data.endswith(b"\n"))


class StreamWriter:
    """Feeds one sink from a bounded queue, in order, off the hub."""

    def __init__(self, sink, label: str, on_error=None, limit: int = QUEUE_LIMIT, pool=None,
                 counters: StreamCounters | None = None):
        self.sink = sink
        self.label = label
        self.counters = counters if counters is not None else StreamCounters()
        self._pool = pool if pool is not None else gevent.get_hub().threadpool  # where the sink is called
        self.on_error = on_error
        self.limit = limit
        self.queued = 0
        self._records: collections.deque = collections.deque()
        self._work = gevent.event.Event()
        self._room = gevent.event.Event()
        self._room.set()
        self._idle = gevent.event.Event()
        self._idle.set()
        self._requested = dict.fromkeys(("prepare", "reopen"), False)  # sink methods to call before the next record
        self._closing = False
        self._failing = False
        self._last_error = ""
        self._broken = 0  # records a sink raising something else than OSError has dropped since it last worked
        self._put_count = 0  # records queued since the start, and how many of them the sink has taken
        self._done_count = 0
        self._progress = gevent.event.Event()
        self._current: dict | None = None  # the record being given to the sink (in a thread, or retried)
        self._calling = False  # a sink call runs in a thread right now
        self._call_done = gevent.event.Event()
        self._call_done.set()
        self._running = gevent.event.Event()  # cleared by `hold`: no new sink call starts
        self._running.set()
        self._loop = gevent.spawn(self._write_forever)

    def put(self, record: dict, force: bool = False) -> None:
        """Queue a record. Readers wait for room first; `force` (a final drain) may exceed the limit."""
        self._records.append(record)
        self._put_count += 1
        self.queued += len(record["data"])
        if self.queued >= self.limit:
            self._room.clear()
        self._idle.clear()
        self._work.set()

    def wait_room(self) -> None:
        self._room.wait()

    def mark(self) -> int:
        """A mark for the records queued so far, to pass to `wait_written`."""
        return self._put_count

    def wait_written(self, mark: int, timeout: float | None = None) -> bool:
        """Wait until the records queued up to `mark` are written (a sibling's later output is not waited for).

        Gives up at `timeout`, and at once while the sink fails: the records stay queued and are written when it
        recovers, but a failing disk must not hold up the caller (reaping a child).
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while self._done_count < mark:
            if self._failing or self._loop.dead:
                return False
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return False
            self._progress.wait(remaining)
        return True

    def call_in_order(self, func) -> None:
        """Run `func()` in the sink's thread after the records queued so far and before any later one.

        Used to restore a sink's line state at a hand-over: set on the hub, it could race with a record of another
        process being rendered in the thread; queued, it takes effect exactly between two records.
        """
        self.put({"data": b"", "call": func}, force=True)

    def hand_over(self, match) -> list[tuple[dict, bool]]:
        """Take the queued records for which `match(record)` is true out of this writer, for another image to write.

        Returns (record, in_flight) pairs in queue order. A record the sink is being given right now cannot be taken
        back: it is returned with in_flight True and its data reduced to what the sink says is still unwritten
        (exact between retries of a failing sink; while a call runs in a thread, as the sink knew before that
        call). The writer keeps trying that one; the others are skipped when the loop reaches them.
        """
        taken = []
        for record in self._records:
            if record.get("handed_over") or "call" in record or not match(record):
                continue
            if id(record) == id(self._current):  # (by id: `is` would narrow `record` to Optional)
                rest_of = getattr(self.sink, "unwritten", None)
                rest = rest_of(record) if rest_of is not None else None
                taken.append(({**record, "data": record["data"] if rest is None else rest}, True))
                continue
            record["handed_over"] = True
            taken.append((record, False))
        return taken

    @property
    def calling(self) -> bool:
        """Whether a sink call runs in a thread now (its outcome is not known yet)."""
        return self._calling

    def hold(self, timeout: float | None = None) -> bool:
        """Start no new sink call, and wait (up to `timeout`) for the one running to return; `release` undoes it.

        A hand-over takes records out of the queue: it must know which one the sink has. True once no call runs.
        """
        self._running.clear()
        return self._call_done.wait(timeout)

    def release(self) -> None:
        self._running.set()

    def _advance(self) -> None:
        progress, self._progress = self._progress, gevent.event.Event()
        progress.set()

    def reopen(self) -> None:
        """Reopen the sink's files (after logrotate) before the next record."""
        self._request("reopen")

    def prepare(self) -> None:
        """Have the sink open its files now, before any record, off the hub (a failure is a sink failure as usual).

        Tools that tail or ship a log file from start-up expect it to exist once the watcher has started.
        """
        self._request("prepare")

    def _request(self, method: str) -> None:
        self._requested[method] = True
        self._idle.clear()
        self._work.set()

    def flush(self, timeout: float | None = None) -> bool:
        """Block until everything queued has been written (or `timeout`)."""
        return self._idle.wait(timeout)

    def close(self, timeout: float | None = CLOSE_FLUSH) -> None:
        """Write what is queued (for at most `timeout` seconds), then close the sink; log exactly what was lost.

        The readers feeding this writer must be done: records still arriving would keep it from ever finishing.
        """
        self._closing = True
        self._work.set()
        self._loop.join(timeout)
        if not self._loop.dead:
            self._loop.kill()
        lines, size = self.unwritten()
        if size:
            why = (f"the sink kept failing ({self._last_error})" if self._failing
                   else f"the sink did not take them within {timeout:g}s")
            log.error("%s: %d lines (%d bytes) of output not written at close: %s", self.label, lines, size, why)
        close = getattr(self.sink, "close", None)
        if close is not None:
            try:
                error = self._pool.spawn(_call, close, ()).get(timeout=CLOSE_WAIT)
            except gevent.Timeout:
                log.warning("%s: the sink did not close within %gs (its output is blocked)", self.label, CLOSE_WAIT)
                return
            if error is not None and not self._failing:
                log.warning("%s: closing the sink failed: %s", self.label, error)

    def unwritten(self) -> tuple[int, int]:
        """(lines, bytes) of queued output that did not reach the sink, counting only the unwritten rest of a record
        whose write failed midway."""
        lines = size = 0
        rest_of = getattr(self.sink, "unwritten", None)
        for index, record in enumerate(self._records):
            if record.get("handed_over"):
                continue  # another image writes it
            data = record["data"]
            if index == 0 and rest_of is not None:
                rest = rest_of(record)
                data = data if rest is None else rest
            if data:
                lines += data.count(b"\n") + (not data.endswith(b"\n"))
                size += len(data)
        return lines, size

    def _write_forever(self) -> None:
        pool = self._pool
        while True:
            self._running.wait()
            requested = next((name for name, wanted in self._requested.items() if wanted), None)
            if not self._records and requested is None:
                self._idle.set()
                if self._closing:
                    return
                self._work.clear()
                self._work.wait()
                continue
            if requested is not None:
                self._requested[requested] = False
                method = getattr(self.sink, requested, None)
                if method is not None:
                    self._attempt(pool, method)
                continue
            record = self._records[0]
            if "call" in record:
                self._attempt(pool, record["call"])
            elif not record.get("handed_over"):
                self._current = record
                try:
                    if self._attempt(pool, self.sink, record):
                        self.counters.written(record["data"])
                finally:
                    self._current = None
            self._records.popleft()
            self._done_count += 1
            self._advance()
            self.queued -= len(record["data"])
            if self.queued < self.limit // 2:
                self._room.set()

    def _attempt(self, pool, func, *args) -> bool:
        """Run a sink call until it succeeds (True), or drop it if the sink raises something else than OSError (False);
        report the first failure and the recovery once each, count every failed call.

        One line each, without a traceback (that is logged at debug level): a full disk fails every retry.
        """
        attempt = 0
        while True:
            self._calling = True
            self._call_done.clear()
            try:
                error = pool.apply(_call, (func, args))
            finally:
                self._calling = False
                self._call_done.set()
            if error is not None:
                self.counters.failures += 1
            if isinstance(error, OSError):
                self._last_error = str(error)
                if not self._failing:
                    self._failing = True
                    log.error("%s: writing failed (%s); output is kept and retried, that child may block",
                              self.label, error)
                    log.debug("%s: the failure", self.label, exc_info=error)
                    if self.on_error is not None:
                        self.on_error(str(error))
                    self._advance()  # wait_written gives up while the sink fails
                if self._closing and attempt >= len(RETRY_DELAYS):
                    raise gevent.GreenletExit
                gevent.sleep(RETRY_DELAYS[min(attempt, len(RETRY_DELAYS) - 1)])
                self._running.wait()  # held for a hand-over: the record must not be retried while it is described
                attempt += 1
                continue
            if error is not None:  # a buggy third-party sink must not stop the pump: that record is dropped
                if not self._broken:
                    log.error("%s: the sink raised %s: %s; its records are dropped until it works again",
                              self.label, type(error).__name__, error)
                    log.debug("%s: the failure", self.label, exc_info=error)
                self._broken += 1
                return False
            if self._failing:
                self._failing = False
                log.warning("%s: writing works again", self.label)
                if self.on_error is not None:
                    self.on_error(None)
            if self._broken:
                log.warning("%s: the sink works again (%d records dropped)", self.label, self._broken)
                self._broken = 0
            return True


def _call(func, args):
    """Run `func(*args)` in a pool thread and return the exception it raised, or None.

    Returning it, instead of letting the pool re-raise it, keeps gevent from printing a traceback to stderr for every
    failed write (and from writing to stderr on the hub at all).
    """
    try:
        func(*args)
    except Exception as exc:  # noqa: BLE001 - handed back to the writer, which decides what it means
        return exc
    return None


_buffer = memoryview(bytearray(READ_SIZE))  # shared: readers run on the one hub thread and copy out at once


def _read(fd: int) -> bytes:
    """Read what the pipe holds (up to READ_SIZE) as bytes of exactly that size.

    os.read(fd, READ_SIZE) mallocs READ_SIZE bytes and shrinks them to what was read: a small line left megabyte
    holes in the C heap that it never gave back (about 100 bytes of growth per spawned process with a stream).
    """
    size = os.readv(fd, [_buffer])
    return bytes(_buffer[:size])


class PipeReader:
    """Reads one child pipe to EOF and hands whole-line records to a writer.

    Its greenlet runs only while there is something to do: it reads until the pipe is empty, then ends and leaves an
    io watcher on the pipe, whose callback starts a new one when output arrives. An idle process thus costs no
    greenlet: a greenlet parked in wait_read held about 10 KiB (its saved stack and frames), 100 MiB for 10,000
    processes with a stream, most of them silent most of the time. A greenlet stays while a line waits for its
    newline (see IDLE_FLUSH) or while the writer's queue is full (back-pressure).
    """

    def __init__(self, fd: int, writer: StreamWriter, pid: int, name: str, wid: int, pending: bytes = b"",
                 tail=None):
        """`pending`: the head of a line read before (by a previous image, see `detach`), continued by the next read.

        `tail` (a gcircus.streams.tail.OutputTail) is given every record too, for the dashboard's log tail.
        """
        self.fd = fd
        self.writer = writer
        self.tail = tail
        self.pid = pid
        self.name = name
        self.wid = wid
        self.eof = gevent.event.Event()
        self._pending = pending
        self._detached = False
        self._finished = False
        flags = fcntl.fcntl(fd, fcntl.F_GETFL)
        fcntl.fcntl(fd, fcntl.F_SETFL, flags | os.O_NONBLOCK)
        with contextlib.suppress(OSError):  # past /proc/sys/fs/pipe-max-size when unprivileged: the default size works
            fcntl.fcntl(fd, F_SETPIPE_SZ, PIPE_SIZE)
        self._readable = gevent.get_hub().loop.io(fd, 1)  # armed while no greenlet reads (see _park)
        self._loop: gevent.Greenlet | None = gevent.spawn(self._read_while_busy)  # owned: see close and detach

    def _on_readable(self) -> None:
        """The io watcher's callback, on the hub: output (or EOF) arrived on an idle pipe."""
        self._readable.stop()
        self._loop = gevent.spawn(self._read_while_busy)

    def _read_while_busy(self) -> None:
        finish = True
        try:
            while True:
                self.writer.wait_room()
                if not self._read_available(force=False):
                    return  # EOF
                if self.writer.queued >= self.writer.limit:
                    continue  # the queue filled up before the pipe emptied: wait for room, then read on
                if not self._pending:
                    finish = False
                    self._park()
                    return
                # A line without its newline yet is passed on only when the child has been silent for IDLE_FLUSH
                # seconds: while output keeps coming (or the sink holds us back) it waits for its newline, so
                # another process's lines can never land inside it.
                try:
                    wait_read(self.fd, timeout=IDLE_FLUSH)
                except TimeoutError:
                    self._flush_partial()
        finally:
            if finish:
                self._finish()

    def _park(self) -> None:
        """The pipe is empty and no partial line waits: end this greenlet, and start another when output comes."""
        self._loop = None
        self._readable.start(self._on_readable)

    def _read_available(self, force: bool) -> bool:
        """Read until the pipe is empty; False at EOF."""
        while True:
            try:
                data = _read(self.fd)
            except BlockingIOError:
                return True
            except OSError as exc:
                if exc.errno in (errno.EBADF, errno.EIO):
                    return False
                raise
            if not data:
                return False
            self._feed(data, force)
            if not force and self.writer.queued >= self.writer.limit:
                return True

    def _feed(self, data: bytes, force: bool) -> None:
        data = self._pending + data if self._pending else data
        cut = data.rfind(b"\n") + 1
        if cut:
            self._emit(data[:cut], False, force)
            data = data[cut:]
        while len(data) >= MAX_LINE:
            self._emit(data[:MAX_LINE], True, force)
            data = data[MAX_LINE:]
        self._pending = data

    def _flush_partial(self, force: bool = False) -> None:
        if self._pending:
            data, self._pending = self._pending, b""
            self._emit(data, True, force)

    def _emit(self, data: bytes, partial: bool, force: bool) -> None:
        record = {"data": data, "pid": self.pid, "name": self.name, "wid": self.wid, "partial": partial}
        self.writer.put(record, force=force)
        if self.tail is not None:
            self.tail.add(record)

    def drain(self) -> None:
        """Take everything the pipe holds now, whatever the queue's limit (the child has exited).

        The pipe's capacity bounds what this can add. A grandchild may still hold the pipe open, so this does not
        wait for EOF: the reader keeps running and passes on later output as usual.
        """
        if self.eof.is_set():
            return
        if not self._read_available(force=True):
            self._flush_partial(force=True)

    def _stop_reading(self) -> None:
        """Stop the io watcher and kill the reading greenlet, if any (its `finally` runs `_finish` unless detached)."""
        self._readable.stop()
        loop, self._loop = self._loop, None
        if loop is not None:
            loop.kill()

    def detach(self) -> tuple[int | None, bytes]:
        """Stop reading, leave the pipe open, and return (fd, the head of a line read but not passed on).

        For a hand-over to a new image: the fd and that head are all the new reader needs. Reading runs on the hub
        without yielding, so when this runs the reader is parked between reads (idle, waiting for data or for room
        in the writer's queue): nothing is half read. Output the child writes from now on waits in the pipe. A
        reader already at end of file returns (None, b""): its fd is closed and everything it read was passed on.
        """
        if self.eof.is_set():
            return None, b""
        self._detached = True
        self._stop_reading()
        self._readable.close()
        self.eof.set()  # also when no greenlet ran (idle, or not started yet): no `finally` then
        pending, self._pending = self._pending, b""
        return self.fd, pending

    def _finish(self) -> None:
        """At EOF or close, once: pass on a last partial line and close the pipe (unless handed over)."""
        if self._finished:
            return
        self._finished = True
        self._readable.stop()
        self._readable.close()
        if self._detached:  # handed over: the head of a line and the fd belong to the next reader
            self.eof.set()
            return
        self._flush_partial(force=True)
        with contextlib.suppress(OSError):
            os.close(self.fd)
        self.eof.set()

    def close(self) -> None:
        """Pass on what the pipe holds now, then stop reading and close it (whoever still holds it gets EPIPE)."""
        self.drain()
        self._stop_reading()
        self._finish()  # when no greenlet was reading (idle, or not started yet); else a no-op: it ran in its `finally`
