"""The byte range a download's ``Range`` header asks for (RFC 9110, section 14), decided from the header, the
file's size and its entity tag alone: no I/O.

One range is served (``bytes=a-b``, ``bytes=a-``, ``bytes=-n``); a header this server does not act on (another
unit, a malformed or reversed range, several ranges, an ``If-Range`` naming another version of the file) asks
for the whole file, as the RFC lets a server answer. A range that starts past the file's end, or the last
zero bytes of it, cannot be satisfied: ``RangeNotSatisfiable`` (416).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from callroom.errors import RangeNotSatisfiable

_ONE_RANGE = re.compile(r"bytes[ \t]*=[ \t]*([0-9]*)[ \t]*-[ \t]*([0-9]*)[ \t]*", re.ASCII | re.IGNORECASE)
_MAX_DIGITS = 20  # a position past any file's size, but not a number whose conversion costs anything


@dataclass(frozen=True, slots=True)
class ByteRange:
    start: int
    stop: int  # one past the last byte

    @property
    def length(self) -> int:
        return self.stop - self.start

    def content_range(self, size: int) -> str:
        return f"bytes {self.start}-{self.stop - 1}/{size}"


def requested_range(range_header: str | None, size: int, *, if_range: str | None = None,
                    etag: str = "") -> ByteRange | None:  # fmt: skip
    """The one range of a ``size``-byte file to send, or None for the whole file. ``if_range`` is the request's
    ``If-Range``: a range is served only if it names ``etag`` (the file as it is)."""
    if range_header is None or (if_range is not None and if_range.strip() != etag):
        return None
    match = _ONE_RANGE.fullmatch(range_header.strip())
    if match is None:
        return None
    first, last = match.group(1), match.group(2)
    if (not first and not last) or len(first) > _MAX_DIGITS or len(last) > _MAX_DIGITS:
        return None
    if not first:  # the last n bytes
        suffix = int(last)
        if suffix == 0:
            raise RangeNotSatisfiable(size)
        if size == 0:  # every byte of nothing: the whole (empty) file
            return None
        return ByteRange(max(size - suffix, 0), size)
    start = int(first)
    if last and int(last) < start:
        return None  # not a range (the RFC's invalid range-spec): ignored
    if start >= size:
        raise RangeNotSatisfiable(size)
    stop = size if not last else min(int(last) + 1, size)
    return ByteRange(start, stop)
