"""A node connected to a SIP trunk provider on loopback (SIPp): calls to numbers go out through the trunk
with its credentials and our caller ID, and the carrier's calls to our numbers reach their application."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from callroom.model.messages import SipConfig
from tests.media.audio import tone_level
from tests.support.node import NodeThread, free_port
from tests.support.receiver import WebhookReceiver
from tests.support.tenant import Tenant
from tests.trunks.provider import (
    PROVIDER_IP,
    STRANGER_IP,
    USERNAME,
    Sipp,
    gateway_scenario,
    registrar_scenario,
)
from tests.trunks.tenants import add_trunk, api, make_tenant, own_number

pytestmark = pytest.mark.sip


@pytest.fixture(scope="module")
def carrier_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeThread]:
    """A node whose SIP admits only 127.0.0.1 and its trunks' gateways (over UDP, and TCP too)."""
    data_dir: Path = tmp_path_factory.mktemp("carrier-node")
    n = NodeThread(f"sqlite:///{data_dir / 'callroom.db'}", data_dir,
                   sip=SipConfig(port=0, tcp_port=free_port(), allow=("127.0.0.1/32",)))
    yield n
    n.stop()


@pytest.fixture
def customer(carrier_node: NodeThread, receiver: WebhookReceiver) -> Tenant:
    return make_tenant(carrier_node, receiver)


def test_a_call_to_a_number_goes_through_the_trunk_with_credentials_and_caller_id(
        customer: Tenant, tmp_path: Path) -> None:  # fmt: skip
    scenario = tmp_path / "gateway.xml"
    scenario.write_text(gateway_scenario(401, checks={"msg": r"INVITE sip:15557654321@127\.0\.0\.2",
                                                      "From:": r"sip:15550001111@"}))
    gateway = Sipp(["-sf", str(scenario), "-m", "1", "-rtp_echo"], tmp_path)
    add_trunk(customer, gateway.port, number_format="e164")
    resp = customer.client.calls.dial(connection_id=customer.connection_id, from_="+15550001111",
                                      to="+1 555 765 4321")
    assert resp.data is not None
    cid = resp.data.call_control_id
    answered = customer.event("call.answered", cid, timeout=15)
    assert answered.payload["to"] == "+1 555 765 4321"
    talker = customer.dial("talker", "answer_after=0;tone=700")
    customer.client.calls.actions.bridge(cid, call_control_id_to_bridge_with=talker)
    time.sleep(1.2)  # the talker's tone crosses the trunk, and the gateway echoes it back
    assert tone_level(customer.heard(talker, 0.5), 700) > 1000, "the echo should come back across the trunk"
    customer.client.calls.actions.hangup(cid)
    assert customer.event("call.hangup", cid).payload["hangup_source"] == "caller"
    code, output = gateway.wait()
    assert code == 0, output


def test_caller_id_asserted_with_pai_and_rules_enforced(customer: Tenant, tmp_path: Path) -> None:
    scenario = tmp_path / "gateway.xml"
    scenario.write_text(gateway_scenario(401, checks={"msg": r"INVITE sip:\+15557654322@",
                                                      "P-Asserted-Identity:": r"sip:\+15550001112@",
                                                      "From:": f"sip:{USERNAME}@"}))
    gateway = Sipp(["-sf", str(scenario), "-m", "1"], tmp_path)
    add_trunk(customer, gateway.port, caller_id="pai", allowed_from=["+1555000*"])
    refused = api(customer, "POST", "/calls", {"connection_id": customer.connection_id, "from": "+14155550100",
                                               "to": "+15557654322"})
    assert refused.status_code == 422 and refused.json()["errors"][0]["code"] == "90130", refused.text
    resp = customer.client.calls.dial(connection_id=customer.connection_id, from_="+15550001112", to="+15557654322")
    assert resp.data is not None
    cid = resp.data.call_control_id
    customer.event("call.answered", cid, timeout=15)
    customer.client.calls.actions.hangup(cid)
    customer.event("call.hangup", cid)
    code, output = gateway.wait()
    assert code == 0, output


def test_wrong_credentials_end_the_call_with_the_providers_answer(customer: Tenant, tmp_path: Path) -> None:
    scenario = tmp_path / "gateway.xml"
    scenario.write_text(gateway_scenario(401))
    gateway = Sipp(["-sf", str(scenario), "-m", "1"], tmp_path)
    add_trunk(customer, gateway.port, password="not-the-password")
    resp = customer.client.calls.dial(connection_id=customer.connection_id, from_="+15550001111", to="+15557654323")
    assert resp.data is not None
    hangup = customer.event("call.hangup", resp.data.call_control_id, timeout=15)
    assert (hangup.payload["hangup_cause"], hangup.payload["sip_hangup_cause"]) == ("call_rejected", "403")
    gateway.wait()


