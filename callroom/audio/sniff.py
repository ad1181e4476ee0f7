"""Tell what a blob of bytes is from its first bytes, never from a URL or a Content-Type.

``sniff()`` returns the audio format we can decode, or raises ``NotAudio`` (an HTML page, text,
an image, random bytes), ``UnsupportedMediaFormat`` (audio in a container we do not decode) or
``EmptyMedia``.
"""

from __future__ import annotations

import enum
from typing import BinaryIO

from callroom.errors import EmptyMedia, NotAudio, UnsupportedMediaFormat


class AudioFormat(enum.Enum):
    WAV = "wav"
    MP3 = "mp3"


# (magic, offset, name) of formats that are audio but not decoded here
_UNSUPPORTED_AUDIO: tuple[tuple[bytes, int, str], ...] = (
    (b"fLaC", 0, "FLAC"),
    (b"OggS", 0, "Ogg"),
    (b"ftyp", 4, "MP4/M4A"),
    (b".snd", 0, "Sun AU"),
    (b"#!AMR", 0, "AMR"),
    (b"\x1aE\xdf\xa3", 0, "Matroska/WebM"),
    (b"MThd", 0, "MIDI"),
)
_NOT_AUDIO: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF8", "a GIF image"),
    (b"%PDF", "a PDF document"),
    (b"PK\x03\x04", "a ZIP archive"),
    (b"\x1f\x8b", "gzip-compressed data"),
)

# MPEG audio frame header tables: bitrates in kbit/s by (version is MPEG-1, layer)
_BITRATES = {
    (True, 1): (0, 32, 64, 96, 128, 160, 192, 224, 256, 288, 320, 352, 384, 416, 448),
    (True, 2): (0, 32, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384),
    (True, 3): (0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320),
    (False, 1): (0, 32, 48, 56, 64, 80, 96, 112, 128, 144, 160, 176, 192, 224, 256),
    (False, 2): (0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160),
    (False, 3): (0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160),
}
# sample rates by version bits (0 = MPEG-2.5, 2 = MPEG-2, 3 = MPEG-1)
_RATES = {0: (11025, 12000, 8000), 2: (22050, 24000, 16000), 3: (44100, 48000, 32000)}
_MPEG_SEARCH_WITHOUT_TAG = 4096
_MPEG_SEARCH_AFTER_TAG = 65536
_FRAMES_TO_CONFIRM = 3
_CHAIN_BYTES = 16384  # room for the frames that confirm a chain (3 of at most 2,881 bytes)
_HEAD_BYTES = _MPEG_SEARCH_WITHOUT_TAG + _CHAIN_BYTES  # what ``sniff_file`` reads of a file's head
_AFTER_TAG_BYTES = _MPEG_SEARCH_AFTER_TAG + _CHAIN_BYTES  # and after an ID3 tag


def sniff(data: bytes) -> AudioFormat:
    if not data:
        raise EmptyMedia("the media is empty (0 bytes)")
    head = data[:64]
    if head[:4] in (b"RIFF", b"RIFX", b"RF64"):
        if head[8:12] == b"WAVE":
            return AudioFormat.WAV
        kind = head[8:12].decode("latin-1")
        raise NotAudio(f"a RIFF file of type {kind!r}, not WAVE audio")
    if head[:4] == b"FORM" and head[8:12] in (b"AIFF", b"AIFC"):
        raise UnsupportedMediaFormat("AIFF audio is not supported; use WAV or MP3")
    for magic, offset, name in _UNSUPPORTED_AUDIO:
        if head[offset : offset + len(magic)] == magic:
            raise UnsupportedMediaFormat(f"{name} is not supported; use WAV or MP3")
    if _looks_like_mpeg_audio(data):
        return AudioFormat.MP3
    for magic, what in _NOT_AUDIO:
        if head.startswith(magic):
            raise NotAudio(f"the media is {what}, not audio")
    raise NotAudio(f"the media is {_describe_non_audio(data)}, not WAV or MP3 audio")


