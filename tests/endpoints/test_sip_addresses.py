"""Where the SIP endpoint sends an INVITE: the URI's host looked up without blocking the loop."""

from __future__ import annotations

import asyncio

from callroom.endpoints.sip import resolve
from callroom.sip.fields import SipUri


def test_addresses_are_used_as_they_are_and_names_are_looked_up() -> None:
    async def scenario() -> list[tuple[str, int]]:
        return [
            await resolve(SipUri.parse("sip:alice@192.0.2.7:5070")),
            await resolve(SipUri.parse("sip:alice@192.0.2.7")),
            await resolve(SipUri.parse("sip:alice@example.invalid;maddr=127.0.0.1")),  # maddr wins, no lookup
            await resolve(SipUri.parse("sip:alice@localhost:5099")),  # /etc/hosts
        ]

    assert asyncio.run(scenario()) == [("192.0.2.7", 5070), ("192.0.2.7", 5060), ("127.0.0.1", 5060),
                                       ("127.0.0.1", 5099)]
