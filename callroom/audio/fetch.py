"""Download audio from http(s) URLs once, decode it off the event loop, and cache the result.

Limits are enforced on every fetch: the scheme (http/https only, at every redirect hop), the
number of redirects, the total time, and the body size (``Content-Length`` first, then while
streaming, so an endless body is cut off at the limit). Concurrent fetches of one URL share a
single download. Decoded audio is kept in a memory LRU and, when ``cache_dir`` is given, on disk
as ``<sha256 of the URL>.npy``. Returned arrays are read-only.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import tempfile
from pathlib import Path

import httpx
import numpy as np

from callroom.audio.decode import decode_audio
from callroom.audio.lru import SampleLru
from callroom.audio.pcm import SAMPLE_RATE, Pcm
from callroom.errors import InvalidMediaUrl, MediaHttpError, MediaTooLarge, MediaUnreachable

DEFAULT_MAX_BYTES = 50 * 1024 * 1024


class MediaFetcher:
    def __init__(
        self,
        client: httpx.AsyncClient,
        *,
        max_bytes: int = DEFAULT_MAX_BYTES,
        timeout: float = 30.0,
        max_redirects: int = 5,
        max_seconds: float = 3600.0,
        cache_dir: Path | None = None,
        memory_cache_samples: int = SAMPLE_RATE * 1800,
    ) -> None:
        self._client = client
        self.max_bytes = max_bytes
        self.timeout = timeout
        self.max_redirects = max_redirects
        self.max_seconds = max_seconds
        self.cache_dir = cache_dir
        self.memory: SampleLru[str] = SampleLru(memory_cache_samples)
        self.downloads = 0  # network downloads started, for monitoring
        self._inflight: dict[str, asyncio.Task[Pcm]] = {}

    async def fetch(self, url: str) -> Pcm:
        """The audio at ``url`` as 8 kHz mono int16 (read-only array)."""
        _parse_url(url)
        cached = self.memory.get(url)
        if cached is not None:
            return cached
        task = self._inflight.get(url)
        if task is None:
            task = asyncio.create_task(self._load(url), name=f"fetch {url}")
            self._inflight[url] = task
            task.add_done_callback(lambda done: self._finished(url, done))
        # one caller giving up must not cancel the download the others wait for
        return await asyncio.shield(task)

    async def aclose(self) -> None:
        """Cancel the downloads in flight and wait for them to end."""
        tasks = list(self._inflight.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _finished(self, url: str, task: asyncio.Task[Pcm]) -> None:
        if self._inflight.get(url) is task:
            del self._inflight[url]
        if not task.cancelled():
            task.exception()  # retrieved: every waiter may have gone

    async def _load(self, url: str) -> Pcm:
        path = self._disk_path(url)
        audio = await asyncio.to_thread(_read_npy, path) if path is not None else None
        if audio is None:
            data = await self._download(url)
            audio = await asyncio.to_thread(decode_audio, data, max_seconds=self.max_seconds)
            del data
            if path is not None:
                await asyncio.to_thread(_write_npy, path, audio)
        audio.setflags(write=False)
        self.memory.put(url, audio)
        return audio

    def _disk_path(self, url: str) -> Path | None:
        if self.cache_dir is None:
            return None
        return self.cache_dir / f"{hashlib.sha256(url.encode('utf-8')).hexdigest()}.npy"

    async def _download(self, url: str) -> bytes:
        self.downloads += 1
        current = _parse_url(url)
        try:
            async with asyncio.timeout(self.timeout):
                for _ in range(self.max_redirects + 1):
                    async with self._client.stream(
                        "GET", current, follow_redirects=False, timeout=self.timeout
                    ) as response:
                        if response.is_redirect:
                            current = _parse_url(str(current.join(response.headers["location"])))
                            continue
                        return await self._read_body(url, response)
                raise MediaUnreachable(f"{url}: more than {self.max_redirects} redirects")
        except TimeoutError as exc:
            raise MediaUnreachable(f"{url}: no complete answer within {self.timeout:g} s") from exc
        except httpx.HTTPError as exc:
            raise MediaUnreachable(f"{url}: {type(exc).__name__}: {exc}") from exc

    async def _read_body(self, url: str, response: httpx.Response) -> bytes:
        if not response.is_success:
            raise MediaHttpError(url, response.status_code)
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_bytes:
            raise MediaTooLarge(f"{url}: {declared} bytes declared, over the {self.max_bytes} byte limit")
        body = bytearray()
        async for chunk in response.aiter_bytes():
            body += chunk
            if len(body) > self.max_bytes:
                raise MediaTooLarge(f"{url}: body exceeds the {self.max_bytes} byte limit")
        return bytes(body)


def _parse_url(url: str) -> httpx.URL:
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as exc:
        raise InvalidMediaUrl(f"{url!r} is not a valid URL: {exc}") from exc
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise InvalidMediaUrl(f"{url!r} is not an absolute http or https URL")
    return parsed


def _read_npy(path: Path) -> Pcm | None:
    """The cached array, or None when it is missing or unreadable (then it is fetched anew)."""
    try:
        audio = np.load(path, allow_pickle=False)
    except (OSError, ValueError):
        return None
    if not isinstance(audio, np.ndarray) or audio.dtype != np.int16 or audio.ndim != 1:
        return None
    return audio


def _write_npy(path: Path, audio: Pcm) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".npy")
    try:
        with os.fdopen(fd, "wb") as out:
            np.save(out, audio, allow_pickle=False)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
