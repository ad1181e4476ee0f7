"""The webhook HTTP client (callroom/webhooks/http.py) and the node's address policy: a refused host is
never connected to, not even once, and an allowed one is served as before."""

from __future__ import annotations

import asyncio
import socket

import pytest

from callroom.errors import AddressRefused
from callroom.outbound import LOOPBACK, AddressPolicy
from callroom.webhooks.http import WebhookHttp
from tests.support.receiver import WebhookReceiver


def test_a_host_resolving_to_a_refused_address_is_never_connected_to() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        listener.setblocking(False)
        port = listener.getsockname()[1]

        async def send(url: str) -> None:
            http = WebhookHttp(policy=AddressPolicy())
            try:
                await http.request("POST", url, b"{}", {"content-type": "application/json"})
            finally:
                await http.aclose()

        for url in (f"http://localhost:{port}/hooks", f"http://127.0.0.1:{port}/hooks", f"https://[::1]:{port}/"):
            with pytest.raises(AddressRefused):
                asyncio.run(send(url))
        with pytest.raises(BlockingIOError):
            listener.accept()  # nobody came


def test_an_allowed_network_is_served() -> None:
    receiver = WebhookReceiver()
    try:
        async def send() -> int:
            http = WebhookHttp(policy=AddressPolicy.allowing(LOOPBACK))
            try:
                reply = await http.request("POST", receiver.url("/ok").replace("127.0.0.1", "localhost"), b"{}",
                                           {"content-type": "application/json"})
                return reply.status
            finally:
                await http.aclose()

        assert asyncio.run(send()) == 200
        assert [r.path for r in receiver.requests] == ["/ok"]
    finally:
        receiver.close()
