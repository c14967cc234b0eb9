"""gcircus.client and gcircus.consumer against a real gcircusd: replies, errors, plain threads and greenlets."""
from __future__ import annotations

import json
import threading
import time

import gevent
import pytest
import zmq
import zmq.green

from gcircus.client import (
    CallError,
    Client,
    DaemonTimeout,
    NoDaemonError,
    ReplyError,
    check_reply,
    make_message,
    want_green,
)
from gcircus.consumer import Consumer
from tests.support.ports import free_port
from tests.support.waiting import wait_for


def test_call_returns_the_reply_with_a_uuid_hex_id(running):
    with Client(running.endpoint) as client:
        reply = client.call("list")
    assert reply["status"] == "ok"
    assert reply["watchers"] == ["sleeper"]
    assert len(reply["id"]) == 32 and int(reply["id"], 16) >= 0
    assert list(reply)[:2] == ["status", "time"] and list(reply)[-1] == "id"


def test_send_message_and_a_whole_message_dict_work_as_in_circus(running):
    with Client(running.endpoint) as client:
        assert client.send_message("list", name="sleeper")["pids"] == running.pids()
        assert client.call(make_message("status", name="sleeper"))["status"] == "active"


def test_error_replies_are_returned_unless_checked(running):
    with Client(running.endpoint) as client:
        reply = client.call("status", name="nope")
        assert reply["status"] == "error" and reply["reason"] == "program nope not found"
        with pytest.raises(ReplyError) as info:
            client.call("status", name="nope", check=True)
        assert info.value.reason == "program nope not found" and info.value.errno == 3
        with pytest.raises(ReplyError):
            check_reply(client.call("nosuchcommand"))
        assert check_reply(client.call("list"))["watchers"] == ["sleeper"]


def test_no_daemon_on_tcp_is_reported_at_once_not_after_the_timeout():
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    started = time.monotonic()
    with Client(endpoint, timeout=60) as client, pytest.raises(NoDaemonError) as info:
        client.call("list")
    assert time.monotonic() - started < 30  # long before the 60 s timeout, however loaded the machine
    assert endpoint in str(info.value) and info.value.endpoint == endpoint


def test_no_daemon_on_a_missing_ipc_path(tmp_path):
    endpoint = f"ipc://{tmp_path}/nothing.sock"
    with Client(endpoint) as client, pytest.raises(NoDaemonError, match="nothing is listening"):
        client.call("list")


def test_a_connected_daemon_that_never_answers_is_a_timeout(silent_router):
    endpoint, router = silent_router
    started = time.monotonic()
    with Client(endpoint, timeout=0.3) as client, pytest.raises(DaemonTimeout) as info:
        client.call("list")
    assert 0.3 <= time.monotonic() - started < 2.0
    assert "did not answer within 0.3 s" in str(info.value)
    assert router.poll(1000)  # the request did reach the daemon
    assert json.loads(router.recv_multipart()[-1])["command"] == "list"


def test_replies_to_other_requests_are_skipped():
    """A stale reply (another id) arriving first must not be taken for the answer."""
    context = zmq.green.Context.instance()
    router = context.socket(zmq.ROUTER)
    router.linger = 0
    port = router.bind_to_random_port("tcp://127.0.0.1")

    def answer_twice():
        identity, payload = router.recv_multipart()
        msg_id = json.loads(payload)["id"]
        router.send_multipart([identity, json.dumps({"status": "ok", "n": 1, "id": "stale"}).encode()])
        router.send_multipart([identity, b"not json"])
        router.send_multipart([identity, json.dumps({"status": "ok", "n": 2, "id": msg_id}).encode()])
    server = gevent.spawn(answer_twice)
    try:
        with Client(f"tcp://127.0.0.1:{port}", timeout=5, green=True) as client:
            assert client.call("list")["n"] == 2
        server.get(timeout=5)
    finally:
        server.kill()
        router.close()


def test_the_client_recovers_when_a_daemon_appears_later(daemon_factory, tmp_path):
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    client = Client(endpoint, timeout=5)
    with pytest.raises(NoDaemonError):
        client.call("list")
    config = tmp_path / "circus.ini"
    config.write_text(f"[circus]\nendpoint = {endpoint}\npubsub_endpoint = tcp://127.0.0.1:{free_port()}\n"
                      "[watcher:sleeper]\ncmd = sleep 1000\n")
    daemon_factory(str(config))

    def answered():
        try:
            return client.call("list")["watchers"] == ["sleeper"]
        except NoDaemonError:
            return False
    try:
        assert wait_for(answered, message="the same client to reach the new daemon")
    finally:
        client.close()


def test_plain_threads_use_plain_zmq_and_work_concurrently(running):
    results, errors = [], []

    def worker():
        try:
            assert not want_green()
            with Client(running.endpoint) as client:
                assert client.green is False
                for _ in range(5):
                    results.append(client.call("status", name="sleeper")["status"])
        except BaseException as exc:  # reported to the test below
            errors.append(exc)
    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    wait_for(lambda: not any(t.is_alive() for t in threads), message="the client threads")
    assert errors == []
    assert results == ["active"] * 20


