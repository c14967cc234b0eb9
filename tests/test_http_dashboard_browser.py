"""The dashboard in a real headless Chromium (Debian's, driven by Selenium): it loads and shows the watchers, shows
live state soon after an event, its buttons work with the CSRF token (and a POST without it is refused), and the
log tail follows a chatty child. Screenshots are written as artefacts to the directory each test prints
(GCIRCUS_ARTEFACTS, or a directory under the system's temp dir)."""
from __future__ import annotations

import os
import tempfile
import time

import pytest

from tests.support import browser as chromium
from tests.support.http import TOKEN, HttpDaemon
from tests.support.waiting import wait_for

pytestmark = pytest.mark.skipif(chromium.missing() is not None, reason=chromium.missing() or "")

ARTEFACTS = os.environ.get("GCIRCUS_ARTEFACTS") or os.path.join(tempfile.gettempdir(), "gcircus-dashboard-artefacts")
LIVE_DEADLINE = 15.0  # a generous bound for "live within 1 s": the measured delay is printed, not asserted
WATCHERS = """
[watcher:web]
cmd = sleep 1000
numprocesses = 2

[watcher:chatty]
cmd = sh -c 'i=0; while true; do echo "tick $i"; i=$((i+1)); sleep 0.2; done'
stdout_stream.class = FileStream
stdout_stream.filename = {tmp}/chatty.log

[watcher:worker]
cmd = sleep 1000
numprocesses = 3

[watcher:idle]
cmd = sleep 1000
autostart = false
"""


@pytest.fixture
def dashd(tmp_path):
    daemon = HttpDaemon(tmp_path, WATCHERS.format(tmp=tmp_path)).wait_serving()
    wait_for(lambda: "gcircusd running" in daemon.daemon.output(), timeout=30, message="watchers started")
    yield daemon
    daemon.stop()


def log_in(b, dashd) -> None:
    """Log `b` in to the dashboard of `dashd` and wait until the page is live (its snapshot delivered)."""
    b.driver.get(f"http://{dashd.bind}/")  # no session: sent to the login form
    wait_for(lambda: "/login" in b.driver.current_url, message="the login form")
    b.driver.find_element("id", "token").send_keys(TOKEN)
    b.driver.find_element("css selector", "button[type=submit]").click()
    wait_for(lambda: text(b, "#live") == "Live", timeout=LIVE_DEADLINE, message="the page live")


@pytest.fixture
def page(dashd):
    """A logged-in Chromium on the dashboard, live (its event stream delivered the snapshot)."""
    with chromium.Browser() as b:
        log_in(b, dashd)
        yield b


def text(b, selector: str) -> str:
    return b.driver.execute_script("const e = document.querySelector(arguments[0]); return e ? e.textContent : null",
                                   selector) or ""


def state_of(b, name: str) -> str | None:
    return b.driver.execute_script("const e = document.querySelector(`tbody[data-name='${arguments[0]}']`);"
                                   "return e ? e.dataset.state : null", name)


def shoot(b, name: str) -> str:
    path = b.screenshot(os.path.join(ARTEFACTS, f"{name}.png"))
    print(f"screenshot: {path}")
    return path


def api(dashd, command: str, **props) -> dict:
    return dashd.post(f"/api/{command}", props).json()


def test_the_page_loads_and_shows_every_watcher_with_its_state(page):
    names = page.driver.execute_script("return [...document.querySelectorAll('tbody.watcher')]"
                                       ".map(b => b.dataset.name + ':' + b.dataset.state)")
    assert names == ["chatty:active", "idle:stopped", "web:active", "worker:active"]
    assert "2/2 ready" in text(page, "tbody[data-name='web'] .np")
    assert text(page, "title").startswith("gcircus")
    page.driver.find_element("css selector", "tbody[data-name='worker'] .toggle").click()
    rows = wait_for(lambda: page.driver.find_elements("css selector", "tbody[data-name='worker'] tr.prow"),
                    message="worker's processes shown")
    assert len(rows) == 3
    # Accessible: the actions are real buttons, each named; the filter has its label; updates are announced.
    buttons = page.driver.find_elements("css selector", "tbody[data-name='web'] .actions > *")
    assert {b.tag_name for b in buttons} == {"button"} and all(b.get_attribute("aria-label") for b in buttons)
    assert page.driver.find_element("css selector", "label[for='filter']")
    assert page.driver.find_element("id", "toasts").get_attribute("aria-live") == "polite"
    shoot(page, "dashboard")


def test_live_state_reaches_the_page_soon_after_the_event(page, dashd):
    started = time.monotonic()
    assert api(dashd, "stop", name="worker")["status"] == "ok"
    wait_for(lambda: state_of(page, "worker") == "stopped", timeout=LIVE_DEADLINE, message="worker shown stopped")
    delay = time.monotonic() - started
    print(f"stop -> page shows `stopped`: {delay * 1000:.0f} ms (the issue's goal: within 1 s)")
    started = time.monotonic()
    assert api(dashd, "start", name="worker")["status"] == "ok"
    wait_for(lambda: state_of(page, "worker") == "active" and
             "3/3 ready" in text(page, "tbody[data-name='worker'] .np"),
             timeout=LIVE_DEADLINE, message="worker shown active again")
    print(f"start -> page shows `active`, 3/3 ready: {(time.monotonic() - started) * 1000:.0f} ms")


