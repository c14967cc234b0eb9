"""get_stream: Circus's rules for class / stream / filename, options as ini strings, clear errors, conf untouched."""
from __future__ import annotations

import copy

import pytest

from gcircus.streams.factory import (
    check_stream,
    close_sink,
    get_stream,
    needs_per_process,
    prefixed_stdout,
    reopen_sink,
    stream_class,
)
from gcircus.streams.sinks import (
    FancyStdoutStream,
    FileStream,
    PrefixedStdoutStream,
    QueueStream,
    StdoutStream,
    TimedRotatingFileStream,
    WatchedFileStream,
)


class CircusStyleSink:
    """A third-party stream as Circus users write them: options in __init__, one dict per call, no reopen/close."""

    def __init__(self, label="none"):
        self.label = label
        self.calls = []

    def __call__(self, data):
        self.calls.append(data)


def rec(data: bytes) -> dict:
    return {"data": data, "pid": 1, "name": "stdout", "wid": 1, "partial": False}


@pytest.mark.parametrize("conf", [None, {}])
def test_no_configuration_means_no_sink(conf):
    assert get_stream(conf, "web") is None


def test_filename_alone_gives_a_file_stream_from_ini_strings(tmp_path):
    conf = {"filename": str(tmp_path / "out.log"), "max_bytes": "100", "backup_count": "2"}
    sink = get_stream(conf, "web")
    assert type(sink) is FileStream and (sink.max_bytes, sink.backup_count) == (100, 2)
    sink(rec(b"hi\n"))
    assert (tmp_path / "out.log").read_bytes() == b"hi\n"


@pytest.mark.parametrize("name, cls", [
    ("FileStream", FileStream), ("WatchedFileStream", WatchedFileStream), ("filestream", FileStream),
    ("TimedRotatingFileStream", TimedRotatingFileStream), ("circus.stream.FileStream", FileStream),
    ("circus.stream.file_stream.WatchedFileStream", WatchedFileStream),
])
def test_file_classes_by_bare_name_any_case_or_circus_path(tmp_path, name, cls):
    conf = {"class": name, "filename": str(tmp_path / "f.log")}
    if cls is TimedRotatingFileStream:
        conf.update(rotate_when="midnight", utc="true", backup_count="7")
    assert type(get_stream(conf, "web")) is cls


def test_the_conf_is_not_modified_so_a_later_set_rebuilds_the_same_class(tmp_path):
    conf = {"class": "WatchedFileStream", "filename": str(tmp_path / "f.log"), "time_format": "%H"}
    before = copy.deepcopy(conf)
    get_stream(conf, "web")
    assert conf == before
    conf["time_format"] = "%M"
    assert type(get_stream(conf, "web")) is WatchedFileStream


def test_stdout_classes_and_queue():
    assert type(get_stream({"class": "StdoutStream"}, "web")) is StdoutStream
    fancy = get_stream({"class": "FancyStdoutStream", "color": "red", "time_format": "%H"}, "web")
    assert type(fancy) is FancyStdoutStream and fancy.color == 1
    assert isinstance(get_stream({"class": "QueueStream"}, "web"), QueueStream)


def test_prefixed_stdout_gets_the_watcher_name():
    sink = get_stream({"class": "PrefixedStdoutStream", "fd": "2"}, "web")
    assert type(sink) is PrefixedStdoutStream and (sink.watcher_name, sink.fd) == ("web", 2)


@pytest.mark.parametrize("path", ["tests.test_stream_factory.CircusStyleSink",
                                  "tests.test_stream_factory:CircusStyleSink"])
def test_dotted_class_is_imported_and_called_as_circus_calls_it(path):
    sink = get_stream({"class": path, "label": "x"}, "web")
    assert isinstance(sink, CircusStyleSink) and sink.label == "x"
    sink({"data": b"line\n", "pid": 3, "name": "stderr"})
    reopen_sink(sink)  # no reopen / close: the helpers cope
    close_sink(sink)
    assert sink.calls == [{"data": b"line\n", "pid": 3, "name": "stderr"}]


def test_a_ready_callable_is_used_as_it_is():
    calls = []
    assert get_stream({"stream": calls.append}, "web") == calls.append
    with pytest.raises(ValueError, match="callable"):
        get_stream({"stream": "not callable"}, "web")


def test_class_wins_over_stream_and_filename(tmp_path):
    sink = get_stream({"class": "QueueStream", "stream": print}, "web")
    assert isinstance(sink, QueueStream)


