"""Body replay classification and rewinding (_body.py)."""

from __future__ import annotations

import io
import os

import pytest
import requests
from requests_toolbelt import MultipartEncoder

from requests_tokenrotate._body import is_replayable, rewind


def prepare(data, method="POST"):
    return requests.Request(method, "http://127.0.0.1:9/upload", data=data).prepare()


@pytest.mark.parametrize(
    "data",
    [None, b"bytes", "text", {"form": "field"}, [("a", "1")], bytearray(b"ba"), memoryview(b"mv")],
    ids=["none", "bytes", "str", "form", "pairs", "bytearray", "memoryview"],
)
def test_in_memory_bodies_are_replayable(data):
    """No body, bytes, str, form data and other in-memory buffers can be resent."""
    request = prepare(data)
    assert is_replayable(request)
    assert rewind(request)


def test_json_body_is_replayable():
    """A json= body is bytes."""
    request = requests.Request("POST", "http://127.0.0.1:9/", json={"a": 1}).prepare()
    assert is_replayable(request)


def test_multipart_files_body_is_replayable():
    """requests encodes files= into bytes up front."""
    request = requests.Request(
        "POST", "http://127.0.0.1:9/", files={"f": io.BytesIO(b"x")}
    ).prepare()
    assert is_replayable(request)


def test_seekable_file_at_an_offset_is_replayable_and_rewinds_to_that_offset(tmp_path):
    """A file read part-way rewinds to where requests found it, not to 0."""
    path = tmp_path / "body.bin"
    path.write_bytes(b"0123456789")
    with path.open("rb") as body:
        body.read(4)
        request = prepare(body)
        assert is_replayable(request)
        body.read()  # the first send consumed it
        assert rewind(request)
        assert body.read() == b"456789"


def test_bytesio_at_an_offset_rewinds_to_that_offset():
    """An in-memory file behaves like a disk file."""
    body = io.BytesIO(b"abcdef")
    body.read(2)
    request = prepare(body)
    assert is_replayable(request)
    body.read()
    assert rewind(request)
    assert body.read() == b"cdef"


def test_generator_is_not_replayable():
    """A generator can be consumed only once."""
    request = prepare(chunk for chunk in [b"a", b"b"])
    assert not is_replayable(request)


def test_iterator_is_not_replayable():
    """So can any iterator."""
    assert not is_replayable(prepare(iter([b"a", b"b"])))


def test_pipe_is_not_replayable():
    """A pipe's tell() fails: requests records its sentinel, not a position."""
    read_fd, write_fd = os.pipe()
    with os.fdopen(read_fd, "rb") as reader, os.fdopen(write_fd, "wb") as writer:
        writer.write(b"data")
        writer.flush()
        request = prepare(reader)
        assert not isinstance(request._body_position, int)
        assert not is_replayable(request)
        assert not rewind(request)


class NonSeekable(io.RawIOBase):
    """A stream with a working tell() that says it cannot seek."""

    def __init__(self, data: bytes) -> None:
        self._data = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        chunk = self._data.read(len(buffer))
        buffer[: len(chunk)] = chunk
        return len(chunk)

    def tell(self) -> int:
        return self._data.tell()

    def seekable(self) -> bool:
        return False


def test_non_seekable_file_like_is_not_replayable():
    """seekable() false wins over a recorded position."""
    with NonSeekable(b"abc") as body:
        request = prepare(body)
        assert isinstance(request._body_position, int)
        assert not is_replayable(request)


def test_closed_file_is_not_replayable():
    """A file closed after preparing cannot be read again."""
    body = io.BytesIO(b"abc")
    request = prepare(body)
    body.close()
    assert not is_replayable(request)
    assert not rewind(request)


class TellSeekOnly:
    """A minimal file-like: read, tell and seek, no seekable()."""

    def __init__(self, data: bytes) -> None:
        self._data = io.BytesIO(data)

    def read(self, size: int = -1) -> bytes:
        return self._data.read(size)

    def tell(self) -> int:
        return self._data.tell()

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._data.seek(offset, whence)

    def __iter__(self):
        return iter([self._data.read()])


def test_file_like_with_tell_and_seek_but_no_seekable_is_replayable():
    """Without seekable(), a recorded position and a seek() are enough."""
    request = prepare(TellSeekOnly(b"abc"))
    assert is_replayable(request)
    assert rewind(request)


def test_multipart_encoder_is_not_replayable():
    """requests-toolbelt's streaming MultipartEncoder has no tell(): not replayable."""
    encoder = MultipartEncoder(fields={"field": "value", "file": ("f.txt", io.BytesIO(b"x"))})
    request = requests.Request(
        "POST", "http://127.0.0.1:9/", data=encoder, headers={"Content-Type": encoder.content_type}
    ).prepare()
    assert not is_replayable(request)
