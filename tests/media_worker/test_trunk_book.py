"""The trunks the media process dials and admits with: which trunks an INVITE's source is, and the srtp
setting its call follows."""

from __future__ import annotations

import asyncio

from callroom.media_worker.trunk_book import TrunkBook
from callroom.model.trunks import Trunk
from callroom.sip.sdes import SrtpMode


def test_an_invite_follows_the_strictest_srtp_of_the_trunks_at_its_source() -> None:
    async def scenario() -> None:
        book = TrunkBook()
        await book.set((
            Trunk("t1", "a1", "one", "127.0.0.9", 5061, "tls", srtp="optional"),
            Trunk("t2", "a2", "two", "127.0.0.9", 5061, "tls", srtp="required"),
            Trunk("t3", "a1", "three", "127.0.0.8", 5061, "tls", srtp="optional"),
            Trunk("t4", "a1", "four", "127.0.0.7", 5060, "udp"),
        ))  # fmt: skip
        assert set(book.trunks_at("127.0.0.9")) == {"t1", "t2"}
        assert book.srtp_of(book.trunks_at("127.0.0.9")) is SrtpMode.REQUIRED
        assert book.srtp_of(book.trunks_at("127.0.0.8")) is SrtpMode.OPTIONAL
        assert book.srtp_of(book.trunks_at("127.0.0.7")) is SrtpMode.OFF
        assert book.srtp_of(book.trunks_at("127.0.0.6")) is SrtpMode.OFF  # a phone: no trunk
        assert book.srtp_of(("gone",)) is SrtpMode.OFF

    asyncio.run(scenario())
