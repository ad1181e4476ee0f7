"""The WebSocket side of media streams: one asyncio task per stream, in the media process.

A task connects to the stream's URL (only to an address the node's ``AddressPolicy`` permits, the one it
checked, as webhooks and media fetches do; no proxy from the environment; a small kernel send buffer),
then sends what the stream's ``StreamTap`` has queued whenever the tick says there is some
(``tap.notify``) and hands every message the server sends to the tap. The tick never waits for it: it
only appends to the tap's bounded queue. A server that reads slowly makes the task wait in ``send``
(websockets' write buffer, ``WRITE_LIMIT``), meanwhile the tap drops the oldest audio (counted:
``callroom_media_stream_frames_dropped_total``); one that goes away ends the stream (``streaming.failed``).

``StreamClients`` owns the tasks: ``close`` cancels them and waits for them to end.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
from urllib.parse import urlsplit

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, ConnectionClosedOK, WebSocketException

from callroom.aio.tasks import Tasks
from callroom.audio.decode import decode_audio
from callroom.errors import AddressRefused, MediaError, StreamMessageError
from callroom.media import stream_wire as w
from callroom.media.streams import StreamTap
from callroom.outbound import UNRESTRICTED, AddressPolicy

log = logging.getLogger(__name__)

OPEN_TIMEOUT = 5.0  # seconds to connect and finish the handshake
CLOSE_TIMEOUT = 2.0
WRITE_LIMIT = 32 * 1024  # bytes in websockets' write buffer before ``send`` waits
# The kernel's send buffer of a stream's socket: small, so that what a slow server has not read waits in the
# tap's queue (where the oldest audio is dropped) rather than in megabytes of stale audio in the kernel.
SEND_BUFFER = 32 * 1024
MAX_MESSAGE = 4 * 1024 * 1024  # a server's message: up to 30 s of L16 16 kHz audio, base64
MP3_MAX_SECONDS = 60.0  # an MP3 file a server sends to play


class StreamClients:
    def __init__(self, policy: AddressPolicy = UNRESTRICTED) -> None:
        self.policy = policy
        self._tasks = Tasks()

    def __len__(self) -> int:
        return len(self._tasks)

    def open(self, tap: StreamTap) -> None:
        """Connect ``tap`` (``Streams``' opener); returns at once."""
        self._tasks.spawn(self._run(tap), f"stream {tap.op.job_id}")

    async def close(self) -> None:
        await self._tasks.close()

    async def _run(self, tap: StreamTap) -> None:
        failure: str | None = None
        try:
            failure = await self._stream(tap)
        except asyncio.CancelledError:
            tap.ended(None)
            raise
        except Exception:  # never let one stream take the process down
            log.exception("stream %s failed", tap.op.job_id)
            failure = "internal error"
        tap.ended(failure)

    async def _stream(self, tap: StreamTap) -> str | None:
        """Run the stream until it is stopped or fails; the failure's public description, or None."""
        url = tap.op.url
        parts = urlsplit(url)
        if parts.scheme not in ("ws", "wss") or not parts.hostname:
            return "stream_url is not a ws:// or wss:// URL"
        port = parts.port or (443 if parts.scheme == "wss" else 80)
        try:
            addresses = await self.policy.resolve(parts.hostname, port)
        except AddressRefused:
            log.info("stream %s: %s refused by the outbound address policy", tap.op.job_id, parts.hostname)
            return "could not connect to the stream_url"
        except OSError as exc:
            log.info("stream %s: %s does not resolve: %s", tap.op.job_id, parts.hostname, exc)
            return "could not connect to the stream_url"
        headers = {w.AUTH_TOKEN: tap.op.auth_token} if tap.op.auth_token else None
        try:
            sock = await _connected(addresses[0], port)
            ws = await connect(url, sock=sock, open_timeout=OPEN_TIMEOUT, close_timeout=CLOSE_TIMEOUT,
                               write_limit=WRITE_LIMIT, max_size=MAX_MESSAGE, additional_headers=headers,
                               compression=None)  # fmt: skip
        except (OSError, TimeoutError, WebSocketException) as exc:
            log.info("stream %s: connecting to %s failed: %s", tap.op.job_id, url, exc)
            return "could not connect to the stream_url"
        async with ws:
            if tap.closing:
                return None
            tap.connected()
            wake = asyncio.Event()
            tap.notify = wake.set
            reading = asyncio.get_running_loop().create_task(self._read(ws, tap))
            try:
                while True:
                    for message in tap.take():
                        await ws.send(message.to_json())
                    if tap.closing:
                        return None
                    if reading.done():
                        return reading.result()
                    wake.clear()
                    waiting = asyncio.get_running_loop().create_task(wake.wait())
                    await asyncio.wait((waiting, reading), return_when=asyncio.FIRST_COMPLETED)
                    waiting.cancel()
            except ConnectionClosedOK:
                return None if tap.closing else "the stream's server closed the connection"
            except ConnectionClosed:
                return None if tap.closing else "the stream's server went away"
            finally:
                tap.notify = lambda: None
                reading.cancel()

    async def _play_mp3(self, tap: StreamTap, payload: bytes) -> None:
        """Telnyx's default bidirectional mode: a server's ``media`` is an MP3 file, played in the order sent.
        It is decoded in a worker thread, never on the loop."""
        try:
            samples = await asyncio.to_thread(decode_audio, payload, max_seconds=MP3_MAX_SECONDS)
        except (MediaError, ValueError) as exc:
            log.info("stream %s: audio from the server could not be decoded: %s", tap.op.job_id, exc)
            return
        tap.play(samples)

    async def _read(self, ws: ClientConnection, tap: StreamTap) -> str | None:
        """Hand the server's messages to the tap until it closes; why it ended."""
        try:
            async for text in ws:
                try:
                    message = w.parse(text)
                except StreamMessageError as exc:
                    log.info("stream %s: a message from the server was not understood: %s", tap.op.job_id, exc)
                    continue
                if isinstance(message, w.Media) and not tap.op.bidirectional:
                    await self._play_mp3(tap, message.payload)  # the next message waits: marks stay in order
                    continue
                tap.received(message)
        except ConnectionClosedOK:
            pass
        except ConnectionClosed:
            return None if tap.closing else "the stream's server went away"
        return None if tap.closing else "the stream's server closed the connection"


async def _connected(address: str, port: int) -> socket.socket:
    """A TCP socket connected to ``address`` (checked already), with a small send buffer."""
    family = socket.AF_INET6 if ipaddress.ip_address(address).version == 6 else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setblocking(False)
        async with asyncio.timeout(OPEN_TIMEOUT):
            await asyncio.get_running_loop().sock_connect(sock, (address, port))
    except BaseException:
        sock.close()
        raise
    return sock
