"""Stream sinks: byte-exact writes, prefixes per line across partial records, rotation that loses and duplicates
nothing, reopening after logrotate, and failed writes that resume exactly where they stopped."""
from __future__ import annotations

import datetime
import logging
import os
import random
import re
import subprocess
import sys
import textwrap

import pytest

from gcircus.streams.rotation import TimeSchedule, rotate_numbered
from gcircus.streams.sinks import (
    FancyStdoutStream,
    FileStream,
    PrefixedStdoutStream,
    QueueStream,
    StdoutStream,
    TimedRotatingFileStream,
    WatchedFileStream,
)

UTF8 = "naïve café ☕ 日本語 🚀\n".encode()
BINARY = bytes(range(256)).replace(b"\n", b"") + b"\n"
PREFIXED_LINE = re.compile(rb"^\d{4}-\d\d-\d\d \[(\d+)\] \| (.*)$")


def rec(data: bytes, pid: int = 10, name: str = "stdout", wid: int = 1) -> dict:
    return {"data": data, "pid": pid, "name": name, "wid": wid, "partial": not data.endswith(b"\n")}


def read(path) -> bytes:
    with open(path, "rb") as file:
        return file.read()


def random_lines(count: int, seed: int = 7) -> list[bytes]:
    rng = random.Random(seed)
    lines = []
    for index in range(count):
        body = bytes(rng.choice(b"abcdefghij\t\xff\x00\xc3\xa9") for _ in range(rng.randint(0, 120)))
        lines.append(b"%d:" % index + body + b"\n")
    return lines


def chained(path, backup_count: int) -> bytes:
    """The rotated files concatenated oldest first (f.N … f.1, f)."""
    names = [f"{path}.{index}" for index in range(backup_count, 0, -1)] + [str(path)]
    return b"".join(read(name) for name in names if os.path.exists(name))


class FakeClock:
    def __init__(self, now: float):
        self.now = now

    def __call__(self) -> float:
        return self.now


def utc(*args) -> float:
    return datetime.datetime(*args, tzinfo=datetime.timezone.utc).timestamp()


# -- writing ---------------------------------------------------------------------------------------------------------

def test_binary_and_utf8_round_trip_byte_exact(tmp_path):
    path = tmp_path / "out.log"
    sink = FileStream(str(path))
    records = [UTF8, BINARY, UTF8 * 3 + BINARY, b"\n", b"\r\n", b"\xff\xfe\n"]
    for data in records:
        sink(rec(data))
        assert read(path).endswith(data)  # on disk at once: no buffer in between
    sink.close()
    assert read(path) == b"".join(records)


def test_appends_to_an_existing_file_and_creates_missing_directories(tmp_path):
    path = tmp_path / "deep" / "er" / "out.log"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"before\n")
    sink = FileStream(str(path))
    sink(rec(b"after\n"))
    assert read(path) == b"before\nafter\n"
    FileStream(str(tmp_path / "new" / "dir" / "x.log"))(rec(b"x\n"))
    assert read(tmp_path / "new" / "dir" / "x.log") == b"x\n"


def test_no_filename_writes_to_a_temporary_file():
    sink = FileStream()
    try:
        sink(rec(b"hello\n"))
        assert read(sink.filename) == b"hello\n"
    finally:
        sink.close()
        os.unlink(sink.filename)


def test_partial_records_are_written_as_they_are_without_time_format(tmp_path):
    path = tmp_path / "out.log"
    sink = FileStream(str(path))
    for data in (b"head of a ", b"long line\nnext", b" one\n"):
        sink(rec(data))
    assert read(path) == b"head of a long line\nnext one\n"


def test_time_format_prefixes_every_line_not_every_record(tmp_path):
    path = tmp_path / "out.log"
    sink = FileStream(str(path), time_format="%Y-%m-%d")
    sink(rec(b"one\ntwo\n\nfour\n", pid=42))
    sink(rec(UTF8, pid=43))
    lines = read(path).split(b"\n")
    assert lines.pop() == b""
    parsed = [PREFIXED_LINE.match(line).groups() for line in lines]
    assert parsed == [(b"42", b"one"), (b"42", b"two"), (b"42", b""), (b"42", b"four"), (b"43", UTF8[:-1])]