def test_a_number_without_trunk_or_plan_is_still_90108(customer: Tenant) -> None:
    resp = api(customer, "POST", "/calls", {"connection_id": customer.connection_id, "from": "+15550001111",
                                            "to": "+15557654324"})
    assert resp.status_code == 422 and resp.json()["errors"][0]["code"] == "90108", resp.text


def test_the_carriers_call_to_our_number_reaches_its_application(customer: Tenant, tmp_path: Path) -> None:
    add_trunk(customer, 5060, numbers=["+1 555 000 9901"])
    own_number(customer, "+15550009901")
    caller = Sipp(["-sn", "uac", "-s", "15550009901", f"127.0.0.1:{customer.node.sip_port}", "-m", "1"], tmp_path)
    initiated = customer.receiver.wait_for(
        lambda r: r.path == customer.path and r.event_type == "call.initiated"
        and r.payload.get("direction") == "incoming", timeout=15)[0]
    assert initiated.payload["to"] == "+15550009901"
    cid = initiated.payload["call_control_id"]
    customer.client.calls.actions.answer(cid)
    customer.event("call.answered", cid)
    code, output = caller.wait()
    assert code == 0, output
    assert customer.event("call.hangup", cid).payload["hangup_source"] == "caller"


def test_the_carriers_call_over_tcp_reaches_its_application(customer: Tenant, tmp_path: Path) -> None:
    """SIPp calls one of our numbers over TCP (``-t t1``): the whole call on one connection (INVITE, 100, 180,
    200, ACK, then SIPp's BYE and our 200), the number in ``to``, and SIPp echoing our audio back."""
    add_trunk(customer, 5060, transport="tcp", numbers=["+15550009906"])
    own_number(customer, "+15550009906")
    sip = customer.node.node.config.sip
    assert sip is not None and sip.tcp_port is not None
    caller = Sipp(["-sn", "uac", "-s", "15550009906", f"127.0.0.1:{sip.tcp_port}", "-m", "1", "-t", "t1",
                   "-d", "4000", "-rtp_echo"], tmp_path)
    initiated = customer.receiver.wait_for(
        lambda r: r.path == customer.path and r.event_type == "call.initiated"
        and r.payload.get("to") == "+15550009906", timeout=15)[0]
    assert initiated.payload["direction"] == "incoming"
    cid = initiated.payload["call_control_id"]
    customer.client.calls.actions.answer(cid)
    customer.event("call.answered", cid)
    talker = customer.dial("talker", "answer_after=0;tone=700")
    customer.client.calls.actions.bridge(cid, call_control_id_to_bridge_with=talker)
    time.sleep(1.5)
    assert tone_level(customer.heard(talker, 0.5), 700) > 1000, "the echo should come back over the call"
    code, output = caller.wait()
    assert code == 0, output
    assert customer.event("call.hangup", cid).payload["hangup_source"] == "caller"
    messages = "".join(p.read_text(errors="replace") for p in tmp_path.glob("*_messages.log"))
    for line in ("INVITE sip:15550009906@", "SIP/2.0/TCP", "SIP/2.0 200 OK", "ACK sip:", "BYE sip:"):
        assert line in messages, f"{line!r} not in the call's messages"


def test_calls_to_numbers_not_ours_and_from_strangers_are_refused(customer: Tenant, tmp_path: Path) -> None:
    add_trunk(customer, 5060, numbers=["+15550009902"])  # owned, but assigned to no application
    for number, ip, status in (("15550009902", PROVIDER_IP, "404"), ("15550009999", PROVIDER_IP, "404"),
                               (customer.connection_id, STRANGER_IP, "403")):
        caller = Sipp(["-sn", "uac", "-s", number, f"127.0.0.1:{customer.node.sip_port}", "-m", "1"],
                      tmp_path, ip=ip)
        code, output = caller.wait()
        assert code != 0 and f"{status}" in output, output
    assert customer.events() == []