def sniff_file(source: BinaryIO) -> AudioFormat:
    """``sniff`` of a seekable file, reading only what it looks at: its head and, after an ID3 tag, where the
    audio frames should start. Leaves ``source`` anywhere."""
    source.seek(0)
    head = source.read(_HEAD_BYTES)
    if head[:3] == b"ID3" and len(head) >= 10:
        start = _tag_end(head)
        source.seek(start)
        if _mpeg_frames_in(source.read(_AFTER_TAG_BYTES), 0, _MPEG_SEARCH_AFTER_TAG):
            return AudioFormat.MP3
    return sniff(head)


def _tag_end(data: bytes) -> int:
    """Where the audio starts after the ID3v2 tag that ``data`` opens with."""
    size = (data[6] & 0x7F) << 21 | (data[7] & 0x7F) << 14 | (data[8] & 0x7F) << 7 | (data[9] & 0x7F)
    return 10 + size + (10 if data[5] & 0x10 else 0)


def _looks_like_mpeg_audio(data: bytes) -> bool:
    if data[:3] == b"ID3" and len(data) >= 10:
        return _mpeg_frames_in(data, _tag_end(data), _MPEG_SEARCH_AFTER_TAG)
    return _mpeg_frames_in(data, 0, _MPEG_SEARCH_WITHOUT_TAG)


def _mpeg_frames_in(data: bytes, start: int, search: int) -> bool:
    """Whether a chain of MPEG audio frames starts within ``search`` bytes of ``start``."""
    end = min(len(data), start + search)
    pos = data.find(b"\xff", start, end)
    while pos != -1:
        if _frame_chain(data, pos):
            return True
        pos = data.find(b"\xff", pos + 1, end)
    return False


def _frame_chain(data: bytes, pos: int) -> bool:
    """True if ``_FRAMES_TO_CONFIRM`` valid frame headers follow each other from ``pos``
    (or valid frames run up to the very end of the data)."""
    for _ in range(_FRAMES_TO_CONFIRM):
        if pos == len(data):
            return True
        length = mpeg_frame_length(data[pos : pos + 4])
        if length is None:
            return False
        pos += length
    return True


def mpeg_frame_length(header: bytes) -> int | None:
    """Length in bytes of the MPEG audio frame whose 4-byte header is given, or None if invalid."""
    if len(header) < 4 or header[0] != 0xFF or header[1] & 0xE0 != 0xE0:
        return None
    version = (header[1] >> 3) & 3
    layer = 4 - ((header[1] >> 1) & 3)
    bitrate_index = header[2] >> 4
    rate_index = (header[2] >> 2) & 3
    if version == 1 or layer == 4 or bitrate_index in (0, 15) or rate_index == 3:
        return None
    mpeg1 = version == 3
    bitrate = _BITRATES[(mpeg1, layer)][bitrate_index] * 1000
    rate = _RATES[version][rate_index]
    padding = (header[2] >> 1) & 1
    if layer == 1:
        return (12 * bitrate // rate + padding) * 4
    if layer == 3 and not mpeg1:
        return 72 * bitrate // rate + padding
    return 144 * bitrate // rate + padding


def _describe_non_audio(data: bytes) -> str:
    text = data[:1024].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if text.startswith((b"<!doctype html", b"<html")) or b"<html" in text or b"<body" in text:
        return "an HTML page"
    if text.startswith(b"<?xml") or text.startswith(b"<"):
        return "an XML/markup document"
    if text.startswith((b"{", b"[")):
        return "a JSON document"
    sample = data[:1024]
    try:
        sample.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(sample) - 3:  # not just a character cut at the sample's end
            return "unrecognised binary data"
    if any(b < 0x20 and b not in b"\t\r\n\f" for b in sample):
        return "unrecognised binary data"
    return "text"
