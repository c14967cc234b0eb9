"""CURVE keys as gcircus reads and writes them: certificate files in pyzmq's `zmq.auth` format, and the socket options
that make a channel a CURVE server or a client of one.

A secret certificate (`NAME.key_secret`) holds a key pair; a public one (`NAME.key`) only the public key. The files
are read with pyzmq's own `zmq.auth.load_certificate`, so keys made by `zmq.auth.create_certificates`, czmq's
`zcert` or `gcircusctl keygen` all work. A secret file anyone but its owner can read is refused, as ssh refuses a
private key others can read: the key in it can no longer be trusted to be this client's alone.

Both sides live here, below the control server and the clients: the daemon's channels and ZAP handler, gcircusctl,
gcircus.client and the stats tools read the same files the same way. No gevent here (gcircusctl imports this).
"""
from __future__ import annotations

import contextlib
import glob
import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass

import zmq
from zmq.utils import z85

CURVE_KEY_VARIABLE = "GCIRCUS_CURVE_KEY"  # the client's secret certificate, when --curve-key is not given
SERVER_KEY_VARIABLE = "GCIRCUS_SERVER_KEY"  # the daemon's public certificate, when --server-key is not given
PUBLIC_SUFFIX = ".key"
SECRET_SUFFIX = ".key_secret"
KEY_PREFIX_LENGTH = 8  # characters of a z85 key that logs show: enough to tell keys apart, not the whole key
_ZAP_DOMAIN_MAX = 254  # bytes libzmq accepts in ZMQ_ZAP_DOMAIN


class CurveKeyError(ValueError):
    """A certificate file that cannot be used, with its path and what is wrong with it."""


@dataclass(frozen=True)
class KeyPair:
    """A CURVE key pair, both keys z85-encoded (40 characters each), as libzmq's socket options take them."""

    public: bytes
    secret: bytes


def key_prefix(key: bytes) -> str:
    """The first characters of a z85 key, for log lines that must say which key without printing it whole."""
    return key[:KEY_PREFIX_LENGTH].decode("ascii", "replace") + "..."


def _check_z85(path: str, key: bytes, what: str) -> bytes:
    if len(key) != 40:
        raise CurveKeyError(f"{path}: its {what} is not a CURVE key (40 z85 characters expected, got {len(key)})")
    try:
        z85.decode(key)
    except (ValueError, KeyError, IndexError):
        raise CurveKeyError(f"{path}: its {what} is not valid z85 text") from None
    return key


def _load(path: str) -> tuple[bytes, bytes | None]:
    """(public, secret or None) from a certificate file; CurveKeyError naming the path and the reason."""
    from zmq.auth.certs import load_certificate  # (CURVE only: not imported at every start)

    try:
        public, secret = load_certificate(path)
    except FileNotFoundError:
        raise CurveKeyError(f"{path}: no such file") from None
    except PermissionError:
        raise CurveKeyError(f"{path}: cannot be read by this user (permission denied)") from None
    except IsADirectoryError:
        raise CurveKeyError(f"{path}: is a directory, not a certificate file") from None
    except OSError as exc:
        reason = "no such file" if not os.path.exists(path) else (exc.strerror or str(exc))
        raise CurveKeyError(f"{path}: {reason}") from None
    except ValueError:
        raise CurveKeyError(f"{path}: not a CURVE certificate (no public-key line; see `gcircusctl keygen`)") from None
    return _check_z85(path, public, "public-key"), secret


