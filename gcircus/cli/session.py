"""What gcircusctl and its interactive shell share: a session with one daemon (endpoint, client, timeouts, output
format), the help texts built from the command table, and how a command line becomes a request and a reply output.

Its own module so that gcircusctl (the entry point) and gcircus.cli.ctlshell (the shell it may start) both import it,
and neither imports the other.
"""
from __future__ import annotations

import json
import os
import sys
import time
import uuid
from typing import TextIO

import zmq

from gcircus.cli.peer_check import HandshakeWatch, pubsub_endpoint_of_control
from gcircus.cli.usage import unknown_option_message
from gcircus.client import DEFAULT_ENDPOINT, CallError, Client, DaemonTimeout, HandshakeRefused, NoDaemonError, is_error
from gcircus.config import load_config
from gcircus.consumer import DEFAULT_PUBSUB_ENDPOINT, Consumer
from gcircus.control.commands import COMMANDS, MOST_TYPED, get_command
from gcircus.control.commands.base import Command
from gcircus.errors import ConfigError
from gcircus.suggest import closest
from gcircus.wire.curve import CurveKeyError, key_paths, write_key_pair
from gcircus.wire.errors import ArgumentError, ControlError

EXIT_OK, EXIT_CLIENT, EXIT_USAGE, EXIT_ERROR_REPLY = 0, 1, 2, 3
UPGRADE_WAIT = 60.0  # seconds `upgrade` waits for the new image to report the hand-over
UPGRADE_POLL = 0.1
ENDPOINT_VARIABLES = ("GCIRCUSCTL_ENDPOINT", "CIRCUSCTL_ENDPOINT")
# Long options that may also follow the command name (unless the command declares a flag of that name).
GLOBAL_AFTER_COMMAND = {"--json": False, "--prettify": False, "--endpoint": True, "--timeout": True,
                        "--curve-key": True, "--server-key": True}
SIGNAL_CHECK_MS = 200  # how long listen waits in zmq before Python looks at pending signals (Ctrl-C)


class UsageError(Exception):
    """A command line that does not fit: printed with the relevant usage, exit 2."""

    def __init__(self, message: str, command: Command | None = None):
        super().__init__(message)
        self.command = command


# -- help texts --------------------------------------------------------------------------------------------------

def usage_line(command: Command) -> str:
    """The command's usage: the line of its help that starts with its name (every command's help has one)."""
    for line in command.help.splitlines()[1:]:
        text = line.strip()
        if text == command.name or text.startswith(command.name + " "):
            return text
    return command.name


def command_help(command: Command) -> str:
    """`gcircusctl help NAME`: the command's help text, then its options."""
    text = command.help or command.name
    if command.flags:
        rows = [(f"--{f.name} {f.prop.upper()}" if f.takes_value else f"--{f.name}", f.help) for f in command.flags]
        width = max(len(r[0]) for r in rows)
        text += "\n\nOptions:\n" + "\n".join(f"  {left.ljust(width)}  {right}".rstrip() for left, right in rows)
    return text


def commands_table() -> str:
    width = max(len(n) for n in COMMANDS)
    return "Commands:\n" + "\n".join(f"  {name.ljust(width)}  {COMMANDS[name].summary}" for name in sorted(COMMANDS))


def full_help(usage: str) -> str:
    """gcircusctl's usage text followed by the table of every command."""
    return usage.strip() + "\n\n" + commands_table()


def unknown_command_message(name: str) -> str:
    """`unknown command 'x'`, with the command most likely meant (by edit distance, then by how often typed)."""
    meant = closest(name.lower(), [*MOST_TYPED, *sorted(COMMANDS)])
    hint = f" (did you mean {meant!r}?)" if meant else ""
    return f"unknown command {name!r}{hint}; `gcircusctl help` lists them"


# -- parsing a command's own arguments ---------------------------------------------------------------------------

