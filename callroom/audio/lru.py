"""A thread-safe LRU of audio arrays, bounded by the total number of samples it holds."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable
from typing import Generic, TypeVar

from callroom.audio.pcm import Pcm

K = TypeVar("K", bound=Hashable)


class SampleLru(Generic[K]):
    def __init__(self, max_samples: int) -> None:
        if max_samples < 0:
            raise ValueError("max_samples must not be negative")
        self.max_samples = max_samples
        self._items: OrderedDict[K, Pcm] = OrderedDict()
        self._samples = 0
        self._lock = threading.Lock()

    @property
    def samples(self) -> int:
        return self._samples

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: K) -> bool:
        return key in self._items

    def get(self, key: K) -> Pcm | None:
        with self._lock:
            audio = self._items.get(key)
            if audio is not None:
                self._items.move_to_end(key)
            return audio

    def put(self, key: K, audio: Pcm) -> None:
        """Keep ``audio`` (anything larger than the whole budget is not kept)."""
        if audio.size > self.max_samples:
            return
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self._samples -= old.size
            self._items[key] = audio
            self._samples += audio.size
            while self._samples > self.max_samples:
                _, evicted = self._items.popitem(last=False)
                self._samples -= evicted.size
