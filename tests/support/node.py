"""A real callroom node for tests: the full server (uvicorn, HTTP on loopback) in a background thread."""

from __future__ import annotations

import asyncio
import dataclasses
import socket
import threading
import time
from pathlib import Path
from typing import Any

import uvicorn

from callroom.admission import Limits
from callroom.api.limits import HEAD_TIMEOUT_SECS
from callroom.api.server import uvicorn_config
from callroom.control.service import DEFAULT_RING_TIMEOUT_SECS
from callroom.identity import create_api_key
from callroom.model.messages import SipConfig
from callroom.node import Node
from callroom.node_config import NodeConfig
from callroom.outbound import LOOPBACK


def free_port() -> int:
    """A loopback port free for TCP and for UDP alike: callers use it for either (SIPp, Kamailio, baresip and
    RTP listen on UDP). Free for TCP only, it may be a UDP port another node or proxy holds: a Kamailio
    started on it could not bind, and that node answered in its place."""
    while True:
        with socket.socket() as tcp, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            tcp.bind(("127.0.0.1", 0))
            port: int = tcp.getsockname()[1]
            try:
                udp.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port


class NodeThread:
    def __init__(self, database_url: str, data_dir: Path, node_id: str | None = None,
                 rate_limit: tuple[float, float] | None = None,
                 sip_credentials: tuple[tuple[str, str], ...] = (), sip: SipConfig | None = None,
                 ring_timeout_secs: float = DEFAULT_RING_TIMEOUT_SECS, head_timeout: float = HEAD_TIMEOUT_SECS,
                 allow_url_networks: tuple[str, ...] = LOOPBACK,
                 admission: Limits | None = None, access_log: bool = False) -> None:  # fmt: skip
        # Short webhook retry pauses so delivery tests run in seconds. The webhook receivers and media
        # servers of the tests listen on loopback, which a node refuses unless allowed.
        node_config = NodeConfig(
            database_url=database_url, data_dir=data_dir, node_id=node_id, webhook_backoff=(0.2, 0.4),
            sip=sip or SipConfig(port=0, credentials=sip_credentials), rate_limit=rate_limit,
            ring_timeout_secs=ring_timeout_secs, allow_url_networks=allow_url_networks,
            admission=admission or Limits(), access_log=access_log,
        )
        self.node = Node(node_config)
        self.port = free_port()
        config = uvicorn_config(self.node.asgi, "127.0.0.1", self.port, head_timeout=head_timeout,
                                log_level="warning", loop="asyncio", lifespan="on")
        self.server = uvicorn.Server(config)
        self.loop: asyncio.AbstractEventLoop | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 15
        while not self.server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("test node did not start")
            time.sleep(0.01)

    def _run(self) -> None:
        self.loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self.server.serve())

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v2"

    @property
    def root_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def sip_port(self) -> int:
        port = self.node.media.sip_port
        assert port is not None
        return port

    @property
    def public_key(self) -> str:
        return self.node.signer.public_key_b64

    def new_key(self, account: str) -> str:
        return create_api_key(self.node.store, account)

    def stop(self) -> None:
        self.server.should_exit = True
        self._thread.join(timeout=15)

    @property
    def media_pid(self) -> int:
        """The process id of the node's media process."""
        process = self.node.media._process
        assert process is not None and process.pid is not None
        return process.pid

    def media_stats(self, reset: bool = False) -> dict[str, Any]:
        """The media process's figures: tick lateness since the last reset, legs, the SIP plane's counters."""
        assert self.loop is not None
        future = asyncio.run_coroutine_threadsafe(self.node.media.stats(reset), self.loop)
        return dataclasses.asdict(future.result(10))
