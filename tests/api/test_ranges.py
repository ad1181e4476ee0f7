"""``callroom/api/ranges.py``: the one byte range a download's ``Range`` header asks for (RFC 9110, 14)."""

from __future__ import annotations

import pytest

from callroom.api.ranges import ByteRange, requested_range
from callroom.errors import RangeNotSatisfiable

SIZE = 1000


@pytest.mark.parametrize(("header", "start", "stop"), [
    ("bytes=0-99", 0, 100),
    ("bytes=100-", 100, SIZE),
    ("bytes=-300", 700, SIZE),
    ("bytes=999-999", 999, SIZE),
    ("bytes=0-", 0, SIZE),
    ("bytes=500-5000", 500, SIZE),  # past the end: up to the end
    ("bytes=-5000", 0, SIZE),  # more than the file: all of it
    ("BYTES = 10 - 19", 10, 20),  # the unit in any case, spaces around the parts
    ("bytes=0007-0009", 7, 10),
])  # fmt: skip
def test_one_range_is_served(header: str, start: int, stop: int) -> None:
    span = requested_range(header, SIZE)
    assert span == ByteRange(start, stop)
    assert span.content_range(SIZE) == f"bytes {start}-{stop - 1}/{SIZE}" and span.length == stop - start


@pytest.mark.parametrize("header", [
    None, "", "bytes=", "bytes=-", "bytes=5-1", "items=0-5", "bytes=0-1,5-6", "bytes=a-b", "bytes=+1-2",
    "bytes=1-2-3", "bytes=0x10-", "bytes=\u0661-2", "bytes=1" + "0" * 30 + "-",
])  # fmt: skip
def test_a_header_not_acted_on_asks_for_the_whole_file(header: str | None) -> None:
    assert requested_range(header, SIZE) is None


@pytest.mark.parametrize(("header", "size"), [("bytes=1000-", 1000), ("bytes=1000-2000", 1000), ("bytes=-0", 1000),
                                              ("bytes=0-", 0), ("bytes=0-0", 0), ("bytes=-0", 0)])  # fmt: skip
def test_a_range_with_no_byte_of_the_file_cannot_be_satisfied(header: str, size: int) -> None:
    with pytest.raises(RangeNotSatisfiable) as caught:
        requested_range(header, size)
    assert caught.value.status == 416 and caught.value.size == size
    assert caught.value.items[0].code == "90118"


def test_the_last_bytes_of_an_empty_file_are_the_whole_empty_file() -> None:
    assert requested_range("bytes=-10", 0) is None


def test_if_range_serves_the_range_only_for_the_file_it_names() -> None:
    assert requested_range("bytes=0-9", SIZE, if_range='"abc"', etag='"abc"') == ByteRange(0, 10)
    assert requested_range("bytes=0-9", SIZE, if_range='"old"', etag='"abc"') is None
    assert requested_range("bytes=0-9", SIZE, if_range="Mon, 07 Dec 2026 18:00:00 GMT", etag='"abc"') is None
    assert requested_range("bytes=0-9", SIZE, etag='"abc"') == ByteRange(0, 10)  # no If-Range: no condition
