"""gcircusd - supervise the processes described by a Circus ini file.

Usage:
  gcircusd [options] <config>
  gcircusd --version
  gcircusd (-h | --help)

Options:
  --log-level LEVEL     critical, error, warning, info or debug (default: the config's loglevel, else info).
  --log-output OUTPUT   -, stdout, stderr, a file path, syslog://host[:port][?facility], or journal (systemd's)
                        (default: the config's logoutput, else -).
  --logger-config PATH  A logging configuration file (.ini, .json, or .yaml if PyYAML is installed) used instead
                        of the two options above.
  --daemon              Detach from the terminal (double fork, new session) once the config is valid.
  --pidfile PATH        Write the daemon's pid to PATH, locked while it runs (default: the config's pidfile).
  --check-config        Validate <config> and print what it would run (watchers, sockets, plugins), then exit:
                        0 if it is valid, 2 if not. Starts, binds and writes nothing.
  --version             Print the version and exit.
  -h --help             Show this help.

Signals: TERM or INT stop every watcher gracefully (lowest priority first) and exit 0; a second INT kills what is
left at once; QUIT stops fast (no grace period); HUP re-reads the config file and applies what changed (as
reloadconfig); USR1 reopens log and stream files; USR2 re-executes gcircusd in place, every child kept (as
gcircusctl upgrade).
Exit codes: 0 stopped cleanly, 1 could not start (pidfile, an endpoint or socket already in use; with --daemon, a
watcher that cannot spawn), 2 bad command line, configuration or logging option, 3 an essential watcher failed
(everything was stopped), 4 the shutdown outlasted [circus] stop_timeout (what was left was SIGKILLed).
"""
from __future__ import annotations

import contextlib
import functools
import logging
import os
import sys

import gevent

from gcircus import __version__, launcher, limits, linux
from gcircus.cli.check_config import describe
from gcircus.cli.usage import EXIT_USAGE, CommandLineError, parse_command_line
from gcircus.daemon import EXIT_OK, EXIT_START_FAILED, Arbiter, Daemon
from gcircus.errors import ConfigError
from gcircus.handover import snapshot
from gcircus.handover.reexec import HANDOVER_OPTION
from gcircus.logsetup import LoggingSetupError, configure_logging, flush_at_exit, log_reaches_stderr
from gcircus.pidfile import Pidfile, PidfileError

log = logging.getLogger("gcircus.daemon")


