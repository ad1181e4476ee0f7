"""Recording taps: per tick, take the frames a recording needs from the mixer's inputs and outputs.

A call's recording: channel 1 is what the far end says (the leg's input), channel 2 what it hears
(the leg's output); single channel mixes the two. A conference's: channel 1 is the creator, channel 2
everyone else who is heard (not muted, held, monitoring or whispering); single channel mixes them.
Encoding (WAV/MP3, trim silence) happens off the tick, in a thread.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from callroom.audio.encode import encode_mp3, encode_wav, encode_wav_tracks, trim_silence
from callroom.audio.recording import RecordingBuffer
from callroom.media.ports import FRAME_SAMPLES, SAMPLE_RATE, Frame
from callroom.model.media import ConferenceMix, StartRecording


def _sum(frames: list[Frame]) -> Frame | None:
    if not frames:
        return None
    total = np.sum(np.stack([f.astype(np.int32) for f in frames]), axis=0)
    mixed: Frame = np.clip(total, -32768, 32767).astype(np.int16)
    return mixed


_SILENCE = np.zeros(FRAME_SAMPLES, dtype=np.int16)


def _or_silence(frame: Frame | None) -> Frame:
    return _SILENCE if frame is None else frame


@dataclass
class Recorder:
    op: StartRecording
    started_at: float
    buffer: RecordingBuffer = field(init=False)
    stopped: bool = False

    tracks: dict[str, list[Frame]] = field(default_factory=dict)  # per-participant recordings
    frames: int = 0
    spoke: bool = False  # the far end of a call's recording has spoken (``silence_timeout_secs``)
    quiet_frames: int = 0  # frames of silence from it since

    def __post_init__(self) -> None:
        self.buffer = RecordingBuffer(channels=2 if self.op.channels == "dual" else 1)

    @property
    def max_frames(self) -> int | None:
        if self.op.max_length_secs:
            return self.op.max_length_secs * SAMPLE_RATE // FRAME_SAMPLES
        return None

    def capture(self, inputs: Mapping[str, Frame | None], outputs: Mapping[str, Frame],
                conference: ConferenceMix | None) -> None:
        if self.buffer.paused:
            return
        if self.op.per_participant:
            self._capture_tracks(inputs, conference)
            return
        if self.op.call_control_id is not None:
            first = inputs.get(self.op.call_control_id)
            second = outputs.get(self.op.call_control_id)
            if self.op.silence_timeout_secs:
                self._listen(first)
        else:
            if conference is None:
                return
            creator = self.op.creator_call_control_id
            heard = [
                mb.call_control_id for mb in conference.members
                if not (mb.on_hold or mb.muted or mb.supervisor_role in ("monitor", "whisper"))
            ]
            first = inputs.get(creator) if creator in heard and creator is not None else None
            second = _sum([f for c in heard if c != creator and (f := inputs.get(c)) is not None])
        if self.buffer.channels == 2:
            self.buffer.append(_or_silence(first), _or_silence(second))
        else:
            self.buffer.append(_or_silence(_sum([f for f in (first, second) if f is not None])))

    def _listen(self, frame: Frame | None) -> None:
        if frame is not None and is_speech(frame):
            self.spoke, self.quiet_frames = True, 0
        elif self.spoke:
            self.quiet_frames += 1

    def _capture_tracks(self, inputs: Mapping[str, Frame | None], conference: ConferenceMix | None) -> None:
        """One channel per participant who is heard; a newcomer's channel starts with the silence before it."""
        heard = [] if conference is None else [
            mb.call_control_id for mb in conference.members
            if not (mb.on_hold or mb.muted or mb.supervisor_role in ("monitor", "whisper"))
        ]
        for cid in heard:
            if cid not in self.tracks:
                self.tracks[cid] = [_SILENCE] * self.frames
        for cid, frames in self.tracks.items():
            frame = inputs.get(cid) if cid in heard else None
            frames.append(_SILENCE if frame is None else frame.copy())
        self.frames += 1

    def track_arrays(self) -> tuple[list[str], list[Frame]]:
        cids = list(self.tracks)
        return cids, [np.concatenate(self.tracks[c]) if self.tracks[c] else _SILENCE for c in cids]

    def full(self) -> bool:
        """Over by itself: its maximum length recorded, or the far end silent for ``silence_timeout_secs``
        after it spoke."""
        if self.op.silence_timeout_secs and self.quiet_frames >= self.op.silence_timeout_secs * SAMPLE_RATE // (
                FRAME_SAMPLES):
            return True
        limit = self.max_frames
        recorded = self.frames * FRAME_SAMPLES if self.op.per_participant else self.buffer.samples
        return limit is not None and recorded >= limit * FRAME_SAMPLES


SPEECH_RMS = 300.0  # a frame louder than this (about -40 dBFS) is the far end speaking, not line noise


def is_speech(frame: Frame) -> bool:
    x = frame.astype(np.float64)
    return bool(np.sqrt(np.mean(x * x)) > SPEECH_RMS) if len(x) else False


def write_recording(op: StartRecording, channels: list[Frame]) -> tuple[str, int, int]:
    """Encode and write; returns (path, size in bytes, duration in ms). Runs in a worker thread."""
    if op.trim_silence and len(channels) <= 2:
        channels = trim_silence(channels)
    if not channels or len(channels[0]) == 0:
        channels = [np.zeros(FRAME_SAMPLES, dtype=np.int16) for _ in range(max(1, len(channels)))]
    if op.per_participant:
        data = encode_wav_tracks(channels)
    else:
        data = encode_mp3(channels) if op.format == "mp3" else encode_wav(channels)
    path = Path(f"{op.path}.{op.format}")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".part")
    tmp.write_bytes(data)
    tmp.replace(path)
    return str(path), len(data), int(len(channels[0]) * 1000 / SAMPLE_RATE)