def registration(tenant: Tenant, trunk_id: str, until: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    """The trunk's registration as /v2/trunks shows it, once ``until`` holds (15 s at most)."""
    deadline = time.monotonic() + 15
    while True:
        state: dict[str, Any] = api(tenant, "GET", f"/trunks/{trunk_id}").json()["data"]["registration"]
        if until(state) or time.monotonic() > deadline:
            return state
        time.sleep(0.1)


def test_register_with_the_provider_and_keep_it_alive(customer: Tenant, tmp_path: Path) -> None:
    scenario = tmp_path / "registrar.xml"
    scenario.write_text(registrar_scenario())
    registrar = Sipp(["-sf", str(scenario), "-m", "1"], tmp_path)
    trunk = add_trunk(customer, registrar.port, register=True, register_expires=60)
    first = registration(customer, trunk["id"], lambda r: r["state"] == "registered")
    assert (first["state"], first["status"]) == ("registered", 200), first
    # Granted 4 s: the refresh goes out before they run out, and is granted for 4 s from then.
    refreshed = registration(customer, trunk["id"], lambda r: r["expires_at"] != first["expires_at"])
    assert refreshed["state"] == "registered" and refreshed["expires_at"] > first["expires_at"], refreshed
    assert api(customer, "DELETE", f"/trunks/{trunk['id']}").status_code == 200  # our contact is removed
    code, output = registrar.wait()
    assert code == 0, output


def test_numbers_through_the_sdk(customer: Tenant) -> None:
    """/v2/phone_numbers as Telnyx's SDK lists, retrieves and updates them (the README's example)."""
    add_trunk(customer, 5060, numbers=["+15550009903", "+15550009904"])
    page = customer.client.phone_numbers.list(filter={"phone_number": "+15550009903"})
    (number,) = page.data
    assert number.phone_number == "+15550009903" and number.id
    updated = customer.client.phone_numbers.update(number.id, connection_id=customer.connection_id)
    assert updated.data is not None and updated.data.connection_id == customer.connection_id
    fetched = customer.client.phone_numbers.retrieve(number.id)
    assert fetched.data is not None and fetched.data.connection_id == customer.connection_id
    mine = customer.client.phone_numbers.list(filter={"connection_id": customer.connection_id})
    assert [n.phone_number for n in mine.data] == ["+15550009903"]


def test_a_tcp_trunk(customer: Tenant, tmp_path: Path) -> None:
    """The same gateway over TCP: one connection carries the challenge, the answer, the call and its BYE."""
    scenario = tmp_path / "gateway.xml"
    scenario.write_text(gateway_scenario(401, checks={"msg": r"INVITE sip:\+15557654325@127\.0\.0\.2:[0-9]+;"
                                                             r"user=phone;transport=tcp SIP/2\.0",
                                                      "Via:": "SIP/2.0/TCP"}))
    gateway = Sipp(["-sf", str(scenario), "-m", "1", "-t", "t1", "-rtp_echo"], tmp_path)
    add_trunk(customer, gateway.port, transport="tcp")
    resp = customer.client.calls.dial(connection_id=customer.connection_id, from_="+15550001111", to="+15557654325")
    assert resp.data is not None
    cid = resp.data.call_control_id
    customer.event("call.answered", cid, timeout=15)
    talker = customer.dial("talker", "answer_after=0;tone=700")
    customer.client.calls.actions.bridge(cid, call_control_id_to_bridge_with=talker)
    time.sleep(1.2)
    assert tone_level(customer.heard(talker, 0.5), 700) > 1000, "the echo should come back across the trunk"
    customer.client.calls.actions.hangup(cid)
    customer.event("call.hangup", cid)
    code, output = gateway.wait()
    assert code == 0, output


def test_a_trunk_sharing_the_phones_network(tenant: Tenant, tmp_path: Path) -> None:
    """A trunk at an address phones may call from too (the session's node: loopback): a call to one of the
    trunk's numbers goes by number, any other as a phone's call (by user), as without the trunk."""
    trunk = add_trunk(tenant, 5060, host="127.0.0.1", numbers=["+15550009905"])
    seen: set[str] = set()
    try:
        own_number(tenant, "+15550009905")
        for user, to in (("15550009905", "+15550009905"), (tenant.connection_id, None)):
            caller = Sipp(["-sn", "uac", "-s", user, f"127.0.0.1:{tenant.node.sip_port}", "-m", "1"], tmp_path,
                          ip="127.0.0.1")
            initiated = tenant.receiver.wait_for(
                lambda r: r.path == tenant.path and r.event_type == "call.initiated"
                and r.payload.get("direction") == "incoming" and r.payload["call_control_id"] not in seen,
                timeout=15)[0]
            seen.add(initiated.payload["call_control_id"])
            assert initiated.payload["to"] == to or (to is None and initiated.payload["to"].startswith("sip:"))
            tenant.client.calls.actions.answer(initiated.payload["call_control_id"])
            code, output = caller.wait()
            assert code == 0, output
    finally:
        assert api(tenant, "DELETE", f"/trunks/{trunk['id']}").status_code == 200
