"""journald: gcircusd's own log (`logoutput = journal`) and children's output (JournalStream) as native-protocol
entries. The test binds the datagram socket journald would and points gcircusd at it with GCIRCUS_JOURNAL_SOCKET;
the entries that arrive are what journald would store."""
from __future__ import annotations

import gevent
import pytest

from gcircus import journal
from gcircus.streams.sinks import JournalStream
from tests.support.daemons import run_cli, write_config
from tests.support.datagrams import DatagramReceiver, parse_journal_entry, parse_journal_fields
from tests.support.waiting import wait_for


@pytest.fixture
def journal_socket(tmp_path):
    receiver = DatagramReceiver(str(tmp_path / "journal.sock"))
    yield receiver
    receiver.close()


def wait_entry(receiver: DatagramReceiver, **expected: str) -> dict:
    """The first entry holding every `expected` field (waits for it)."""
    def find():
        return next((e for e in receiver.journal_entries() if all(e.get(k) == v for k, v in expected.items())), None)
    return wait_for(find, 30, message=f"a journal entry with {expected}")


def test_gcircusds_log_goes_to_the_journal_with_priority_and_watcher(gcircusd, journal_socket):
    gcircusd("""
        [watcher:sleeper]
        cmd = sleep 1000
        graceful_timeout = 2

        [watcher:broken]
        cmd = /nonexistent/program
        max_retry = 0
        """, circus="logoutput = journal", env={journal.SOCKET_VARIABLE: journal_socket.address}, started=False)
    started = wait_entry(journal_socket, GCIRCUS_WATCHER="sleeper", PRIORITY="6")
    assert started == {"MESSAGE": "watcher 'sleeper' started (1 processes, 1 ready)", "PRIORITY": "6",
                       "SYSLOG_IDENTIFIER": "gcircusd", "GCIRCUS_WATCHER": "sleeper"}
    failed = wait_entry(journal_socket, GCIRCUS_WATCHER="broken", PRIORITY="3")
    assert failed["MESSAGE"].startswith("watcher 'broken': ") and failed["SYSLOG_IDENTIFIER"] == "gcircusd"
    running = wait_entry(journal_socket, SYSLOG_IDENTIFIER="gcircusd", PRIORITY="6",
                         MESSAGE="gcircusd running: 2 watchers, 1 processes")
    assert "GCIRCUS_WATCHER" not in running


def test_without_a_journal_socket_logging_to_it_is_refused_at_start(tmp_path):
    config = write_config(tmp_path / "circus.ini", """
        [watcher:sleeper]
        cmd = sleep 1000
        """)
    missing = tmp_path / "no-journal.sock"
    done = run_cli("--log-output", "journal", config, env={journal.SOCKET_VARIABLE: str(missing)})
    assert done.returncode == 2
    assert f"cannot log to the journal: the journal socket {missing} does not exist" in done.stderr


def test_children_lines_go_to_the_journal_with_their_watcher_pid_and_wid(gcircusd, journal_socket):
    running = gcircusd("""
        [watcher:web]
        cmd = sh -c 'echo hello out; echo; echo oops >&2; exec sleep 1000'
        stdout_stream.class = JournalStream
        stderr_stream.class = JournalStream
        stderr_stream.identifier = web-errors
        graceful_timeout = 2
        """, env={journal.SOCKET_VARIABLE: journal_socket.address})
    [pid] = running.pids("web")
    common = {"GCIRCUS_WATCHER": "web", "GCIRCUS_PID": str(pid), "GCIRCUS_WID": "1"}
    assert wait_entry(journal_socket, MESSAGE="hello out") == {
        "MESSAGE": "hello out", "PRIORITY": "6", "SYSLOG_IDENTIFIER": "web", "GCIRCUS_STREAM": "stdout", **common}
    assert wait_entry(journal_socket, MESSAGE="oops") == {
        "MESSAGE": "oops", "PRIORITY": "3", "SYSLOG_IDENTIFIER": "web-errors", "GCIRCUS_STREAM": "stderr", **common}
    assert wait_entry(journal_socket, MESSAGE="", GCIRCUS_STREAM="stdout")  # an empty line is an entry too


def test_a_missing_journal_is_a_sink_failure_and_lines_wait_for_it(gcircusd, tmp_path):
    path = tmp_path / "journal.sock"
    running = gcircusd("""
        [watcher:web]
        cmd = sh -c 'echo kept; exec sleep 1000'
        stdout_stream.class = JournalStream
        graceful_timeout = 2
        """, env={journal.SOCKET_VARIABLE: str(path)})
    wait_for(lambda: f"cannot reach the journal at {path}: No such file" in running.daemon.output(), 30,
             message="the sink failure logged")
    receiver = DatagramReceiver(str(path))
    try:
        assert wait_entry(receiver, MESSAGE="kept")["GCIRCUS_WATCHER"] == "web"
        wait_for(lambda: "writing works again" in running.daemon.output(), 30, message="the recovery logged")
    finally:
        receiver.close()


def test_the_sink_cuts_records_into_entries_and_sends_binary_lines_whole(journal_socket, monkeypatch):
    monkeypatch.setenv(journal.SOCKET_VARIABLE, journal_socket.address)
    sink = JournalStream(watcher_name="w")
    long_line = b"x" * (journal.MAX_MESSAGE + 10) + b"\n"
    pool = gevent.get_hub().threadpool  # where gcircusd calls its sinks: the receiver greenlet reads meanwhile
    pool.apply(sink, ({"data": b"one\nbin\x00\xff\ntail", "pid": 7, "name": "stdout", "wid": 2, "partial": True},))
    pool.apply(sink, ({"data": long_line, "pid": 7, "name": "stderr", "wid": 2},))
    pool.apply(sink.close)
    wait_for(lambda: len(journal_socket.datagrams) == 5, 30, message="5 entries")
    entries = [parse_journal_fields(data) for data in journal_socket.datagrams]
    assert [e["MESSAGE"] for e in entries] == [b"one", b"bin\x00\xff", b"tail", b"x" * journal.MAX_MESSAGE,
                                               b"x" * 10]
    assert [e["PRIORITY"] for e in entries] == [b"6", b"6", b"6", b"3", b"3"]
    assert {e["GCIRCUS_WID"] for e in entries} == {b"2"} and {e["GCIRCUS_PID"] for e in entries} == {b"7"}


def test_native_encoding_sends_values_with_newlines_in_the_binary_form():
    data = journal.encode_entry([("MESSAGE", "two\nlines"), ("PRIORITY", "3")])
    assert data == b"MESSAGE\n" + (9).to_bytes(8, "little") + b"two\nlines\nPRIORITY=3\n"
    assert parse_journal_entry(data) == {"MESSAGE": "two\nlines", "PRIORITY": "3"}
