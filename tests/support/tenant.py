"""One test's account: its SDK client, its application, and shortcuts for placing calls."""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

import httpx
import numpy as np
import soundfile
import telnyx
from numpy.typing import NDArray

from tests.support.node import NodeThread
from tests.support.receiver import Received, WebhookReceiver
from tests.support.sdk_events import unwrap_typed


@dataclass(frozen=True)
class NodeAt:
    """A node process serving on ``port`` of loopback (what a ``Tenant`` needs of a node: its URLs)."""

    port: int

    @property
    def root_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        return f"{self.root_url}/v2"


@dataclass
class Tenant:
    client: telnyx.Telnyx
    node: NodeThread  # (or a ``NodeAt``)
    receiver: WebhookReceiver
    api_key: str
    path: str
    connection_id: str

    def event(self, event_type: str, call_control_id: str | None = None, timeout: float = 10.0,
              **payload: Any) -> Received:
        return self.receiver.event(event_type, call_control_id, timeout, **payload)

    def events(self, call_control_id: str | None = None, conference_id: str | None = None) -> list[str]:
        """The event types this tenant received so far, in arrival order, optionally for one call/conference."""
        return self._events(call_control_id, conference_id)

    def typed(self, received: Received) -> Any:
        """The webhook as the SDK's ``webhooks.unwrap`` gives it, checked to be its own event's model."""
        return unwrap_typed(self.client, received, self.node.public_key)

    def check_typed(self) -> None:
        for received in self._mine():
            self.typed(received)

    def _mine(self) -> list[Received]:
        return [r for r in self.receiver.delivered(self.path) if r.body]

    def _events(self, call_control_id: str | None, conference_id: str | None) -> list[str]:
        out = []
        for r in self._mine():
            p = r.payload
            if call_control_id is not None and p.get("call_control_id") != call_control_id:
                continue
            if conference_id is not None and p.get("conference_id") != conference_id:
                continue
            out.append(r.event_type)
        return out

    def dial(self, name: str = "phone", options: str = "answer_after=0", wait_answered: bool = True,
             **kwargs: Any) -> str:
        """Dial a virtual phone; return its call_control_id once ``call.answered`` arrived."""
        to = f"virtual:{name};{options}" if options else f"virtual:{name}"
        resp = self.client.calls.dial(connection_id=self.connection_id, from_="+15550001111", to=to, **kwargs)
        assert resp.data is not None
        cid = resp.data.call_control_id
        if wait_answered:
            self.event("call.answered", cid)
        return cid

    def call_in(self, from_: str = "virtual:caller", to: str = "+15550002222", answer: bool = True) -> str:
        """A virtual phone calls the application; answer it (via the SDK) unless told not to."""
        resp = httpx.post(
            f"{self.node.root_url}/virtual/calls",
            json={"connection_id": self.connection_id, "from": from_, "to": to},
            headers={"Authorization": f"Bearer {self.api_key}"},
        )
        resp.raise_for_status()
        cid: str = resp.json()["data"]["call_control_id"]
        self.event("call.initiated", cid)
        if answer:
            self.client.calls.actions.answer(cid)
            self.event("call.answered", cid)
        return cid

    def dequeue(self, agent: str, queue: str) -> None:
        """The agent takes the head of ``queue`` (bridge with ``queue`` instead of a call id)."""
        self.client.calls.actions.bridge(
            agent, call_control_id_to_bridge_with=telnyx.omit, queue=queue  # type: ignore[arg-type]
        )

    def virtual_phones(self) -> list[dict[str, Any]]:
        """The live virtual legs of this account and what each is connected to."""
        resp = httpx.get(f"{self.node.root_url}/virtual/phones", headers={"Authorization": f"Bearer {self.api_key}"})
        resp.raise_for_status()
        phones: list[dict[str, Any]] = resp.json()["data"]
        return phones

    def heard(self, call_control_id: str, seconds: float = 0.5) -> NDArray[np.int16]:
        """What a virtual phone heard during the last ``seconds`` (8 kHz int16)."""
        resp = httpx.get(
            f"{self.node.root_url}/virtual/calls/{call_control_id}/heard.wav",
            params={"seconds": seconds},
            headers={"Authorization": f"Bearer {self.api_key}"},
        )
        resp.raise_for_status()
        samples, rate = soundfile.read(io.BytesIO(resp.content), dtype="int16")
        assert rate == 8000
        return np.asarray(samples, dtype=np.int16)

    def press(self, call_control_id: str, digits: str) -> None:
        """The virtual phone's user presses keys (in-band DTMF)."""
        resp = httpx.post(
            f"{self.node.root_url}/virtual/calls/{call_control_id}/dtmf",
            json={"digits": digits},
            headers={"Authorization": f"Bearer {self.api_key}"},
        )
        resp.raise_for_status()

    def phone_hangs_up(self, call_control_id: str) -> None:
        resp = httpx.post(
            f"{self.node.root_url}/virtual/calls/{call_control_id}/hangup",
            headers={"Authorization": f"Bearer {self.api_key}"},
        )
        resp.raise_for_status()
