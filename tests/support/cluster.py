"""Several real node processes on one PostgreSQL database and the local NATS server: one cluster, and an
account's shortcuts to spread its commands over the nodes."""

from __future__ import annotations

import contextlib
import io
import itertools
import os
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import soundfile
import telnyx
from numpy.typing import NDArray

from tests.support.node import free_port
from tests.support.process import serve
from tests.support.receiver import Received, WebhookReceiver

NATS_URL = os.environ.get("CALLROOM_TEST_NATS_URL", "nats://127.0.0.1:4222")


@dataclass
class Cluster:
    roots: list[str]  # each node's http://host:port
    node_ids: list[str]
    procs: list[subprocess.Popen[bytes]]
    api_key: str
    receiver: WebhookReceiver
    path: str = field(default_factory=lambda: f"/cluster/{uuid.uuid4().hex}")
    connection_id: str = ""
    _turn: Iterator[int] = field(default_factory=lambda: itertools.cycle(range(1000)))

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"}

    def client(self, i: int) -> telnyx.Telnyx:
        return telnyx.Telnyx(api_key=self.api_key, base_url=self.roots[i % len(self.roots)] + "/v2", max_retries=0)

    def next(self) -> telnyx.Telnyx:
        """The next node's client, round robin: each command of a scenario reaches another node."""
        return self.client(next(self._turn))

    def event(self, event_type: str, call_control_id: str | None = None, timeout: float = 10.0,
              **payload: Any) -> Received:  # fmt: skip
        return self.receiver.event(event_type, call_control_id, timeout, **payload)

    def events(self, call_control_id: str) -> list[Received]:
        return [r for r in self.receiver.delivered(self.path) if r.body
                and r.payload.get("call_control_id") == call_control_id]  # fmt: skip

    def dial(self, node: int, name: str, options: str = "answer_after=0") -> str:
        """A virtual phone dialled by ``node`` (its leg lives there), once answered."""
        resp = self.client(node).calls.dial(connection_id=self.connection_id, from_="+15550001111",
                                            to=f"virtual:{name};{options}")  # fmt: skip
        assert resp.data is not None
        cid: str = resp.data.call_control_id
        self.event("call.answered", cid)
        return cid

    def call_in(self, node: int, from_: str = "virtual:caller") -> str:
        """A virtual phone calls the application through ``node`` (its leg lives there); not answered."""
        resp = httpx.post(f"{self.roots[node]}/virtual/calls", headers=self.headers,
                          json={"connection_id": self.connection_id, "from": from_, "to": "+15550002222"})
        resp.raise_for_status()
        cid: str = resp.json()["data"]["call_control_id"]
        self.event("call.initiated", cid)
        return cid

    def heard(self, node: int, call_control_id: str, seconds: float = 0.5) -> NDArray[np.int16]:
        """What a virtual phone heard lately, asked of ``node`` (which need not be the phone's)."""
        resp = httpx.get(f"{self.roots[node]}/virtual/calls/{call_control_id}/heard.wav",
                         params={"seconds": seconds}, headers=self.headers, timeout=10)  # fmt: skip
        resp.raise_for_status()
        samples, rate = soundfile.read(io.BytesIO(resp.content), dtype="int16")
        assert rate == 8000
        return np.asarray(samples, dtype=np.int16)

    def phone(self, node: int, call_control_id: str, action: str, **body: Any) -> httpx.Response:
        return httpx.post(f"{self.roots[node]}/virtual/calls/{call_control_id}/{action}", headers=self.headers,
                          json=body or None, timeout=10)  # fmt: skip


@contextlib.contextmanager
def running_cluster(tmp: Path, database_url: str, receiver: WebhookReceiver, nodes: int = 3,
                    *extra: str, nats_urls: list[str] | None = None) -> Iterator[Cluster]:  # fmt: skip
    """``nodes`` node processes (``n0``, ``n1`` ...) on ``database_url`` and the local NATS server (or each
    on its own of ``nats_urls``: the same server, through a proxy a test may cut), virtual phones only (no
    SIP unless ``extra`` asks), and one application whose webhooks ``receiver`` gets."""
    with contextlib.ExitStack() as stack:
        roots, procs, ids = [], [], []
        for i in range(nodes):
            data_dir = tmp / f"n{i}"
            data_dir.mkdir(parents=True, exist_ok=True)
            port = free_port()
            args = ("--sip-port", "-1", *extra) if "--sip-port" not in extra else extra
            bus = nats_urls[i] if nats_urls else NATS_URL
            procs.append(stack.enter_context(serve(data_dir, port, *args, "--node-id", f"n{i}", "--nats-url", bus,
                                                   database_url=database_url)))  # fmt: skip
            roots.append(f"http://127.0.0.1:{port}")
            ids.append(f"n{i}")
        key = (tmp / "n0" / "initial-api-key").read_text().strip()  # the first node made the key
        cluster = Cluster(roots, ids, procs, key, receiver)
        app = cluster.client(0).call_control_applications.create(
            application_name="cluster", webhook_event_url=receiver.url(cluster.path))
        assert app.data is not None and app.data.id
        cluster.connection_id = app.data.id
        yield cluster
