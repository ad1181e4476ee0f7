"""A supervisor's leg on a bridged call (dial's ``supervise_call_control_id`` and ``supervisor_role``) and
``switch_supervisor_role``, through the official SDK against a node with virtual phones: who hears whom is
checked by ear (each phone sends its own tone)."""

from __future__ import annotations

import time

import pytest
import telnyx

from tests.media.audio import tone_level
from tests.support.tenant import Tenant

HEARD = 1500.0
SILENT = 300.0
AGENT, CALLER, SUPERVISOR = 500.0, 700.0, 900.0


def _hears(tenant: Tenant, cid: str, freq: float) -> float:
    return tone_level(tenant.heard(cid, 0.5), freq)


def _bridged_call(tenant: Tenant) -> tuple[str, str]:
    agent = tenant.dial("agent", f"answer_after=0;tone={AGENT:.0f}")
    caller = tenant.call_in(f"virtual:caller;tone={CALLER:.0f}")
    tenant.client.calls.actions.bridge(agent, call_control_id_to_bridge_with=caller)
    tenant.event("call.bridged", agent)
    return agent, caller


def test_a_whispering_supervisor_is_heard_by_the_agent_only(tenant: Tenant) -> None:
    agent, caller = _bridged_call(tenant)
    supervisor = tenant.dial("supervisor", f"answer_after=0;tone={SUPERVISOR:.0f}",
                             supervise_call_control_id=agent, supervisor_role="whisper")
    time.sleep(0.7)
    assert _hears(tenant, agent, SUPERVISOR) > HEARD
    assert _hears(tenant, caller, SUPERVISOR) < SILENT
    heard = tenant.heard(supervisor, 0.5)
    assert tone_level(heard, AGENT) > HEARD and tone_level(heard, CALLER) > HEARD
    assert _hears(tenant, caller, AGENT) > HEARD  # the call itself goes on as it was

    tenant.client.calls.actions.switch_supervisor_role(supervisor, role="barge")
    time.sleep(0.7)
    assert _hears(tenant, caller, SUPERVISOR) > HEARD and _hears(tenant, agent, SUPERVISOR) > HEARD

    tenant.client.calls.actions.switch_supervisor_role(supervisor, role="monitor")
    time.sleep(0.7)
    assert _hears(tenant, caller, SUPERVISOR) < SILENT and _hears(tenant, agent, SUPERVISOR) < SILENT
    assert _hears(tenant, supervisor, CALLER) > HEARD


def test_a_supervisor_barges_by_default_and_the_call_ending_leaves_it_parked(tenant: Tenant) -> None:
    agent, caller = _bridged_call(tenant)
    supervisor = tenant.dial("supervisor", f"answer_after=0;tone={SUPERVISOR:.0f}", supervise_call_control_id=agent)
    time.sleep(0.7)
    assert _hears(tenant, caller, SUPERVISOR) > HEARD
    tenant.client.calls.actions.hangup(caller)
    tenant.event("call.hangup", agent)
    time.sleep(0.8)
    assert _hears(tenant, supervisor, AGENT) < SILENT
    status = tenant.client.calls.retrieve_status(supervisor)
    assert status.data is not None and status.data.is_alive


def test_switching_the_role_of_a_call_that_supervises_nothing_is_refused(tenant: Tenant) -> None:
    plain = tenant.dial("plain")
    with pytest.raises(telnyx.UnprocessableEntityError) as refused:
        tenant.client.calls.actions.switch_supervisor_role(plain, role="barge")
    assert refused.value.body["errors"][0]["code"] == "90107"  # type: ignore[index]
    with pytest.raises(telnyx.UnprocessableEntityError) as unknown:
        tenant.client.calls.dial(connection_id=tenant.connection_id, from_="+15550001111", to="virtual:s",
                                 supervise_call_control_id="v3:nothing-here")
    assert unknown.value.body["errors"][0]["source"]["pointer"] == "/supervise_call_control_id"  # type: ignore[index]
