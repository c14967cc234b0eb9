"""gcircusd's own log records leave the hub through a bounded queue; one native thread writes them.

A log handler writes where it was told (stdout, a file, syslog), and any of those can block: a container runtime or
a `| tee` that stops reading fills the pipe, an NFS server hangs, syslog's socket fills. Written on the gevent hub,
one blocked write would stop everything gcircusd does. So every handler is put behind a `DeferredHandler`: the hub
(or a worker thread) only formats the record and queues it, never waiting; a real OS thread, not a greenlet and not
gevent's shared thread pool, does the writing and may block as long as the output does. When the queue is full,
records are dropped and counted, and the count is written where the gap is, as one "N log records dropped" line,
as soon as the output takes records again (or at exit).
"""
from __future__ import annotations

import logging
import logging.handlers
import os
import sys

import gevent
import gevent.event
from gevent import monkey

MAX_RECORDS = 1000  # records held while the log output does not take them
MAX_BYTES = 1 << 20  # characters of formatted messages held
STOP_TIMEOUT = 5.0  # seconds the log may take at exit to write what is queued
REOPEN_TIMEOUT = 2.0  # seconds `reopen` waits for the log files to be reopened (behind what is queued)

# The writer must be a real thread even in a program that monkey-patched threading or queue.
_start_thread = monkey.get_original("_thread", "start_new_thread")
_allocate_lock = monkey.get_original("_thread", "allocate_lock")
_SimpleQueue = monkey.get_original("queue", "SimpleQueue")


class FdStream:
    """A text stream writing straight to a file descriptor.

    It has no buffer, so no buffer lock that a write blocked on a full pipe could hold: the interpreter's exit (which
    flushes sys.stdout and sys.stderr) never waits for it. Text that cannot be encoded is escaped, not an error.
    """

    def __init__(self, fd: int):
        self.fd = fd

    def write(self, text: str) -> None:
        view = memoryview(text.encode("utf-8", "backslashreplace"))
        while view:
            view = view[os.write(self.fd, view):]

    def flush(self) -> None:
        """Nothing is buffered."""

    def fileno(self) -> int:
        return self.fd


def reopen_file(handler: logging.FileHandler) -> None:
    """Close `handler`'s file and open its path again (logrotate moved it); OSError leaves the stream None."""
    handler.acquire()
    try:
        handler.close()
        handler.stream = handler._open()
    finally:
        handler.release()


class _Marker:
    """A request queued behind the records before it (reopen, stop): done once the writer got to it."""

    def __init__(self, action, hub=None, last: bool = False):
        self.action = action
        self.last = last  # the writer stops after this one
        self.done = _allocate_lock()
        self.done.acquire()
        self._loop = hub.loop if hub is not None else None
        self._event = gevent.event.Event() if hub is not None else None

    def run(self) -> None:
        try:
            self.action()
        finally:
            self.done.release()
            if self._loop is not None:
                self._loop.run_callback_threadsafe(self._event.set)  # wake the greenlet waiting in `wait`

    def wait(self, timeout: float) -> bool:
        """Wait until the writer ran this: cooperatively if made on a hub, else by blocking (at exit)."""
        if self._event is not None:
            return self._event.wait(timeout)
        return self.done.acquire(timeout=timeout)


class LogWriter:
    """The queue of formatted records and the thread that hands them to the real handlers, in order."""

    def __init__(self, max_records: int = MAX_RECORDS, max_bytes: int = MAX_BYTES):
        self.max_records = max_records
        self.max_bytes = max_bytes
        self.handlers: list[DeferredHandler] = []
        self._pid = None
        self._start()

    def _start(self) -> None:
        # After a fork (gcircusd --daemon) the thread is gone and a lock may be held by it: start afresh. Records
        # queued before the fork are written by the parent's thread, so the child's copies are left behind.
        self._pid = os.getpid()
        self._lock = _allocate_lock()
        self._queue = _SimpleQueue()
        self._held_records = 0
        self._held_bytes = 0
        self._stopped = False
        _start_thread(self._write_forever, ())

    def offer(self, target: logging.Handler, record: logging.LogRecord, force: bool = False) -> bool:
        """Queue `record` for `target` unless the queue is full (`force`: a few control records may exceed it)."""
        if self._pid != os.getpid():
            self._start()
        size = len(record.msg) if isinstance(record.msg, str) else 0
        with self._lock:
            if self._stopped:
                return False
            full = self._held_records >= self.max_records or self._held_bytes + size > self.max_bytes
            if full and not force:
                return False
            self._held_records += 1
            self._held_bytes += size
        self._queue.put((target, record, size))
        return True

    def reopen(self, timeout: float = REOPEN_TIMEOUT) -> bool:
        """Reopen the log files once the records queued so far are written to the old ones (logrotate)."""
        if not any(isinstance(handler.target, logging.FileHandler) for handler in self.handlers):
            return True
        return self._request(_Marker(self._reopen_files, gevent.get_hub()), timeout)

    def run_in_order(self, action, timeout: float = REOPEN_TIMEOUT) -> bool:
        """Run `action` in the writer thread once what is queued so far is written; wait (this greenlet only) at
        most `timeout` for it (the audit log reopens its file so, gcircus.control.audit)."""
        return self._request(_Marker(action, gevent.get_hub()), timeout)

    def flush(self, timeout: float = REOPEN_TIMEOUT) -> bool:
        """Wait (this greenlet only) until the records queued so far are written: gcircusd is about to exec."""
        return self._request(_Marker(self._flush_handlers, gevent.get_hub()), timeout)

    def stop(self, timeout: float = STOP_TIMEOUT) -> bool:
        """Write what is queued (with the count of what was dropped), waiting at most `timeout`; then stop.

        Called at exit, where no hub may be running: this blocks. If the output still does not take records, the
        rest is abandoned and the handlers get fresh locks, so that logging's own shutdown cannot wait forever
        for the one the blocked writer holds. Stopping again does nothing (gcircusd stops the log to write it out
        before it tells a start-up failure, then exits).
        """
        if self._pid == os.getpid():  # (a forked child starts afresh: the parent's lock may be held)
            with self._lock:
                if self._stopped:
                    return True
        for handler in self.handlers:
            handler.report_dropped(force=True)
        marker = _Marker(self._flush_handlers, last=True)
        done = self._request(marker, timeout)
        with self._lock:
            self._stopped = True
        if not done:
            for handler in self.handlers:
                handler.target.createLock()
        return done

    def _request(self, marker: _Marker, timeout: float) -> bool:
        if self._pid != os.getpid():
            self._start()
        self._queue.put(marker)
        return marker.wait(timeout)

    def _reopen_files(self) -> None:
        for handler in self.handlers:
            if isinstance(handler.target, logging.FileHandler):
                try:
                    reopen_file(handler.target)
                except OSError as exc:  # the stream stays None: the handler tries again at its next record
                    FdStream(2).write(f"gcircusd: cannot reopen the log file {handler.target.baseFilename}: {exc}\n")

    def _flush_handlers(self) -> None:
        for handler in self.handlers:
            try:
                handler.target.flush()
            except Exception:  # noqa: BLE001 - at exit a handler failing to flush has nowhere left to be reported
                pass

    def _write_forever(self) -> None:
        while True:
            item = self._queue.get()
            if isinstance(item, _Marker):
                item.run()
                if item.last:
                    return
                continue
            target, record, size = item
            try:
                target.handle(record)  # the handler's own filters and level; errors go to its handleError
            except Exception:  # noqa: BLE001 - handle() reports its own errors; nothing must end this thread
                pass
            with self._lock:
                self._held_records -= 1
                self._held_bytes -= size


