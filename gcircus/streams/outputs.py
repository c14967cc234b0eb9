"""A watcher's output plumbing: which streams are piped, the sinks and writers behind them, a reader per pipe.

One sink (and writer) serves all processes of a watcher, so their lines share one file without interleaving
mid-line; a filename with `$(circus.wid)` gets one sink per worker id instead. An unconfigured stream is not piped
at all: the child inherits gcircusd's own stdout/stderr, as in Circus, unless `prefix_output` asks for a prefixing
sink (`name[wid] | line`).
"""
from __future__ import annotations

import logging
import os
import time

import gevent
import gevent.pool

from gcircus.expand import expand_circus_vars
from gcircus.streams import factory, handover
from gcircus.streams.console import console_pool
from gcircus.streams.pump import PipeReader, StreamCounters, StreamWriter
from gcircus.streams.tail import OutputTail

log = logging.getLogger(__name__)

STREAMS = ("stdout", "stderr")
DRAIN_WAIT = 2.0  # seconds an exit report may wait for the child's last output to be written
READER_WAIT = 1.0  # seconds a stopping watcher waits for its pipes to reach end of file
HANDOVER_WAIT = 2.0  # seconds an export waits for the sinks to take what was read (the rest goes to the next image)


class WatcherOutputs:
    """Streams of one watcher; `notify(event, **fields)` publishes `stream` events on sink failure and recovery."""

    def __init__(self, watcher_name: str, confs: dict[str, dict], prefix_output: bool = False, notify=None):
        self.watcher_name = watcher_name
        self.confs = {name: dict(confs.get(name) or {}) for name in STREAMS}
        self.prefix_output = prefix_output
        self.notify = notify
        for name in STREAMS:
            self._validate(name, self.confs[name])
        self._writers: dict[tuple, StreamWriter] = {}
        # Per stream, what its sinks took and their failures, whichever writer served it (for gcircusd's metrics).
        self.counters = {name: StreamCounters() for name in STREAMS}
        self._readers: dict[int, list[PipeReader]] = {}  # by pid, until the process exits
        self._open_readers: set[PipeReader] = set()  # until end of file (leftover processes may hold a pipe)
        self._retiring = gevent.pool.Group()  # closing writers replaced by `update` once their readers are done
        self._image = os.urandom(16).hex()  # names this object in its exports: adopting one's own export (exec failed)
        self.tail = OutputTail()  # the latest output of every piped stream, for the dashboard

    def _validate(self, name: str, conf: dict) -> None:
        """Refuse a bad stream configuration when the watcher is built or changed, not at the first write."""
        if conf:
            sample = {k: expand_circus_vars(v, {"wid": "1"}) if isinstance(v, str) else v for k, v in conf.items()}
            factory.check_stream(sample, self.watcher_name)

    def prepare(self) -> None:
        """The watcher starts: open the configured sinks now, as Circus does, so their files exist from the start.

        Sinks with a per-process filename ($(circus.wid)) are opened at each spawn instead (see _writer).
        """
        for name in STREAMS:
            conf = self.confs[name]
            if conf and not factory.needs_per_process(conf):
                self._writer(name, 0, {})

    def wants_pipe(self, name: str) -> bool:
        return bool(self.confs[name]) or self.prefix_output

    # -- per process ---------------------------------------------------------------------------------------------

    def attach(self, process) -> None:
        """Start a reader on each piped stream of a freshly spawned process.

        All or nothing: if a reader cannot be set up (gcircusd out of fds at the dup), those already started are
        closed and the error is raised; the pipes not taken stay on the process, which the caller stops.
        """
        readers = []
        try:
            for name in STREAMS:
                pipe = getattr(process, name)
                if pipe is None:
                    continue
                writer = self._writer(name, process.wid, process.env or {})
                fd = os.dup(pipe.fileno())
                try:
                    readers.append(PipeReader(fd, writer, process.pid, name, process.wid, tail=self.tail))
                except BaseException:
                    os.close(fd)
                    raise
                pipe.close()
                setattr(process, name, None)
        except BaseException:
            for reader in readers:
                reader.close()
            raise
        if readers:
            self._readers[process.pid] = readers
        for reader in readers:
            self._open_readers.add(reader)
            reader.eof.rawlink(lambda _event, r=reader: self._open_readers.discard(r))

    def drain(self, process) -> None:
        """The process has exited: take what its pipes hold and write it out before its exit is reported.

        Waiting for the write is bounded (DRAIN_WAIT) and skipped while a sink fails; the output then stays queued
        and is written when the sink recovers.
        """
        readers = self._readers.pop(process.pid, [])
        for reader in readers:
            reader.drain()
        marks = {id(reader.writer): (reader.writer, reader.writer.mark()) for reader in readers}
        deadline = time.monotonic() + DRAIN_WAIT
        for writer, mark in marks.values():
            writer.wait_written(mark, max(0.0, deadline - time.monotonic()))

    # -- hand-over to a new gcircusd image (in-place upgrade) ------------------------------------------------------

    def export(self, process, timeout: float = HANDOVER_WAIT) -> dict:
        """Stop reading `process`'s pipes and describe them for `adopt` in a new image (JSON-safe; see handover.py).

        The pipes are left open (the caller makes the fds inheritable); this object no longer reads or closes them.
        What was already read is given to the sinks, waiting at most `timeout` (at once while a sink fails, which is
        reported as usual); what they did not take by then is in the description, so nothing is lost.
        """
        return self.export_all([process], timeout)[process.pid]

    def export_all(self, processes, timeout: float = HANDOVER_WAIT) -> dict[int, dict]:
        """`export` for many processes with one shared wait (by pid): 1000 processes cost one `timeout`, not 1000.

        All readers stop first, so no new record enters a writer while the sinks catch up.
        """
        detached = {process.pid: self._detach(process) for process in processes}
        marks = {id(reader.writer): (reader.writer, reader.writer.mark())
                 for readers in detached.values() for reader, _fd, _partial in readers}
        deadline = time.monotonic() + timeout
        for writer, mark in marks.values():
            writer.wait_written(mark, max(0.0, deadline - time.monotonic()))
        # What a sink did not take by now goes to the next image; a sink call under way is waited for (as long
        # again at most), so that it is known whether its record was written.
        for writer, _mark in marks.values():
            writer.hold(max(0.0, deadline + timeout - time.monotonic()))
        try:
            return {pid: {"version": handover.VERSION, "pid": pid, "image": self._image,
                          "streams": {reader.name: self._describe(reader, fd, partial)
                                      for reader, fd, partial in readers}}
                    for pid, readers in detached.items()}
        finally:
            for writer, _mark in marks.values():
                writer.release()

    def _detach(self, process) -> list[tuple]:
        readers = self._readers.pop(process.pid, [])
        detached = []
        for reader in readers:
            fd, partial = reader.detach()
            self._open_readers.discard(reader)
            detached.append((reader, fd, partial))
        return detached

    def _describe(self, reader, fd: int | None, partial: bytes) -> dict:
        source = (reader.pid, reader.name)
        unwritten = reader.writer.hand_over(lambda record: (record.get("pid"), record.get("name")) == source)
        if unwritten:
            log.warning("watcher %r: pid %d %s: %d records not written before the hand-over%s; the next image "
                        "writes them", self.watcher_name, reader.pid, reader.name, len(unwritten),
                        " (one being written now: it may be written twice)" if reader.writer.calling else "")
        open_source, rollover_at = handover.sink_line_state(reader.writer.sink)
        return handover.describe_stream(fd, partial, unwritten, open_source == source, rollover_at)

    def adopt(self, process, exported: dict) -> None:
        """Read again the pipes `export` described, in this (new) image: the sinks get every byte once, in order.

        `process` has the exported pid (and its wid and env, which choose per-process sinks); `exported` is export's
        result, through JSON. Order: the sink's line state, then the records the old sinks did not take, then the
        line head the old reader held, in front of what the pipe holds. This object takes the fds over (it closes
        them at end of file). HandoverError (a ValueError) if the description does not fit the process.
        """
        streams = handover.parse(process, exported)  # all checked first: all streams are taken, or none
        own = exported.get("image") == self._image  # the exec failed: our writer still holds the in-flight record
        readers = []
        for name, stream in streams.items():
            writer = self._writer(name, process.wid, process.env or {})
            if stream.line_open or stream.rollover_at is not None:
                open_source = (process.pid, name) if stream.line_open else None
                writer.call_in_order(lambda w=writer, s=open_source, r=stream.rollover_at:
                                     handover.restore_sink_state(w.sink, s, r))
            for data, partial, in_flight in stream.unwritten:
                if not (own and in_flight):
                    writer.put({"data": data, "pid": process.pid, "name": name, "wid": process.wid,
                                "partial": partial}, force=True)
            if stream.fd is not None:
                readers.append(PipeReader(stream.fd, writer, process.pid, name, process.wid, pending=stream.partial,
                                          tail=self.tail))
        if readers:
            self._readers[process.pid] = readers
        for reader in readers:
            self._open_readers.add(reader)
            reader.eof.rawlink(lambda _event, r=reader: self._open_readers.discard(r))

    # -- sinks ---------------------------------------------------------------------------------------------------

    def _writer(self, name: str, wid: int, env: dict) -> StreamWriter:
        conf = self.confs[name]
        if not conf:
            key = (name, "prefix")
        elif factory.needs_per_process(conf):
            conf = {k: expand_circus_vars(v, {"wid": str(wid), "env": env}) if isinstance(v, str) else v
                    for k, v in conf.items()}
            key = (name, conf.get("filename"))
        else:
            key = (name, None)
        writer = self._writers.get(key)
        if writer is None:
            if not self.confs[name]:
                sink = factory.prefixed_stdout(self.watcher_name, 1 if name == "stdout" else 2)
            else:
                sink = _LazySink(lambda c=conf: factory.get_stream(c, self.watcher_name))
            label = f"watcher {self.watcher_name!r} {name}"
            fd = self._output_fd(name, conf)
            writer = StreamWriter(sink, label, on_error=lambda error, n=name: self._report(n, error),
                                  pool=console_pool(fd) if fd is not None else None, counters=self.counters[name])
            writer.prepare()
            self._writers[key] = writer
        return writer

    def _output_fd(self, name: str, conf: dict) -> int | None:
        """gcircusd's own descriptor the sink writes to (its writes get a thread of their own), or None."""
        if not conf:
            return 1 if name == "stdout" else 2
        try:
            return factory.output_fd(conf, self.watcher_name)
        except ValueError:
            return None  # checked when configured; if the class is gone now, the sink reports it when built

    def _report(self, name: str, error: str | None) -> None:
        if self.notify is not None:
            self.notify("stream", name=name, error=error)

    def update(self, name: str, conf: dict) -> None:
        """New options for one stream (live `set`): new sinks for new processes, then the old ones are closed.

        Readers of running processes keep their current writer until those processes are replaced, so no record is
        split between two sinks.
        """
        self._validate(name, conf)
        self.confs[name] = dict(conf)
        old = {key: w for key, w in self._writers.items() if key[0] == name}
        in_use = {id(r.writer) for readers in self._readers.values() for r in readers}
        for key, writer in old.items():
            del self._writers[key]
            if id(writer) in in_use:
                self._retiring.spawn(self._close_when_unused, writer)
            else:
                writer.close()

    def _close_when_unused(self, writer: StreamWriter) -> None:
        for readers in list(self._readers.values()):
            for reader in readers:
                if reader.writer is writer:
                    reader.eof.wait()
        writer.close()

    def reopen(self) -> None:
        for writer in list(self._writers.values()):
            writer.reopen()

    def close(self) -> None:
        """Flush and close every sink (the watcher stopped: its processes are gone).

        A pipe still open after READER_WAIT is held by something the processes left behind: what it holds now is
        passed on, then it is closed, so that the writers get a last record to write and can finish.
        """
        deadline = time.monotonic() + READER_WAIT
        held = 0
        for reader in list(self._open_readers):
            if not reader.eof.wait(max(0.0, deadline - time.monotonic())):
                reader.close()
                held += 1
        if held:
            log.warning("watcher %r: %d output pipes still held open by leftover processes at stop; closed (later "
                        "output from them is lost)", self.watcher_name, held)
        self._readers = {}
        writers, self._writers = list(self._writers.values()), {}
        gevent.joinall([gevent.spawn(writer.close) for writer in writers])  # each gets its own bounded time
        self._retiring.join()  # their readers are at end of file now, so these finish as boundedly


class _LazySink:
    """Builds the real sink on first use, in the writer's thread, so an unwritable path is one more sink failure.

    A file sink opens its file when built. Built at spawn time, a failure there would leave a running child with no
    reader on its pipe; built by the writer, the failure is reported once and retried like any other, and the child's
    output waits in the pipe (and then in the writer's queue) until the path works.
    """

    def __init__(self, build):
        self._build = build
        self._sink = None

    @property
    def built(self):
        """The real sink, or None before its first use."""
        return self._sink

    def _get(self):
        if self._sink is None:
            self._sink = self._build()
        return self._sink

    def __call__(self, record: dict) -> None:
        self._get()(record)

    def unwritten(self, record: dict) -> bytes | None:
        unwritten = getattr(self._sink, "unwritten", None)
        return unwritten(record) if unwritten is not None else None

    def prepare(self) -> None:
        """Build the sink now (a file sink creates its file): raises OSError, retried by the writer, if it cannot."""
        self._get()

    def reopen(self) -> None:
        if self._sink is not None:
            factory.reopen_sink(self._sink)

    def close(self) -> None:
        if self._sink is not None:
            factory.close_sink(self._sink)
