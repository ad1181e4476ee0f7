"""Trunks as written by operators, and the routing decisions the control plane takes with them."""

from __future__ import annotations

from pathlib import Path

import pytest

from callroom.model.trunks import (
    PhoneNumber,
    Trunk,
    TrunkDirectory,
    TrunkSettings,
    parse_trunk_endpoint,
    trunk_endpoint,
)


def test_a_trunk_in_one_line() -> None:
    spec = TrunkSettings.parse("carrier=sip:acct7:pw@gw.example.net:5080;register=300;caller_id=pai;"
                               "from=+1555*,+14155550100;prefix=99;format=e164;numbers=+15550001000,+1 555 000 1001")
    trunk = spec.trunk("t1", "a1", 0.0)
    assert (trunk.host, trunk.port, trunk.username, trunk.password) == ("gw.example.net", 5080, "acct7", "pw")
    assert trunk.register and trunk.register_expires == 300 and trunk.caller_id_header == "pai"
    assert spec.numbers == ("+15550001000", "+15550001001")
    assert trunk.dial_user("+15557654321") == "9915557654321"
    assert trunk.number_of_user("9915550001000") == "+15550001000"
    assert trunk.number_of_user("+15550001000") == "+15550001000"
    assert trunk.caller_allowed("+15550009999") and trunk.caller_allowed("+14155550100")
    assert not trunk.caller_allowed("+14155550101")


def test_a_trunk_from_a_table() -> None:
    spec = TrunkSettings.of("tls-carrier", {"host": "10.0.0.5", "transport": "tls", "codecs": ["PCMA"],
                                            "inbound_networks": ["10.0.0.0/24"]})
    trunk = spec.trunk("t2", "a1", 0.0)
    assert trunk.port == 5061 and trunk.codecs == ["PCMA"] and trunk.username is None
    assert trunk.dial_user("+15557654321") == "+15557654321"


@pytest.mark.parametrize("table, why", [
    ({"host": "gw", "transport": "sctp"}, "transport"),
    ({"host": "gw", "username": "u"}, "username and a password"),
    ({"host": "gw", "register": True}, "register needs"),
    ({"host": "gw", "allowed_from": ["555"]}, "neither an E.164"),
    ({"host": "gw", "codecs": ["opus"]}, "codecs"),
    ({"host": "gw", "colour": "blue"}, "unknown setting"),
    ({"host": "gw", "numbers": ["12"]}, "not an E.164"),
    ({"host": "gw", "inbound_networks": ["10.0.0.300/8"]}, "10.0.0.300"),
    ({"host": "gw", "srtp": "required"}, "srtp needs transport tls"),
    ({"host": "gw", "transport": "tcp", "srtp": "optional"}, "srtp needs transport tls"),
    ({"host": "gw", "transport": "tls", "srtp": "yes"}, "srtp must be one of off, optional, required"),
    ({"host": "gw", "transport": "tls", "srtp": True}, "srtp must be a str"),
])  # fmt: skip
def test_wrong_settings_are_named(table: dict[str, object], why: str) -> None:
    with pytest.raises(ValueError, match=why):
        TrunkSettings.of("t", table).trunk("t", "a", 0.0)


def test_srtp_on_a_tls_trunk() -> None:
    assert TrunkSettings.of("t", {"host": "gw"}).trunk("t", "a", 0.0).srtp == "off"
    line = TrunkSettings.parse("secure=sip:acct7:pw@gw.example.net;transport=tls;srtp=required")
    trunk = line.trunk("t", "a", 0.0)
    assert (trunk.transport, trunk.port, trunk.srtp) == ("tls", 5061, "required")


def test_the_application_chooses_its_trunk() -> None:
    mine, other, second = (Trunk("t1", "a1", "one", "gw1"), Trunk("t9", "a2", "theirs", "gw9"),
                           Trunk("t2", "a1", "two", "gw2"))
    number = PhoneNumber("n1", "a1", "+15550001000", "t1", "app1", 0.0, 0.0)
    directory = TrunkDirectory.of([mine, other], [number])
    assert directory.outbound_trunk("a1", {}) is mine  # the account's only trunk
    assert directory.outbound_trunk("a1", {"outbound_voice_profile_id": "t9"}) is None  # not its own
    assert TrunkDirectory.of([mine, second], []).outbound_trunk("a1", {}) is None  # which one? none
    assert TrunkDirectory.of([mine, second], []).outbound_trunk("a1", {"outbound_voice_profile_id": "t2"}) is second
    assert directory.number("+1 (555) 000-1000") is number
    assert parse_trunk_endpoint(trunk_endpoint(mine, "+15557654321")) == ("t1", "+15557654321")


def test_the_readmes_trunk_files_load(tmp_path: Path) -> None:
    """The TOML of the README's worked examples (with SRTP and without) is read as written there."""
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    blocks = [b.split("```", 1)[0] for b in readme.split("```toml\n")[1:]]
    trunk_blocks = [b for b in blocks if b.startswith("[trunks.")]
    assert len(trunk_blocks) >= 2
    loaded = {}
    for i, block in enumerate(trunk_blocks):
        path = tmp_path / f"trunks{i}.toml"
        path.write_text(block)
        for spec in TrunkSettings.load(path):
            loaded[spec.name] = spec.trunk("t", "a", 0.0)
    secure = loaded["secure"]
    assert (secure.transport, secure.port, secure.srtp) == ("tls", 5061, "required")
    assert loaded["carrier"].srtp == "off"
