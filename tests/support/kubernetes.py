"""The container files of conf/kubernetes/ as the tests read them: the Dockerfile's instructions, the example config
moved to temporary paths and free ports, and the values the tests check in the manifest.

No Docker here (nor a registry to pull the base image from), and PyYAML is no dependency: the Dockerfile is read
with the few rules of its syntax that the file uses, and the manifest's probe commands are written as JSON-style
flow sequences (`command: ["gcircusctl", ...]`), which YAML reads the same way, so they are taken out line by line.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import sys
import tempfile
import urllib.error
import urllib.request

from tests.support.ports import free_port

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
KUBERNETES = os.path.join(ROOT, "conf", "kubernetes")
DOCKERFILE = os.path.join(KUBERNETES, "Dockerfile")
CONFIG = os.path.join(KUBERNETES, "gcircusd.ini")
MANIFEST = os.path.join(KUBERNETES, "deployment.yaml")
CONTROL_DIR = "/run/gcircus"  # where the image keeps the control sockets
ENDPOINT = f"ipc://{CONTROL_DIR}/control.sock"
# gcircusd and gcircusctl of the tree under test come first on PATH, as the image's do (pip installs them there).
BIN = os.path.dirname(sys.executable)


# -- the Dockerfile ------------------------------------------------------------------------------------------------

def instructions(path: str = DOCKERFILE) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) for each instruction: comments and blank lines dropped, `\\` continuations joined."""
    result: list[tuple[str, str]] = []
    pending = ""
    with open(path) as f:
        for line in f:
            stripped = line.strip()
            if not stripped or stripped.startswith("#"):
                continue
            pending += stripped[:-1] + " " if stripped.endswith("\\") else stripped
            if not stripped.endswith("\\"):
                keyword, _, arguments = pending.partition(" ")
                result.append((keyword.upper(), arguments.strip()))
                pending = ""
    assert not pending, f"{path}: a continuation line ends the file"
    return result


