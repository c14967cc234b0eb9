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
reloadconfig); USR1 reopens log and stream files.
Exit codes: 0 stopped cleanly, 1 could not start (pidfile, an endpoint or socket already in use; with --daemon, a
watcher that cannot spawn), 2 bad command line, configuration or logging option.
"""
from __future__ import annotations

import logging
import os
import signal
import sys

import gevent
import gevent.pool

from gcircus import __version__, linux
from gcircus.cli.check_config import describe
from gcircus.cli.usage import CommandLineError, parse_command_line
from gcircus.control.commands.reloadconfig import format_plan
from gcircus.daemon import Arbiter
from gcircus.errors import ConfigError
from gcircus.logsetup import LoggingSetupError, configure_logging, flush_at_exit, log_reaches_stderr, reopen_log_files
from gcircus.pidfile import Pidfile, PidfileError
from gcircus.service_manager import ServiceManager

log = logging.getLogger("gcircus.daemon")

EXIT_OK, EXIT_START_FAILED, EXIT_USAGE = 0, 1, 2
IDLE_WAKEUP = 3600.0


def main(argv: list[str] | None = None) -> int:
    try:
        args = parse_command_line(__doc__, argv, "gcircusd", version=f"gcircusd {__version__}")
    except CommandLineError as exc:
        return exc.report()
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
    ready_fd = daemonize() if args["--daemon"] else None
    pidfile = None
    pidfile_path = args["--pidfile"] or arbiter.pidfile
    if pidfile_path:
        pidfile = Pidfile(pidfile_path)
        try:
            pidfile.acquire()
        except PidfileError as exc:
            log.error("%s", exc)
            tell_start_failure(str(exc), ready_fd)
            return EXIT_START_FAILED
    daemon = Daemon(arbiter)
    try:
        return daemon.run(ready_fd)
    finally:
        if pidfile is not None:
            pidfile.release()
        if daemon.start_failure is not None:
            # Said only now that nothing is left (children, endpoints, pidfile): a launcher told of the failure
            # may start gcircusd again at once. The log is written out first, so it holds the reason too.
            flush_at_exit()
            tell_start_failure(daemon.start_failure, ready_fd)


class Daemon:
    """Runs an arbiter as the process's main job: signals, startup, orderly shutdown, orphan sweep."""

    def __init__(self, arbiter):
        self.arbiter = arbiter
        self.stopper: gevent.Greenlet | None = None
        self.greenlets = gevent.pool.Group()  # the stopper and SIGHUP reloads: killed when run() returns
        self.start_failure: str | None = None  # why start-up failed (logged), for main to tell once cleaned up
        self.service_manager = ServiceManager(arbiter)  # sd_notify to systemd, when NOTIFY_SOCKET is set

    def run(self, ready_fd: int | None = None) -> int:
        handlers = [gevent.signal_handler(signal.SIGTERM, self.on_stop_signal, signal.SIGTERM),
                    gevent.signal_handler(signal.SIGINT, self.on_stop_signal, signal.SIGINT),
                    gevent.signal_handler(signal.SIGQUIT, self.on_quit),
                    gevent.signal_handler(signal.SIGHUP, self.on_reload),
                    gevent.signal_handler(signal.SIGUSR1, self.on_reopen_logs)]
        signal.signal(signal.SIGWINCH, signal.SIG_IGN)
        log.info("gcircusd %s starting (pid %d, config %s)", __version__, os.getpid(), self.arbiter.config_path)
        log.debug("watchers by start order: %s", ", ".join(
            f"{w.name} (priority {w.priority}, {w.numprocesses} processes)" for w in self.arbiter.iter_watchers()))
        started = False
        try:
            try:
                self.arbiter.start(background=True)  # this loop below waits, with its own signal handling
            except OSError as exc:  # a channel or socket could not be bound: say so plainly
                return self.fail_start(str(exc))
            self.service_manager.watch_startup()  # READY=1 once the watchers settle
            failed, retrying = self.arbiter.wait_started() if ready_fd is not None else ([], [])
            if failed and self.stopper is None:
                # A daemon whose launcher is told of a failure must not linger: stop what did start, then exit.
                return self.fail_start("\n".join(why for _, why in failed))
            if self.stopper is None:
                log.info("gcircusd running: %d watchers, %d processes", self.arbiter.numwatchers(),
                         self.arbiter.numprocesses())
            _report_ready(ready_fd, None, [f"gcircusd: warning: watcher {name!r} {why}" for name, why in retrying])
            started = True
            # A timed wait keeps the hub referenced: signal watchers do not, so a daemon left with no children
            # (every watcher stopped or given up) would otherwise end in LoopExit instead of waiting for signals.
            while not self.arbiter.wait_stopped(IDLE_WAKEUP):
                pass
            if self.stopper is not None:
                self.stopper.join()
            self.arbiter.wait_channels_closed(5)
        except Exception as exc:
            log.exception("gcircusd crashed%s; stopping every process", "" if started else " while starting")
            self.stop_now()
            if not started:  # the terminal (or the --daemon launcher) hears of it too, not only the log
                self.start_failure = f"crashed while starting: {type(exc).__name__}: {exc}"
            return EXIT_START_FAILED
        finally:
            self.greenlets.kill()
            self.sweep_orphans()
            self.service_manager.close()  # its watchdog pings went on until everything was stopped
            for handler in handlers:
                handler.cancel()
        log.info("gcircusd stopped")
        return EXIT_OK

    def fail_start(self, reason: str) -> int:
        """Start-up failed: log why and stop what did start (fast: it just started); main says why once done."""
        log.error("%s", reason)
        self.start_failure = reason
        self.stop_now()
        return EXIT_START_FAILED

    def stop_now(self) -> None:
        """Kill every process tree, stop the arbiter without a grace period and wait for its channels to close."""
        self.arbiter.kill_all()
        self.arbiter.stop(graceful=False)
        self.arbiter.wait_channels_closed(5)

    def on_stop_signal(self, signum: int) -> None:
        if self.stopper is None:
            log.info("received %s: stopping every watcher", signal.Signals(signum).name)
            self.stopper = self.greenlets.spawn(self.arbiter.stop)
        elif signum == signal.SIGINT:
            log.warning("received SIGINT again: killing every process now")
            self.arbiter.kill_all()

    def on_quit(self) -> None:
        log.info("received SIGQUIT: fast stop")
        self.arbiter.kill_all()
        if self.stopper is None:
            self.stopper = self.greenlets.spawn(self.arbiter.stop, False)

    def on_reload(self) -> None:
        if self.stopper is None:
            log.info("received SIGHUP: reloading the configuration file %s", self.arbiter.config_path)
            self.greenlets.spawn(self.reload_config)

    def reload_config(self) -> None:
        """SIGHUP: what `reloadconfig` does. A bad file is logged and changes nothing; gcircusd keeps running."""
        try:
            plan = self.arbiter.reload_from_config()
        except ConfigError as exc:
            log.error("SIGHUP: the configuration was not reloaded, nothing changed: %s", exc)
            return
        except Exception:  # noqa: BLE001 - a failed reload must not bring the supervisor down
            log.exception("SIGHUP: reloading the configuration failed")
            return
        log.info("SIGHUP: configuration reloaded:\n%s", format_plan(plan))

    def on_reopen_logs(self) -> None:
        reopen_log_files()
        self.arbiter.reopen_streams()
        log.info("received SIGUSR1: log files reopened (stream files too)")

    def sweep_orphans(self, grace: float = 5.0) -> None:
        """Stop processes that were re-parented to us (we are a child subreaper) and no watcher owns any more.

        They are descendants of services that died on their own; gcircusd promises that nothing it started
        outlives it.
        """
        orphans = [pid for pid in linux.children(os.getpid()) if linux.is_running(pid)]
        if not orphans:
            return
        log.info("stopping %d orphaned descendant(s): %s", len(orphans), orphans)
        tree = linux.Tree()
        for pid in orphans:
            tree.add_tree(pid)
        tree.stop(signal.SIGTERM, grace)
        # Let the hub reap the last zombies (they are our children: SIGCHLD arrives for each).
        with gevent.Timeout(2, False):
            while linux.children(os.getpid()):
                gevent.sleep(0.01)


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
    sys.exit(main())


if __name__ == "__main__":
    run()
