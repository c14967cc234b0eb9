"""Headless Chromium for the dashboard tests: Debian's chromium driven by Selenium through Debian's chromedriver.

No browser or driver is ever downloaded: chromedriver is started here, by path, on a free port, and Selenium talks
to it as a remote WebDriver (so Selenium's own driver manager never runs). scripts/_browser installs both packages
when they are missing; where it could not, `missing()` says why and the tests skip. Closing kills the driver, the
browser and every helper process the browser started, by pid, and removes the fresh profile directory.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile

from tests.support.ports import free_port
from tests.support.processes import alive, kill, live_descendants
from tests.support.waiting import wait_for

BROWSER = "/usr/bin/chromium"
DRIVER = "/usr/bin/chromedriver"
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--window-size=1280,900")


def missing() -> str | None:
    """Why the browser tests cannot run here, or None."""
    for path, package in ((BROWSER, "chromium"), (DRIVER, "chromium-driver")):
        if not os.access(path, os.X_OK):
            return f"{path} is not installed (Debian package {package}; scripts/_browser installs it as root)"
    try:
        import selenium  # noqa: F401 - only whether it is there
    except ImportError:
        return "selenium is not installed (setup.cfg test extras)"
    return None


class Browser:
    """One headless Chromium with a fresh profile; `driver` is its Selenium WebDriver."""

    def __init__(self, width: int = 1280, height: int = 900):
        from selenium import webdriver  # here, so that a machine without selenium can still collect the tests

        self.before = set(live_descendants())
        self.profile = tempfile.mkdtemp(prefix="gcircus-chromium-")
        self.port = free_port()
        self.log_path = os.path.join(self.profile, "chromedriver.log")
        with open(self.log_path, "wb") as log:
            self.driver_proc = subprocess.Popen([DRIVER, f"--port={self.port}", "--allowed-ips=127.0.0.1"],
                                                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        try:
            wait_for(self._driver_listens, timeout=30, message="chromedriver listening")
            options = webdriver.ChromeOptions()
            options.binary_location = BROWSER
            for flag in FLAGS:
                options.add_argument(flag)
            options.add_argument(f"--user-data-dir={os.path.join(self.profile, 'profile')}")
            options.add_argument(f"--window-size={width},{height}")
            self.driver = webdriver.Remote(command_executor=f"http://127.0.0.1:{self.port}", options=options)
        except BaseException:
            self.close()
            raise

    def _driver_listens(self) -> bool:
        if self.driver_proc.poll() is not None:
            with open(self.log_path, "rb") as log:
                raise AssertionError(f"chromedriver exited: {log.read().decode(errors='replace')}")
        with contextlib.closing(socket.socket()) as sock:
            return sock.connect_ex(("127.0.0.1", self.port)) == 0

    def close(self) -> None:
        """Quit the browser, then kill the driver and anything the browser left (by pid); remove the profile."""
        driver = getattr(self, "driver", None)
        if driver is not None:
            with contextlib.suppress(Exception):
                driver.quit()
        if self.driver_proc.poll() is None:
            self.driver_proc.kill()
        self.driver_proc.wait(timeout=30)
        left = [pid for pid in live_descendants() if pid not in self.before and _is_chromium(pid)]
        kill(left)
        wait_for(lambda: not any(alive(pid) for pid in left), timeout=10, message="browser processes gone")
        shutil.rmtree(self.profile, ignore_errors=True)

    def screenshot(self, path: str) -> str:
        """Save a PNG of the viewport at `path` (its directory is made); returns the path."""
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        self.driver.save_screenshot(path)
        return path

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _is_chromium(pid: int) -> bool:
    """A process of the browser or its driver (the test's other children, its gcircusd, are left alone)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            program = f.read().split(b"\0", 1)[0]
    except OSError:
        return False
    return b"chrom" in os.path.basename(program)
