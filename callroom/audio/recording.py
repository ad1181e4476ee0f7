"""A recorder that collects 8 kHz int16 frames per channel, with pause and resume.

Samples go into preallocated blocks (``block_samples`` per channel); a full block is kept in a
list and a new one started, so appending a frame copies only that frame and the recording is
concatenated once, when it is read.
"""

from __future__ import annotations

import numpy as np

from callroom.audio.pcm import SAMPLE_RATE, Pcm


class RecordingBuffer:
    def __init__(self, channels: int = 1, *, block_samples: int = SAMPLE_RATE * 10) -> None:
        if channels not in (1, 2):
            raise ValueError(f"a recording has 1 or 2 channels, got {channels}")
        if block_samples <= 0:
            raise ValueError("block_samples must be positive")
        self.channels = channels
        self._block_samples = block_samples
        self._full: list[np.ndarray] = []  # each (channels, block_samples)
        self._block = np.zeros((channels, block_samples), dtype=np.int16)
        self._fill = 0
        self._paused = False

    @property
    def paused(self) -> bool:
        return self._paused

    @property
    def samples(self) -> int:
        """Samples recorded per channel so far."""
        return len(self._full) * self._block_samples + self._fill

    @property
    def seconds(self) -> float:
        return self.samples / SAMPLE_RATE

    def pause(self) -> None:
        self._paused = True

    def resume(self) -> None:
        self._paused = False

    def append(self, *frames: Pcm | None) -> None:
        """Add one frame per channel (``None`` = silence on that channel); ignored while paused."""
        if len(frames) != self.channels:
            raise ValueError(f"expected {self.channels} frame(s), got {len(frames)}")
        sizes = {f.size for f in frames if f is not None}
        if len(sizes) != 1:
            raise ValueError("frames must be given for at least one channel and be equally long")
        if self._paused:
            return
        size = sizes.pop()
        done = 0
        while done < size:
            take = min(size - done, self._block_samples - self._fill)
            for index, frame in enumerate(frames):
                target = self._block[index, self._fill : self._fill + take]
                if frame is None:
                    target[:] = 0
                else:
                    target[:] = frame[done : done + take]
            self._fill += take
            done += take
            if self._fill == self._block_samples:
                self._full.append(self._block)
                self._block = np.empty((self.channels, self._block_samples), dtype=np.int16)
                self._fill = 0

    def arrays(self) -> list[Pcm]:
        """The recording so far: one int16 array per channel (copies; recording may go on)."""
        parts = [*self._full, self._block[:, : self._fill]]
        joined = np.concatenate(parts, axis=1)
        return [np.ascontiguousarray(joined[i]) for i in range(self.channels)]

    def clear(self) -> None:
        self._full.clear()
        self._fill = 0
