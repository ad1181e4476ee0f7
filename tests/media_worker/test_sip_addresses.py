"""Where the SIP endpoint sends an INVITE: the URI's host looked up without blocking the loop."""

from __future__ import annotations

import asyncio

from callroom.media_worker.sip_addresses import is_address, lookup, maybe_reachable, resolve
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


def test_media_hosts_are_addresses_of_our_family_or_names_looked_up_once() -> None:
    assert is_address("192.0.2.1") and is_address("::1") and not is_address("evil.invalid")
    assert maybe_reachable("192.0.2.1", "127.0.0.1") and maybe_reachable("example.invalid", "127.0.0.1")
    assert not maybe_reachable("::1", "127.0.0.1") and not maybe_reachable("192.0.2.1", "::1")

    async def scenario() -> tuple[tuple[str, int], str]:
        found = await lookup(("localhost", 4000), 4)
        try:
            await lookup(("evil.invalid", 4000), 4)
        except ValueError as exc:
            return found, str(exc)
        raise AssertionError("evil.invalid resolved")

    found, refused = asyncio.run(scenario())
    assert found == ("127.0.0.1", 4000) and "evil.invalid" in refused
