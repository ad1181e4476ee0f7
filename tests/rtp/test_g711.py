from __future__ import annotations

import importlib
import warnings
from types import ModuleType

import numpy as np
import pytest

from callroom.rtp import g711

# Scalar transcriptions of the ITU-T G.191 reference (g711.c), written independently of the
# vectorised table builders so that a mistake in either shows up as a mismatch.


def _search(val: int, table: list[int]) -> int:
    for i, end in enumerate(table):
        if val <= end:
            return i
    return len(table)


def ref_linear2ulaw(sample: int) -> int:
    pcm = sample >> 2
    if pcm < 0:
        pcm, mask = -pcm, 0x7F
    else:
        mask = 0xFF
    pcm = min(pcm, 8159) + (0x84 >> 2)
    seg = _search(pcm, [0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF])
    if seg >= 8:
        return 0x7F ^ mask
    return ((seg << 4) | ((pcm >> (seg + 1)) & 0xF)) ^ mask


def ref_ulaw2linear(code: int) -> int:
    u = ~code & 0xFF
    t = ((u & 0x0F) << 3) + 0x84
    t <<= (u & 0x70) >> 4
    return 0x84 - t if u & 0x80 else t - 0x84


def ref_linear2alaw(sample: int) -> int:
    pcm = sample >> 3
    if pcm >= 0:
        mask = 0xD5
    else:
        mask = 0x55
        pcm = -pcm - 1
    seg = _search(pcm, [0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF])
    if seg >= 8:
        return 0x7F ^ mask
    aval = seg << 4
    aval |= (pcm >> 1 if seg < 2 else pcm >> seg) & 0xF
    return aval ^ mask


def ref_alaw2linear(code: int) -> int:
    a = code ^ 0x55
    t = (a & 0x0F) << 4
    seg = (a & 0x70) >> 4
    if seg == 0:
        t += 8
    elif seg == 1:
        t += 0x108
    else:
        t = (t + 0x108) << (seg - 1)
    return t if a & 0x80 else -t


ALL_INT16 = np.arange(-32768, 32768, dtype=np.int32).astype(np.int16)
ALL_CODES = np.arange(256, dtype=np.uint8)


def test_known_values() -> None:
    assert g711.ULAW_DECODE[0xFF] == 0
    assert g711.ULAW_DECODE[0x7F] == 0
    assert g711.ULAW_DECODE[0x00] == -32124
    assert g711.ULAW_DECODE[0x80] == 32124
    assert g711.ALAW_DECODE[0xD5] == 8
    assert g711.ALAW_DECODE[0x55] == -8
    assert g711.ALAW_DECODE[0xAA] == 32256
    assert g711.ALAW_DECODE[0x2A] == -32256
    # silence encodes to the conventional idle codes
    assert g711.ulaw_encode(np.zeros(2, dtype=np.int16)) == b"\xff\xff"
    assert g711.alaw_encode(np.zeros(2, dtype=np.int16)) == b"\xd5\xd5"


def test_decode_tables_match_reference() -> None:
    assert [int(v) for v in g711.ULAW_DECODE] == [ref_ulaw2linear(c) for c in range(256)]
    assert [int(v) for v in g711.ALAW_DECODE] == [ref_alaw2linear(c) for c in range(256)]


def test_encode_tables_match_reference_for_every_int16() -> None:
    ulaw = g711.ulaw_encode_array(ALL_INT16)
    alaw = g711.alaw_encode_array(ALL_INT16)
    for s in range(-32768, 32768):
        assert ulaw[s + 32768] == ref_linear2ulaw(s), s
        assert alaw[s + 32768] == ref_linear2alaw(s), s


def _audioop() -> ModuleType | None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            return importlib.import_module("audioop")
        except ImportError:
            return None


@pytest.mark.skipif(_audioop() is None, reason="audioop left the standard library in Python 3.13")
def test_bit_exact_with_audioop() -> None:
    audioop = _audioop()
    assert audioop is not None
    pcm = ALL_INT16.tobytes()
    assert g711.ulaw_encode(ALL_INT16) == audioop.lin2ulaw(pcm, 2)
    assert g711.alaw_encode(ALL_INT16) == audioop.lin2alaw(pcm, 2)
    assert g711.ulaw_decode(ALL_CODES.tobytes()).tobytes() == audioop.ulaw2lin(ALL_CODES.tobytes(), 2)
    assert g711.alaw_decode(ALL_CODES.tobytes()).tobytes() == audioop.alaw2lin(ALL_CODES.tobytes(), 2)


def test_decode_then_encode_is_identity_on_codes() -> None:
    # every code except µ-law's negative zero (0x7F decodes to 0, re-encodes as 0xFF)
    back = g711.ulaw_encode_array(g711.ulaw_decode_array(ALL_CODES))
    differ = [int(c) for c in ALL_CODES if back[c] != c]
    assert differ == [0x7F]
    assert np.array_equal(g711.alaw_encode_array(g711.alaw_decode_array(ALL_CODES)), ALL_CODES)


@pytest.mark.parametrize(
    ("enc", "dec"),
    [(g711.ulaw_encode_array, g711.ulaw_decode_array), (g711.alaw_encode_array, g711.alaw_decode_array)],
)
def test_round_trip_error_within_segment_step(enc: object, dec: object) -> None:
    assert callable(enc) and callable(dec)
    x = ALL_INT16.astype(np.int32)
    y = dec(enc(ALL_INT16)).astype(np.int32)
    err = np.abs(y - x)
    # G.711 is logarithmic: the step grows with the magnitude; the error is at most half a step
    # (at most 1/16 of the magnitude at a segment start), plus a small floor near zero, outside
    # µ-law's clip region.
    inside = np.abs(x) <= 32000
    assert np.all(err[inside] <= np.maximum(np.abs(x[inside]) / 16, 16))
    # monotonic: a larger input never decodes smaller
    assert np.all(np.diff(y) >= 0)


def test_bytes_api_and_payload_type_dispatch() -> None:
    frame = (np.sin(np.arange(160) * 2 * np.pi * 1000 / 8000) * 10000).astype(np.int16)
    for pt in (g711.PT_PCMU, g711.PT_PCMA):
        payload = g711.encode(pt, frame)
        assert isinstance(payload, bytes) and len(payload) == 160
        assert np.max(np.abs(g711.decode(pt, payload).astype(np.int32) - frame)) < 400
    with pytest.raises(ValueError):
        g711.decode(9, b"\x00")
    with pytest.raises(TypeError):
        g711.ulaw_encode(frame.astype(np.int32))


def test_two_dimensional_frames() -> None:
    frames = np.stack([np.full(160, v, dtype=np.int16) for v in (-1000, 0, 1000)])
    codes = g711.ulaw_encode_array(frames)
    assert codes.shape == (3, 160)
    assert np.array_equal(g711.ulaw_decode_array(codes)[1], np.zeros(160, dtype=np.int16))
