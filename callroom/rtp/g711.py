"""G.711 µ-law (PCMU) and A-law (PCMA) between int16 samples and bytes, table driven.

The arithmetic follows the ITU-T G.191 reference (``g711.c``), the same algorithm as the old
``audioop`` module: µ-law encodes the top 14 bits with a bias of 0x84 (clip at 32635), A-law the
top 13 bits. Decode tables have 256 entries; encode tables are indexed by every int16 value viewed
as uint16 (65,536 entries, built once at import with numpy), so one fancy-index converts a whole
frame -- or a whole tick of frames stacked in a 2-D array -- at once.
"""

from __future__ import annotations

from typing import Final

import numpy as np
from numpy.typing import NDArray

__all__ = [
    "ALAW_DECODE",
    "ALAW_ENCODE",
    "PT_PCMA",
    "PT_PCMU",
    "ULAW_DECODE",
    "ULAW_ENCODE",
    "alaw_decode",
    "alaw_decode_array",
    "alaw_encode",
    "alaw_encode_array",
    "decode",
    "encode",
    "ulaw_decode",
    "ulaw_decode_array",
    "ulaw_encode",
    "ulaw_encode_array",
]

PT_PCMU: Final = 0
PT_PCMA: Final = 8

_ULAW_BIAS: Final = 0x84
_ULAW_CLIP: Final = 8159  # magnitude limit of the 14-bit input (32635 >> 2)


def _build_ulaw_decode() -> NDArray[np.int16]:
    u = (~np.arange(256, dtype=np.int32)) & 0xFF
    t = ((u & 0x0F) << 3) + _ULAW_BIAS
    t = t << ((u & 0x70) >> 4)
    out = np.where((u & 0x80) != 0, _ULAW_BIAS - t, t - _ULAW_BIAS)
    return out.astype(np.int16)


def _build_alaw_decode() -> NDArray[np.int16]:
    a = np.arange(256, dtype=np.int32) ^ 0x55
    t = (a & 0x0F) << 4
    seg = (a & 0x70) >> 4
    t = np.where(seg == 0, t + 8, t + 0x108)
    t = np.where(seg > 1, t << np.maximum(seg - 1, 0), t)
    out = np.where((a & 0x80) != 0, t, -t)
    return out.astype(np.int16)


def _all_int16_by_uint16_index() -> NDArray[np.int32]:
    """Every int16 value, positioned at the index of its uint16 view (0..65535)."""
    return np.arange(65536, dtype=np.uint16).view(np.int16).astype(np.int32)


def _build_ulaw_encode() -> NDArray[np.uint8]:
    pcm = _all_int16_by_uint16_index() >> 2  # 14-bit input
    mask = np.where(pcm < 0, 0x7F, 0xFF)
    mag = np.minimum(np.abs(pcm), _ULAW_CLIP) + (_ULAW_BIAS >> 2)
    seg_end = np.array([0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF], dtype=np.int32)
    seg = np.searchsorted(seg_end, mag, side="left").astype(np.int32)  # first seg with mag <= end
    uval = np.where(seg >= 8, 0x7F, (seg << 4) | ((mag >> (np.minimum(seg, 7) + 1)) & 0x0F))
    return (uval ^ mask).astype(np.uint8)


def _build_alaw_encode() -> NDArray[np.uint8]:
    pcm = _all_int16_by_uint16_index() >> 3  # 13-bit input
    mask = np.where(pcm >= 0, 0xD5, 0x55)
    mag = np.where(pcm >= 0, pcm, -pcm - 1)
    seg_end = np.array([0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF], dtype=np.int32)
    seg = np.searchsorted(seg_end, mag, side="left").astype(np.int32)
    shift = np.where(seg < 2, 1, np.minimum(seg, 7))
    aval = np.where(seg >= 8, 0x7F, (seg << 4) | ((mag >> shift) & 0x0F))
    return (aval ^ mask).astype(np.uint8)


ULAW_DECODE: Final[NDArray[np.int16]] = _build_ulaw_decode()
ALAW_DECODE: Final[NDArray[np.int16]] = _build_alaw_decode()
ULAW_ENCODE: Final[NDArray[np.uint8]] = _build_ulaw_encode()
ALAW_ENCODE: Final[NDArray[np.uint8]] = _build_alaw_encode()
for _table in (ULAW_DECODE, ALAW_DECODE, ULAW_ENCODE, ALAW_ENCODE):
    _table.flags.writeable = False


def _as_uint16_index(samples: NDArray[np.int16]) -> NDArray[np.uint16]:
    if samples.dtype != np.int16:
        raise TypeError(f"G.711 encodes int16 samples, got {samples.dtype}")
    return samples.view(np.uint16)


# -- array forms: any shape, uint8 codes <-> int16 samples ---------------------------------------------


def ulaw_decode_array(codes: NDArray[np.uint8]) -> NDArray[np.int16]:
    return ULAW_DECODE[codes]


def alaw_decode_array(codes: NDArray[np.uint8]) -> NDArray[np.int16]:
    return ALAW_DECODE[codes]


def ulaw_encode_array(samples: NDArray[np.int16]) -> NDArray[np.uint8]:
    return ULAW_ENCODE[_as_uint16_index(samples)]


def alaw_encode_array(samples: NDArray[np.int16]) -> NDArray[np.uint8]:
    return ALAW_ENCODE[_as_uint16_index(samples)]


# -- bytes forms: one RTP payload <-> one frame -------------------------------------------------------


def ulaw_decode(data: bytes) -> NDArray[np.int16]:
    return ULAW_DECODE[np.frombuffer(data, dtype=np.uint8)]


def alaw_decode(data: bytes) -> NDArray[np.int16]:
    return ALAW_DECODE[np.frombuffer(data, dtype=np.uint8)]


def ulaw_encode(samples: NDArray[np.int16]) -> bytes:
    return ulaw_encode_array(samples).tobytes()


def alaw_encode(samples: NDArray[np.int16]) -> bytes:
    return alaw_encode_array(samples).tobytes()


def decode(payload_type: int, data: bytes) -> NDArray[np.int16]:
    """Decode a PCMU (0) or PCMA (8) payload."""
    if payload_type == PT_PCMU:
        return ulaw_decode(data)
    if payload_type == PT_PCMA:
        return alaw_decode(data)
    raise ValueError(f"payload type {payload_type} is not G.711")


def encode(payload_type: int, samples: NDArray[np.int16]) -> bytes:
    """Encode int16 samples as a PCMU (0) or PCMA (8) payload."""
    if payload_type == PT_PCMU:
        return ulaw_encode(samples)
    if payload_type == PT_PCMA:
        return alaw_encode(samples)
    raise ValueError(f"payload type {payload_type} is not G.711")


def decode_frame(table: NDArray[np.int16], payload: bytes, frame_samples: int = 160) -> NDArray[np.int16]:
    """``payload`` decoded with ``table`` (``ULAW_DECODE`` or ``ALAW_DECODE``), cut or padded to one frame."""
    frame: NDArray[np.int16] = table[np.frombuffer(payload, dtype=np.uint8)]
    if len(frame) == frame_samples:
        return frame
    if len(frame) > frame_samples:
        return np.resize(frame, frame_samples)
    return np.pad(frame, (0, frame_samples - len(frame)))