def test_time_format_continues_a_partial_line_without_a_second_prefix(tmp_path):
    path = tmp_path / "out.log"
    sink = FileStream(str(path), time_format="%Y-%m-%d")
    sink(rec(b"first\nhead", pid=1))
    sink(rec(b" and more", pid=1))
    sink(rec(b" and tail\nlast\n", pid=1))
    lines = [PREFIXED_LINE.match(line).group(2) for line in read(path).splitlines()]
    assert lines == [b"first", b"head and more and tail", b"last"]


def test_time_format_ends_an_unfinished_line_before_another_process_writes(tmp_path):
    path = tmp_path / "out.log"
    sink = FileStream(str(path), time_format="%Y-%m-%d")
    sink(rec(b"half", pid=1))
    sink(rec(b"other\n", pid=2))
    sink(rec(b" rest\n", pid=1))
    assert [PREFIXED_LINE.match(line).groups() for line in read(path).splitlines()] == [
        (b"1", b"half"), (b"2", b"other"), (b"1", b" rest")]


def test_record_timestamp_is_used_for_the_prefix_when_given(tmp_path):
    path = tmp_path / "out.log"
    sink = FileStream(str(path), time_format="%H:%M:%S")
    stamp = datetime.datetime(2024, 5, 6, 7, 8, 9).timestamp()
    sink({**rec(b"x\n", pid=5), "timestamp": stamp})
    assert read(path) == b"07:08:09 [5] | x\n"