class DeferredHandler(logging.handlers.QueueHandler):
    """Stands in for a real handler: formats each record where it is logged and queues it for the writer thread."""

    def __init__(self, target: logging.Handler, writer: LogWriter):
        super().__init__(None)
        self.target = target
        self.writer = writer
        self.dropped = 0  # records dropped since the last notice; guarded by this handler's lock
        self.setLevel(target.level)
        writer.handlers.append(self)

    def enqueue(self, record: logging.LogRecord) -> None:
        self.report_dropped()
        if self.writer.offer(self.target, record):
            return
        self.dropped += 1

    def report_dropped(self, force: bool = False) -> None:
        """Queue the "N log records dropped" notice where the gap is, if records were dropped and there is room."""
        if self.dropped and self.writer.offer(self.target, self._notice(self.dropped), force=force):
            self.dropped = 0

    def _notice(self, count: int) -> logging.LogRecord:
        record = logging.LogRecord("gcircus.log", logging.WARNING, __file__, 0,
                                   "%d log records dropped: the log output did not take them in time", (count,),
                                   None)
        return self.prepare(record)

    def handleError(self, record: logging.LogRecord) -> None:
        """A record that cannot be formatted: say so through the queue (stderr might block the hub)."""
        error = sys.exc_info()[1]
        notice = logging.LogRecord("gcircus.log", logging.ERROR, __file__, 0, "a log record could not be formatted "
                                   "(%s): %r", (error, record.msg), None)
        try:
            self.writer.offer(self.target, self.prepare(notice))
        except Exception:  # noqa: BLE001 - a record that cannot even be described is dropped
            pass


class HubErrorLog:
    """The hub's `exception_stream`: what gevent prints for a failed greenlet or pool task becomes one log record.

    gevent writes it to sys.stderr on the hub, where a stderr pipe nobody reads would block everything. The pieces
    of one report are written in one go; the record is made right after, from a hub callback.
    """

    MAX_TEXT = 64 * 1024  # characters kept of one report

    def __init__(self, logger: logging.Logger):
        self.logger = logger
        self._parts: list[str] = []
        self._size = 0

    def write(self, text: str) -> None:
        if not self._parts:
            gevent.get_hub().loop.run_callback(self.flush)
        if self._size < self.MAX_TEXT:
            self._parts.append(text[:self.MAX_TEXT - self._size])
            self._size += len(self._parts[-1])

    def flush(self) -> None:
        text, self._parts, self._size = "".join(self._parts).rstrip(), [], 0
        if text:
            self.logger.error("%s", text)


def defer_handlers(writer: LogWriter) -> None:
    """Put every handler of every logger behind `writer` (a logging config file may attach them anywhere).

    A stream handler on sys.stdout or sys.stderr is switched to an unbuffered stream on the same descriptor.
    """
    loggers = [logging.getLogger()] + [logger for logger in logging.Logger.manager.loggerDict.values()
                                       if isinstance(logger, logging.Logger)]
    for logger in loggers:
        for handler in list(logger.handlers):
            if isinstance(handler, DeferredHandler):
                continue
            if isinstance(handler, logging.StreamHandler) and handler.stream in (sys.stdout, sys.stderr):
                handler.setStream(FdStream(handler.stream.fileno()))
            logger.removeHandler(handler)
            logger.addHandler(DeferredHandler(handler, writer))

