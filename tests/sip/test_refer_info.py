"""``send_sip_info`` and ``refer`` on SIP legs, with SIPp as the far end: the INFO arrives as sent; a REFER
is accepted and its NOTIFYs become ``call.refer.started`` and ``call.refer.completed`` (or ``failed``)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import telnyx

from tests.sip.scenarios import info_uas, refer_uas
from tests.sip.test_node_sip import Sipp
from tests.support.node import free_port
from tests.support.tenant import Tenant

pytestmark = pytest.mark.sip


def _answered_sipp(tenant: Tenant, tmp_path: Path, text: str) -> tuple[Sipp, str]:
    scenario = tmp_path / "uas.xml"
    scenario.write_text(text)
    uas = Sipp(["-sf", str(scenario), "-m", "1", "-mp", str(free_port() & ~1)], tmp_path)
    time.sleep(0.3)
    resp = tenant.client.calls.dial(connection_id=tenant.connection_id, from_="+15550001111",
                                    to=f"sip:bob@127.0.0.1:{uas.port}")
    assert resp.data is not None
    cid = resp.data.call_control_id
    tenant.event("call.answered", cid)
    return uas, cid


def test_send_sip_info_reaches_the_far_end(tenant: Tenant, tmp_path: Path) -> None:
    uas, cid = _answered_sipp(tenant, tmp_path, info_uas("application/dtmf-relay", "Signal=5"))
    resp = tenant.client.calls.actions.send_sip_info(cid, content_type="application/dtmf-relay",
                                                     body="Signal=5\r\nDuration=160\r\n")
    assert resp.data is not None and resp.data.result == "ok"
    time.sleep(0.5)
    tenant.client.calls.actions.hangup(cid)
    code, output = uas.wait()
    assert code == 0, output


def test_refer_is_followed_to_its_completion(tenant: Tenant, tmp_path: Path) -> None:
    uas, cid = _answered_sipp(tenant, tmp_path, refer_uas(r"^ *<sip:carol@example.test\?X-Ticket=4711>$",
                                                          "SIP/2.0 200 OK"))
    tenant.client.calls.actions.refer(cid, sip_address="sip:carol@example.test",
                                      custom_headers=[{"name": "X-Ticket", "value": "4711"}])
    started = tenant.event("call.refer.started", cid)
    assert started.payload["to"] == f"sip:bob@127.0.0.1:{uas.port}"
    completed = tenant.event("call.refer.completed", cid)
    assert completed.payload["sip_notify_response"] == 200
    tenant.client.calls.actions.hangup(cid)
    code, output = uas.wait()
    assert code == 0, output
    assert tenant.events(cid).count("call.refer.started") == 1


def test_a_refer_whose_target_is_busy_fails(tenant: Tenant, tmp_path: Path) -> None:
    uas, cid = _answered_sipp(tenant, tmp_path, refer_uas("^ *<sip:dave@example.test>$", "SIP/2.0 486 Busy Here"))
    tenant.client.calls.actions.refer(cid, sip_address="sip:dave@example.test")
    tenant.event("call.refer.started", cid)
    assert tenant.event("call.refer.failed", cid).payload["sip_notify_response"] == 486
    assert "call.refer.completed" not in tenant.events(cid)
    tenant.client.calls.actions.hangup(cid)
    code, output = uas.wait()
    assert code == 0, output


def test_refer_and_info_need_a_sip_leg(tenant: Tenant) -> None:
    virtual = tenant.dial("not-sip")
    with pytest.raises(telnyx.UnprocessableEntityError) as refer:
        tenant.client.calls.actions.refer(virtual, sip_address="sip:carol@example.test")
    assert refer.value.body["errors"][0]["code"] == "90107"  # type: ignore[index]
    with pytest.raises(telnyx.UnprocessableEntityError) as info:
        tenant.client.calls.actions.send_sip_info(virtual, content_type="text/plain", body="hi")
    assert info.value.body["errors"][0]["code"] == "90107"  # type: ignore[index]
    with pytest.raises(telnyx.UnprocessableEntityError) as bad_type:
        tenant.client.calls.actions.send_sip_info(virtual, content_type="text plain", body="hi")
    assert bad_type.value.body["errors"][0]["source"]["pointer"] == "/content_type"  # type: ignore[index]
