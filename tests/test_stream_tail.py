"""The output tail (gcircus.streams.tail): the latest output of a real child's pipe, bounded, and followed live."""
from __future__ import annotations

import os
import subprocess
import sys

from gcircus.streams.pump import PipeReader, StreamWriter
from gcircus.streams.tail import MAX_LINE_TEXT, OutputTail
from tests.support.waiting import wait_for


def read_child(code: str, tail: OutputTail) -> None:
    """Run a Python child writing `code`'s output; its pipe is read into a writer (discarding) and `tail`."""
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
    fd = os.dup(child.stdout.fileno())
    child.stdout.close()
    writer = StreamWriter(lambda record: None, "test")
    reader = PipeReader(fd, writer, child.pid, "stdout", 3, tail=tail)
    try:
        assert reader.eof.wait(30), "the reader never saw EOF"
    finally:
        child.wait()
        writer.close()


def test_the_tail_keeps_the_last_lines_of_a_child_within_its_byte_limit():
    tail = OutputTail(limit=4096)
    read_child("import sys\nfor i in range(5000):\n    print('line %04d' % i, flush=i % 7 == 0)\n", tail)
    lines = tail.lines()
    assert lines[-1].text == "line 4999" and lines[-1].stream == "stdout" and lines[-1].wid == 3
    texts = [line.text for line in lines]
    first = int(texts[0].split()[1]) if texts[0].startswith("line ") else int(texts[1].split()[1])
    assert texts[-(5000 - first - 1):] == [f"line {i:04d}" for i in range(first + 1, 5000)]  # contiguous, in order
    assert sum(len(text) + 1 for text in texts) <= 4096 + 10  # a cut record may leave the head of one line
    assert [line.text for line in tail.lines(3)] == ["line 4997", "line 4998", "line 4999"]


def test_one_record_larger_than_the_limit_keeps_its_end_and_long_lines_are_cut():
    tail = OutputTail(limit=1 << 16)
    read_child(f"import sys; sys.stdout.write('a' * 200000 + '\\n' + 'b' * {MAX_LINE_TEXT + 50} + '\\nend\\n')", tail)
    texts = [line.text for line in tail.lines()]
    assert texts[-1] == "end" and texts[-2] == "b" * MAX_LINE_TEXT + "…"
    assert all(len(text) <= MAX_LINE_TEXT + 1 for text in texts)


def test_followers_get_each_record_and_a_failing_one_is_dropped_not_the_output():
    tail = OutputTail()
    seen: list[bytes] = []

    def broken(chunk):
        raise RuntimeError("a follower bug")

    tail.follow(lambda chunk: seen.append(chunk.data))
    tail.follow(broken)
    read_child("import sys\nfor i in range(50):\n    print(i, flush=True)\n", tail)
    wait_for(lambda: b"".join(seen).endswith(b"49\n"), message="the follower saw the last line")
    assert b"".join(seen) == "".join(f"{i}\n" for i in range(50)).encode()
    assert tail.followers == 1  # the broken one was unfollowed; the reader kept going


def test_invalid_utf8_is_replaced_and_an_empty_tail_has_no_lines():
    tail = OutputTail()
    assert tail.lines() == [] and tail.lines(5) == []
    read_child("import sys; sys.stdout.buffer.write(b'caf\\xe9 ok\\n')", tail)
    assert [line.text for line in tail.lines()] == ["caf\ufffd ok"]