def final_stage(parsed: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """The instructions of the last stage: what the image is made of (the ones after the last FROM)."""
    last_from = max(i for i, (keyword, _) in enumerate(parsed) if keyword == "FROM")
    return parsed[last_from:]


def only(stage: list[tuple[str, str]], keyword: str) -> str:
    """The arguments of the one `keyword` instruction of `stage` (Docker would use the last: there must be one)."""
    found = [arguments for k, arguments in stage if k == keyword]
    assert len(found) == 1, f"{keyword}: expected exactly one in the final stage, found {found}"
    return found[0]


def exec_form(arguments: str) -> list[str]:
    """An exec-form (JSON array) argument list; a shell form is an error (it puts /bin/sh in front as PID 1)."""
    parsed = json.loads(arguments)
    assert isinstance(parsed, list) and all(isinstance(a, str) for a in parsed), arguments
    return parsed


def container_command() -> list[str]:
    """The command the container runs: ENTRYPOINT followed by CMD, both in exec form."""
    stage = final_stage(instructions())
    return exec_form(only(stage, "ENTRYPOINT")) + exec_form(only(stage, "CMD"))


def copies(stage: list[tuple[str, str]]) -> list[tuple[list[str], str]]:
    """(sources, destination) of each COPY from the build context (COPY --from=... copies from a stage)."""
    result = []
    for keyword, arguments in stage:
        if keyword == "COPY" and "--from=" not in arguments:
            *sources, destination = arguments.split()
            result.append((sources, destination))
    return result


def image_file(image_path: str) -> str:
    """The repository file that the final stage COPYs to `image_path` in the image."""
    for sources, destination in copies(final_stage(instructions())):
        if destination == image_path:
            assert len(sources) == 1, sources
            return os.path.join(ROOT, sources[0])
    raise AssertionError(f"the Dockerfile copies nothing to {image_path}")


# -- the example config, moved out of the image's paths ------------------------------------------------------------

def replace_counted(text: str, old: str, new: str, count: int = 1) -> str:
    """`text` with `old` replaced by `new`, which must occur exactly `count` times (the test notices a changed
    example instead of running it unchanged)."""
    assert text.count(old) == count, f"expected {count} x {old!r} in the example config"
    return text.replace(old, new)


def local_config(run_dir: str, port: int, extra: str = "", probe_port: int | None = None) -> str:
    """The image's config, as the Dockerfile installs it, with the control and HTTP sockets in `run_dir`, the
    [socket:web] on 127.0.0.1:`port`, the probe listener on 127.0.0.1:`probe_port` (a free one if None) and the web
    app taken from the repository; `extra` is appended. Written to run_dir; its path."""
    with open(image_file(container_command()[-1])) as f:
        text = f.read()
    text = replace_counted(text, f"= ipc://{CONTROL_DIR}/", f"= ipc://{run_dir}/", count=2)
    text = replace_counted(text, f"bind = unix:{CONTROL_DIR}/", f"bind = unix:{run_dir}/")
    text = replace_counted(text, "probe_bind = 0.0.0.0:9103", f"probe_bind = 127.0.0.1:{probe_port or free_port()}")
    text = replace_counted(text, "host = 0.0.0.0", "host = 127.0.0.1")
    text = replace_counted(text, "port = 8080", f"port = {port}")
    app_dir = os.path.dirname(image_file("/app/webapp.py"))
    text = replace_counted(text, "working_dir = /app", f"working_dir = {app_dir}")
    path = os.path.join(run_dir, "gcircusd.ini")
    with open(path, "w") as f:
        f.write(text + "\n" + extra)
    return path


def short_run_dir() -> str:
    """A fresh directory with a short path: a unix socket path holds at most 107 bytes (tmp_path can be longer)."""
    return tempfile.mkdtemp(prefix="gck8s-")


def remove_run_dir(path: str) -> None:
    shutil.rmtree(path, ignore_errors=True)


def tool_env() -> dict[str, str]:
    """The environment to run the image's commands with: this tree's gcircusd and gcircusctl first on PATH."""
    env = {k: v for k, v in os.environ.items() if k not in ("GCIRCUSCTL_ENDPOINT", "CIRCUSCTL_ENDPOINT")}
    env["PATH"] = BIN + os.pathsep + env.get("PATH", "")
    return env


# -- the manifest --------------------------------------------------------------------------------------------------

def manifest_text() -> str:
    with open(MANIFEST) as f:
        return f.read()


def command_after(anchor: str, text: str | None = None) -> list[str]:
    """The `command: [...]` first found after the line `anchor:` (livenessProbe, readinessProbe, preStop...)."""
    lines = (text or manifest_text()).splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip() == f"{anchor}:")
    for line in lines[start + 1:]:
        key, _, value = line.strip().partition(": ")
        if key == "command":
            return exec_form(value)
    raise AssertionError(f"no command after {anchor}:")


def http_get_after(anchor: str, text: str | None = None) -> tuple[str, str]:
    """(path, port) of the `httpGet:` probe first found after the line `anchor:` (port as written: a name)."""
    lines = (text or manifest_text()).splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip() == f"{anchor}:")
    assert lines[start + 1].strip() == "httpGet:", f"{anchor}: expected an httpGet probe"
    fields = dict(line.strip().partition(": ")[::2] for line in lines[start + 2:start + 4])
    return fields["path"], fields["port"]


def container_port(name: str, text: str | None = None) -> int:
    """The containerPort of the port called `name` in the manifest."""
    lines = (text or manifest_text()).splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip() == f"- name: {name}")
    return int(lines[start + 1].strip().removeprefix("containerPort:"))


def integer(key: str, text: str | None = None) -> int:
    """The value of the one `key: N` line of the manifest."""
    found = re.findall(rf"^\s*{re.escape(key)}:\s*(\d+)\s*$", text or manifest_text(), re.MULTILINE)
    assert len(found) == 1, f"{key}: expected one line, found {found}"
    return int(found[0])


def status_of(url: str) -> int:
    """The HTTP status of a GET of `url`, or 0 when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=10) as reply:
            return reply.status
    except urllib.error.HTTPError as error:
        return error.code
    except OSError:
        return 0


def probe_status(probe: str, port: int) -> int:
    """The HTTP status the kubelet would see for the manifest's `probe` sent to 127.0.0.1:`port` (0: no answer)."""
    path, _ = http_get_after(probe)
    return status_of(f"http://127.0.0.1:{port}{path}")
