"""Call commands and far-end facts without a database."""

from __future__ import annotations

import pytest

from callroom.control import bridges, calls, conferences
from callroom.model import media as m
from callroom.model import reads as r
from callroom.model.effects import CancelTimer, Schedule
from callroom.model.numbers import NumberPlan
from callroom.model.states import CallState
from tests.control.memory import Memory, new_app, new_call


def test_dial_reads_its_application_once_and_rings() -> None:
    mem = Memory()
    new_app(mem)
    call, effects = mem.run(lambda w: calls.dial(w, calls.DialRequest("app", "+1555", "virtual:bob")))
    assert mem.batches == [(r.AppById("app"),)]
    assert call.state is CallState.RINGING and effects.command_result == call.call_control_id
    assert mem.events() == ["call.initiated"] and [t.kind for t in mem.timers] == ["dial_timeout"]
    assert effects.media == [m.Ring(call.call_control_id, "virtual:bob", "+1555", "virtual:bob", 30)]


def test_dial_refusals() -> None:
    mem = Memory()
    assert [i.code for i in mem.refused(lambda w: calls.dial(w, calls.DialRequest("nope", "+1", "virtual:a"))).items
            ] == ["10015"]
    new_app(mem)
    refused = mem.refused(lambda w: calls.dial(w, calls.DialRequest("app", "+1", "+15550001111")))
    assert [(i.code, i.pointer) for i in refused.items] == [("90108", "/to")]
    mem.apps[0].active = False
    assert [i.code for i in mem.refused(lambda w: calls.dial(w, calls.DialRequest("app", "+1", "virtual:a"))).items
            ] == ["10015"]


def test_a_number_rings_where_the_number_plan_says_and_stays_the_calls_to() -> None:
    mem = Memory()
    new_app(mem)
    plan = NumberPlan.of([("+1 555 000 0100", "virtual:agent1;tone=700"), ("+15550000101", "sip:desk@10.0.0.5")])
    call, effects = mem.run(lambda w: calls.dial(w, calls.DialRequest("app", "+15550001111", "+1-555-000-0100")),
                            numbers=plan)
    assert (call.to, call.endpoint) == ("+1-555-000-0100", "virtual:agent1;tone=700")
    assert effects.media == [m.Ring(call.call_control_id, "virtual:agent1;tone=700", "+15550001111",
                                    "+1-555-000-0100", 30)]
    assert [h.payload["to"] for h in mem.webhooks if h.event_type == "call.initiated"] == ["+1-555-000-0100"]
    unplanned = mem.refused(lambda w: calls.dial(w, calls.DialRequest("app", "+1", "+15550009999")), numbers=plan)
    assert [(i.code, i.pointer) for i in unplanned.items] == [("90108", "/to")]
    assert "number plan" in unplanned.items[0].detail
    no_sip = mem.refused(lambda w: calls.dial(w, calls.DialRequest("app", "+1", "+15550000101")), numbers=plan)
    assert "planned as sip:desk@10.0.0.5" in no_sip.items[0].detail  # this node has no SIP plane
    _, effects = mem.run(lambda w: calls.dial(w, calls.DialRequest("app", "+1", "+15550000101")), numbers=plan,
                         dialable=("virtual:", "sip:"))
    assert [op.endpoint for op in effects.media if isinstance(op, m.Ring)] == ["sip:desk@10.0.0.5"]


def test_a_dial_into_no_conference_is_refused_at_once() -> None:
    mem = Memory()
    new_app(mem)
    refused = mem.refused(lambda w: calls.dial(w, calls.DialRequest("app", "+1", "virtual:a",
                                                                    conference_config={"mute": True})))
    assert [(i.code, i.pointer) for i in refused.items] == [("10015", "/conference_config")]
    assert mem.calls == [] and mem.webhooks == []


def test_a_number_plan_refuses_what_is_not_one() -> None:
    for pairs in ([("5550000100", "virtual:a")], [("+15550000100", "tel:+1")],
                  [("+15550000100", "virtual:a"), ("+1 555 000 0100", "virtual:b")]):
        with pytest.raises(ValueError):
            NumberPlan.of(pairs)
    assert len(NumberPlan.parse(["+15550000100=virtual:a"])) == 1
    with pytest.raises(ValueError):
        NumberPlan.parse(["+15550000100"])