def test_greenlets_each_with_a_client_call_concurrently(running):
    assert want_green()  # this test runs on a gevent hub

    def one(n):
        with Client(running.endpoint) as client:
            assert client.green is True
            return [client.call("list", name="sleeper")["pids"] for _ in range(3)]
    greenlets = [gevent.spawn(one, n) for n in range(20)]
    gevent.joinall(greenlets, timeout=10, raise_error=True)
    expected = running.pids()
    assert all(g.value == [expected] * 3 for g in greenlets)


def test_waiting_greenlets_do_not_block_the_hub(silent_router):
    """Ten greenlets wait 0.5 s each on a silent daemon: their waits overlap (all have sent before any times out),
    and the hub keeps running meanwhile. Overlap, not elapsed time, is the proof: it holds on a loaded machine."""
    endpoint, _ = silent_router
    ticks = []
    ticker = gevent.spawn(lambda: [ticks.append(gevent.sleep(0.01)) for _ in range(1000)])
    sent, timed_out = [], []

    def one():
        with Client(endpoint, timeout=0.5) as client:
            sent.append(time.monotonic())
            with pytest.raises(DaemonTimeout):
                client.call("list")
            timed_out.append(time.monotonic())
    gevent.joinall([gevent.spawn(one) for _ in range(10)], raise_error=True)
    ticker.kill()
    assert len(timed_out) == 10 and max(sent) < min(timed_out)
    assert len(ticks) >= 10


def test_one_client_shared_by_greenlets_gives_each_its_own_reply(running):
    with Client(running.endpoint) as client:
        names = [gevent.spawn(client.call, "status", name="sleeper") for _ in range(10)]
        lists = [gevent.spawn(client.call, "list") for _ in range(10)]
        gevent.joinall(names + lists, timeout=10, raise_error=True)
    assert {g.value["status"] for g in names} == {"active"}
    assert all(g.value["watchers"] == ["sleeper"] for g in lists)


def test_cast_is_carried_out_without_a_reply(running):
    with Client(running.endpoint) as client:
        assert client.cast("stop", name="sleeper") is None
        wait_for(lambda: client.call("status", name="sleeper")["status"] == "stopped",
                 message="the cast stop to take effect")


def test_cast_to_no_daemon_raises():
    with Client(f"tcp://127.0.0.1:{free_port()}") as client, pytest.raises(CallError):
        client.cast("stop")


def test_consumer_yields_topic_and_message_bytes(running):
    with Consumer([b"watcher.sleeper."], endpoint=running.pubsub, timeout=0.1) as consumer:
        # The subscription reaches the daemon asynchronously: restart until a spawn event gets through.
        event = wait_for(lambda: running.call("restart", name="sleeper", waiting=True) and
                         consumer.wait_for(b"watcher.sleeper.spawn", 1.0), message="a spawn event")
    topic, message = event
    assert isinstance(topic, bytes) and isinstance(message, bytes)
    assert json.loads(message)["process_pid"] > 0


def test_consumer_iteration_ends_on_stop(running):
    consumer = Consumer(endpoint=running.pubsub, timeout=0.05)
    got = []

    def iterate():
        for event in consumer:
            got.append(event)
    reader = gevent.spawn(iterate)
    wait_for(lambda: running.call("restart", name="sleeper", waiting=True) and got, message="any event")
    consumer.stop()
    reader.join(timeout=2)
    consumer.close()
    assert reader.dead
    assert all(topic.startswith(b"watcher.") for topic, _ in got)


def test_a_daemon_that_goes_away_mid_call_is_reported_before_the_timeout():
    context = zmq.green.Context.instance()
    router = context.socket(zmq.ROUTER)
    router.linger = 0
    port = router.bind_to_random_port("tcp://127.0.0.1")

    def receive_then_vanish():
        router.recv_multipart()
        router.close()
    server = gevent.spawn(receive_then_vanish)
    started = time.monotonic()
    try:
        with Client(f"tcp://127.0.0.1:{port}", timeout=60) as client, pytest.raises(NoDaemonError) as info:
            client.call("list")
    finally:
        server.kill()
        router.close()
    assert time.monotonic() - started < 30  # long before the 60 s timeout
    assert "closed the connection" in str(info.value)


def test_ipc_endpoints_work(daemon_factory, tmp_path):
    endpoint = f"ipc://{tmp_path}/control.sock"
    config = tmp_path / "circus.ini"
    config.write_text(f"[circus]\nendpoint = {endpoint}\npubsub_endpoint = ipc://{tmp_path}/events.sock\n"
                      "[watcher:sleeper]\ncmd = sleep 1000\n")
    daemon_factory(str(config))
    with Client(endpoint) as client:
        def listed():
            try:
                return client.call("list")["watchers"] == ["sleeper"]
            except NoDaemonError:
                return False
        assert wait_for(listed, message="gcircusd on its ipc endpoint")
