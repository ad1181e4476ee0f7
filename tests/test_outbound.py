"""The address policy for webhook and media URLs (callroom/outbound.py)."""

from __future__ import annotations

import asyncio
import ipaddress

import pytest

from callroom.errors import AddressRefused
from callroom.outbound import LOOPBACK, UNRESTRICTED, AddressPolicy, internal

REFUSED = [
    "127.0.0.1", "127.255.0.9", "::1",  # loopback
    "169.254.169.254", "fe80::1",  # link-local (a cloud's metadata service)
    "10.0.0.1", "172.16.5.4", "172.31.255.255", "192.168.1.1", "fc00::1", "fd12:3456::1",  # private
    "100.64.0.1",  # shared address space (carrier-grade NAT)
    "0.0.0.0", "::",  # unspecified
    "224.0.0.1", "239.255.255.250", "ff02::1",  # multicast
    "255.255.255.255", "240.0.0.1", "192.0.2.1",  # broadcast, reserved, documentation
    "::ffff:127.0.0.1", "::ffff:10.0.0.1",  # IPv4 in IPv6 clothing
    "64:ff9b::7f00:1", "2002:7f00:1::1",  # loopback behind NAT64 and 6to4
]
PUBLIC = ["8.8.8.8", "1.1.1.1", "2001:4860:4860::8888", "::ffff:8.8.8.8", "172.32.0.1", "100.128.0.1"]


@pytest.mark.parametrize("address", REFUSED)
def test_non_public_addresses_are_refused_unless_allowed(address: str) -> None:
    parsed = ipaddress.ip_address(address)
    assert internal(parsed)
    assert not AddressPolicy().permits(parsed)
    assert AddressPolicy.allowing(["0.0.0.0/0", "::/0"]).permits(parsed)
    assert UNRESTRICTED.permits(parsed)


@pytest.mark.parametrize("address", PUBLIC)
def test_public_addresses_are_permitted(address: str) -> None:
    assert not internal(ipaddress.ip_address(address))
    assert AddressPolicy().permits(ipaddress.ip_address(address))


def test_an_allowed_network_allows_that_network_only() -> None:
    policy = AddressPolicy.allowing(LOOPBACK)
    assert policy.permits(ipaddress.ip_address("127.0.0.1"))
    assert policy.permits(ipaddress.ip_address("::ffff:127.0.0.1"))
    assert policy.permits(ipaddress.ip_address("::1"))
    assert not policy.permits(ipaddress.ip_address("10.0.0.1"))
    assert not policy.permits(ipaddress.ip_address("169.254.169.254"))
    assert not AddressPolicy.allowing(["127.0.0.2"]).permits(ipaddress.ip_address("127.0.0.1"))
    with pytest.raises(ValueError):
        AddressPolicy.allowing(["localhost"])


@pytest.mark.parametrize("url", [
    "http://127.0.0.1:8080/hooks", "https://127.1/", "http://2130706433/", "http://0x7f000001/", "http://[::1]:80/",
    "http://[::ffff:127.0.0.1]/", "http://169.254.169.254/latest/meta-data/", "http://0/", "http://[fe80::1%25eth0]/",
    "http://10.1.2.3/audio.wav",
])
def test_a_url_naming_a_refused_address_literally_is_refused_without_a_lookup(url: str) -> None:
    assert AddressPolicy().refusal_for_url(url) is not None
    assert AddressPolicy.allowing(["0.0.0.0/0", "::/0"]).refusal_for_url(url) is None


@pytest.mark.parametrize("url", ["http://localhost:8080/", "https://example.com/a.wav", "http://8.8.8.8/", "nonsense"])
def test_a_name_or_a_public_address_is_left_to_the_connection(url: str) -> None:
    assert AddressPolicy().refusal_for_url(url) is None  # a name is checked when it is connected to


def test_resolve_checks_what_a_name_resolves_to() -> None:
    with pytest.raises(AddressRefused) as refused:
        asyncio.run(AddressPolicy().resolve("localhost", 80))
    assert refused.value.host == "localhost" and "127.0.0.1" in refused.value.addresses
    assert "127.0.0.1" in asyncio.run(AddressPolicy.allowing(LOOPBACK).resolve("localhost", 80))
    assert asyncio.run(AddressPolicy().resolve("8.8.8.8", 80)) == ["8.8.8.8"]
    with pytest.raises(OSError):
        asyncio.run(AddressPolicy().resolve("name.invalid", 80))


def test_describe_says_whether_loopback_urls_are_allowed() -> None:
    assert "public addresses only" in AddressPolicy().describe()
    assert "loopback URLs allowed" in AddressPolicy.allowing(LOOPBACK).describe()
    assert "loopback" not in AddressPolicy.allowing(["127.0.0.2/32"]).describe()
