"""conf/kubernetes/deployment.yaml: its probe commands say what they claim when run against a real gcircusd on the
image's config, and its time limits fit the config's.

The manifest is YAML. PyYAML is no dependency of gcircus: the structure test runs where it is installed; the probe
commands and limits are read line by line (tests/support/kubernetes.py) everywhere.
"""
import importlib.util
import re

import pytest
from gevent import subprocess

from gcircus.client import CallError, Client
from gcircus.config import load_config
from tests.support import kubernetes as k8s
from tests.support.ports import free_port
from tests.support.waiting import wait_for

PROBES = ("livenessProbe", "readinessProbe", "startupProbe")
# A watcher whose command does not exist: `failed` after its one spawn attempt, at once.
BROKEN_WATCHER = "[watcher:broken]\ncmd = /nonexistent/gcircus-k8s-probe-test\nmax_retry = 1\n"


@pytest.mark.skipif(importlib.util.find_spec("yaml") is None, reason="PyYAML is not installed (no gcircus dependency)")
def test_the_manifest_is_yaml_and_says_what_the_line_reader_reads():
    import yaml  # only where installed: the skip above

    deployment, service = yaml.safe_load_all(k8s.manifest_text())
    assert (deployment["kind"], service["kind"]) == ("Deployment", "Service")
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    for probe in PROBES:
        assert container[probe]["exec"]["command"] == k8s.command_after(probe)
    assert container["lifecycle"]["preStop"]["exec"]["command"] == k8s.command_after("preStop")
    assert pod["terminationGracePeriodSeconds"] == k8s.integer("terminationGracePeriodSeconds")
    assert pod["securityContext"]["runAsNonRoot"] is True
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert k8s.CONTROL_DIR in mounts and container["securityContext"]["readOnlyRootFilesystem"] is True


def _stop_timeout() -> float:
    """[circus] stop_timeout as gcircus reads the file."""
    return float(load_config(k8s.CONFIG).circus["stop_timeout"])


def test_the_grace_period_outlasts_every_stop_the_config_allows():
    """Kubernetes SIGKILLs the pod terminationGracePeriodSeconds after the preStop hook began: by then gcircusd must
    have stopped everything itself, each worker within its graceful_timeout, all of it within stop_timeout."""
    (web,) = load_config(k8s.CONFIG).watchers
    pre_stop = k8s.command_after("preStop")
    assert pre_stop[0] == "sleep"
    stop_timeout = _stop_timeout()
    (app_grace,) = re.findall(r"--grace (\d+)", web.cmd)
    assert float(app_grace) < web.graceful_timeout <= stop_timeout
    assert k8s.integer("terminationGracePeriodSeconds") > float(pre_stop[1]) + stop_timeout


def test_probe_timeouts_outlast_gcircusctls_own():
    for probe in PROBES:
        command = " ".join(k8s.command_after(probe))
        (timeout,) = re.findall(r"--timeout (\d+)", command)
        lines = k8s.manifest_text().splitlines()
        start = next(i for i, line in enumerate(lines) if line.strip() == f"{probe}:")
        probe_timeout = next(int(line.split(":")[1]) for line in lines[start:] if "timeoutSeconds:" in line)
        assert probe_timeout > int(timeout), probe


def _probe(command: list[str], endpoint: str) -> int:
    result = subprocess.run(k8s.with_endpoint(command, endpoint), env=k8s.tool_env(), capture_output=True,
                            text=True, timeout=60)
    assert "usage" not in result.stderr.lower(), result.stderr  # gcircusctl accepted the command line
    return result.returncode


@pytest.fixture
def run_dir():
    path = k8s.short_run_dir()
    yield path
    k8s.remove_run_dir(path)


def _statuses(endpoint: str) -> dict:
    try:
        with Client(endpoint, timeout=5) as client:
            return client.call("status").get("statuses") or {}
    except CallError:
        return {}


def test_probes_against_gcircusd_on_the_image_config(run_dir, daemon_factory):
    """Liveness passes while gcircusd answers; readiness only while every watcher is active: not with one failed,
    again once it is gone. With no gcircusd, both fail."""
    endpoint = f"ipc://{run_dir}/control.sock"
    liveness, readiness, startup = (k8s.command_after(probe) for probe in PROBES)
    assert _probe(liveness, endpoint) != 0 and _probe(readiness, endpoint) != 0

    daemon = daemon_factory(k8s.local_config(run_dir, free_port(), extra=BROKEN_WATCHER))
    wait_for(lambda: _statuses(endpoint) == {"web": "active", "broken": "failed"}, 30,
             message=f"web active and broken failed:\n{daemon.output()}")
    assert _probe(liveness, endpoint) == 0 and _probe(startup, endpoint) == 0
    assert _probe(readiness, endpoint) != 0

    with Client(endpoint, timeout=10) as client:
        client.call("rm", name="broken", waiting=True, check=True)
    assert _statuses(endpoint) == {"web": "active"}
    assert _probe(readiness, endpoint) == 0 and _probe(liveness, endpoint) == 0
    assert daemon.stop() == 0