def test_a_conf_without_class_stream_or_filename_is_invalid():
    with pytest.raises(ValueError, match=r"^stream configuration invalid: .*max_bytes, time_format"):
        get_stream({"time_format": "%H", "max_bytes": "10"}, "web")


def test_an_unknown_class_name_suggests_the_closest():
    with pytest.raises(ValueError, match=r"unknown stream class 'FileStrem' \(did you mean 'FileStream'\?"):
        get_stream({"class": "FileStrem", "filename": "x"}, "web")


def test_an_unimportable_class_path_is_a_configuration_error():
    with pytest.raises(ValueError, match="cannot import stream class 'no_such_module.Sink'"):
        get_stream({"class": "no_such_module.Sink"}, "web")


def test_options_a_class_does_not_take_are_a_configuration_error():
    with pytest.raises(ValueError, match="CircusStyleSink does not accept"):
        get_stream({"class": "tests.test_stream_factory.CircusStyleSink", "colour": "red"}, "web")


def test_bad_option_values_name_the_option(tmp_path):
    with pytest.raises(ValueError, match="max_bytes"):
        get_stream({"filename": str(tmp_path / "f"), "max_bytes": "big"}, "web")
    with pytest.raises(ValueError, match="rotate_when"):
        get_stream({"class": "TimedRotatingFileStream", "filename": str(tmp_path / "g")}, "web")


def test_stream_class_accepts_a_class_object():
    assert stream_class(FileStream) is FileStream


@pytest.mark.parametrize("conf, expected", [
    ({"filename": "/var/log/web.$(circus.wid).log"}, True),
    ({"filename": "/var/log/web.((CIRCUS.WID)).log"}, True),
    ({"filename": "/var/log/web.log"}, False),
    ({"class": "StdoutStream"}, False),
    ({}, False),
    (None, False),
])
def test_needs_per_process(conf, expected):
    assert needs_per_process(conf) is expected


def test_reopen_and_close_helpers_drive_file_sinks(tmp_path):
    path = tmp_path / "out.log"
    sink = get_stream({"filename": str(path)}, "web")
    sink(rec(b"a\n"))
    path.rename(tmp_path / "out.log.1")
    reopen_sink(sink)
    sink(rec(b"b\n"))
    close_sink(sink)
    assert path.read_bytes() == b"b\n" and (tmp_path / "out.log.1").read_bytes() == b"a\n"


def test_check_stream_accepts_valid_confs_without_touching_the_disk(tmp_path):
    for conf in ({"filename": str(tmp_path / "a.log"), "max_bytes": "1M", "backup_count": "3"},
                 {"class": "TimedRotatingFileStream", "filename": str(tmp_path / "b.log"), "rotate_when": "h"},
                 {"class": "WatchedFileStream", "filename": str(tmp_path / "c.log")},
                 {"class": "FancyStdoutStream", "color": "blue"},
                 {"class": "PrefixedStdoutStream", "fd": "stderr"},
                 {"class": "tests.test_stream_factory.CircusStyleSink", "label": "y"},
                 {"stream": print}, {}, None):
        check_stream(conf, "web")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("conf, message", [
    ({"filename": "x", "max_bytes": "huge"}, "max_bytes"),
    ({"filename": ""}, "non-empty filename"),
    ({"class": "TimedRotatingFileStream", "filename": "x", "rotate_when": "fortnightly"}, "rotate_when"),
    ({"class": "TimedRotatingFileStream", "filename": "x", "rotate_when": "D", "utc": "maybe"}, "utc"),
    ({"class": "PrefixedStdoutStream", "fd": "7"}, "fd"),
    ({"class": "FancyStdoutStrem"}, "did you mean 'FancyStdoutStream'"),
    ({"class": "tests.test_stream_factory.CircusStyleSink", "nope": "1"}, "does not accept"),
    ({"time_format": "%H"}, "stream configuration invalid"),
])
def test_check_stream_rejects_what_get_stream_would(conf, message):
    with pytest.raises(ValueError, match=message):
        check_stream(conf, "web")
    with pytest.raises(ValueError, match=message):
        get_stream(conf, "web")


def test_prefixed_stdout_helper():
    sink = prefixed_stdout("api", 2)
    assert type(sink) is PrefixedStdoutStream and (sink.watcher_name, sink.fd) == ("api", 2)