def test_answer_only_a_ringing_incoming_call() -> None:
    mem = Memory()
    new_app(mem)
    incoming, _ = mem.run(lambda w: calls.incoming(w, connection_id="app", from_="a", to="b", endpoint="virtual:a"),
                          ring_timeout_secs=120)
    assert sorted(t.kind for t in mem.timers) == ["ring_timeout"]
    _, effects = mem.run(lambda w: calls.answer(w, incoming.call_control_id, client_state=None, webhook_url=None,
                                                webhook_url_method=None))
    assert mem.call(incoming.call_control_id).state is CallState.PARKED
    assert [t.kind for t in mem.timers] == ["time_limit"]  # the ring timeout went
    assert effects.media == [m.Answer(incoming.call_control_id)]
    refused = mem.refused(lambda w: calls.answer(w, incoming.call_control_id, client_state=None, webhook_url=None,
                                                 webhook_url_method=None))
    assert [i.code for i in refused.items] == ["90107"]


def test_bridge_refusals_and_a_bridge() -> None:
    mem = Memory()
    a, b = new_call(mem), new_call(mem)
    in_conf = new_call(mem, "conferenced")
    self_bridge = mem.refused(lambda w: bridges.bridge(w, a.call_control_id, a.call_control_id, client_state=None,
                                                       park_after_unbridge=None, hold_after_unbridge=None,
                                                       prevent_double_bridge=False))  # fmt: skip
    assert [i.code for i in self_bridge.items] == ["10015"]
    conferenced = mem.refused(lambda w: bridges.bridge(w, a.call_control_id, in_conf.call_control_id,
                                                       client_state=None, park_after_unbridge=None,
                                                       hold_after_unbridge=None, prevent_double_bridge=False))
    assert [i.code for i in conferenced.items] == ["90104"]
    _, effects = mem.run(lambda w: bridges.bridge(w, a.call_control_id, b.call_control_id, client_state=None,
                                                  park_after_unbridge="self", hold_after_unbridge=None,
                                                  prevent_double_bridge=False))  # fmt: skip
    assert len(mem.batches) == 1
    assert (mem.call(a.call_control_id).bridged_with, mem.call(b.call_control_id).bridged_with) == (
        b.call_control_id, a.call_control_id)
    assert effects.media == [m.Bridge(a.call_control_id, b.call_control_id)]
    # b hangs up: a asked to be parked after the bridge
    mem.run(lambda w: calls.remote_hangup(w, b.call_control_id, "200"))
    assert mem.call(a.call_control_id).state is CallState.PARKED and mem.call(b.call_control_id).state is (
        CallState.ENDED)


def test_a_participant_hanging_up_leaves_and_the_last_one_ends_the_conference() -> None:
    mem = Memory()
    host = new_call(mem).call_control_id
    conf, _ = mem.run(lambda w: conferences.create(w, conferences.CreateRequest(call_control_id=host, name="c")))
    mem.webhooks.clear()
    _, effects = mem.run(lambda w: calls.hangup(w, host, client_state=None))
    assert mem.events() == ["conference.participant.left", "conference.ended", "call.hangup"]
    assert m.ConferenceClosed(conf.id) in effects.media and m.Release(host) in effects.media


def test_far_end_facts_about_unknown_or_ended_legs_change_nothing() -> None:
    mem = Memory()
    mem.run(lambda w: calls.remote_hangup(w, "v3:nobody"))
    ended = new_call(mem, "ended")
    mem.run(lambda w: calls.remote_answered(w, ended.call_control_id))
    mem.run(lambda w: calls.dtmf_received(w, ended.call_control_id, "5"))
    assert mem.webhooks == []


def test_the_timers_a_command_cancels_for_one_call_go_in_one_write() -> None:
    """Answering cancels the dial timeout and the first-command and ring timeouts: one delete, not three;
    a hangup's cancels are one too."""
    mem = Memory()
    new_app(mem)
    call, _ = mem.run(lambda w: calls.dial(w, calls.DialRequest("app", "+1555", "virtual:bob")))
    cid = call.call_control_id
    _, answered = mem.run(lambda w: calls.remote_answered(w, cid))
    cancels = [w for w in answered.writes if isinstance(w, CancelTimer)]
    assert len(cancels) == 1 and "dial_timeout" in cancels[0].kinds
    assert [w.timer.kind for w in answered.writes if isinstance(w, Schedule)] == ["time_limit"]
    assert [t.kind for t in mem.timers] == ["time_limit"]
    _, hung_up = mem.run(lambda w: calls.hangup(w, cid, client_state=None))
    assert len([w for w in hung_up.writes if isinstance(w, CancelTimer)]) == 1 and mem.timers == []
