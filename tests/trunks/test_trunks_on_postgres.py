"""Trunks and numbers on a PostgreSQL node (its transactions run cooperatively): the JSON routes, a call
out through a SIPp gateway, and a call in to a number."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.api.test_postgres_node import pg_node  # noqa: F401  (the fixture)
from tests.media.audio import tone_level
from tests.support.node import NodeThread
from tests.support.receiver import WebhookReceiver
from tests.support.tenant import Tenant
from tests.trunks.provider import Sipp, gateway_scenario
from tests.trunks.tenants import add_trunk, api, make_tenant

pytestmark = [pytest.mark.postgres, pytest.mark.sip]


@pytest.fixture
def pg_customer(pg_node: NodeThread, receiver: WebhookReceiver) -> Iterator[Tenant]:  # noqa: F811
    yield make_tenant(pg_node, receiver)


def test_out_and_in_on_postgres(pg_customer: Tenant, tmp_path: Path) -> None:
    scenario = tmp_path / "gateway.xml"
    scenario.write_text(gateway_scenario(401, checks={"From:": r"sip:\+15550001111@"}))
    gateway = Sipp(["-sf", str(scenario), "-m", "1", "-rtp_echo"], tmp_path)
    add_trunk(pg_customer, gateway.port, numbers=["+15550009951"])
    resp = pg_customer.client.calls.dial(connection_id=pg_customer.connection_id, from_="+15550001111",
                                         to="+15557654351")
    assert resp.data is not None
    cid = resp.data.call_control_id
    pg_customer.event("call.answered", cid, timeout=15)
    talker = pg_customer.dial("talker", "answer_after=0;tone=700")
    pg_customer.client.calls.actions.bridge(cid, call_control_id_to_bridge_with=talker)
    time.sleep(1.2)
    assert tone_level(pg_customer.heard(talker, 0.5), 700) > 1000
    pg_customer.client.calls.actions.hangup(cid)
    code, output = gateway.wait()
    assert code == 0, output
    (number,) = api(pg_customer, "GET", "/phone_numbers").json()["data"]
    patched = api(pg_customer, "PATCH", f"/phone_numbers/{number['id']}",
                  {"connection_id": pg_customer.connection_id})
    assert patched.status_code == 200, patched.text
    caller = Sipp(["-sn", "uac", "-s", "15550009951", f"127.0.0.1:{pg_customer.node.sip_port}", "-m", "1"],
                  tmp_path)
    initiated = pg_customer.receiver.wait_for(
        lambda r: r.path == pg_customer.path and r.event_type == "call.initiated"
        and r.payload.get("direction") == "incoming", timeout=15)[0]
    assert initiated.payload["to"] == "+15550009951"
    pg_customer.client.calls.actions.answer(initiated.payload["call_control_id"])
    code, output = caller.wait()
    assert code == 0, output
