"""SIP headers through dial and transfer (``custom_headers``, ``sip_headers``: put on the INVITE) and from an
INVITE (``call.initiated``'s ``custom_headers`` and ``sip_headers``), with SIPp checking and sending them."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import telnyx

from tests.sip.scenarios import answering_uas, headers_uac, headers_uac_checking_200
from tests.sip.test_node_sip import Sipp, incoming_call
from tests.support.node import free_port
from tests.support.tenant import Tenant

pytestmark = pytest.mark.sip

CHECKS = {"X-Ticket": "^ *4711$", "User-to-User": "^ *00a1b2;encoding=hex$"}
CUSTOM = [{"name": "X-Ticket", "value": "4711"}]
UUI = [{"name": "User-to-User", "value": "00a1b2;encoding=hex"}]


def _uas(tmp_path: Path, text: str) -> Sipp:
    scenario = tmp_path / "uas.xml"
    scenario.write_text(text)
    uas = Sipp(["-sf", str(scenario), "-m", "1", "-mp", str(free_port() & ~1)], tmp_path)
    time.sleep(0.3)
    return uas


def test_dial_puts_custom_and_sip_headers_on_the_invite(tenant: Tenant, tmp_path: Path) -> None:
    uas = _uas(tmp_path, answering_uas("headers", checks=CHECKS))
    resp = tenant.client.calls.dial(connection_id=tenant.connection_id, from_="+15550001111",
                                    to=f"sip:bob@127.0.0.1:{uas.port}", custom_headers=CUSTOM,  # type: ignore[arg-type]
                                    sip_headers=UUI)  # type: ignore[arg-type]
    assert resp.data is not None
    cid = resp.data.call_control_id
    tenant.event("call.answered", cid)
    tenant.client.calls.actions.hangup(cid)
    code, output = uas.wait()
    assert code == 0, output


def test_transfer_puts_custom_headers_on_the_invite(tenant: Tenant, tmp_path: Path) -> None:
    uas = _uas(tmp_path, answering_uas("headers", checks={"X-Ticket": CHECKS["X-Ticket"]}))
    caller = tenant.call_in()
    to = f"sip:agent@127.0.0.1:{uas.port}"
    tenant.client.calls.actions.transfer(caller, to=to, custom_headers=CUSTOM)  # type: ignore[arg-type]
    leg = tenant.event("call.initiated", None, to=to).payload["call_control_id"]
    tenant.event("call.bridged", leg)
    tenant.client.calls.actions.hangup(caller)
    code, output = uas.wait()
    assert code == 0, output


def test_an_invites_headers_reach_the_application(tenant: Tenant, tmp_path: Path) -> None:
    scenario = tmp_path / "uac.xml"
    scenario.write_text(headers_uac("X-Ticket: 4711\nUser-to-User: 00a1b2;encoding=hex\nX-Queue: gold\n"))
    caller = Sipp(["-sf", str(scenario), "-s", tenant.connection_id, f"127.0.0.1:{tenant.node.sip_port}",
                   "-m", "1", "-mp", str(free_port() & ~1)], tmp_path)
    cid = incoming_call(tenant)
    initiated = tenant.event("call.initiated", cid).payload
    assert initiated["custom_headers"] == [{"name": "X-Ticket", "value": "4711"}, {"name": "X-Queue", "value": "gold"}]
    assert initiated["sip_headers"] == UUI
    tenant.client.calls.actions.answer(cid)
    code, output = caller.wait()
    assert code == 0, output


def test_headers_the_node_writes_cannot_be_set(tenant: Tenant) -> None:
    for bad in ([{"name": "Contact", "value": "<sip:evil@10.0.0.1>"}], [{"name": "X-A", "value": "1\r\nVia: x"}]):
        with pytest.raises(telnyx.UnprocessableEntityError) as refused:
            tenant.client.calls.dial(connection_id=tenant.connection_id, from_="+15550001111", to="sip:bob@127.0.0.1",
                                     custom_headers=bad)  # type: ignore[arg-type]
        assert refused.value.body["errors"][0]["source"]["pointer"].startswith("/custom_headers/0")  # type: ignore[index]


def test_dial_answers_a_digest_challenge_with_sip_auth(tenant: Tenant, tmp_path: Path) -> None:
    uas = _uas(tmp_path, answering_uas("challenge", checks={}, challenge=("carrier", "t0ps3cret")))
    resp = tenant.client.calls.dial(connection_id=tenant.connection_id, from_="+15550001111",
                                    to=f"sip:bob@127.0.0.1:{uas.port}", sip_auth_username="carrier",
                                    sip_auth_password="t0ps3cret")  # fmt: skip
    assert resp.data is not None
    cid = resp.data.call_control_id
    tenant.event("call.answered", cid)
    tenant.client.calls.actions.hangup(cid)
    code, output = uas.wait()
    assert code == 0, output


def test_a_challenge_without_credentials_fails_the_dial(tenant: Tenant, tmp_path: Path) -> None:
    uas = _uas(tmp_path, answering_uas("challenge", checks={}, challenge=("carrier", "t0ps3cret")))
    resp = tenant.client.calls.dial(connection_id=tenant.connection_id, from_="+15550001111",
                                    to=f"sip:bob@127.0.0.1:{uas.port}")
    assert resp.data is not None
    hangup = tenant.event("call.hangup", resp.data.call_control_id)
    assert hangup.payload["sip_hangup_cause"] == "401"
    uas.proc.kill()
    uas.wait()


def test_answer_puts_headers_on_its_200(tenant: Tenant, tmp_path: Path) -> None:
    scenario = tmp_path / "uac.xml"
    scenario.write_text(headers_uac_checking_200({"X-Agent": "^ *desk-7$", "User-to-User": "^ *00ff;encoding=hex$"}))
    caller = Sipp(["-sf", str(scenario), "-s", tenant.connection_id, f"127.0.0.1:{tenant.node.sip_port}",
                   "-m", "1", "-mp", str(free_port() & ~1)], tmp_path)
    cid = incoming_call(tenant)
    tenant.client.calls.actions.answer(cid, custom_headers=[{"name": "X-Agent", "value": "desk-7"}],
                                       sip_headers=[{"name": "User-to-User", "value": "00ff;encoding=hex"}])
    code, output = caller.wait()
    assert code == 0, output


def test_from_display_name_is_the_froms_display_name(tenant: Tenant, tmp_path: Path) -> None:
    uas = _uas(tmp_path, answering_uas("display name", checks={"From": '^ *"Support Line" <sip:15550001111@'}))
    resp = tenant.client.calls.dial(connection_id=tenant.connection_id, from_="+15550001111",
                                    to=f"sip:bob@127.0.0.1:{uas.port}", from_display_name="Support Line")
    assert resp.data is not None
    tenant.event("call.answered", resp.data.call_control_id)
    tenant.client.calls.actions.hangup(resp.data.call_control_id)
    code, output = uas.wait()
    assert code == 0, output


def test_privacy_id_hides_the_caller(tenant: Tenant, tmp_path: Path) -> None:
    uas = _uas(tmp_path, answering_uas("privacy", checks={"From": '^ *"Anonymous" <sip:anonymous@anonymous.invalid>',
                                                          "Privacy": "^ *id$"}))
    resp = tenant.client.calls.dial(connection_id=tenant.connection_id, from_="+15550001111",
                                    to=f"sip:bob@127.0.0.1:{uas.port}", privacy="id")
    assert resp.data is not None
    answered = tenant.event("call.answered", resp.data.call_control_id)
    assert answered.payload["from"] == "+15550001111"  # the application still knows who it is
    tenant.client.calls.actions.hangup(resp.data.call_control_id)
    code, output = uas.wait()
    assert code == 0, output
