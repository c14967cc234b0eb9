"""The environment a watcher's children start with: copy_env, copy_path, virtualenv, then the configured variables."""
from __future__ import annotations

import glob
import os
import sys


def build_env(configured: dict | None, copy_env: bool = False, copy_path: bool = False,
              virtualenv: str | None = None, virtualenv_py_ver: str | None = None) -> dict:
    """Compose the child environment in Circus's order.

    Without copy_env only the configured variables are passed (Circus's behaviour: no PATH, no HOME), with it
    gcircusd's own environment comes first, then PYTHONPATH from sys.path (copy_path), then the configured
    variables, then the virtualenv's bin directory and site-packages.
    """
    env: dict = dict(os.environ) if copy_env else {}
    if copy_path:
        env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    env.update({str(k): str(v) for k, v in (configured or {}).items()})
    if virtualenv:
        apply_virtualenv(env, virtualenv, virtualenv_py_ver)
    return env


def apply_virtualenv(env: dict, venv: str, py_ver: str | None = None) -> None:
    """Put a virtualenv's bin first on PATH and its site-packages (with .pth entries) on PYTHONPATH."""
    if not os.path.isdir(venv):
        raise ValueError(f"virtualenv {venv!r} does not exist")
    bin_dir = os.path.join(venv, "bin")
    if os.path.isdir(bin_dir):
        env["PATH"] = os.pathsep.join([bin_dir] + [p for p in env.get("PATH", "").split(os.pathsep) if p])
    version = py_ver or f"{sys.version_info.major}.{sys.version_info.minor}"
    candidates = [os.path.join(venv, "lib", f"python{version}", "site-packages"),
                  os.path.join(venv, "lib", f"pypy{version}", "site-packages")]
    site_dir = next((d for d in candidates if os.path.isdir(d)), None)
    if site_dir is None:
        raise ValueError(f"virtualenv {venv!r} has no site-packages for Python {version}")
    paths = [site_dir]
    for pth in sorted(glob.glob(os.path.join(site_dir, "*.pth"))):
        with open(pth, encoding="utf-8", errors="replace") as f:
            lines = [line.strip() for line in f]
        paths += [os.path.normpath(os.path.join(site_dir, line)) for line in lines
                  if line and not line.startswith(("#", "import "))]
    existing = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    env["PYTHONPATH"] = os.pathsep.join(paths + [p for p in existing if p not in paths])
