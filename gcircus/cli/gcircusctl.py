"""gcircusctl - control a running gcircusd (or circusd) over its control channel.

Usage:
  gcircusctl [options] [<command> [<args>...]]
  gcircusctl --version
  gcircusctl (-h | --help)

Options:
  --endpoint E          The control endpoint (for `listen`: the pubsub endpoint).
  --timeout N           Seconds to wait for a reply [default: 5].
  --json                Print the raw JSON reply (exit 0 even for an error reply).
  --prettify            Indent and sort the JSON reply (implies --json).
  -c CONFIG, --config CONFIG
                        Read the endpoints from this config's [circus] section.
  --curve-key PATH      This client's secret CURVE certificate (NAME.key_secret), for an endpoint that requires
                        CURVE (default: $GCIRCUS_CURVE_KEY).
  --server-key PATH     The daemon's public CURVE certificate (default: $GCIRCUS_SERVER_KEY).
  --version             Print the version and exit.
  -h --help             Show this help.

Without a command, gcircusctl opens an interactive shell. `gcircusctl help COMMAND` describes one command; its
options (such as --waiting) go after the command name, and `--` ends them.
The control endpoint is --endpoint, else the `endpoint` of the config given with -c, else $GCIRCUSCTL_ENDPOINT
(or $CIRCUSCTL_ENDPOINT), else {DEFAULT_ENDPOINT}. `listen` uses --endpoint, else the config's `pubsub_endpoint`, else
{DEFAULT_PUBSUB_ENDPOINT}.
`gcircusctl keygen NAME` writes a CURVE key pair (no daemon needed); see the README's "Securing the control channel".
Exit codes: 0 ok, 1 no reply (no daemon at the endpoint, or no answer in time), 2 bad command line,
3 the daemon answered with an error.
"""
from __future__ import annotations

import sys

from gcircus import __version__, options
from gcircus.cli.ctlshell import ControlShell
from gcircus.cli.session import EXIT_OK, EXIT_USAGE, Session, UsageError, full_help, parse_timeout
from gcircus.cli.usage import CommandLineError, parse_command_line

# The usage text names the default endpoints; docopt reads the [default: ...] ones from it.
__doc__ = __doc__.format_map(vars(options))


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        args = parse_command_line(__doc__, argv, "gcircusctl", default_help=False, options_first=True)
    except CommandLineError as exc:
        return exc.report()
    if args["--help"]:
        print(full_help(__doc__))
        return EXIT_OK
    if args["--version"]:
        print(f"gcircusctl {__version__}")
        return EXIT_OK
    session = Session(endpoint=args["--endpoint"], json_output=args["--json"], prettify=args["--prettify"],
                      config=args["--config"], usage=__doc__, curve_key=args["--curve-key"],
                      server_key=args["--server-key"])
    try:
        session.timeout = parse_timeout(args["--timeout"])
        if args["<command>"]:
            return session.run(args["<command>"], args["<args>"])  # says its own usage errors
        _ = session.endpoint  # a bad -c config is a usage error before the banner, not inside the shell
        return ControlShell(session).run()
    except UsageError as exc:
        session.print_usage_error(exc)
        return EXIT_USAGE
    finally:
        session.close()


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())


if __name__ == "__main__":
    run()
