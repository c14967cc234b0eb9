"""gcircusd's own logging: level, destination (stream, file, syslog) or a full logging config file.

Whatever the destination, the handlers write from their own thread behind a bounded queue (gcircus.logqueue), so a
destination that stops taking records never blocks the hub.
"""
from __future__ import annotations

import atexit
import json
import logging
import logging.handlers
import os
import socket
import sys
from urllib.parse import urlparse

import gevent

from gcircus import journal
from gcircus.logqueue import FdStream, HubErrorLog, LogWriter, defer_handlers, reopen_file

LOG_FORMAT = "%(asctime)s %(name)s[%(process)d] [%(levelname)s] %(message)s"
LOG_DATE_FORMAT = "%Y-%m-%d %H:%M:%S"
LEVELS = ("critical", "error", "warning", "info", "debug")

_writer: LogWriter | None = None  # the thread writing the log, once configure_logging ran


class LoggingSetupError(Exception):
    """A bad --log-level, --log-output or --logger-config."""


def configure_logging(level: str | None = None, output: str | None = None, logger_config: str | None = None) -> None:
    """Install gcircusd's root logging handler.

    `output` is `-` or `stdout` (standard output: Circus sends `-` to stderr, which surprises), `stderr`,
    `syslog://host[:port][?facility]` / `syslog:///dev/log[?facility]`, `journal` (systemd-journald's native
    protocol, gcircus.journal), or a file path (reopened when rotated).
    """
    level = (level or "info").lower()
    if level not in LEVELS:
        raise LoggingSetupError(f"unknown log level {level!r} (use one of {', '.join(LEVELS)})")
    if logger_config and logger_config != "default":
        _load_logger_config(logger_config)
        _write_off_the_hub()
        return
    handler = _make_handler(output or "-")
    if handler.formatter is None:  # syslog brings its own (a syslog-style date)
        handler.setFormatter(logging.Formatter(LOG_FORMAT, LOG_DATE_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(getattr(logging, level.upper()))
    _write_off_the_hub()


def _write_off_the_hub() -> None:
    """Put the configured handlers behind the log writer thread; at exit, write what is queued (bounded time)."""
    global _writer
    if _writer is None:
        atexit.register(flush_at_exit)
    else:
        _writer.stop(timeout=1.0)
    _writer = LogWriter()
    defer_handlers(_writer)
    logging.captureWarnings(True)  # the warnings module writes to stderr, from the hub
    gevent.get_hub().exception_stream = HubErrorLog(logging.getLogger("gcircus.hub"))  # so does gevent


def flush_log() -> None:
    """Write out the records queued so far, and go on logging (gcircusd re-executing itself: see gcircus.handover)."""
    if _writer is not None:
        _writer.flush()


def flush_at_exit() -> None:
    """Write the records still queued, up to logqueue.STOP_TIMEOUT seconds (the output may still be blocked)."""
    if _writer is not None:
        _writer.stop()


def _make_handler(output: str) -> logging.Handler:
    if output in ("-", "stdout"):
        return logging.StreamHandler(FdStream(sys.stdout.fileno()))
    if output == "stderr":
        return logging.StreamHandler(FdStream(sys.stderr.fileno()))
    if output.startswith("syslog://"):
        return _syslog_handler(output)
    if output == "journal":
        problem = journal.check_available()
        if problem is not None:
            raise LoggingSetupError(f"cannot log to the journal: {problem}")
        return journal.JournalHandler()
    directory = os.path.dirname(os.path.abspath(output))
    if not os.path.isdir(directory):
        raise LoggingSetupError(f"cannot log to {output}: directory {directory} does not exist")
    try:
        return logging.handlers.WatchedFileHandler(output)
    except OSError as exc:
        raise LoggingSetupError(f"cannot log to {output}: {exc.strerror}") from None


def _syslog_handler(output: str) -> logging.Handler:
    parsed = urlparse(output)
    facility_name = parsed.query or "user"
    facility = logging.handlers.SysLogHandler.facility_names.get(facility_name)
    if facility is None:
        raise LoggingSetupError(f"unknown syslog facility {facility_name!r} in {output}")
    if parsed.hostname:
        address: str | tuple = (parsed.hostname, parsed.port or 514)
        handler = logging.handlers.SysLogHandler(address, facility=facility, socktype=socket.SOCK_DGRAM)
    else:
        handler = logging.handlers.SysLogHandler(parsed.path or "/dev/log", facility=facility)
    handler.setFormatter(logging.Formatter(LOG_FORMAT, "%b %d %H:%M:%S"))
    return handler


def _load_logger_config(path: str) -> None:
    import logging.config  # (with socketserver: only a --logger-config needs it, not every start)

    if not os.path.exists(path):
        raise LoggingSetupError(f"logger config {path} does not exist")
    try:
        if path.endswith(".ini"):
            logging.config.fileConfig(path, disable_existing_loggers=False)
        elif path.endswith(".json"):
            with open(path, encoding="utf-8") as f:
                _dict_config(json.load(f))
        elif path.endswith((".yaml", ".yml")):
            try:
                import yaml  # optional: only needed by users who write their logging config in YAML
            except ImportError:
                raise LoggingSetupError(f"{path}: YAML logger configs need PyYAML installed") from None
            with open(path, encoding="utf-8") as f:
                _dict_config(yaml.safe_load(f))
        else:
            raise LoggingSetupError(f"logger config {path} must end in .ini, .json or .yaml")
    except LoggingSetupError:
        raise
    except Exception as exc:  # noqa: BLE001 - logging.config raises a zoo of types; all mean "bad file"
        raise LoggingSetupError(f"invalid logger config {path}: {exc}") from None


def _dict_config(config) -> None:
    # gcircus's loggers exist (module level) before the file is read: unless the file asks otherwise, keep them
    # enabled, as the .ini path does, or a config naming only the root logger would silence gcircusd entirely.
    import logging.config

    if isinstance(config, dict):
        config.setdefault("disable_existing_loggers", False)
    logging.config.dictConfig(config)


def log_reaches_stderr() -> bool:
    """True if a root log handler already writes where standard error goes (so a message need not be printed twice).

    That is a stream handler on stderr, or on stdout when both are the same file (a terminal, or `2>&1`).
    """
    try:
        stderr_file = os.fstat(sys.stderr.fileno())
    except (OSError, ValueError, AttributeError):
        return False
    for handler in logging.getLogger().handlers:
        handler = getattr(handler, "target", handler)  # the real handler behind the log queue
        if isinstance(handler, logging.FileHandler) or not isinstance(handler, logging.StreamHandler):
            continue
        try:
            if os.path.samestat(os.fstat(handler.stream.fileno()), stderr_file):
                return True
        except (OSError, ValueError, AttributeError):
            continue
    return False


def reopen_log_files() -> None:
    """Reopen file handlers (SIGUSR1, after logrotate moved the files) once what was logged before is written.

    Waits cooperatively, and only so long (logqueue.REOPEN_TIMEOUT): a blocked log output must not hold up the caller.
    """
    if _writer is not None:
        _writer.reopen()
        return
    for handler in logging.getLogger().handlers:  # a program embedding gcircus, with its own logging set-up
        if isinstance(handler, logging.FileHandler):
            reopen_file(handler)
