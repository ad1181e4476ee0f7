"""SDES crypto lines (RFC 4568) and the srtp modes' offer/answer rules, on descriptions as PBXes write them."""

from __future__ import annotations

import base64

import pytest

from callroom.errors import SdpParseError, SrtpNotAcceptable
from callroom.sip.sdes import (
    KEY_AND_SALT,
    SUITES,
    CryptoAttribute,
    SrtpKeys,
    SrtpMode,
    answer_agrees,
    answer_offer,
    check_transport,
    cryptos_of,
    new_key,
    offer_wants,
    secure_offer,
)
from callroom.sip.sdp import SessionDescription, make_offer, negotiate_answer

KEY = "PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR"  # RFC 4568 §9.1's example key: 30 bytes, base64

# An offer as Asterisk writes it for an SRTP-only endpoint (two suites, the 80-bit tag first).
ASTERISK_OFFER = (
    "v=0\r\no=- 1723 1723 IN IP4 127.0.0.9\r\ns=Asterisk\r\nc=IN IP4 127.0.0.9\r\nt=0 0\r\n"
    "m=audio 14000 RTP/SAVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n"
    f"a=fmtp:101 0-16\r\na=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{KEY}\r\n"
    f"a=crypto:2 AES_CM_128_HMAC_SHA1_32 inline:{KEY}\r\na=sendrecv\r\n"
).encode()


def _plain(offer: bytes) -> bytes:
    """The same offer with plain RTP and no crypto lines."""
    lines = [ln for ln in offer.split(b"\r\n") if not ln.startswith(b"a=crypto")]
    return b"\r\n".join(lines).replace(b"RTP/SAVP", b"RTP/AVP")


@pytest.mark.parametrize("line", [
    f"1 AES_CM_128_HMAC_SHA1_80 inline:{KEY}",
    f"2 AES_CM_128_HMAC_SHA1_32 inline:{KEY}|2^20|1:32",
    f"3 AES_CM_128_HMAC_SHA1_80 inline:{KEY}|2^31 UNENCRYPTED_SRTP",
    f"1 F8_128_HMAC_SHA1_80 inline:{KEY}",
])  # fmt: skip
def test_crypto_lines_round_trip(line: str) -> None:
    assert str(CryptoAttribute.parse(line)) == line
    assert bytes(CryptoAttribute.parse(line.encode())) == line.encode()


def test_what_a_crypto_line_says() -> None:
    c = CryptoAttribute.parse(f"2 AES_CM_128_HMAC_SHA1_32 inline:{KEY}|2^20|1:32")
    assert (c.tag, c.suite, c.key, c.lifetime, c.mki) == (2, "AES_CM_128_HMAC_SHA1_32", base64.b64decode(KEY),
                                                          "2^20", "1:32")  # fmt: skip
    assert len(c.key) == KEY_AND_SALT
    assert CryptoAttribute.parse(f"1 AES_CM_128_HMAC_SHA1_80 inline:{KEY}").usable
    assert CryptoAttribute.parse(f"1 AES_CM_128_HMAC_SHA1_80 inline:{KEY}|2^31").usable
    for unusable in (f"1 AES_CM_128_HMAC_SHA1_80 inline:{KEY}|1:4",  # an MKI
                     f"1 AES_CM_128_HMAC_SHA1_80 inline:{KEY}|2^20",  # a lifetime a call could outlive
                     f"1 AES_CM_128_HMAC_SHA1_80 inline:{KEY} UNENCRYPTED_SRTP",  # a session parameter
                     f"1 AES_CM_128_HMAC_SHA1_80 inline:{KEY};inline:{KEY}",  # two keys
                     f"1 F8_128_HMAC_SHA1_80 inline:{KEY}",  # another suite
                     "1 AES_CM_128_HMAC_SHA1_80 inline:c2hvcnQ="):  # a key too short
        assert not CryptoAttribute.parse(unusable).usable, unusable


@pytest.mark.parametrize("line", [
    "", "x AES_CM_128_HMAC_SHA1_80 inline:" + KEY, "1 AES_CM_128_HMAC_SHA1_80", "1 AES_CM_128_HMAC_SHA1_80 " + KEY,
    "1 AES_CM_128_HMAC_SHA1_80 inline:not*base64", f"1 AES_CM_128_HMAC_SHA1_80 inline:{KEY}|2^20|2^30",
])  # fmt: skip
def test_malformed_crypto_lines_are_refused(line: str) -> None:
    with pytest.raises(SdpParseError):
        CryptoAttribute.parse(line)


def test_keys_come_fresh_from_the_csprng() -> None:
    keys = {new_key() for _ in range(100)}
    assert len(keys) == 100 and all(len(k) == KEY_AND_SALT for k in keys)


def test_our_offers_under_each_mode() -> None:
    for mode, proto, lines in ((SrtpMode.OFF, "RTP/AVP", 0), (SrtpMode.OPTIONAL, "RTP/AVP", 2),
                               (SrtpMode.REQUIRED, "RTP/SAVP", 2)):  # fmt: skip
        offer = make_offer("127.0.0.1", 20000)
        offered = secure_offer(offer, mode)
        parsed = SessionDescription.parse(bytes(offer))
        audio = parsed.media[0]
        assert audio.proto == proto and cryptos_of(audio) == offered and len(offered) == lines
        assert [c.suite for c in offered] == list(SUITES)[:lines]
        assert audio.attributes[-1] == ("sendrecv", None)  # the direction stays last
    assert len({c.key for c in offered}) == 2  # each line its own key


