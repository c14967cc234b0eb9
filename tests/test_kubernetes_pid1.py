"""The image's ENTRYPOINT and CMD, run for real as PID 1 of a PID namespace (as a container runtime runs them):
gcircusd is PID 1, its workers serve HTTP on the [socket], the manifest's probes pass from inside the namespace
(as `kubectl exec` runs them), and SIGTERM ends it with exit code 0 after every worker stopped on its own.

Needs `unshare --pid --fork --mount-proc` (root, or user namespaces): skipped with the reason otherwise.
"""
import http.client
import json
import os
import shutil
import signal

import pytest
from gevent import subprocess

from gcircus.client import CallError, Client
from tests.support import kubernetes as k8s
from tests.support.ports import free_port
from tests.support.processes import alive, children, kill
from tests.support.waiting import wait_for

UNSHARE = ["unshare", "--pid", "--fork", "--mount-proc"]


def _namespaces_unavailable() -> str | None:
    """Why a PID namespace cannot be made here, or None."""
    if not shutil.which("unshare") or not shutil.which("nsenter"):
        return "unshare or nsenter (util-linux) is not installed"
    result = subprocess.run([*UNSHARE, "true"], capture_output=True, text=True, timeout=30)
    return None if result.returncode == 0 else f"unshare --pid is not permitted here: {result.stderr.strip()}"


pytestmark = pytest.mark.skipif(bool(_namespaces_unavailable()), reason=str(_namespaces_unavailable()))


def _namespace_pid(pid: int) -> int:
    """`pid` as the innermost PID namespace it lives in numbers it (the last field of NSpid)."""
    with open(f"/proc/{pid}/status") as f:
        return int(next(line for line in f if line.startswith("NSpid:")).split()[-1])


def _get(port: int) -> dict:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("GET", "/k8s")
        response = connection.getresponse()
        assert response.status == 200
        return json.loads(response.read())
    finally:
        connection.close()


def _web_active(endpoint: str) -> bool:
    try:
        with Client(endpoint, timeout=5) as client:
            return client.call("status", name="web").get("status") == "active"
    except CallError:
        return False


@pytest.fixture
def run_dir():
    path = k8s.short_run_dir()
    yield path
    k8s.remove_run_dir(path)


def test_the_image_entrypoint_is_a_correct_pid_1(run_dir):
    port, probe_port = free_port(), free_port()
    command = k8s.container_command()
    # The CMD's config, moved to temporary paths and free ports.
    command[-1] = k8s.local_config(run_dir, port, probe_port=probe_port)
    endpoint = f"ipc://{run_dir}/control.sock"
    with open(os.path.join(run_dir, "container.out"), "wb") as log:
        runtime = subprocess.Popen([*UNSHARE, *command], env=k8s.tool_env(), stdout=log, stderr=subprocess.STDOUT)
    output = lambda: open(os.path.join(run_dir, "container.out"), errors="replace").read()  # noqa: E731
    try:
        init = wait_for(lambda: children(runtime.pid), 20, message="the namespace's first process")[0]
        assert _namespace_pid(init) == 1
        wait_for(lambda: _web_active(endpoint), 30, message=f"web active:\n{output()}")
        workers = children(init)
        assert len(workers) == 2 and all(_namespace_pid(pid) > 1 for pid in workers)
        assert _get(port)["worker"] in ("1", "2") and _get(port)["path"] == "/k8s"

        # The probes, as the kubelet sends them: HTTP to the container's probe port.
        for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
            assert k8s.probe_status(probe, probe_port) == 200, f"{probe}:\n{output()}"

        namespace = [init, *workers]
        os.kill(init, signal.SIGTERM)  # what the runtime sends (the image's STOPSIGNAL)
        assert runtime.wait(timeout=60) == 0, output()
        assert not [pid for pid in namespace if alive(pid)]
        # Every worker was stopped by gcircusd, gracefully (it says so itself on SIGTERM), before PID 1 exited.
        text = output()
        assert "web[1] | web worker 1" in text and "web[2] | web worker 2" in text  # prefix_output on stdout
        assert text.count(") stopped") == 2 and "gcircusd stopped" in text
    finally:
        if runtime.poll() is None:  # SIGKILL to PID 1: the kernel empties its namespace, and unshare exits with it
            kill(children(runtime.pid))
            runtime.wait(timeout=30)
