"""A node's number plan (``--number``, ``--number-plan``): an application that dials ``+E.164`` numbers, as
Telnyx's examples do, runs unchanged against a node without a SIP trunk."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import telnyx

from tests.support.node import free_port
from tests.support.process import ROOT, serve
from tests.support.receiver import WebhookReceiver
from tests.support.tenant import NodeAt, Tenant


def test_dialled_numbers_ring_the_far_ends_of_the_plan(tmp_path: Path, receiver: WebhookReceiver) -> None:
    plan = tmp_path / "numbers.toml"
    plan.write_text('[numbers]\n"+1 555 000 0101" = "virtual:desk;tone=900"\n')
    port = free_port()
    with serve(tmp_path, port, "--sip-port", "0", "--number", "+15550000100=virtual:agent1;tone=700",
               "--number", "+15550000102=virtual:vm;voicemail;say=Hi%2C%20you%20have%20reached%20Sam%20Smith."
               "%20Please%20leave%20your%20name%20and%20number%20after%20the%20tone.",
               "--number-plan", str(plan)):
        key = (tmp_path / "initial-api-key").read_text().strip()
        node = NodeAt(port)
        client = telnyx.Telnyx(api_key=key, base_url=node.base_url, max_retries=0)
        app = client.call_control_applications.create(application_name="numbers",
                                                      webhook_event_url=receiver.url("/numbers"))
        assert app.data is not None and app.data.id
        tenant = Tenant(client, node, receiver, key, "/numbers", app.data.id)  # type: ignore[arg-type]
        agent = client.calls.dial(connection_id=app.data.id, from_="+15550001111", to="+15550000100")
        desk = client.calls.dial(connection_id=app.data.id, from_="+15550001111", to="+15550000101")
        assert agent.data is not None and desk.data is not None
        for cid, number in ((agent.data.call_control_id, "+15550000100"), (desk.data.call_control_id, "+15550000101")):
            answered = tenant.event("call.answered", cid)
            assert answered.payload["to"] == number  # the number the application dialled, as on Telnyx
        phones = {p["call_control_id"]: p for p in tenant.virtual_phones()}
        assert phones[agent.data.call_control_id]["name"] == "agent1"
        assert phones[desk.data.call_control_id]["name"] == "desk"
        try:
            client.calls.dial(connection_id=app.data.id, from_="+15550001111", to="+15550009999")
            raise AssertionError("an unplanned number was dialled")
        except telnyx.UnprocessableEntityError as exc:
            assert exc.body["errors"][0]["code"] == "90108"  # type: ignore[index]
        # a transfer rings a number of the plan as a dial does, and keeps the number as the new leg's to
        client.calls.actions.transfer(desk.data.call_control_id, to="+15550000100")
        leg = tenant.event("call.initiated", None, to="+15550000100", state="bridging",
                           direction="outgoing", call_session_id=desk.data.call_session_id)
        tenant.event("call.bridged", leg.payload["call_control_id"])
        phones = {p["call_control_id"]: p for p in tenant.virtual_phones()}
        assert phones[leg.payload["call_control_id"]]["name"] == "agent1"
        # a number planned as a voicemail answers as one: its spoken greeting is a machine, its beep is found
        vm = client.calls.dial(connection_id=app.data.id, from_="+15550001111", to="+15550000102",
                               answering_machine_detection="detect_beep")
        assert vm.data is not None
        detected = tenant.event("call.machine.detection.ended", vm.data.call_control_id, timeout=15)
        assert detected.payload["result"] == "machine"
        beep = tenant.event("call.machine.greeting.ended", vm.data.call_control_id, timeout=20)
        assert beep.payload["result"] == "beep_detected"


def test_a_plan_the_node_cannot_follow_stops_it_at_once(tmp_path: Path) -> None:
    started = subprocess.run(
        [sys.executable, "-m", "callroom.cli", "--data-dir", str(tmp_path), "serve", "--port", str(free_port()),
         "--sip-port", "-1", "--number", "+15550000100=virtual:agent1;tonne=700"],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )
    assert started.returncode == 1
    assert started.stderr.strip().splitlines() == [started.stderr.strip()], started.stderr  # one line
    assert started.stderr.startswith("callroom serve: number plan: +15550000100:"), started.stderr
    assert "listening" not in started.stdout
    no_sip = subprocess.run(
        [sys.executable, "-m", "callroom.cli", "--data-dir", str(tmp_path), "serve", "--port", str(free_port()),
         "--sip-port", "-1", "--number", "+15550000100=sip:desk@127.0.0.1:5099"],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )
    assert no_sip.returncode == 1 and "SIP is off" in no_sip.stderr, no_sip.stderr
