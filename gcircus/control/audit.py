"""The audit log (`[circus] audit_log`): one JSON line per state-changing request and per refusal, written off the hub.

A line has exactly the keys `time` (UTC, RFC 3339 with milliseconds), `endpoint`, `peer` (who asked, in the form the
access layer gives: `{"uid", "gid", "pid", "user"}` or `{"curve": NAME}`; `{}` when nobody could be identified),
`command`, `properties` (as the client sent them, secrets redacted: see `redact`), `result` (`ok`, `error` or
`refused`), `errno` (0 when ok) and `duration_ms`. A long command is recorded when its outcome is known: when its
`--waiting` reply goes out, or, when nobody waits, when the operation ends.

The lines leave the hub as gcircusd's own log records do (gcircus.logqueue): the hub formats a line and offers it to a
bounded queue, a native thread writes it. A command never waits for the audit: when the queue is full or a write
fails (a full disk, a syslog that does not take datagrams), the line is dropped and counted in `lost`, which is
logged (at most once a LOST_REPORT_INTERVAL) and reported in the `status` reply (`audit`).
"""
from __future__ import annotations

import datetime
import json
import logging
import logging.handlers
import os
import re
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlparse

import gevent
from gevent import monkey

from gcircus import journal, roles
from gcircus.logqueue import LogWriter
from gcircus.wire.errors import COMMAND_ERROR, NOT_SPECIFIED, OS_ERROR, ControlError, Refused

log = logging.getLogger(__name__)

MAX_LINES = 10000  # audit lines held while the output does not take them
MAX_BYTES = 16 << 20  # characters of audit lines held
MAX_VALUE_CHARS = 4096  # characters kept of one string value of the properties (a line must fit in the queue)
LOST_REPORT_INTERVAL = 60.0  # seconds between two log lines about lost audit lines
STOP_TIMEOUT = 5.0  # seconds the audit writer may take at stop to write what is queued
REDACTED = "<redacted>"
JOURNAL_IDENTIFIER = "gcircusd-audit"
SYSLOG_FACILITY = "authpriv"  # the facility of security records; `syslog:///path?facility` picks another

_allocate_lock = monkey.get_original("_thread", "allocate_lock")

# A name is a secret's when one of its words ends with one of these (`password`, `api_key`, `apiKey`, `AUTH_TOKEN`,
# `secretkey`); `keys` (the `get` command's list of option names) is not.
SECRET_WORD_ENDINGS = ("password", "passwd", "passphrase", "pwd", "secret", "token", "key", "credential",
                       "credentials")


# -- what is recorded ----------------------------------------------------------------------------------------------

def is_secret_name(name: str) -> bool:
    """True when a property or option called `name` holds a secret (see SECRET_WORD_ENDINGS)."""
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", name)
    words = [word.lower() for word in re.split(r"[^A-Za-z0-9]+", spaced) if word]
    return any(word.endswith(SECRET_WORD_ENDINGS) for word in words)


def redact(value: Any, key: str = "") -> Any:
    """`value` (a request's properties) with secrets replaced by REDACTED, and long strings cut.

    The rule: every value of an `env` (the variable names are kept, so the line says which ones changed: a dict's
    keys, or the names of `K=V,K2=V2` text), and the whole value of any key whose name is a secret's
    (is_secret_name), at any depth. Command lines and arguments are kept as they are (`ps` shows them too).
    """
    if key.lower() == "env":
        if isinstance(value, dict):
            return {str(name): REDACTED for name in value}
        if isinstance(value, str):
            return ",".join(part.split("=", 1)[0].strip() + "=" + REDACTED for part in value.split(",") if part)
        return REDACTED
    if key and is_secret_name(key):
        return REDACTED
    if isinstance(value, dict):
        return {str(name): redact(item, str(name)) for name, item in value.items()}
    if isinstance(value, list):
        return [redact(item) for item in value]
    if isinstance(value, str) and len(value) > MAX_VALUE_CHARS:
        return value[:MAX_VALUE_CHARS] + f"...[{len(value) - MAX_VALUE_CHARS} more characters]"
    return value


def errno_of(exc: BaseException) -> int:
    """The errno of the error reply an exception ends a command with (gcircus.control.server gives the same)."""
    if isinstance(exc, ControlError):
        return exc.errno
    if isinstance(exc, OSError):
        return OS_ERROR
    return COMMAND_ERROR


def outcome(reply: dict | None, exc: BaseException | None) -> tuple[str, int]:
    """(result, errno) of a request: `refused` when a policy refused it (wire.errors.Refused), else from its reply,
    else (nobody waited for a long command) from the exception that ended it, if any."""
    if isinstance(exc, Refused):
        return "refused", exc.errno
    if reply is not None and reply.get("status") == "error":
        return "error", int(reply.get("errno") or NOT_SPECIFIED)
    if reply is None and exc is not None:
        return "error", errno_of(exc)
    return "ok", 0


