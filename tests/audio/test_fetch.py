from __future__ import annotations

import asyncio
import hashlib
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from callroom.audio.encode import encode_mp3, encode_wav
from callroom.audio.fetch import FETCH_FAILED, MediaFetcher, checked_client, public_reason
from callroom.errors import (
    AddressRefused,
    InvalidMediaUrl,
    MediaHttpError,
    MediaTooLarge,
    MediaUnreachable,
    NotAudio,
)
from callroom.outbound import LOOPBACK, AddressPolicy
from tests.audio.httpserver import LocalHttpServer, dribble, endless, redirect, status
from tests.audio.signals import dominant_freq, tone16

WAV = encode_wav([tone16(500, 1.0)])
MP3 = encode_mp3([tone16(900, 1.0)])
HTML = b"<!DOCTYPE html><html><body><h1>Welcome</h1></body></html>"


@pytest.fixture
async def server() -> AsyncIterator[LocalHttpServer]:
    srv = LocalHttpServer()
    srv.routes.update(
        {
            "/tone.wav": status(200, WAV, "audio/wav"),
            "/tone.mp3": status(200, MP3, "audio/mpeg"),
            "/page.html": status(200, HTML, "text/html"),
            "/mislabelled": status(200, WAV, "text/html"),
            "/delayed.wav": status(200, WAV, "audio/wav", delay=0.3),
            "/slow.wav": dribble(WAV, pause=0.05),
            "/huge": endless(),
            "/huge-declared": endless(declared_length=10**10),
            "/missing": status(404, b"no"),
            "/broken": status(500, b"oops"),
            "/hop1": redirect("/hop2", 301),
            "/hop2": redirect("tone.wav", 307),
            "/loop": redirect("/loop"),
            "/to-ftp": redirect("ftp://127.0.0.1/tone.wav"),
            "/to-file": redirect("file:///etc/passwd"),
        }
    )
    await srv.start()
    yield srv
    await srv.stop()


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(trust_env=False) as c:
        yield c


async def test_fetches_wav_and_mp3(server: LocalHttpServer, client: httpx.AsyncClient) -> None:
    fetcher = MediaFetcher(client)
    wav = await fetcher.fetch(server.base + "/tone.wav")
    assert wav.dtype == np.int16 and wav.size == 8000 and not wav.flags.writeable
    assert dominant_freq(wav, 8000) == pytest.approx(500, abs=2)
    mp3 = await fetcher.fetch(server.base + "/tone.mp3")
    assert dominant_freq(mp3, 8000) == pytest.approx(900, abs=2)
    # sniffed from the bytes, whatever the Content-Type says
    assert (await fetcher.fetch(server.base + "/mislabelled")).size == 8000


async def test_html_is_not_audio(server: LocalHttpServer, client: httpx.AsyncClient) -> None:
    with pytest.raises(NotAudio, match="HTML"):
        await MediaFetcher(client).fetch(server.base + "/page.html")


async def test_http_errors(server: LocalHttpServer, client: httpx.AsyncClient) -> None:
    fetcher = MediaFetcher(client)
    for path, code in [("/missing", 404), ("/broken", 500)]:
        with pytest.raises(MediaHttpError) as info:
            await fetcher.fetch(server.base + path)
        assert info.value.status == code


async def test_unreachable(client: httpx.AsyncClient) -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(MediaUnreachable):
        await MediaFetcher(client).fetch(f"http://127.0.0.1:{port}/tone.wav")


@pytest.mark.parametrize("url", ["ftp://127.0.0.1/a.wav", "file:///etc/passwd", "tone.wav", "http://", "ht tp://x"])
async def test_only_http_urls(client: httpx.AsyncClient, url: str) -> None:
    with pytest.raises(InvalidMediaUrl):
        await MediaFetcher(client).fetch(url)


