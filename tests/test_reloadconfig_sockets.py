"""reloadconfig applies [socket:NAME] changes, against real gcircusd daemons serving on managed sockets.

A changed address is bound first and its watchers reloaded gracefully (the new processes serve the new port); a new
socket is bound and handed to the watchers that name it; a removed one is closed once its watchers are gone; removing
a socket that a staying watcher still names is refused with nothing changed.
"""
from __future__ import annotations

import socket

from tests.support.ports import free_port
from tests.support.sockets import SERVER, ask
from tests.support.waiting import wait_for


def config(app, web_port: int, api_port: int | None = None, web_socket: bool = True, api_watcher: bool = True,
           numprocesses: int = 2) -> str:
    text = f"""
[watcher:web]
cmd = {__import__('sys').executable} {app} $(circus.sockets.web)
use_sockets = true
numprocesses = {numprocesses}
graceful_timeout = 2
"""
    if web_socket:
        text += f"\n[socket:web]\nhost = 127.0.0.1\nport = {web_port}\n"
    if api_port is not None:
        text += f"\n[socket:api]\nhost = 127.0.0.1\nport = {api_port}\n"
        if api_watcher:
            text += (f"\n[watcher:api]\ncmd = {__import__('sys').executable} {app} $(circus.sockets.api)\n"
                     f"use_sockets = true\ngraceful_timeout = 2\n")
    return text


def refused(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            return False
    except OSError:
        return True


def sockets(setup) -> dict:
    return {s["name"]: s["port"] for s in setup.call("listsockets")["sockets"]}


def test_port_change_is_bound_first_and_served_after_reloadconfig(setup, tmp_path):
    app = tmp_path / "app.py"
    app.write_text(SERVER)
    old_port, new_port = free_port(), free_port()
    setup.start(config(app, old_port), {"web": 2})
    before = set(setup.pids("web"))
    pid, echoed = ask(("127.0.0.1", old_port))
    assert pid in before and echoed == b"hello"

    setup.write(config(app, new_port))
    dry = setup.call("reloadconfig", dry_run=True)["plan"]["sockets"]
    assert dry["changed"] == ["web"] and dry["users"] == {"web": ["web"]} and not dry["needs_restart"]
    reply = setup.call("reloadconfig", waiting=True)
    assert reply["status"] == "ok", reply
    after = set(setup.wait_pids("web", 2))
    assert not after & before  # reloaded: new processes with the new fd
    pid, _ = ask(("127.0.0.1", new_port))
    assert pid in after
    assert sockets(setup) == {"web": new_port}
    assert wait_for(lambda: refused(old_port), 10, message="old port closed")
    # Nothing changes on a second reload of the same file.
    again = setup.call("reloadconfig", waiting=True)["plan"]["sockets"]
    assert again["changed"] == [] and set(setup.pids("web")) == after


def test_socket_added_with_its_watcher_is_bound_and_served(setup, tmp_path):
    app = tmp_path / "app.py"
    app.write_text(SERVER)
    web_port, api_port = free_port(), free_port()
    setup.start(config(app, web_port), {"web": 2})
    web_pids = set(setup.pids("web"))
    assert refused(api_port)

    setup.write(config(app, web_port, api_port))
    reply = setup.call("reloadconfig", waiting=True)
    assert reply["status"] == "ok", reply
    assert reply["plan"]["sockets"]["added"] == ["api"]
    api_pids = setup.wait_pids("api", 1)
    pid, _ = ask(("127.0.0.1", api_port))
    assert pid in api_pids
    assert sockets(setup) == {"web": web_port, "api": api_port}
    assert set(setup.pids("web")) == web_pids  # its socket did not change: left alone
    assert ask(("127.0.0.1", web_port))[0] in web_pids


def test_socket_removed_with_its_watcher_is_closed(setup, tmp_path):
    app = tmp_path / "app.py"
    app.write_text(SERVER)
    web_port, api_port = free_port(), free_port()
    setup.start(config(app, web_port, api_port), {"web": 2, "api": 1})
    web_pids = set(setup.pids("web"))
    assert ask(("127.0.0.1", api_port))[0] in setup.pids("api")

    setup.write(config(app, web_port))
    reply = setup.call("reloadconfig", waiting=True)
    assert reply["status"] == "ok", reply
    assert reply["plan"]["sockets"]["removed"] == ["api"]
    assert reply["plan"]["watchers"]["removed"] == ["api"]
    assert "api" not in setup.watchers()
    assert sockets(setup) == {"web": web_port}
    assert wait_for(lambda: refused(api_port), 10, message="api port closed")
    assert set(setup.pids("web")) == web_pids
    assert ask(("127.0.0.1", web_port))[0] in web_pids


def test_removing_a_socket_a_staying_watcher_names_is_refused_and_changes_nothing(setup, tmp_path):
    app = tmp_path / "app.py"
    app.write_text(SERVER)
    web_port, api_port = free_port(), free_port()
    setup.start(config(app, web_port, api_port), {"web": 2, "api": 1})
    before = {name: set(setup.pids(name)) for name in ("web", "api")}

    # [socket:web] gone while [watcher:web] still names it; numprocesses and [socket:api] change in the same file.
    setup.write(config(app, web_port, free_port(), web_socket=False, numprocesses=3))
    for waiting in (True, False):
        reply = setup.call("reloadconfig", waiting=waiting)
        assert reply["status"] == "error", reply
        assert "[socket:web] is removed but watcher(s) web still name it" in reply["reason"]
    assert {name: set(setup.pids(name)) for name in ("web", "api")} == before
    assert sockets(setup) == {"web": web_port, "api": api_port}
    assert ask(("127.0.0.1", web_port))[0] in before["web"]
    assert ask(("127.0.0.1", api_port))[0] in before["api"]


def test_same_address_change_closes_then_binds_and_restarts_its_watchers(setup, tmp_path):
    app = tmp_path / "app.py"
    app.write_text(SERVER)
    web_port = free_port()
    setup.start(config(app, web_port), {"web": 2})
    before = set(setup.pids("web"))

    setup.write(config(app, web_port).replace(f"port = {web_port}\n", f"port = {web_port}\nbacklog = 64\n"))
    reply = setup.call("reloadconfig", waiting=True)
    assert reply["status"] == "ok", reply
    assert reply["plan"]["sockets"]["rebound_in_place"] == ["web"]
    after = set(setup.wait_pids("web", 2))
    assert not after & before
    assert ask(("127.0.0.1", web_port))[0] in after
    assert sockets(setup) == {"web": web_port}


def test_a_new_socket_that_cannot_be_bound_changes_nothing(setup, tmp_path):
    app = tmp_path / "app.py"
    app.write_text(SERVER)
    web_port, other_port = free_port(), free_port()
    setup.start(config(app, web_port), {"web": 2})
    before = set(setup.pids("web"))
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", other_port))
        squatter.listen(1)
        # The port of web moves (bindable) and api is added on a taken port: neither happens.
        setup.write(config(app, free_port(), other_port))
        reply = setup.call("reloadconfig", waiting=True)
        assert reply["status"] == "error", reply
        assert "cannot bind" in reply["reason"] and "nothing was changed" in reply["reason"]
    assert set(setup.pids("web")) == before and setup.watchers() == ["web"]
    assert sockets(setup) == {"web": web_port}
    assert ask(("127.0.0.1", web_port))[0] in before
