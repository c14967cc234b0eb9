"""gcircusd-stats - publish the stats of a running gcircusd (or circusd) from a separate process.

Usage:
  gcircusd-stats [options]
  gcircusd-stats --version
  gcircusd-stats (-h | --help)

Options:
  --endpoint E          The daemon's control endpoint [default: {DEFAULT_ENDPOINT}].
  --pubsub P            The daemon's event (pubsub) endpoint [default: {DEFAULT_PUBSUB_ENDPOINT}].
  --statspoint S        Where to publish the stats [default: {DEFAULT_STATS_ENDPOINT}].
  --interval N          Seconds between two samples [default: 1.0].
  --allow-remote-endpoints
                        Allow --statspoint to be a non-loopback TCP address.
  --curve-key PATH      This client's secret CURVE certificate, for a daemon whose endpoints require CURVE
                        (default: $GCIRCUS_CURVE_KEY).
  --server-key PATH     The daemon's public CURVE certificate (default: $GCIRCUS_SERVER_KEY).
  --log-level LEVEL     critical, error, warning, info or debug [default: info].
  --log-output OUTPUT   -, stdout, stderr, a file path, or syslog://host[:port][?facility] [default: -].
  --version             Print the version and exit.
  -h --help             Show this help.

gcircusd publishes its stats itself when `statsd = true`; this command is for daemons that do not (circusd, or
gcircusd with statsd off). It reads the pid lists with `list`, follows spawns and reaps on the event channel, and
samples the processes on this machine. With CURVE keys it connects to the daemon with them; its own --statspoint is
not a CURVE server. TERM or INT stop it. Exit codes: 0 stopped, 1 could not bind --statspoint, 2 bad command line
(or CURVE key file).
"""
from __future__ import annotations

import logging
import signal
import sys

import gevent
import gevent.event

from gcircus import __version__, options
from gcircus.cli.usage import EXIT_USAGE, CommandLineError, parse_command_line
from gcircus.logsetup import LoggingSetupError, configure_logging
from gcircus.stats.channel import StatsLoop, StatsPublisher
from gcircus.stats.remote import DaemonFollower
from gcircus.wire.curve import CurveKeyError, key_paths

# The usage text names the default endpoints; docopt reads the [default: ...] ones from it.
__doc__ = __doc__.format_map(vars(options))

log = logging.getLogger("gcircus.stats")

EXIT_OK, EXIT_BIND = 0, 1


def main(argv: list[str] | None = None) -> int:
    try:
        args = parse_command_line(__doc__, argv, "gcircusd-stats", version=f"gcircusd-stats {__version__}")
    except CommandLineError as exc:
        return exc.report()
    try:
        interval = float(args["--interval"])
    except ValueError:
        interval = 0.0
    if not interval > 0:
        print("gcircusd-stats: --interval must be a number greater than 0", file=sys.stderr)
        return EXIT_USAGE
    try:
        configure_logging(args["--log-level"], args["--log-output"])
    except LoggingSetupError as exc:
        print(f"gcircusd-stats: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        follower = DaemonFollower(args["--endpoint"], args["--pubsub"],
                                  *key_paths(args["--curve-key"], args["--server-key"]))
    except CurveKeyError as exc:
        print(f"gcircusd-stats: cannot use the CURVE keys: {exc}", file=sys.stderr)
        return EXIT_USAGE
    publisher = StatsPublisher(args["--statspoint"], allow_remote=args["--allow-remote-endpoints"])
    try:
        publisher.bind()
    except (OSError, ValueError) as exc:
        follower.close()
        print(f"gcircusd-stats: {exc}", file=sys.stderr)
        return EXIT_BIND
    loop = StatsLoop(publisher, follower.groups, follower.circus_pids, interval)
    stopped = gevent.event.Event()
    handlers = [gevent.signal_handler(sig, stopped.set) for sig in (signal.SIGTERM, signal.SIGINT)]
    follower.start()
    loop.start()
    log.info("publishing the stats of %s on %s every %g s", args["--endpoint"], args["--statspoint"], interval)
    try:
        stopped.wait()
    finally:
        for handler in handlers:
            handler.cancel()
        loop.stop()
        follower.close()
        publisher.close()
    log.info("stopped")
    return EXIT_OK


def run() -> None:
    sys.exit(main())


if __name__ == "__main__":
    run()