async def test_redirects(server: LocalHttpServer, client: httpx.AsyncClient) -> None:
    assert (await MediaFetcher(client, max_redirects=2).fetch(server.base + "/hop1")).size == 8000
    with pytest.raises(MediaUnreachable, match="redirects"):
        await MediaFetcher(client, max_redirects=1).fetch(server.base + "/hop1")
    with pytest.raises(MediaUnreachable, match="redirects"):
        await MediaFetcher(client).fetch(server.base + "/loop")
    assert server.hits["/loop"] == 6
    for path in ("/to-ftp", "/to-file"):
        with pytest.raises(InvalidMediaUrl):
            await MediaFetcher(client).fetch(server.base + path)


async def test_slow_server_times_out(server: LocalHttpServer, client: httpx.AsyncClient) -> None:
    started = time.monotonic()
    with pytest.raises(MediaUnreachable, match="within"):
        await MediaFetcher(client, timeout=0.5).fetch(server.base + "/slow.wav")
    assert time.monotonic() - started < 2.0


async def test_endless_body_is_cut_at_the_limit(server: LocalHttpServer, client: httpx.AsyncClient) -> None:
    started = time.monotonic()
    with pytest.raises(MediaTooLarge, match="exceeds"):
        await MediaFetcher(client).fetch(server.base + "/huge")  # default limit, 50 MB
    # the connection is dropped: the server's endless loop ends
    await asyncio.wait_for(server.finished.setdefault("/huge", asyncio.Event()).wait(), 5)
    assert time.monotonic() - started < 10


async def test_declared_length_is_refused_before_reading(server: LocalHttpServer, client: httpx.AsyncClient) -> None:
    started = time.monotonic()
    with pytest.raises(MediaTooLarge, match="declared"):
        await MediaFetcher(client, max_bytes=1000).fetch(server.base + "/huge-declared")
    await asyncio.wait_for(server.finished.setdefault("/huge-declared", asyncio.Event()).wait(), 5)
    assert time.monotonic() - started < 2
    with pytest.raises(MediaTooLarge):
        await MediaFetcher(client, max_bytes=len(WAV) - 1).fetch(server.base + "/tone.wav")


async def test_a_download_to_a_file_is_written_as_it_arrives(server: LocalHttpServer, client: httpx.AsyncClient,
                                                            tmp_path: Path) -> None:  # fmt: skip
    """What an upload by ``media_url`` uses: the bytes land in a file, never whole in memory, within the same
    limits as any fetch (the file then holds whatever arrived: its caller throws it away)."""
    big = WAV * 80  # past WRITE_BYTES: written in more than one piece
    server.routes["/big.wav"] = status(200, big, "audio/wav")
    with open(tmp_path / "down", "w+b") as out:
        assert await MediaFetcher(client).download_to(server.base + "/big.wav", out) == len(big)
        out.seek(0)
        assert out.read() == big
    with open(tmp_path / "redirected", "w+b") as out:
        assert await MediaFetcher(client).download_to(server.base + "/hop1", out) == len(WAV)  # redirects
    with open(tmp_path / "cut", "w+b") as out, pytest.raises(MediaTooLarge):
        await MediaFetcher(client, max_bytes=len(big) - 1).download_to(server.base + "/big.wav", out)
    with open(tmp_path / "endless", "w+b") as out, pytest.raises(MediaTooLarge, match="exceeds"):
        await MediaFetcher(client, max_bytes=3_000_000).download_to(server.base + "/huge", out)
    assert (tmp_path / "endless").stat().st_size <= 3_000_000


async def test_concurrent_fetches_share_one_download(server: LocalHttpServer, client: httpx.AsyncClient) -> None:
    fetcher = MediaFetcher(client)
    url = server.base + "/delayed.wav"
    results = await asyncio.gather(*(fetcher.fetch(url) for _ in range(5)))
    assert server.hits["/delayed.wav"] == 1 and fetcher.downloads == 1
    assert all(r is results[0] for r in results)
    assert await fetcher.fetch(url) is results[0]  # memory cache
    assert server.hits["/delayed.wav"] == 1


async def test_a_cancelled_waiter_does_not_cancel_the_download(
    server: LocalHttpServer, client: httpx.AsyncClient
) -> None:
    fetcher = MediaFetcher(client)
    url = server.base + "/delayed.wav"
    impatient = asyncio.create_task(fetcher.fetch(url))
    patient = asyncio.create_task(fetcher.fetch(url))
    await asyncio.sleep(0.05)
    impatient.cancel()
    assert (await patient).size == 8000
    assert impatient.cancelled() and server.hits["/delayed.wav"] == 1