def test_the_incr_button_asks_for_confirmation_then_works_with_the_csrf_token(page, dashd):
    driver = page.driver
    driver.find_element("css selector", "tbody[data-name='web'] button[data-command='incr']").click()
    dialog = wait_for(lambda: driver.find_element("id", "confirm").get_attribute("open") is not None and
                      driver.find_element("id", "confirm"), message="the confirmation dialog")
    assert "web" in dialog.text and "2 → 3" in dialog.text
    shoot(page, "dashboard-confirm")
    driver.find_element("id", "confirm-ok").click()
    wait_for(lambda: len(api(dashd, "list", name="web")["pids"]) == 3, timeout=LIVE_DEADLINE,
             message="a third web process (list)")
    wait_for(lambda: "3/3 ready" in text(page, "tbody[data-name='web'] .np"), timeout=LIVE_DEADLINE,
             message="the page shows 3/3")
    # Cancelling does nothing.
    driver.find_element("css selector", "tbody[data-name='web'] button[data-command='decr']").click()
    wait_for(lambda: driver.find_element("id", "confirm").get_attribute("open") is not None, message="dialog")
    driver.find_element("css selector", "#confirm button[value='cancel']").click()
    wait_for(lambda: driver.find_element("id", "confirm").get_attribute("open") is None, message="dialog closed")
    assert len(api(dashd, "list", name="web")["pids"]) == 3


def test_a_post_without_the_csrf_token_is_refused(page, dashd):
    """The page's session cookie alone does not let a request change anything: it needs the page's token."""
    post = ("const [headers, done] = [arguments[0], arguments[arguments.length - 1]];"
            "fetch('/api/incr', {method: 'POST', credentials: 'same-origin', headers: headers, "
            "body: JSON.stringify({name: 'web'})}).then(r => done(r.status));")
    assert page.driver.execute_async_script(post, {"Content-Type": "application/json"}) == 403
    assert page.driver.execute_async_script(post, {"Content-Type": "application/json", "X-CSRF-Token": "forged"}) == 403
    form = {"Content-Type": "application/x-www-form-urlencoded"}  # a form post without its csrf_token field
    assert page.driver.execute_async_script(post, form) == 403
    assert len(api(dashd, "list", name="web")["pids"]) == 2


def test_the_log_tail_follows_new_lines_of_a_chatty_child(page):
    driver = page.driver
    driver.find_element("css selector", "tbody[data-name='chatty'] button[data-command='tail']").click()
    wait_for(lambda: driver.find_element("id", "tail").is_displayed(), message="the tail panel")

    def last_tick() -> int:
        lines = text(page, "#tail-lines .ln:last-child")
        return int(lines.rsplit("tick ", 1)[1]) if "tick " in lines else -1
    first = wait_for(lambda: last_tick() >= 0 and last_tick(), timeout=LIVE_DEADLINE, message="lines in the tail")
    wait_for(lambda: last_tick() >= first + 3, timeout=LIVE_DEADLINE, message="new lines followed")
    assert driver.find_element("css selector", "tbody[data-name='web'] button[data-command='tail']").get_attribute(
        "disabled") is not None  # no stream configured: gcircusd has no output of web to show
    shoot(page, "dashboard-tail")


def test_the_filter_narrows_the_table_and_a_phone_gets_a_readable_layout(page):
    driver = page.driver
    box = driver.find_element("id", "filter")
    box.send_keys("state:stopped")
    wait_for(lambda: driver.execute_script("return [...document.querySelectorAll('tbody.watcher:not([hidden])')]"
                                           ".map(b => b.dataset.name)") == ["idle"], message="only idle shown")
    assert "1 of 4 shown" in text(page, "#shown")
    box.clear()
    box.send_keys("w")
    wait_for(lambda: driver.execute_script("return [...document.querySelectorAll('tbody.watcher:not([hidden])')]"
                                           ".map(b => b.dataset.name)") == ["web", "worker"], message="w* shown")
    driver.set_window_size(390, 844)
    assert not driver.find_element("css selector", "tbody[data-name='idle']").is_displayed()  # filtered out
    assert driver.find_element("css selector", "tbody[data-name='web'] [data-command='restart']").is_displayed()
    width = driver.execute_script("return document.documentElement.scrollWidth")
    assert width <= driver.execute_script("return window.innerWidth") + 1  # no sideways scrolling on a phone
    shoot(page, "dashboard-phone")


def test_a_read_token_sees_no_command_buttons(tmp_path):
    """[http] token_role = read: the page offers only what the role allows (the output tail), as the API would
    refuse the rest (403)."""
    daemon = HttpDaemon(tmp_path, WATCHERS.format(tmp=tmp_path), http="token_role = read\n").wait_serving()
    try:
        with chromium.Browser() as b:
            log_in(b, daemon)
            commands = b.driver.execute_script(
                "return [...document.querySelectorAll(\"tbody[data-name='web'] .actions [data-command]\")]"
                ".map(e => e.dataset.command)")
            assert commands == ["tail"]
            shoot(b, "dashboard-read-role")
    finally:
        daemon.stop()
