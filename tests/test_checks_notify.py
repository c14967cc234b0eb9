"""The sd_notify socket of a watcher, spoken to by real children with the stdlib: which pid a message is credited
to (the kernel's word, not the text's), which fields arrive, and that garbage never stops it."""
from __future__ import annotations

import os
import signal
import socket
import sys

import pytest
from gevent import subprocess as gsubprocess

from gcircus.checks.notify import MAX_DATAGRAM, NotifySocket, owner_of, parse_message
from tests.support.processes import terminate_child
from tests.support.waiting import wait_for

# A child that sends one datagram to $NOTIFY_SOCKET (stdlib only, as any service would), then optionally lingers.
SENDER = """
import os, socket, sys, time
address = os.environ["NOTIFY_SOCKET"]
if address.startswith("@"):
    address = "\\0" + address[1:]
socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM).sendto(sys.argv[1].encode(), address)
if len(sys.argv) > 2:
    time.sleep(float(sys.argv[2]))
"""


@pytest.fixture
def notify():
    """A started NotifySocket recording (pid, fields) in `.received`; closed at the end."""
    received: list[tuple[int, dict]] = []
    sock = NotifySocket("web app/1", lambda pid, fields: received.append((pid, fields)))
    sock.start()
    sock.received = received  # type: ignore[attr-defined]
    yield sock
    sock.close()


def send(sock: NotifySocket, data: bytes) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as client:
        client.sendto(data, "\0" + sock.env_value[1:])


def test_address_is_abstract_and_unique(notify):
    assert notify.env_value.startswith(f"@gcircus/{os.getpid()}/web_app_1/")
    other = NotifySocket("web app/1", lambda pid, fields: None)
    try:
        assert other.env_value != notify.env_value
    finally:
        other.close()
    with pytest.raises(ConnectionRefusedError):  # closed: nobody listens there any more
        send(other, b"READY=1")


def test_child_message_reaches_the_callback_with_its_pid(notify):
    child = gsubprocess.Popen([sys.executable, "-c", SENDER, "READY=1\nSTATUS=hi"],
                              env={**os.environ, "NOTIFY_SOCKET": notify.env_value})
    try:
        wait_for(lambda: notify.received, message="a notify message")
        assert notify.received == [(child.pid, {"READY": "1", "STATUS": "hi"})]
    finally:
        terminate_child(child)


def test_message_from_this_process_carries_its_pid(notify):
    send(notify, b"STATUS=starting up\nMAINPID=1\nEXTEND_TIMEOUT_USEC=5000000")
    wait_for(lambda: notify.received, message="a notify message")
    assert notify.received == [(os.getpid(), {"STATUS": "starting up", "MAINPID": "1",
                                              "EXTEND_TIMEOUT_USEC": "5000000"})]


def test_garbage_is_ignored_and_the_socket_keeps_working(notify):
    for garbage in (b"", b"\xff\xfe\x00", b"no equals sign", b"UNKNOWN=1", b"=1", b"READY\xff=1",
                    b"READY=" + b"1" * MAX_DATAGRAM, b"\n\n\n"):
        send(notify, garbage)
    send(notify, b"READY=1\nSTATUS=\xff\nWATCHDOG=1\nFOO=bar\nnonsense")
    wait_for(lambda: notify.received, message="the message after the garbage")
    assert notify.received == [(os.getpid(), {"READY": "1", "WATCHDOG": "1"})]


def test_a_failing_callback_does_not_stop_the_reader(caplog):
    received = []

    def on_message(pid, fields):
        received.append(fields)
        if len(received) == 1:
            raise RuntimeError("boom")

    sock = NotifySocket("flaky", on_message)
    sock.start()
    try:
        send(sock, b"READY=1")
        send(sock, b"STATUS=still here")
        wait_for(lambda: len(received) == 2, message="the second message")
        assert "watcher 'flaky': handling a notify message" in caplog.text
    finally:
        sock.close()


def test_grandchild_message_is_credited_to_the_supervised_process(notify):
    shell = gsubprocess.Popen(["/bin/sh", "-c", f"{sys.executable} -c '{SENDER}' READY=1 100; true"],
                              env={**os.environ, "NOTIFY_SOCKET": notify.env_value})
    try:
        wait_for(lambda: notify.received, message="a notify message from the grandchild")
        [(sender, fields)] = notify.received
        assert sender != shell.pid and fields == {"READY": "1"}
        assert owner_of(sender, {shell.pid, 12345678}) == shell.pid
        assert owner_of(shell.pid, {shell.pid}) == shell.pid
        assert owner_of(sender, {os.getpid() + 10**7}) is None  # no supervised ancestor up to init
        os.kill(sender, signal.SIGTERM)  # the lingering sender; then the shell runs `true` and exits
    finally:
        terminate_child(shell)


def test_owner_of_a_gone_pid_is_none():
    child = gsubprocess.Popen(["true"])
    child.wait()
    assert owner_of(child.pid, {os.getpid()}) is None


def test_parse_message():
    assert parse_message(b"READY=1\nSTATUS=a=b\nREADY=0") == {"READY": "0", "STATUS": "a=b"}
    assert parse_message(b"\x00\xff") == {}


def test_a_burst_of_messages_is_read_whole(notify):
    """More datagrams than the kernel queues for a socket (net.unix.max_dgram_qlen): blocked senders resume as the
    reader drains, and nothing is lost."""
    burst = ("import os, socket; a = '\\0' + os.environ['NOTIFY_SOCKET'][1:]; "
             "s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM); "
             "[s.sendto(b'STATUS=%d' % i, a) for i in range(500)]")
    child = gsubprocess.Popen([sys.executable, "-c", burst], env={**os.environ, "NOTIFY_SOCKET": notify.env_value})
    try:
        wait_for(lambda: len(notify.received) == 500, message="500 messages")
        assert [fields["STATUS"] for _, fields in notify.received] == [str(i) for i in range(500)]
    finally:
        terminate_child(child)