def test_unknown_options_are_ignored_with_a_warning(tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        sink = FileStream(str(tmp_path / "f"), refresh_time="0.3")
    sink(rec(b"ok\n"))
    assert "refresh_time" in caplog.text


# -- size rotation ---------------------------------------------------------------------------------------------------

def test_size_rotation_under_many_records_loses_and_duplicates_nothing(tmp_path):
    path = tmp_path / "out.log"
    sink = FileStream(str(path), max_bytes="2000", backup_count="1000")
    lines = random_lines(3000)
    rng = random.Random(3)
    position = 0
    while position < len(lines):
        take = rng.randint(1, 12)
        sink(rec(b"".join(lines[position:position + take]), pid=100 + take))
        position += take
    sink.close()
    expected = b"".join(lines)
    rotated = sorted(tmp_path.iterdir())
    assert len(rotated) > 50
    assert chained(path, 1000) == expected
    for file in rotated:
        content = read(file)
        assert content.endswith(b"\n")  # whole lines only
        assert len(content) < 2000 or content.count(b"\n") <= 12  # over the limit only by a single record


def test_size_rotation_never_separates_a_line_from_its_continuation(tmp_path):
    path = tmp_path / "out.log"
    sink = FileStream(str(path), max_bytes=20, backup_count=10)
    sink(rec(b"0123456789abcdef", pid=1))   # 16 bytes, a head without its newline
    sink(rec(b"-continued\n", pid=1))       # would cross the limit: still the same file
    sink(rec(b"next\n", pid=1))             # a new line: rotation happens before it
    assert read(f"{path}.1") == b"0123456789abcdef-continued\n"
    assert read(path) == b"next\n"


def test_a_dead_process_unfinished_line_does_not_block_rotation(tmp_path):
    path = tmp_path / "out.log"
    sink = FileStream(str(path), max_bytes=20, backup_count=10)
    sink(rec(b"0123456789 no newline", pid=1))
    sink(rec(b"from another process\n", pid=2))
    assert read(f"{path}.1") == b"0123456789 no newline"
    assert read(path) == b"from another process\n"


def test_backup_count_keeps_only_the_newest_files(tmp_path):
    path = tmp_path / "out.log"
    sink = FileStream(str(path), max_bytes=100, backup_count=3)
    lines = [b"line %04d padded to a decent length\n" % index for index in range(200)]
    for line in lines:
        sink(rec(line))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.log", "out.log.1", "out.log.2", "out.log.3"]
    assert b"".join(lines).endswith(chained(path, 3))
    assert chained(path, 3).startswith(b"line ")


def test_max_bytes_without_backup_count_never_rotates_like_circus(tmp_path, caplog):
    path = tmp_path / "out.log"
    with caplog.at_level(logging.WARNING):
        sink = FileStream(str(path), max_bytes=10)
    assert "never rotates" in caplog.text
    for _ in range(10):
        sink(rec(b"0123456789\n"))
    assert os.listdir(tmp_path) == ["out.log"] and len(read(path)) == 110


def test_max_bytes_accepts_size_suffixes_and_rejects_garbage(tmp_path):
    assert FileStream(str(tmp_path / "a"), max_bytes="8M", backup_count="2").max_bytes == 8 * 1024 * 1024
    with pytest.raises(ValueError, match="max_bytes"):
        FileStream(str(tmp_path / "b"), max_bytes="lots")
    with pytest.raises(ValueError, match="backup_count"):
        FileStream(str(tmp_path / "c"), backup_count="1.5")


def test_size_rotation_counts_the_prefixes(tmp_path):
    path = tmp_path / "out.log"
    sink = FileStream(str(path), max_bytes=200, backup_count=100, time_format="%Y-%m-%d")
    for index in range(100):
        sink(rec(b"%03d\n" % index))
    files = list(tmp_path.iterdir())
    assert len(files) > 10 and all(file.stat().st_size < 200 for file in files)
    lines = [PREFIXED_LINE.match(line).group(2) for line in chained(path, 100).splitlines()]
    assert lines == [b"%03d" % index for index in range(100)]


def test_the_rename_chain_skips_gaps_and_can_be_run_again(tmp_path):
    path = tmp_path / "f"
    for name, content in (("f", b"0"), ("f.1", b"1"), ("f.3", b"3"), ("f.4", b"4"), ("f.x", b"x")):
        (tmp_path / name).write_bytes(content)
    rotate_numbered(str(path), 4)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == {
        "f.1": b"0", "f.2": b"1", "f.4": b"3", "f.x": b"x"}
    rotate_numbered(str(path), 4)  # as after a failure once the chain had moved: nothing is overwritten early
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == {
        "f.2": b"0", "f.3": b"1", "f.4": b"3", "f.x": b"x"}


def test_reopen_after_a_logrotate_style_rename(tmp_path):
    path = tmp_path / "out.log"
    sink = FileStream(str(path))
    sink(rec(b"before\n"))
    os.rename(path, f"{path}.1")
    sink(rec(b"still the old file\n"))  # FileStream keeps its descriptor until told
    sink.reopen()
    sink(rec(b"after\n"))
    assert read(f"{path}.1") == b"before\nstill the old file\n"
    assert read(path) == b"after\n"


# -- WatchedFileStream -----------------------------------------------------------------------------------------------

def test_watched_file_follows_a_rename(tmp_path):
    path = tmp_path / "out.log"
    sink = WatchedFileStream(str(path), time_format="%Y-%m-%d")
    sink(rec(b"one\n"))
    os.rename(path, tmp_path / "out.log.1")
    sink(rec(b"two\n"))
    assert read(tmp_path / "out.log.1").endswith(b"| one\n")
    assert read(path).endswith(b"| two\n") and read(path).count(b"\n") == 1


def test_watched_file_follows_a_delete(tmp_path):
    path = tmp_path / "out.log"
    sink = WatchedFileStream(str(path))
    sink(rec(b"one\n"))
    os.unlink(path)
    sink(rec(b"two\n"))
    assert read(path) == b"two\n"


def test_watched_file_writes_a_continuation_to_the_file_holding_its_head(tmp_path):
    path = tmp_path / "out.log"
    sink = WatchedFileStream(str(path))
    sink(rec(b"head", pid=1))
    os.rename(path, tmp_path / "old")
    sink(rec(b" tail\n", pid=1))
    sink(rec(b"new\n", pid=1))
    assert read(tmp_path / "old") == b"head tail\n"
    assert read(path) == b"new\n"


# -- TimedRotatingFileStream -----------------------------------------------------------------------------------------

def test_time_rotation_every_second_with_a_lowercase_when(tmp_path):
    clock = FakeClock(utc(2024, 3, 1, 12, 0, 0))
    path = tmp_path / "out.log"
    sink = TimedRotatingFileStream(str(path), rotate_when="s", utc="true", clock=clock)
    sink(rec(b"a\n"))
    clock.now += 0.5
    sink(rec(b"b\n"))
    clock.now += 0.5
    sink(rec(b"c\n"))
    clock.now += 3
    sink(rec(b"d\n"))
    assert read(f"{path}.20240301120000") == b"a\nb\n"
    assert read(f"{path}.20240301120001") == b"c\n"
    assert read(path) == b"d\n"


def test_time_rotation_by_minutes_with_interval_and_backup_count(tmp_path):
    clock = FakeClock(utc(2024, 3, 1, 12, 0, 30))
    path = tmp_path / "out.log"
    sink = TimedRotatingFileStream(str(path), rotate_when="M", rotate_interval="5", backup_count="2", utc=True,
                                   clock=clock)
    written = []
    for minute in range(60):
        line = b"minute %d\n" % minute
        sink(rec(line))
        written.append(line)
        clock.now += 60
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["out.log", "out.log.202403011245", "out.log.202403011250"]
    assert read(f"{path}.202403011245").startswith(b"minute 45\n")
    tail = read(f"{path}.202403011245") + read(f"{path}.202403011250") + read(path)
    assert tail == b"".join(written[45:])


def test_time_rotation_at_midnight_names_the_day_that_ended(tmp_path):
    clock = FakeClock(utc(2024, 2, 28, 23, 59, 58))
    path = tmp_path / "out.log"
    sink = TimedRotatingFileStream(str(path), rotate_when="midnight", utc=True, clock=clock)
    sink(rec(b"feb 28\n"))
    clock.now += 5
    sink(rec(b"feb 29\n"))
    clock.now += 86400
    sink(rec(b"mar 1\n"))
    assert read(f"{path}.20240228") == b"feb 28\n"
    assert read(f"{path}.20240229") == b"feb 29\n"
    assert read(path) == b"mar 1\n"


def test_time_rotation_waits_for_the_end_of_an_unfinished_line(tmp_path):
    clock = FakeClock(utc(2024, 3, 1, 12, 0, 0))
    path = tmp_path / "out.log"
    sink = TimedRotatingFileStream(str(path), rotate_when="S", utc=True, clock=clock, time_format="%Y-%m-%d")
    sink(rec(b"head", pid=3))
    clock.now += 10
    sink(rec(b" tail\n", pid=3))
    sink(rec(b"next\n", pid=3))
    assert [PREFIXED_LINE.match(line).group(2) for line in read(f"{path}.20240301120000").splitlines()] == [
        b"head tail"]
    assert PREFIXED_LINE.match(read(path).rstrip(b"\n")).group(2) == b"next"


def test_time_rotation_skips_empty_periods_and_never_overwrites(tmp_path):
    clock = FakeClock(utc(2024, 3, 1, 12, 0, 0))
    path = tmp_path / "out.log"
    (tmp_path / "out.log.20240301120000").write_bytes(b"older\n")
    sink = TimedRotatingFileStream(str(path), rotate_when="S", utc=True, clock=clock)
    sink(rec(b"x\n"))
    clock.now += 1
    sink(rec(b"y\n"))  # the rotated name is taken: the file goes on instead of replacing it
    clock.now += 100
    sink(rec(b"z\n"))
    assert read(tmp_path / "out.log.20240301120000") == b"older\n"
    assert read(tmp_path / "out.log.20240301120001") == b"x\ny\n"
    assert read(path) == b"z\n"


@pytest.mark.parametrize("when", [None, "hourly", "W7", "", "X"])
def test_invalid_rotate_when_names_the_valid_values(tmp_path, when):
    with pytest.raises(ValueError, match="MIDNIGHT, W0"):
        TimedRotatingFileStream(str(tmp_path / "f"), rotate_when=when)


def test_weekly_rollover_is_the_midnight_starting_that_weekday():
    schedule = TimeSchedule("w0", 1, utc=True)
    wednesday = utc(2024, 3, 6, 15, 0, 0)
    assert schedule.first_rollover(wednesday) == utc(2024, 3, 11)          # the next Monday 00:00
    assert schedule.first_rollover(utc(2024, 3, 11, 0, 0, 1)) == utc(2024, 3, 18)
    assert schedule.suffix(utc(2024, 3, 11)) == "20240304"
    assert TimeSchedule("MIDNIGHT", 2, utc=True).first_rollover(wednesday) == utc(2024, 3, 8)


def test_hourly_rotation_uses_circus_suffixes():
    schedule = TimeSchedule("h", 1, utc=True)
    start = utc(2024, 3, 6, 15, 20, 0)
    rollover = schedule.first_rollover(start)
    assert rollover == start + 3600 and schedule.suffix(rollover) == "2024030615"
    assert schedule.is_rotated_name("out.log", "out.log.2024030615")
    assert not schedule.is_rotated_name("out.log", "out.log.1")


# -- failures --------------------------------------------------------------------------------------------------------

def test_a_write_cut_short_by_a_full_disk_resumes_without_loss_or_duplicate(tmp_path):
    # RLIMIT_FSIZE makes the kernel cut writes at a size limit (EFBIG), like a full disk; in a child process so
    # the limit does not touch the test runner.
    path = tmp_path / "out.log"
    script = textwrap.dedent(f"""
        import resource, signal, sys
        from gcircus.streams.sinks import FileStream
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        sink = FileStream({str(path)!r}, time_format="%Y")
        record = {{"data": b"x" * 1500 + b"\\n" + b"y" * 1500 + b"\\n", "pid": 7, "name": "stdout", "wid": 1,
                   "partial": False}}
        sink({{**record, "data": b"first\\n"}})
        resource.setrlimit(resource.RLIMIT_FSIZE, (1000, resource.RLIM_INFINITY))
        try:
            sink(record)
        except OSError as exc:
            print("failed", exc.errno, flush=True)
        try:
            sink(record)
        except OSError:
            print("failed again", flush=True)
        resource.setrlimit(resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
        sink(record)
        sink({{**record, "data": b"last\\n"}})
        sink.close()
    """)
    result = subprocess.run([sys.executable, "-c", script], check=False, capture_output=True, timeout=60,
                            cwd=os.path.dirname(os.path.dirname(__file__)))
    assert result.returncode == 0, result.stderr.decode()
    assert result.stdout.decode().splitlines() == ["failed 27", "failed again"]
    content = read(path)
    assert os.path.getsize(path) > 1000  # the first attempt did write part of the record
    assert [line.split(b" | ", 1)[1] for line in content.splitlines()] == [
        b"first", b"x" * 1500, b"y" * 1500, b"last"]


def test_an_unwritable_path_raises_and_the_same_record_succeeds_later(tmp_path):
    directory = tmp_path / "logs"
    path = directory / "out.log"
    sink = FileStream(str(path))
    sink(rec(b"one\n"))
    os.rename(directory, tmp_path / "logs.old")
    directory.write_bytes(b"")  # a file where the directory was: the path cannot be opened
    with pytest.raises(OSError):
        sink.reopen()
    record = rec(b"two\n")
    with pytest.raises(OSError):
        sink(record)
    with pytest.raises(OSError):
        sink(record)
    directory.unlink()
    sink(record)
    sink(rec(b"three\n"))
    assert read(tmp_path / "logs.old" / "out.log") == b"one\n"
    assert read(path) == b"two\nthree\n"


def test_a_pending_remainder_is_finished_before_a_different_record(tmp_path):
    path = tmp_path / "out.log"
    sink = FileStream(str(path))
    sink._pending = (rec(b"abc\n"), b"c\n")  # as a write cut after b"ab" leaves it
    path.write_bytes(b"ab")
    sink(rec(b"other\n"))
    assert read(path) == b"abc\nother\n"


def test_dev_full_raises_enospc(tmp_path):
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full")
    sink = StdoutStream()
    sink.fd = os.open("/dev/full", os.O_WRONLY)
    try:
        with pytest.raises(OSError) as info:
            sink(rec(b"lost?\n"))
        assert info.value.errno == 28 and sink._pending[1] == b"lost?\n"
    finally:
        os.close(sink.fd)


# -- stdout sinks and the queue --------------------------------------------------------------------------------------

def test_stdout_stream_writes_raw_bytes_to_fd_1(capfdbinary):
    sink = StdoutStream()
    sink(rec(BINARY))
    sink(rec(b"part"))
    sink(rec(b"ial\n"))
    assert capfdbinary.readouterr().out == BINARY + b"partial\n"


def test_fancy_stdout_colours_each_line(capfdbinary):
    sink = FancyStdoutStream(color="Green", time_format="%Y")
    sink(rec(b"one\ntwo\n", pid=9))
    year = datetime.datetime.now().strftime("%Y").encode()
    expected = b"".join(b"\033[0;32;40m" + year + b" [9] | " + line + b"\033[0m\n" for line in (b"one", b"two"))
    assert capfdbinary.readouterr().out == expected


def test_fancy_stdout_partial_lines_and_random_colour(capfdbinary):
    sink = FancyStdoutStream(color="chartreuse", time_format="T")
    assert 1 <= sink.color <= 7
    code = b"\033[0;3%d;40m" % sink.color
    sink(rec(b"he", pid=1))
    sink(rec(b"llo\n", pid=1))
    assert capfdbinary.readouterr().out == code + b"T [1] | he\033[0m" + code + b"llo\033[0m\n"


def test_prefixed_stdout_names_watcher_and_wid(capfdbinary):
    sink = PrefixedStdoutStream("web", fd="1")
    sink(rec(b"GET /\nPOST /\n", wid=2))
    sink(rec(UTF8, wid=3))
    assert capfdbinary.readouterr().out == b"web[2] | GET /\nweb[2] | POST /\nweb[3] | " + UTF8


def test_prefixed_stdout_can_write_to_stderr(capfdbinary):
    sink = PrefixedStdoutStream("worker", fd="stderr")
    sink(rec(b"oops\n", wid=1))
    captured = capfdbinary.readouterr()
    assert captured.err == b"worker[1] | oops\n" and captured.out == b""
    with pytest.raises(ValueError, match="fd"):
        PrefixedStdoutStream("w", fd=5)


def test_queue_stream_puts_each_record():
    sink = QueueStream()
    records = [rec(b"a\n"), rec(b"b\n", name="stderr")]
    for record in records:
        sink(record)
    sink.reopen()
    sink.close()
    assert [sink.get_nowait() for _ in records] == records and sink.empty()


def test_a_big_record_is_written_in_line_pieces_and_a_failed_piece_is_resumed_not_repeated(tmp_path):
    from gcircus.streams.sinks import FileStream

    path = tmp_path / "big.log"
    sink = FileStream(filename=str(path), max_bytes=64 * 1024, backup_count=100)
    lines = b"".join(b"%06d " % i + b"q" * 93 + b"\n" for i in range(20000))  # 2 MB in 100-byte lines
    record = {"data": lines, "pid": 1, "name": "stdout", "wid": 1, "partial": False}
    real_write = os.write
    calls = {"n": 0}

    def flaky_write(fd, data):
        calls["n"] += 1
        if calls["n"] == 40:
            raise OSError(28, "No space left on device")
        return real_write(fd, data)

    os.write = flaky_write
    try:
        with pytest.raises(OSError):
            sink(record)
    finally:
        os.write = real_write
    sink(record)  # the writer retries the same record
    sink.close()
    files = sorted(tmp_path.glob("big.log.*"), key=lambda p: -int(p.suffix[1:])) + [path]
    assert b"".join(f.read_bytes() for f in files) == lines
    assert all(f.stat().st_size <= 64 * 1024 for f in files)
