"""``transfer`` to SIP destinations: SIPp answers (and echoes what it hears) or refuses the new leg."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.media.audio import tone_level
from tests.sip.scenarios import BUSY_UAS
from tests.sip.test_node_sip import Sipp
from tests.support.node import free_port
from tests.support.tenant import Tenant

pytestmark = pytest.mark.sip


def _leg(tenant: Tenant, to: str) -> str:
    leg: str = tenant.event("call.initiated", None, to=to).payload["call_control_id"]
    return leg


def test_transfer_to_sipp_bridges_the_caller_to_it(tenant: Tenant, tmp_path: Path) -> None:
    callee = Sipp(["-sn", "uas", "-m", "1", "-rtp_echo", "-mp", str(free_port() & ~1)], tmp_path)
    time.sleep(0.3)
    caller = tenant.call_in("virtual:caller;tone=700")
    to = f"sip:agent@127.0.0.1:{callee.port}"
    tenant.client.calls.actions.transfer(caller, to=to)
    leg = _leg(tenant, to)
    tenant.event("call.answered", leg)
    tenant.event("call.bridged", caller)
    tenant.event("call.bridged", leg)
    time.sleep(1.2)  # the caller's tone goes to SIPp, which echoes it back
    assert tone_level(tenant.heard(caller, 0.5), 700) > 1000
    tenant.client.calls.actions.hangup(caller)
    assert tenant.event("call.hangup", leg).payload["hangup_cause"] == "normal_clearing"
    code, output = callee.wait()
    assert code == 0, output


def test_a_sip_destination_that_is_busy_leaves_the_caller_as_it_was(tenant: Tenant, tmp_path: Path) -> None:
    scenario = tmp_path / "busy.xml"
    scenario.write_text(BUSY_UAS)
    callee = Sipp(["-sf", str(scenario), "-m", "1"], tmp_path)
    time.sleep(0.3)
    caller = tenant.call_in()
    to = f"sip:agent@127.0.0.1:{callee.port}"
    tenant.client.calls.actions.transfer(caller, to=to)
    hangup = tenant.event("call.hangup", _leg(tenant, to))
    assert (hangup.payload["hangup_cause"], hangup.payload["sip_hangup_cause"]) == ("user_busy", "486")
    status = tenant.client.calls.retrieve_status(caller)
    assert status.data is not None and status.data.is_alive
    callee.wait()