def main(argv: list[str] | None = None) -> int:
    argv, handover_fd = take_handover_option(sys.argv[1:] if argv is None else list(argv))
    try:
        args = parse_command_line(__doc__, argv, "gcircusd", version=f"gcircusd {__version__}")
    except CommandLineError as exc:
        return exc.report()
    handover_state = None
    if handover_fd is not None:
        try:
            handover_state = snapshot.read(handover_fd)
        except snapshot.SnapshotError as exc:
            # The old image is gone (this is its pid): run from the file alone rather than leave the children
            # unsupervised; they are this process's children still, and the orphan sweep stops them at exit.
            print(f"gcircusd: hand-over state unusable, starting from the configuration: {exc}", file=sys.stderr)
    try:
        arbiter = Arbiter.load_from_config(args["<config>"], subreaper=True)
    except (ConfigError, ValueError, TypeError) as exc:
        print(f"gcircusd: configuration error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if args["--check-config"]:
        print(describe(arbiter))
        return EXIT_OK
    try:
        configure_logging(args["--log-level"] or arbiter.loglevel, args["--log-output"] or arbiter.logoutput,
                          args["--logger-config"] or arbiter.loggerconfig)
    except LoggingSetupError as exc:
        print(f"gcircusd: {exc}", file=sys.stderr)
        return EXIT_USAGE
    problems = limits.check_at_start(arbiter.watchers, running=len(linux.children(os.getpid())))
    if problems:
        for problem in problems:
            log.error("cannot start: %s", problem)
            if not log_reaches_stderr():
                print(f"gcircusd: cannot start: {problem}", file=sys.stderr)
        return EXIT_START_FAILED
    slower_launcher = launcher.describe()
    if slower_launcher:
        log.warning("%s", slower_launcher)
    ready_fd = daemonize() if args["--daemon"] else None
    pidfile = None
    pidfile_path = args["--pidfile"] or arbiter.pidfile
    carried = (handover_state or {}).get("pidfile")
    if carried:
        pidfile = Pidfile.adopt(carried["path"], carried["fd"])
    elif pidfile_path:
        pidfile = Pidfile(pidfile_path)
        try:
            pidfile.acquire()
        except PidfileError as exc:
            log.error("%s", exc)
            tell_start_failure(str(exc), ready_fd)
            return EXIT_START_FAILED
    daemon = Daemon(arbiter, handover_state, pidfile)
    try:
        return daemon.run(None if ready_fd is None else functools.partial(_report_ready, ready_fd, None))
    finally:
        if pidfile is not None:
            pidfile.release()
        if daemon.start_failure is not None:
            # Said only now that nothing is left (children, endpoints, pidfile): a launcher told of the failure
            # may start gcircusd again at once. The log is written out first, so it holds the reason too.
            flush_at_exit()
            tell_start_failure(daemon.start_failure, ready_fd)


def take_handover_option(argv: list[str]) -> tuple[list[str], int | None]:
    """The command line without the hidden `--handover FD` (gcircusd re-executing itself), and FD (None without)."""
    if HANDOVER_OPTION not in argv:
        return argv, None
    at = argv.index(HANDOVER_OPTION)
    try:
        fd = int(argv[at + 1])
    except (IndexError, ValueError):
        return argv, None  # docopt then refuses the unknown option, as any other
    return argv[:at] + argv[at + 2:], fd


def daemonize() -> int:
    """Detach: fork, setsid, fork again; stdio to /dev/null. Returns a fd to report readiness to the waiting parent.

    The original process waits until the daemon reports that its watchers started (or why it could not), so
    `gcircusd --daemon` exits 0 only for a daemon that is really running.
    """
    read_end, write_end = os.pipe()
    if os.fork() > 0:
        os.close(write_end)
        with open(read_end, "rb") as pipe:
            message = pipe.read()  # until the daemon closes its end: once it reported, or if it died
        started = message.startswith(b"ok\n")
        sys.stderr.write((message[3:] if started else message or b"gcircusd: the daemon exited during start-up\n")
                         .decode(errors="replace"))
        sys.stderr.flush()
        os._exit(EXIT_OK if started else EXIT_START_FAILED)
    os.close(read_end)
    os.setsid()
    if os.fork() > 0:
        os._exit(0)
    gevent.reinit()  # the hub (if one exists yet) must not share its epoll and signal fds with the dead parents
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    os.close(devnull)
    os.set_inheritable(write_end, False)
    return write_end


def tell_start_failure(reason: str, ready_fd: int | None) -> None:
    """Say why gcircusd could not start on the terminal that started it, unless the log already goes there.

    With --daemon that terminal belongs to the launching command, which prints what it reads from `ready_fd`.
    """
    message = "\n".join(f"gcircusd: {line}" for line in reason.splitlines())
    if ready_fd is not None:
        _report_ready(ready_fd, message)
    elif not log_reaches_stderr():
        print(message, file=sys.stderr)


def _report_ready(fd: int | None, error: str | None, warnings: list[str] | tuple[str, ...] = ()) -> None:
    """Tell the launching command (waiting in daemonize) that start-up succeeded, with warnings, or why it failed."""
    if fd is None:
        return
    message = "\n".join(["ok", *warnings]) if error is None else error
    try:
        os.write(fd, (message + "\n").encode())
    finally:
        os.close(fd)


def run() -> None:
    exit_without_teardown(main())


# Seconds gcircusd waits at exit, at most, for zmq to write what its closed sockets still hold.
ZMQ_EXIT_GRACE = 2.0


def exit_without_teardown(code: int) -> None:
    """Exit with `code` once the log, stdio and zmq's queues are written out, without tearing the interpreter down.

    By now every child is stopped, every endpoint closed and the pidfile released: what the interpreter's own
    shutdown would add is freeing each object and module one by one, memory the kernel takes back at once anyway
    (25 ms of a 1000-process stop, more with more processes). Python code that gcircusd imported for a hook or a
    stream class gets no atexit handlers run.
    """
    flush_at_exit()
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a closed pipe, or a stream closed by a plugin
            stream.flush()
    _let_zmq_finish(ZMQ_EXIT_GRACE)
    os._exit(code)


def _let_zmq_finish(grace: float) -> None:
    """Terminate gcircusd's zmq context, so that its I/O thread writes what the closed sockets still hold (the
    reply to `quit`: the control socket closes with a linger) before the process ends.

    In a thread, for `grace` seconds at most: a socket left open (by a plugin) would hold term() for ever.
    """
    import threading

    import zmq.green as zmq  # (loaded already by the channels: the context they share is its instance)

    finisher = threading.Thread(target=zmq.Context.instance().term, name="zmq-term", daemon=True)
    finisher.start()
    finisher.join(grace)


if __name__ == "__main__":
    run()