def test_answering_an_srtp_offer() -> None:
    offer = SessionDescription.parse(ASTERISK_OFFER)
    agreed = negotiate_answer(offer, "127.0.0.1", 20000)
    keys = answer_offer(offer, agreed.answer, SrtpMode.REQUIRED, over_tls=True)
    assert keys is not None and keys.suite == "AES_CM_128_HMAC_SHA1_80"
    assert keys.receive_key == base64.b64decode(KEY) and keys.send_key != keys.receive_key
    answer = SessionDescription.parse(bytes(agreed.answer))
    assert answer.media[0].proto == "RTP/SAVP"
    assert cryptos_of(answer.media[0]) == [CryptoAttribute(1, "AES_CM_128_HMAC_SHA1_80", keys.send_key)]
    # a re-INVITE with the same key keeps ours; a new key of theirs gets a new one of ours
    again = negotiate_answer(offer, "127.0.0.1", 20000).answer
    assert answer_offer(offer, again, SrtpMode.REQUIRED, True, keys) == keys
    rekeyed = SessionDescription.parse(ASTERISK_OFFER.replace(KEY.encode(), base64.b64encode(new_key())))
    new = answer_offer(rekeyed, negotiate_answer(rekeyed, "127.0.0.1", 20000).answer, SrtpMode.REQUIRED, True, keys)
    assert new is not None and new.send_key != keys.send_key


def test_refusals_as_a_pbx_makes_them() -> None:
    savp = SessionDescription.parse(ASTERISK_OFFER)
    plain = SessionDescription.parse(_plain(ASTERISK_OFFER))
    for offer, mode, tls in ((savp, SrtpMode.OFF, True),  # SRTP not enabled
                             (savp, SrtpMode.REQUIRED, False),  # keys offered outside TLS
                             (plain, SrtpMode.REQUIRED, True),  # plain RTP where SRTP is required
                             (plain, SrtpMode.REQUIRED, False)):  # ... and not over TLS either
        with pytest.raises(SrtpNotAcceptable):
            offer_wants(offer, mode, tls)
    only_f8 = SessionDescription.parse(ASTERISK_OFFER.replace(b"AES_CM_128_HMAC_SHA1", b"F8_128_HMAC_SHA1"))
    with pytest.raises(SrtpNotAcceptable, match="no crypto suite in common"):
        offer_wants(only_f8, SrtpMode.OPTIONAL, True)
    assert offer_wants(plain, SrtpMode.OPTIONAL, True) is None
    assert offer_wants(plain, SrtpMode.OFF, False) is None
    best_effort = SessionDescription.parse(ASTERISK_OFFER.replace(b"RTP/SAVP", b"RTP/AVP"))
    assert offer_wants(best_effort, SrtpMode.OFF, True) is None  # answered plainly
    chosen = offer_wants(best_effort, SrtpMode.OPTIONAL, True)
    assert chosen is not None and chosen.tag == 1


def _answer_to(offer: SessionDescription, crypto: str | None, proto: str = "RTP/SAVP") -> SessionDescription:
    answer = negotiate_answer(offer, "127.0.0.2", 30000).answer
    answer.media[0].proto = proto
    if crypto is not None:
        answer.media[0].attributes.insert(0, ("crypto", crypto))
    return answer


def test_reading_the_answer_to_our_offer() -> None:
    offer = make_offer("127.0.0.1", 20000)
    offered = secure_offer(offer, SrtpMode.REQUIRED)
    theirs = new_key()
    line = f"2 AES_CM_128_HMAC_SHA1_32 inline:{base64.b64encode(theirs).decode()}"
    assert answer_agrees(_answer_to(offer, line), offered, SrtpMode.REQUIRED) == SrtpKeys(
        "AES_CM_128_HMAC_SHA1_32", offered[1].key, theirs)
    with pytest.raises(SrtpNotAcceptable, match="plain"):
        answer_agrees(_answer_to(offer, None, "RTP/AVP"), offered, SrtpMode.REQUIRED)
    with pytest.raises(SrtpNotAcceptable, match="not one we offered"):
        answer_agrees(_answer_to(offer, line.replace("2 AES_CM_128_HMAC_SHA1_32", "1 AES_CM_128_HMAC_SHA1_32")),
                      offered, SrtpMode.REQUIRED)
    best_effort = make_offer("127.0.0.1", 20000)
    offered = secure_offer(best_effort, SrtpMode.OPTIONAL)
    assert answer_agrees(_answer_to(best_effort, None, "RTP/AVP"), offered, SrtpMode.OPTIONAL) is None
    assert answer_agrees(_answer_to(make_offer("127.0.0.1", 20000), None, "RTP/AVP"), [], SrtpMode.OFF) is None
    with pytest.raises(SrtpNotAcceptable, match="none was offered"):  # never plain where SRTP is required
        answer_agrees(_answer_to(make_offer("127.0.0.1", 20000), None, "RTP/AVP"), [], SrtpMode.REQUIRED)


def test_an_invite_on_a_trunk_that_requires_srtp_comes_over_tls() -> None:
    check_transport(SrtpMode.REQUIRED, True)
    check_transport(SrtpMode.OPTIONAL, False)
    check_transport(SrtpMode.OFF, False)
    with pytest.raises(SrtpNotAcceptable, match="did not come over TLS"):
        check_transport(SrtpMode.REQUIRED, False)
