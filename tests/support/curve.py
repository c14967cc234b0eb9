"""CURVE key pairs in a tmp dir and a gcircusd whose tcp:// channels require them (alice, a listed key, is granted
`define` in [access]: a listed key without a grant may run nothing)."""
from __future__ import annotations

import os
from dataclasses import dataclass

from gcircus.client import CallError, Client
from gcircus.wire.curve import read_public_key, write_key_pair
from tests.support.daemons import write_config
from tests.support.ports import free_port
from tests.support.waiting import wait_for


@dataclass
class Keys:
    """The daemon's pair, a listed client (alice), an unlisted one (mallory), and the curve_clients directory."""

    root: str
    server_secret: str
    server_public: str
    clients: str

    @classmethod
    def make(cls, tmp_path) -> Keys:
        root = str(tmp_path / "keys")
        server_public, server_secret = write_key_pair(os.path.join(root, "server"), "server")
        clients = os.path.join(root, "clients")
        os.makedirs(clients)
        keys = cls(root, server_secret, server_public, clients)
        keys.client("alice", listed=True)
        keys.client("mallory", listed=False)
        return keys

    def client(self, name: str, listed: bool) -> str:
        """Make NAME's key pair (its public key copied into curve_clients when `listed`); its secret file."""
        public, secret = write_key_pair(os.path.join(self.root, name), name)
        if listed:
            with open(public) as source, open(os.path.join(self.clients, f"{name}.key"), "w") as copy:
                copy.write(source.read())
        return secret

    def secret(self, name: str) -> str:
        return os.path.join(self.root, name, f"{name}.key_secret")

    def public_key(self, name: str) -> bytes:
        return read_public_key(os.path.join(self.root, name, f"{name}.key"))

    def options(self, name: str = "alice") -> dict[str, str]:
        """Client keyword arguments for NAME (gcircus.client.Client, gcircus.consumer.Consumer)."""
        return {"curve_key": self.secret(name), "server_key": self.server_public}

    def env(self, name: str = "alice") -> dict[str, str]:
        return {"GCIRCUS_CURVE_KEY": self.secret(name), "GCIRCUS_SERVER_KEY": self.server_public}

    def argv(self, name: str = "alice") -> list[str]:
        return ["--curve-key", self.secret(name), "--server-key", self.server_public]


@dataclass
class CurveDaemon:
    """A gcircusd with a `sleeper` watcher whose tcp:// channels (control, events, stats) require CURVE."""

    daemon: object
    keys: Keys
    endpoint: str
    pubsub: str
    stats: str

    def call(self, command: str, as_client: str = "alice", endpoint: str | None = None, **props) -> dict:
        """`command` over the control channel, as client `as_client` when it requires CURVE (a tcp:// one)."""
        keys = self.keys.options(as_client) if self.endpoint.startswith("tcp://") else {}
        with Client(endpoint or self.endpoint, timeout=5, **keys) as client:
            return client.call(command, **props)


def start_curve_daemon(daemon_factory, tmp_path, keys: Keys, endpoint: str | None = None, numprocesses: int = 1,
                       grants: str = "", circus: str = "") -> CurveDaemon:
    """Start it (control on `endpoint`, else a free loopback port) and return once alice's `list` sees it running.

    `grants`: more [access] lines (one a line) besides `curve:alice = define`; `circus`: more [circus] lines."""
    endpoint = endpoint or f"tcp://127.0.0.1:{free_port()}"
    pubsub, stats = (f"tcp://127.0.0.1:{free_port()}" for _ in range(2))
    config = write_config(tmp_path / "circus.ini", f"""
        [circus]
        endpoint = {endpoint}
        pubsub_endpoint = {pubsub}
        stats_endpoint = {stats}
        statsd = true
        stats_interval = 0.2
        curve_secret_key = {keys.server_secret}
        curve_clients = {keys.clients}
        {_indented(circus)}

        [access]
        curve:alice = define
        {_indented(grants)}

        [watcher:sleeper]
        cmd = sleep 1000
        numprocesses = {numprocesses}
        graceful_timeout = 2
        """)
    running = CurveDaemon(daemon_factory(config), keys, endpoint, pubsub, stats)
    connect_to = endpoint.replace("0.0.0.0", "127.0.0.1")

    def ready():
        if running.daemon.proc.poll() is not None:
            raise AssertionError(f"gcircusd exited: {running.daemon.output()}")
        try:
            return len(running.call("list", name="sleeper", endpoint=connect_to).get("pids", ())) == numprocesses
        except CallError:
            return False
    wait_for(ready, 20, message="gcircusd answering alice (over CURVE on tcp://)")
    return running


def _indented(lines: str) -> str:
    """`lines` for a write_config block: every line after the first at the block's indent (8 spaces)."""
    return "\n        ".join(line.strip() for line in lines.strip().splitlines())