def read_secret_certificate(path: str) -> KeyPair:
    """The key pair of a secret certificate; CurveKeyError if it is missing, unreadable, a public certificate, or
    readable or writable by its group or others."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise CurveKeyError(f"{path}: no such file") from None
    except OSError as exc:
        raise CurveKeyError(f"{path}: {exc.strerror or exc}") from None
    public, secret = _load(path)
    if secret is None:
        raise CurveKeyError(f"{path}: a public certificate, not a secret one (it has no secret-key line; the secret "
                            f"file is NAME{SECRET_SUFFIX})")
    if stat.S_ISREG(mode) and mode & 0o077:
        raise CurveKeyError(f"{path}: a secret key must be private to its owner, but its mode is "
                            f"{stat.S_IMODE(mode):04o}: `chmod 600 {path}` (and make a new key pair if others may "
                            f"have read it)")
    return KeyPair(public, _check_z85(path, secret, "secret-key"))


def read_public_key(path: str) -> bytes:
    """The public key of a certificate file (public or secret); CurveKeyError if it cannot be read."""
    return _load(path)[0]


def read_client_keys(directory: str) -> dict[bytes, str]:
    """The public keys of the `*.key` files in `directory`, each mapped to its client's name (the file name without
    `.key`); CurveKeyError naming the directory or the first bad file. Two names for one key are refused: which
    grant would apply would depend on the order of a directory listing."""
    if not os.path.isdir(directory):
        reason = "no such directory" if not os.path.exists(directory) else "not a directory"
        raise CurveKeyError(f"{directory}: {reason}")
    if not os.access(directory, os.R_OK | os.X_OK):
        raise CurveKeyError(f"{directory}: cannot be read by this user (permission denied)")
    keys: dict[bytes, str] = {}
    for path in sorted(glob.glob(os.path.join(glob.escape(directory), "*" + PUBLIC_SUFFIX))):
        name = os.path.basename(path)[:-len(PUBLIC_SUFFIX)]
        key = read_public_key(path)
        if key in keys:
            raise CurveKeyError(f"{path}: the same public key as {keys[key]}{PUBLIC_SUFFIX}; one client, one name")
        keys[key] = name
    return keys


def serve_curve(sock, keys: KeyPair, domain: str) -> None:
    """Make a socket, before it binds, a CURVE server whose peers the ZAP handler vets under `domain` (which the
    handler's log lines name: the option and endpoint)."""
    sock.curve_server = True
    sock.curve_secretkey = keys.secret
    sock.curve_publickey = keys.public
    sock.zap_domain = domain.encode("utf-8", "replace")[:_ZAP_DOMAIN_MAX]


@dataclass(frozen=True)
class ClientKeys:
    """What a client needs to talk CURVE: its own key pair and the daemon's public key."""

    own: KeyPair
    server: bytes
    curve_key: str  # the paths they came from, for messages
    server_key: str

    @classmethod
    def load(cls, curve_key: str | None, server_key: str | None) -> ClientKeys | None:
        """The keys of these files; None when neither is given; CurveKeyError if only one is, or one is bad."""
        if not curve_key and not server_key:
            return None
        if not curve_key or not server_key:
            given, missing = ("--curve-key", "--server-key") if curve_key else ("--server-key", "--curve-key")
            raise CurveKeyError(f"{given} needs {missing} too: CURVE takes the client's secret certificate and the "
                                f"daemon's public certificate")
        return cls(read_secret_certificate(curve_key), read_public_key(server_key), curve_key, server_key)

    def apply(self, sock) -> None:
        """Make a socket, before it connects, a CURVE client of the daemon whose public key this holds."""
        sock.curve_secretkey = self.own.secret
        sock.curve_publickey = self.own.public
        sock.curve_serverkey = self.server


def key_paths(curve_key: str | None, server_key: str | None,
              environ: Mapping[str, str] | None = None) -> tuple[str | None, str | None]:
    """The command line's --curve-key and --server-key, each else its environment variable (GCIRCUS_CURVE_KEY,
    GCIRCUS_SERVER_KEY)."""
    environ = os.environ if environ is None else environ
    return (curve_key or environ.get(CURVE_KEY_VARIABLE) or None,
            server_key or environ.get(SERVER_KEY_VARIABLE) or None)


def write_key_pair(directory: str, name: str) -> tuple[str, str]:
    """Write NAME.key (public, 0644) and NAME.key_secret (0600) in `directory` (made 0700 if missing); return their
    paths. CurveKeyError for a bad name or when either file exists: a key pair is never overwritten.

    zmq.auth.create_certificates writes both files with the process's umask; the umask is narrowed around it, so the
    secret file never exists readable by others, even for a moment.
    """
    if not name or name.startswith(".") or "/" in name or "\x00" in name:
        raise CurveKeyError(f"{name!r}: a key name is a file name: not empty, no '/', not starting with '.'")
    public_path = os.path.join(directory, name + PUBLIC_SUFFIX)
    secret_path = os.path.join(directory, name + SECRET_SUFFIX)
    for path in (public_path, secret_path):
        if os.path.lexists(path):
            raise CurveKeyError(f"{path}: already exists; remove it first or choose another name")
    try:
        os.makedirs(directory, mode=0o700, exist_ok=True)
    except OSError as exc:
        raise CurveKeyError(f"{directory}: cannot create the directory ({exc.strerror or exc})") from None
    from zmq.auth.certs import create_certificates  # (CURVE only: not imported at every start)

    old_umask = os.umask(0o177)
    try:
        create_certificates(directory, name)
    except OSError as exc:
        for path in (public_path, secret_path):
            with contextlib.suppress(OSError):
                os.unlink(path)
        raise CurveKeyError(f"{directory}: cannot write the key pair ({exc.strerror or exc})") from None
    finally:
        os.umask(old_umask)
    os.chmod(secret_path, 0o600)
    os.chmod(public_path, 0o644)
    return public_path, secret_path


# -- telling why a handshake failed (the clients' side) -----------------------------------------------------------

HANDSHAKE_FAILED = (zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
                    | zmq.EVENT_HANDSHAKE_FAILED_AUTH)


def handshake_failure(event: int, value: int, endpoint: str, using_curve: bool) -> str | None:
    """What a client should say when zmq's monitor reports `event` (with `value`) for its connection to `endpoint`:
    a sentence naming the CURVE mistake, or None for an event that is no handshake failure of that kind."""
    if event == zmq.EVENT_HANDSHAKE_FAILED_AUTH:
        return (f"{endpoint} refused this client's CURVE key (status {value}): its public key is not in the daemon's "
                f"curve_clients directory")
    if event == zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL and value == zmq.PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH:
        if using_curve:
            return f"{endpoint} does not use CURVE: connect to it without --curve-key and --server-key"
        return (f"{endpoint} requires CURVE: give --curve-key (this client's secret certificate) and --server-key "
                f"(the daemon's public certificate), or ${CURVE_KEY_VARIABLE} and ${SERVER_KEY_VARIABLE}")
    if using_curve and event & HANDSHAKE_FAILED:
        return (f"the CURVE handshake with {endpoint} failed: is --server-key the daemon's public certificate "
                f"(the .key of its curve_secret_key)?")
    return None
