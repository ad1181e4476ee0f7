"""Download audio from http(s) URLs once, decode it off the event loop, and cache the result.

Limits are enforced on every fetch: the scheme (http/https only, at every redirect hop), the
number of redirects, the total time, and the body size (``Content-Length`` first, then while
streaming, so an endless body is cut off at the limit). Concurrent fetches of one URL share a
single download. Decoded audio is kept in a memory LRU and, when ``cache_dir`` is given, on disk
as ``<sha256 of the URL>.npy``. Returned arrays are read-only.

``checked_client`` is the HTTP client to fetch with: its connections go only to addresses the node's
``AddressPolicy`` permits, the very addresses it checked (``outbound.py``), at every redirect hop; TLS
still names and verifies the URL's host. What went wrong stays in the exception (for the node's log);
``public_reason`` is what an application may be told: never what a remote server answered or how a
connection failed, so that media URLs cannot map the node's network.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import tempfile
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import BinaryIO

import httpcore
import httpx
import numpy as np

from callroom.audio.decode import decode_audio
from callroom.audio.lru import SampleLru
from callroom.audio.pcm import SAMPLE_RATE, Pcm
from callroom.errors import (
    AddressRefused,
    EmptyMedia,
    InvalidMediaUrl,
    MediaError,
    MediaHttpError,
    MediaTooLarge,
    MediaTooLong,
    MediaUnreachable,
    NotAudio,
    SpeechRequestInvalid,
    SynthesisFailed,
    UnsupportedMediaFormat,
)
from callroom.outbound import AddressPolicy

DEFAULT_MAX_BYTES = 50 * 1024 * 1024
WRITE_BYTES = 1 << 20  # ``download_to`` writes this much at a time

FETCH_FAILED = "could not fetch media"
FETCH_ERRORS = (MediaUnreachable, MediaHttpError, MediaTooLarge, InvalidMediaUrl)


def public_reason(exc: MediaError) -> str:
    """What an application is told about media it named that cannot be played. A fetch that failed, however
    it failed (refused, unreachable, timed out, an HTTP error, too large, a bad redirect), is one generic
    reason; media that is not audio is not described (what a server serves is its business)."""
    if isinstance(exc, FETCH_ERRORS):
        return FETCH_FAILED
    if isinstance(exc, NotAudio | UnsupportedMediaFormat | EmptyMedia):
        return "the media is not WAV or MP3 audio"
    if isinstance(exc, MediaTooLong):
        return "the audio lasts longer than the node plays"
    if isinstance(exc, SpeechRequestInvalid | SynthesisFailed):
        return str(exc)  # speech from the request's own text: nothing of anyone else's
    return "the media could not be played"


class _CheckedBackend(httpcore.AsyncNetworkBackend):
    """httpcore's connections, made only to addresses ``policy`` permits (the ones it resolved and checked)."""

    def __init__(self, policy: AddressPolicy) -> None:
        self._policy = policy
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self, host: str, port: int, timeout: float | None = None, local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        try:
            addresses = await self._policy.resolve(host, port)  # AddressRefused goes through httpx as it is
        except OSError as exc:
            raise httpcore.ConnectError(f"{host}: {exc}") from exc
        failure: httpcore.ConnectError | httpcore.ConnectTimeout | None = None
        for address in addresses:
            try:
                return await self._inner.connect_tcp(address, port, timeout=timeout, local_address=local_address,
                                                     socket_options=socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                failure = exc
        raise failure or httpcore.ConnectError(f"{host}: no address")

    async def connect_unix_socket(
        self, path: str, timeout: float | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("media is not fetched over Unix sockets")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class _CheckedTransport(httpx.AsyncHTTPTransport):
    def __init__(self, policy: AddressPolicy) -> None:
        super().__init__(trust_env=False)
        # httpx takes no network backend of its own: its pool is replaced by one connecting through ours.
        self._pool = httpcore.AsyncConnectionPool(ssl_context=httpx.create_ssl_context(trust_env=False),
                                                  network_backend=_CheckedBackend(policy))


def checked_client(policy: AddressPolicy) -> httpx.AsyncClient:
    """An HTTP client for media URLs whose connections ``policy`` checks. Proxies from the environment are
    not used: a proxy would be the only address checked."""
    return httpx.AsyncClient(transport=_CheckedTransport(policy), trust_env=False, follow_redirects=False)


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

    async def download(self, url: str) -> bytes:
        """The bytes at ``url``, with every limit of a fetch but no decoding and no cache."""
        body = bytearray()

        async def keep(chunk: bytes) -> None:
            body.extend(chunk)

        await self._download(url, keep)
        return bytes(body)

    async def download_to(self, url: str, out: BinaryIO) -> int:
        """``download``, written to ``out`` as it arrives (a megabyte at a time, in a worker thread): at most
        that much of it is ever in memory. How many bytes."""
        pending = bytearray()

        async def write(chunk: bytes) -> None:
            pending.extend(chunk)
            if len(pending) >= WRITE_BYTES:
                await asyncio.to_thread(out.write, pending)
                pending.clear()

        size = await self._download(url, write)
        if pending:
            await asyncio.to_thread(out.write, pending)
        return size

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
            data = await self.download(url)
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

    async def _download(self, url: str, consume: Callable[[bytes], Awaitable[None]]) -> int:
        """The body at ``url``, handed to ``consume`` as it arrives; its size."""
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
                        return await self._read_body(url, response, consume)
                raise MediaUnreachable(f"{url}: more than {self.max_redirects} redirects")
        except TimeoutError as exc:
            raise MediaUnreachable(f"{url}: no complete answer within {self.timeout:g} s") from exc
        except httpx.HTTPError as exc:
            raise MediaUnreachable(f"{url}: {type(exc).__name__}: {exc}") from exc
        except AddressRefused as exc:
            raise MediaUnreachable(f"{url}: {exc}") from exc

    async def _read_body(self, url: str, response: httpx.Response,
                         consume: Callable[[bytes], Awaitable[None]]) -> int:  # fmt: skip
        if not response.is_success:
            raise MediaHttpError(url, response.status_code)
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_bytes:
            raise MediaTooLarge(f"{url}: {declared} bytes declared, over the {self.max_bytes} byte limit")
        size = 0
        async for chunk in response.aiter_bytes():
            size += len(chunk)
            if size > self.max_bytes:
                raise MediaTooLarge(f"{url}: body exceeds the {self.max_bytes} byte limit")
            await consume(chunk)
        return size


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
