"""Preparing audio to play: fetch a URL, read an uploaded file, or synthesise speech — off the tick.

Runs on the media loop; decoding and synthesis go to worker threads so the tick never waits.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
import numpy as np
from numpy.typing import NDArray

from callroom.audio.decode import decode_audio
from callroom.audio.fetch import MediaFetcher, checked_client
from callroom.audio.tts import Synthesizer
from callroom.errors import MediaError
from callroom.media.tones import ringback
from callroom.model.media import AudioSpec
from callroom.outbound import UNRESTRICTED, AddressPolicy

MAX_PLAY_SECONDS = 3600.0


async def _as_path(key: str) -> str:
    return key


class AudioPreparer:
    """``url_policy``: the addresses media URLs may be fetched from (``outbound.py``). ``stored_file``: where
    the local copy of a stored file is (a media process asks its node: ``media_worker/stored_files.py``);
    by default the file's name is its path."""

    def __init__(self, cache_dir: Path | None = None, url_policy: AddressPolicy = UNRESTRICTED) -> None:
        self._client: httpx.AsyncClient | None = None
        self._fetcher: MediaFetcher | None = None
        self._cache_dir = cache_dir
        self.url_policy = url_policy
        self.synthesizer = Synthesizer()
        self.stored_file: Callable[[str], Awaitable[str]] = _as_path

    def _get_fetcher(self) -> MediaFetcher:
        if self._fetcher is None:
            self._client = checked_client(self.url_policy)
            self._fetcher = MediaFetcher(self._client, cache_dir=self._cache_dir)
        return self._fetcher

    async def prepare(self, spec: AudioSpec) -> NDArray[np.int16]:
        if spec.kind == "url":
            return await self._get_fetcher().fetch(spec.value)
        if spec.kind == "file":
            path = await self.stored_file(spec.value)
            try:
                data = await asyncio.to_thread(Path(path).read_bytes)
            except OSError as exc:
                raise MediaError(f"media file {spec.value} unreadable: {exc}") from exc
            return await asyncio.to_thread(decode_audio, data, max_seconds=MAX_PLAY_SECONDS)
        if spec.kind == "ringback":  # the built-in ringback tone (a caller waiting for a transfer)
            return ringback()
        if spec.kind == "tts":
            return await asyncio.to_thread(
                self.synthesizer.synthesize, spec.value, voice=spec.voice or "female", language=spec.language,
                payload_type="ssml" if spec.payload_type == "ssml" else "text",
            )
        raise MediaError(f"unknown audio kind {spec.kind!r}")

    async def aclose(self) -> None:
        if self._fetcher is not None:
            await self._fetcher.aclose()
        if self._client is not None:
            await self._client.aclose()