async def test_aclose_cancels_downloads(server: LocalHttpServer, client: httpx.AsyncClient) -> None:
    fetcher = MediaFetcher(client)
    waiter = asyncio.create_task(fetcher.fetch(server.base + "/slow.wav"))
    await asyncio.sleep(0.1)
    await fetcher.aclose()
    with pytest.raises(asyncio.CancelledError):
        await waiter


async def test_failures_are_not_cached(server: LocalHttpServer, client: httpx.AsyncClient) -> None:
    fetcher = MediaFetcher(client)
    for _ in range(2):
        with pytest.raises(MediaHttpError):
            await fetcher.fetch(server.base + "/broken")
    assert server.hits["/broken"] == 2


async def test_disk_cache(server: LocalHttpServer, client: httpx.AsyncClient, tmp_path: Path) -> None:
    url = server.base + "/tone.mp3"
    first = await MediaFetcher(client, cache_dir=tmp_path).fetch(url)
    path = tmp_path / f"{hashlib.sha256(url.encode()).hexdigest()}.npy"
    assert path.is_file() and list(tmp_path.iterdir()) == [path]
    again = await MediaFetcher(client, cache_dir=tmp_path).fetch(url)  # a new process, same directory
    assert np.array_equal(again, first) and server.hits["/tone.mp3"] == 1
    path.write_bytes(b"garbage")  # an unreadable entry is fetched anew and rewritten
    assert np.array_equal(await MediaFetcher(client, cache_dir=tmp_path).fetch(url), first)
    assert server.hits["/tone.mp3"] == 2
    assert np.array_equal(np.load(path), first)


# -- the node's address policy (outbound.py) ---------------------------------------------------------------


async def test_a_refused_address_is_never_connected_to(server: LocalHttpServer) -> None:
    by_name = server.base.replace("127.0.0.1", "localhost") + "/tone.wav"  # a name: checked when connecting
    async with checked_client(AddressPolicy()) as client:
        with pytest.raises(MediaUnreachable) as refused:
            await MediaFetcher(client).fetch(by_name)
    assert isinstance(refused.value.__cause__, AddressRefused)
    assert server.hits["/tone.wav"] == 0
    async with checked_client(AddressPolicy.allowing(LOOPBACK)) as client:
        assert (await MediaFetcher(client).fetch(by_name)).size == 8000
        assert (await MediaFetcher(client).download(by_name)) == WAV
    assert server.hits["/tone.wav"] == 2


async def test_every_redirect_hop_is_checked(server: LocalHttpServer) -> None:
    port = server.base.rsplit(":", 1)[1]
    server.routes["/to-loopback-v6"] = redirect(f"http://[::1]:{port}/tone.wav")
    async with checked_client(AddressPolicy.allowing(["127.0.0.1/32"])) as client:
        assert (await MediaFetcher(client).fetch(server.base + "/tone.wav")).size == 8000
        with pytest.raises(MediaUnreachable) as refused:
            await MediaFetcher(client).fetch(server.base + "/to-loopback-v6")
    assert isinstance(refused.value.__cause__, AddressRefused) and refused.value.__cause__.addresses == ["::1"]


async def test_what_an_application_is_told_says_nothing_of_the_server(server: LocalHttpServer) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{sock.getsockname()[1]}/tone.wav"
    told = set()
    async with checked_client(AddressPolicy.allowing(LOOPBACK)) as client:
        for url in (closed, server.base + "/missing", server.base + "/broken", server.base + "/to-ftp"):
            with pytest.raises((MediaUnreachable, MediaHttpError, InvalidMediaUrl)) as failed:
                await MediaFetcher(client).fetch(url)
            told.add(public_reason(failed.value))
        with pytest.raises(NotAudio) as not_audio:
            await MediaFetcher(client).fetch(server.base + "/page.html")
    assert told == {FETCH_FAILED}  # refused, missing, broken, redirected away: all alike
    assert "HTML" in str(not_audio.value) and "HTML" not in public_reason(not_audio.value)