def split_command_args(command: Command, tokens: list[str]) -> tuple[list[str], dict, dict, bool]:
    """Separate positional arguments, the command's flags (as properties) and global options given after the
    command. Returns (args, opts, global_opts, wants_help)."""
    flags = {f"--{flag.name}": flag for flag in command.flags}
    args: list[str] = []
    opts: dict = {}
    global_opts: dict = {}
    tokens = list(tokens)
    while tokens:
        token = tokens.pop(0)
        if token == "--":
            args.extend(tokens)
            break
        if token in ("-h", "--help"):
            return args, opts, global_opts, True
        if not token.startswith("--"):
            args.append(token)
            continue
        name, has_value, value = token.partition("=")
        flag = flags.get(name)
        takes_value = flag.takes_value if flag else GLOBAL_AFTER_COMMAND.get(name)
        if takes_value is None:
            message = unknown_option_message(name, [*flags, *GLOBAL_AFTER_COMMAND, "--help"], f" for {command.name}")
            if not message.endswith("?)"):
                message += " (put `--` before arguments that start with --)"
            raise UsageError(message, command)
        if takes_value and not has_value:
            if not tokens:
                raise UsageError(f"option {name} needs a value", command)
            value = tokens.pop(0)
        if flag is None:
            global_opts[name] = value if takes_value else True
        elif not takes_value:
            if has_value:
                raise UsageError(f"option {name} takes no value", command)
            opts[flag.prop] = flag.value
        else:
            try:
                opts[flag.prop] = flag.convert(value)
            except (ValueError, TypeError) as exc:
                raise UsageError(f"bad value {value!r} for {name}: {exc}", command) from None
    return args, opts, global_opts, False


def parse_timeout(text) -> float:
    try:
        value = float(text)
    except (TypeError, ValueError):
        raise UsageError(f"--timeout must be a number of seconds, not {text!r}") from None
    if not value > 0:
        raise UsageError(f"--timeout must be positive, not {text!r}")
    return value


# -- one session: endpoints, client, output ----------------------------------------------------------------------

