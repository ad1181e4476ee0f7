"""Transfer, simultaneous ring and the REFER's course, without a database: what each command reads (in how
many batches), decides and asks of the media plane."""

from __future__ import annotations

from callroom.control import calls, conferences, links, sip_actions, transfer
from callroom.model import media as m
from callroom.model import reads as r
from callroom.model.states import CallState
from tests.control.memory import Memory, new_app, new_call


def _transfer(mem: Memory, cid: str, to: str = "virtual:agent", **options: object) -> str:
    req = transfer.TransferRequest(to=to, **options)  # type: ignore[arg-type]
    leg, effects = mem.run(lambda w: transfer.transfer(w, cid, req))
    assert effects.media[0] == m.Ring(leg.call_control_id, to, "+1555", to, 30)
    return str(leg.call_control_id)


def test_transfer_rings_a_new_leg_and_plays_the_ringback_to_the_call() -> None:
    mem = Memory()
    caller = new_call(mem, direction="incoming", to="+1555")
    leg_id = _transfer(mem, caller.call_control_id)
    assert mem.batches == [(r.CallById(caller.call_control_id),)]
    leg = mem.call(leg_id)
    assert leg.plan == {"transfer_of": caller.call_control_id} and leg.state is CallState.RINGING
    assert leg.call_session_id == caller.call_session_id and leg.from_ == "+1555"
    assert mem.call(caller.call_control_id).plan == {"transfer_to": leg_id}
    assert mem.call(caller.call_control_id).state is CallState.PARKED  # untouched until the leg answers
    assert mem.events(f"call:{leg_id}") == ["call.initiated"]


def test_an_answered_transfer_bridges_and_a_failed_one_leaves_the_call_as_it_was() -> None:
    mem = Memory()
    caller = new_call(mem, direction="incoming", to="+1555")
    leg_id = _transfer(mem, caller.call_control_id)
    _, effects = mem.run(lambda w: calls.remote_answered(w, leg_id))
    assert m.StopPlay((caller.call_control_id,), kinds=(links.RINGBACK,)) in effects.media
    assert m.Bridge(caller.call_control_id, leg_id) in effects.media
    assert (mem.call(caller.call_control_id).bridged_with, mem.call(leg_id).bridged_with) == (
        leg_id, caller.call_control_id)
    assert not mem.call(caller.call_control_id).plan and not mem.call(leg_id).plan

    other = new_call(mem, direction="incoming", to="+1555")
    busy_id = _transfer(mem, other.call_control_id)
    _, effects = mem.run(lambda w: calls.remote_failed(w, busy_id, 486))
    assert effects.media == [m.StopPlay((other.call_control_id,), kinds=(links.RINGBACK,))]
    assert mem.call(other.call_control_id).state is CallState.PARKED and not mem.call(other.call_control_id).plan
    assert mem.call(busy_id).hangup_cause == "user_busy"


def test_a_call_that_ends_takes_its_ringing_transfer_with_it() -> None:
    mem = Memory()
    caller = new_call(mem, direction="incoming", to="+1555")
    leg_id = _transfer(mem, caller.call_control_id)
    _, effects = mem.run(lambda w: calls.remote_hangup(w, caller.call_control_id))
    assert mem.call(leg_id).state is CallState.ENDED and mem.call(leg_id).sip_hangup_cause == "487"
    assert m.Release(leg_id) in effects.media


def test_a_conference_participant_leaves_when_its_transfer_answers() -> None:
    mem = Memory()
    new_app(mem)
    host, member = new_call(mem), new_call(mem, to="+1555")
    mem.run(lambda w: conferences.create(w, conferences.CreateRequest(call_control_id=host.call_control_id,
                                                                      name="room")))
    conf_id = mem.conferences[0].id
    mem.run(lambda w: conferences.join(w, conf_id, member.call_control_id, conferences.JoinOptions()))
    leg_id = _transfer(mem, member.call_control_id)
    assert mem.call(member.call_control_id).state is CallState.CONFERENCED
    mem.run(lambda w: calls.remote_answered(w, leg_id))
    assert mem.call(member.call_control_id).state is CallState.BRIDGED
    assert "conference.participant.left" in mem.events(f"conference:{conf_id}")


def test_the_first_of_a_ring_group_to_answer_cancels_the_others() -> None:
    mem = Memory()
    new_app(mem)
    req = calls.DialRequest("app", "+1", "virtual:a", ring_also=("virtual:b", "virtual:c"))
    first, effects = mem.run(lambda w: calls.dial(w, req))
    rung = [op.call_control_id for op in effects.media if isinstance(op, m.Ring)]
    assert len(rung) == 3 and rung[0] == first.call_control_id
    mem.run(lambda w: calls.remote_answered(w, rung[1]))
    assert [mem.call(c).state for c in rung] == [CallState.ENDED, CallState.PARKED, CallState.ENDED]
    assert {mem.call(c).hangup_cause for c in (rung[0], rung[2])} == {"originator_cancel"}
    assert not mem.call(rung[1]).plan


def test_a_refer_reports_started_once_then_its_end() -> None:
    mem = Memory()
    call = new_call(mem, endpoint="sip:bob@127.0.0.1")
    _, effects = mem.run(lambda w: sip_actions.refer(w, call.call_control_id, sip_address="sip:carol@x",
                                                     headers=(("X-Ticket", "4 7"),), client_state=None))
    assert effects.media == [m.SipRequestInDialog(call.call_control_id, "REFER",
                                                  headers=(("Refer-To", "<sip:carol@x?X-Ticket=4%207>"),))]
    for phase, status in (("accepted", 202), ("notified", 100), ("notified", 486), ("notified", 200)):
        mem.run(lambda w, p=phase, s=status: sip_actions.refer_progress(w, call.call_control_id, p, s))
    assert mem.events(f"call:{call.call_control_id}") == ["call.refer.started", "call.refer.failed"]
    assert not mem.call(call.call_control_id).plan
    virtual = new_call(mem)
    refused = mem.refused(lambda w: sip_actions.refer(w, virtual.call_control_id, sip_address="sip:carol@x",
                                                      headers=(), client_state=None))
    assert refused.items[0].code == "90107"