def utc_time(timestamp: float) -> str:
    """RFC 3339 in UTC with milliseconds: `2024-05-01T12:00:00.123Z`."""
    moment = datetime.datetime.fromtimestamp(timestamp, datetime.timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


class AuditEntry:
    """One request on its way through the control server: made when it arrives, `describe`d once decoded, `finish`ed
    once its outcome is known (at most once: later calls do nothing). A disabled log makes entries that record
    nothing, so the server treats every request the same."""

    def __init__(self, audit_log: AuditLog, endpoint: str, peer: dict | None):
        self.audit_log = audit_log
        self.endpoint = endpoint
        self.peer = dict(peer or {})
        self.started = time.monotonic()
        self.wall_started = time.time()
        self.command: str | None = None
        self.properties: Any = None
        self.changes_state = False
        self.finished = False

    def describe(self, command: str, properties: Any, changes_state: bool) -> None:
        """Say what the request asks: kept (redacted, so secrets are not held meanwhile) only when auditing."""
        self.command, self.changes_state = command, changes_state
        if self.audit_log.enabled:
            self.properties = redact(properties if properties is not None else {})

    def finish(self, reply: dict | None, exc: BaseException | None = None) -> None:
        """Record the request if it is state-changing or was refused; `reply` None: nobody waits for one."""
        if self.finished or not self.audit_log.enabled:
            return
        self.finished = True
        result, errno = outcome(reply, exc)
        if self.command is None or not (self.changes_state or result == "refused"):
            return
        self.audit_log.record({
            "time": utc_time(self.wall_started), "endpoint": self.endpoint, "peer": self.peer,
            "command": self.command, "properties": self.properties,
            "result": result, "errno": errno,
            "duration_ms": round((time.monotonic() - self.started) * 1000, 3)})


# -- where it goes -------------------------------------------------------------------------------------------------

class AuditFile(logging.Handler):
    """Audit lines appended to a file, one write() each: created 0600, opened without following a symlink, reopened
    on SIGUSR1. Runs in the writer thread; a line that is not written whole calls `lost()`, and what was written of
    it is cut off again, so that the file only holds whole lines."""

    def __init__(self, path: str, lost: Callable[[], None]):
        super().__init__()
        self.path = os.path.abspath(path)
        self.lost = lost
        self.fd: int | None = self._open()

    def _open(self) -> int:
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW
        try:
            return os.open(self.path, flags, 0o600)
        except OSError as exc:
            raise OSError(exc.errno, f"cannot open the audit log {self.path}: {exc.strerror}") from None

    def emit(self, record: logging.LogRecord) -> None:
        data = (str(record.msg) + "\n").encode("utf-8", "backslashreplace")
        try:
            if self.fd is None:
                self.fd = self._open()
            written = os.write(self.fd, data)
        except OSError:
            self.lost()
            return
        if written < len(data):  # the disk filled up within the line: take the part back (it frees, never fails)
            self.lost()
            try:
                os.ftruncate(self.fd, os.fstat(self.fd).st_size - written)
            except OSError:
                pass

    def reopen(self) -> None:
        """Close the file and open its path again (logrotate moved it); a failure is retried at the next line."""
        self.close_file()
        try:
            self.fd = self._open()
        except OSError as exc:
            os.write(2, f"gcircusd: {exc.strerror}\n".encode())

    def close_file(self) -> None:
        fd, self.fd = self.fd, None
        if fd is not None:
            os.close(fd)

    def close(self) -> None:
        self.close_file()
        super().close()


class AuditSyslog(logging.handlers.SysLogHandler):
    """Audit lines as syslog messages (`gcircusd-audit: {...}`); one not sent calls `lost()`."""

    def __init__(self, address: str, facility: int, lost: Callable[[], None]):
        super().__init__(address, facility=facility)
        self.lost = lost
        self.setFormatter(logging.Formatter(JOURNAL_IDENTIFIER + ": %(message)s"))

    def handleError(self, record: logging.LogRecord) -> None:
        self.lost()


class AuditJournal(logging.Handler):
    """Audit lines as journal entries (SYSLOG_IDENTIFIER=gcircusd-audit, the JSON as MESSAGE, GCIRCUS_AUDIT=1)."""

    def __init__(self, lost: Callable[[], None]):
        super().__init__()
        self.lost = lost
        self.journal = journal.JournalSocket()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.journal.send([("MESSAGE", str(record.msg)), ("PRIORITY", "5"), ("GCIRCUS_AUDIT", "1"),
                               ("SYSLOG_IDENTIFIER", JOURNAL_IDENTIFIER)])
        except OSError:
            self.lost()

    def close(self) -> None:
        self.journal.close()
        super().close()


def open_output(target: str, lost: Callable[[], None]) -> logging.Handler:
    """The handler writing to `target` (a path, `syslog`, `syslog:///socket[?facility]`, `journal`); OSError naming
    the audit log if it cannot be opened."""
    if target == "journal":
        problem = journal.check_available()
        if problem is not None:
            raise OSError(f"cannot write the audit log to the journal: {problem}")
        return AuditJournal(lost)
    if target == "syslog" or target.startswith("syslog:"):
        parsed = urlparse(target)
        facility = logging.handlers.SysLogHandler.facility_names.get(parsed.query or SYSLOG_FACILITY)
        if facility is None:
            raise OSError(f"audit_log {target}: unknown syslog facility {parsed.query!r}")
        address = parsed.path or "/dev/log"
        try:
            return AuditSyslog(address, facility, lost)
        except OSError as exc:
            raise OSError(exc.errno, f"cannot write the audit log to syslog at {address}: {exc.strerror}") from None
    return AuditFile(target, lost)


# -- the service ---------------------------------------------------------------------------------------------------

class AuditLog:
    """`[circus] audit_log` as a service of the arbiter: the output is opened when it starts (an OSError fails the
    start: gcircusd does not run unaudited when asked to audit) and closed when it stops. Without a target it
    records nothing. `lost` counts the lines dropped since gcircusd started."""

    def __init__(self, target: str | None):
        self.target = target or None
        self.lost = 0
        self._lock = _allocate_lock()  # `lost` is counted by the hub (full queue) and the writer thread (failed write)
        self._writer: LogWriter | None = None
        self._output: logging.Handler | None = None
        self._loop: Any = None
        self._report_pending = False
        self._reported = 0
        self._last_report = -LOST_REPORT_INTERVAL
        self._reporter: gevent.Greenlet | None = None  # a report held back by the rate limit

    @property
    def enabled(self) -> bool:
        return self.target is not None

    def begin(self, endpoint: str, peer: dict | None) -> AuditEntry:
        """The audit entry point: an entry for a request that just arrived at `endpoint` from `peer` (its audit form,
        or None when unknown). The control server describes and finishes it."""
        return AuditEntry(self, endpoint, peer)

    def start(self) -> None:
        if self.target is None:
            return
        self._output = open_output(self.target, self._lost_in_writer)
        self._loop = gevent.get_hub().loop
        self._writer = LogWriter(MAX_LINES, MAX_BYTES)

    def stop(self) -> None:
        writer, output, self._writer, self._output = self._writer, self._output, None, None
        if writer is None or output is None:
            return
        if not writer.stop(STOP_TIMEOUT):
            log.error("the audit log %s did not take its last lines within %gs", self.target, STOP_TIMEOUT)
        output.close()
        if self._reporter is not None:
            self._reporter.kill()
            self._reporter = None
        self._report_lost()

    def reopen(self) -> None:
        """Reopen the audit file once the lines queued so far are written to the old one (SIGUSR1, `reopen`)."""
        writer, output = self._writer, self._output
        if writer is not None and isinstance(output, AuditFile):
            writer.run_in_order(output.reopen)

    def flush(self) -> None:
        """Wait (this greenlet only, within bounds) until the lines queued so far are written: gcircusd is about to
        exec a new image of itself."""
        writer = self._writer
        if writer is not None:
            writer.run_in_order(lambda: None)

    def record(self, fields: dict) -> None:
        """Queue one line (on the hub, never waiting): dropped and counted when the queue is full."""
        writer, output = self._writer, self._output
        if writer is None or output is None:
            return
        line = json.dumps(fields, separators=(",", ":"), default=str)
        record = logging.LogRecord("gcircus.audit", logging.INFO, __file__, 0, line, None, None)
        if not writer.offer(output, record):
            self._count_lost()
            self._report_lost()

    def status(self) -> dict:
        """What the `status` reply says of the audit log."""
        return {"log": self.target, "lost": self.lost}

    def _count_lost(self) -> None:
        with self._lock:
            self.lost += 1

    def _lost_in_writer(self) -> None:
        """A write failed (in the writer thread): count it, and have the hub report it."""
        self._count_lost()
        with self._lock:
            if self._report_pending or self._loop is None:
                return
            self._report_pending = True
        self._loop.run_callback_threadsafe(self._report_lost)

    def _report_lost(self) -> None:
        """Log the count of lost lines, at most once a LOST_REPORT_INTERVAL (a later report is scheduled)."""
        with self._lock:
            self._report_pending = False
        if self.lost == self._reported:
            return
        wait = self._last_report + LOST_REPORT_INTERVAL - time.monotonic()
        if wait > 0 and self._writer is not None:
            if self._reporter is None:
                self._reporter = gevent.spawn_later(wait, self._report_held_back)
            return
        self._last_report = time.monotonic()
        log.error("%d audit lines lost so far (%d since the last report): the audit log %s did not take them",
                  self.lost, self.lost - self._reported, self.target)
        self._reported = self.lost

    def _report_held_back(self) -> None:
        self._reporter = None
        self._report_lost()


def changes_state(command) -> bool:
    """Whether a request of `command` (a Command of the table) is audited whatever its outcome: every command whose
    declared role (gcircus.roles) is more than `read`. It is known before the properties are validated: a role that
    depends on them (`set`, Command.role_for) only chooses between operate and define."""
    return command.role != roles.READ