class Session:
    """What one gcircusctl invocation (or one shell) shares: endpoints, timeout, output mode and the client."""

    def __init__(self, endpoint: str | None = None, timeout: float = 5.0, json_output: bool = False,
                 prettify: bool = False, config: str | None = None, out: TextIO | None = None,
                 err: TextIO | None = None, usage: str = "", curve_key: str | None = None,
                 server_key: str | None = None):
        self.explicit_endpoint = endpoint
        # CURVE: this client's secret certificate and the daemon's public one (else $GCIRCUS_CURVE_KEY and
        # $GCIRCUS_SERVER_KEY); read when the client is made, so `keygen` and `help` need neither.
        self.curve_key, self.server_key = key_paths(curve_key, server_key)
        self.timeout = timeout
        self.json_output = json_output or prettify
        self.prettify = prettify
        self.config_path = config
        self.out = out or sys.stdout
        self.err = err or sys.stderr
        # What `help` alone prints: gcircusctl's usage and the commands (the shell adds its own commands).
        self.overview = lambda: full_help(usage)
        self._config = None
        self._client: Client | None = None

    # endpoints

    def _circus_option(self, key: str) -> str | None:
        if not self.config_path:
            return None
        if self._config is None:
            try:
                self._config = load_config(self.config_path)
            except ConfigError as exc:
                raise UsageError(f"cannot read the endpoints from {self.config_path}: {exc}") from None
        return self._config.circus.get(key)

    @property
    def endpoint(self) -> str:
        # What the operator typed on this command line (--endpoint, then -c) beats the environment.
        if self.explicit_endpoint:
            return self.explicit_endpoint
        if self.config_path:
            return self._circus_option("endpoint") or DEFAULT_ENDPOINT
        return next((os.environ[name] for name in ENDPOINT_VARIABLES if os.environ.get(name)), DEFAULT_ENDPOINT)

    @property
    def pubsub_endpoint(self) -> str:
        return self.explicit_endpoint or self._circus_option("pubsub_endpoint") or DEFAULT_PUBSUB_ENDPOINT

    @property
    def client(self) -> Client:
        if self._client is None:
            self._client = Client(self.endpoint, timeout=self.timeout, green=False, curve_key=self.curve_key,
                                  server_key=self.server_key)
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    # running

    def run(self, name: str, tokens: list[str]) -> int:
        """Run one command line (name and its arguments); print the outcome; return the exit code."""
        try:
            return self._run(name, tokens)
        except UsageError as exc:
            self.print_usage_error(exc)
            return EXIT_USAGE
        except NoDaemonError as exc:
            self.say_err(f"gcircusctl: {exc}. Is gcircusd running there? Use -c CONFIG or --endpoint to "
                         f"choose another endpoint.")
            return EXIT_CLIENT
        except DaemonTimeout as exc:
            self.say_err(f"gcircusctl: {exc} (it may be busy; --timeout sets a longer wait).")
            return EXIT_CLIENT
        except CurveKeyError as exc:  # --curve-key, --server-key or their variables name a file that cannot be used
            self.say_err(f"gcircusctl: cannot use the CURVE keys: {exc}")
            return EXIT_USAGE
        except CallError as exc:
            self.say_err(f"gcircusctl: {exc}")
            return EXIT_CLIENT

    def _run(self, name: str, tokens: list[str]) -> int:
        command = get_command(name)
        if command is None:
            raise UsageError(unknown_command_message(name))
        args, opts, global_opts, wants_help = split_command_args(command, tokens)
        if wants_help:
            self.say(command_help(command))
            return EXIT_OK
        if global_opts:
            self.apply_global_options(global_opts)
        try:
            props = command.message(args, opts)
        except (ArgumentError, ControlError) as exc:
            raise UsageError(str(exc), command) from None
        return command.run_client(self, props)

    def apply_global_options(self, options: dict) -> None:
        if "--prettify" in options:
            self.prettify = self.json_output = True
        if "--json" in options:
            self.json_output = True
        if "--timeout" in options:
            self.timeout = parse_timeout(options["--timeout"])
            self.close()
        if "--endpoint" in options:
            self.explicit_endpoint = options["--endpoint"]
            self.close()
        if "--curve-key" in options or "--server-key" in options:
            self.curve_key = options.get("--curve-key", self.curve_key)
            self.server_key = options.get("--server-key", self.server_key)
            self.close()

    def show_reply(self, command: Command, reply: dict) -> int:
        if self.json_output:
            self.say(render_json(reply, self.prettify, self.out))
            return EXIT_OK
        if is_error(reply):
            self.say_err(f"error: {reply.get('reason') or 'the daemon reported an error without a reason'}")
            return EXIT_ERROR_REPLY
        try:
            text = command.console(reply)
        except Exception as exc:  # a reply this command's console cannot read (another daemon version?)
            self.say_err(f"gcircusctl: cannot display the reply ({type(exc).__name__}: {exc}); raw reply: "
                         f"{json.dumps(reply)}")
            return EXIT_CLIENT
        if text is not None:
            self.say(str(text))
        return EXIT_OK

    def run_upgrade(self, command: Command, props: dict) -> int:
        """`upgrade`: start the hand-over, then poll `upgrade --status` until the new image reports it done (or the
        old one reports it failed). The old image cannot answer once it exec'd, and the new one does not know this
        client: polling over a fresh connection is what works with zmq's ROUTER identities."""
        status = self.client.call(command.name, status=True)  # no daemon there: the usual error, at once
        if props.get("status") or is_error(status):
            return self.show_reply(command, status)
        handover = props.get("handover") or uuid.uuid4().hex
        try:
            reply = self.client.call(command.name, **{**props, "handover": handover})
        except CallError:
            reply = {}  # the connection closed as the daemon exec'd: the reply may be lost, the status tells
        if is_error(reply):
            return self.show_reply(command, reply)
        deadline = time.monotonic() + max(UPGRADE_WAIT, self.timeout)
        while time.monotonic() < deadline:
            time.sleep(UPGRADE_POLL)  # gcircusctl is a plain blocking program: no hub to hold up here
            self.close()  # a fresh connection: the old one went with the old image
            try:
                status = self.client.call(command.name, status=True)
            except CallError:
                continue  # the new image does not listen yet
            last = status.get("last") or {}
            if is_error(status) or last.get("id") != handover:
                continue
            if last.get("outcome") != "done":
                return self.show_reply(command, {"status": "error", "reason": f"upgrade failed, gcircusd keeps "
                                                 f"running as it was: {last.get('reason')}"})
            return self.show_reply(command, {"status": "ok", "pid": status.get("pid"), **last})
        return self.show_reply(command, {"status": "error", "reason": f"the hand-over {handover} did not report "
                                         f"within {max(UPGRADE_WAIT, self.timeout):g}s; see gcircusd's log"})

    def print_help(self, name: str | None = None) -> int:
        """`help [NAME]`: the overview of every command, or one command's help text and options."""
        if name is not None:
            return self._run(name, ["--help"])  # the same as `gcircusctl NAME --help`
        self.say(self.overview())
        return EXIT_OK

    def print_events(self, topics: list[str]) -> int:
        """`listen`: print `topic: json` for every event on the pubsub endpoint until Ctrl-C."""
        endpoint = self.pubsub_endpoint
        try:
            with Consumer(topics, endpoint=endpoint, timeout=1.0, green=False, curve_key=self.curve_key,
                          server_key=self.server_key) as consumer, \
                    HandshakeWatch(endpoint, consumer.context, consumer.curve) as watch:
                self.say_err(f"listening on {endpoint} (Ctrl-C to stop)")
                poller = zmq.Poller()
                poller.register(consumer.socket, zmq.POLLIN)
                poller.register(watch.monitor, zmq.POLLIN)
                told = False  # the refusal was said: the watch stays on only for a CURVE failure said later
                while True:
                    # A bounded wait: a SIGINT landing just before zmq's poll starts would not interrupt it,
                    # and Ctrl-C would then wait for the next event, maybe forever.
                    ready = dict(poller.poll(SIGNAL_CHECK_MS))
                    if watch.monitor in ready:
                        refused = watch.refused()
                        if watch.failure():  # CURVE on one side only, or a refused key (maybe on a retry)
                            raise HandshakeRefused(watch.failure() or "", endpoint)
                        if refused and not told:  # a control endpoint raises UsageError; a CURVE failure too
                            self.refused_subscription(endpoint, watch.failure(certain=False))
                            told = True
                        if watch.accepted:  # a publisher: nothing more to watch
                            poller.unregister(watch.monitor)
                            watch.close()
                    if consumer.socket in ready:
                        topic, message = consumer.recv(0) or (b"", b"")
                        self.say(f"{topic.decode('utf-8', 'replace')}: {message.decode('utf-8', 'replace')}")
        except KeyboardInterrupt:
            return EXIT_OK

    def refused_subscription(self, endpoint: str, curve_failure: str | None = None) -> None:
        """The peer at `endpoint` is no publisher: a control endpoint is a usage error naming the pubsub one; else a
        CURVE handshake that failed (`curve_failure`) ends listen with HandshakeRefused."""
        pubsub = pubsub_endpoint_of_control(endpoint, self.timeout, self.curve_key, self.server_key)
        if pubsub is not None:
            raise UsageError(f"{endpoint} is a control endpoint, not a pubsub endpoint: events are published on "
                             f"{pubsub}. Use --endpoint {pubsub} (for listen, --endpoint names the pubsub "
                             f"endpoint, as in circusctl) or -c CONFIG.", get_command("listen"))
        if curve_failure:
            raise HandshakeRefused(curve_failure, endpoint)
        self.say_err(f"gcircusctl: the peer at {endpoint} refused the subscription (it is not a zmq PUB socket); "
                     f"still trying. listen needs the daemon's pubsub_endpoint.")

    def write_keys(self, name: str, directory: str | None) -> int:
        """`keygen`: write a CURVE key pair (gcircus.wire.curve.write_key_pair) and say where it is."""
        try:
            public, secret = write_key_pair(directory or ".", name)
        except CurveKeyError as exc:
            self.say_err(f"gcircusctl: {exc}")
            return EXIT_CLIENT
        self.say(f"wrote {public} (public: copy it into the daemon's curve_clients directory, where this client is "
                 f"named {name!r})\nwrote {secret} (secret, mode 0600: it stays here; connect with --curve-key "
                 f"{secret})")
        return EXIT_OK

    # output

    def say(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    def say_err(self, text: str) -> None:
        print(text, file=self.err, flush=True)

    def print_usage_error(self, exc: UsageError) -> None:
        self.say_err(f"gcircusctl: {exc}")
        if exc.command is not None:
            self.say_err(f"usage: {usage_line(exc.command)}")


def render_json(reply: dict, prettify: bool, out: TextIO | None = None) -> str:
    """The reply as Circus's circusctl prints it with --json (and --prettify: indent 2, sorted keys, coloured on a
    terminal when pygments is installed)."""
    if not prettify:
        return json.dumps(reply)
    text = json.dumps(reply, indent=2, sort_keys=True)
    if out is not None and getattr(out, "isatty", lambda: False)():
        try:
            from pygments import highlight
            from pygments.formatters import TerminalFormatter
            from pygments.lexers import JsonLexer
        except ImportError:
            return text
        return highlight(text, JsonLexer(), TerminalFormatter()).rstrip("\n")
    return text


# -- entry points ------------------------------------------------------------------------------------------------
