"""gcircus-plugin - run one plugin class as a process connected to gcircusd (or circusd).

Usage:
  gcircus-plugin [options] <plugin>
  gcircus-plugin --version
  gcircus-plugin (-h | --help)

Options:
  --endpoint ENDPOINT   The control endpoint to connect to [default: {DEFAULT_ENDPOINT}].
  --pubsub PUBSUB       The event (pub/sub) endpoint to subscribe to [default: {DEFAULT_PUBSUB_ENDPOINT}].
  --config CONFIG       The plugin options, as k:v:::k2:v2.
  --check-delay DELAY   The supervisor's check delay, given to the plugin [default: 5.0].
  --log-level LEVEL     critical, error, warning, info or debug [default: info].
  --log-output OUTPUT   -, stdout, stderr, a file path or syslog://... [default: -].
  --ssh SERVER          An SSH server to tunnel through (Circus plugin classes only).
  --version             Print the version and exit.
  -h --help             Show this help.

<plugin> is the dotted name of a class: a gcircus.plugins.CircusPlugin subclass (run on gevent) or a Circus
circus.plugins.CircusPlugin subclass (run unchanged, on its own Tornado loop). An inactive plugin (active = false)
stays idle until stopped instead of exiting. SIGTERM and SIGINT stop the plugin (its handle_stop runs); exit 0.
"""
from __future__ import annotations

import logging
import signal
import sys

import gevent

from gcircus import __version__, options
from gcircus.cli.usage import CommandLineError, parse_command_line
from gcircus.logsetup import LoggingSetupError, configure_logging
from gcircus.plugins.base import CircusPlugin, str_to_cfg
from gcircus.plugins.manager import is_circus_plugin_class, load_plugin_class

# The usage text names the default endpoints; docopt reads the [default: ...] ones from it.
__doc__ = __doc__.format_map(vars(options))

log = logging.getLogger("gcircus.plugin")

EXIT_OK, EXIT_USAGE = 0, 2


def main(argv: list[str] | None = None) -> int:
    try:
        args = parse_command_line(__doc__, argv, "gcircus-plugin", version=f"gcircus-plugin {__version__}")
    except CommandLineError as exc:
        return exc.report()
    try:
        check_delay = float(args["--check-delay"])
        factory = load_plugin_class(args["<plugin>"])
    except ValueError as exc:
        print(f"gcircus-plugin: {exc}", file=sys.stderr)
        return EXIT_USAGE
    circus_class = is_circus_plugin_class(factory)
    if not circus_class and not issubclass(factory, CircusPlugin):
        print(f"gcircus-plugin: {args['<plugin>']} is a native plugin: it runs inside gcircusd, not as a process",
              file=sys.stderr)
        return EXIT_USAGE
    try:
        configure_logging(args["--log-level"], args["--log-output"])
    except LoggingSetupError as exc:
        print(f"gcircus-plugin: {exc}", file=sys.stderr)
        return EXIT_USAGE
    config = str_to_cfg(args["--config"])
    plugin = factory(args["--endpoint"], args["--pubsub"], check_delay, args["--ssh"], **config)
    if circus_class:
        return _run_circus_plugin(plugin, args, config)
    return _run_gevent_plugin(plugin, args)


def _run_gevent_plugin(plugin, args) -> int:
    handlers = [gevent.signal_handler(sig, plugin.stop) for sig in (signal.SIGTERM, signal.SIGINT)]
    log.info("starting plugin %s (endpoint %s, pubsub %s)", args["<plugin>"], args["--endpoint"], args["--pubsub"])
    try:
        plugin.start()
    finally:
        plugin.stop()
        for handler in handlers:
            handler.cancel()
        log.info("plugin %s stopped", args["<plugin>"])
    return EXIT_OK


def _run_circus_plugin(plugin, args, config: dict) -> int:
    """A plugin written for Circus runs with Circus's own base class and Tornado loop, as circus-plugin runs it."""
    from circus.util import to_bool

    def on_signal(signum, frame):
        plugin.loop.add_callback_from_signal(plugin.stop)

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, on_signal)
    log.info("starting Circus plugin %s (endpoint %s, pubsub %s)", args["<plugin>"], args["--endpoint"],
             args["--pubsub"])
    if not to_bool(config.get("active", True)):
        # Circus's start() raises for an inactive plugin, and circusd respawns it every tick: idle instead. The
        # stop signals are blocked before saying so: one sent after the message must end the sigwait, not reach
        # on_signal (whose Tornado loop never runs here) and be lost.
        stops = {signal.SIGTERM, signal.SIGINT}
        signal.pthread_sigmask(signal.SIG_BLOCK, stops)
        log.info("plugin %s is inactive: idle until stopped", args["<plugin>"])
        signal.sigwait(stops)
        return EXIT_OK
    try:
        plugin.start()
    except KeyboardInterrupt:
        pass
    finally:
        plugin.stop()
        log.info("plugin %s stopped", args["<plugin>"])
    return EXIT_OK


def run() -> None:
    sys.exit(main())


if __name__ == "__main__":
    run()
