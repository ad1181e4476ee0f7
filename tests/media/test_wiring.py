"""The engine's mixer edges follow the control plane's placements (``wiring.py``): a conference changed step
by step (joins, leaves, mutes, holds, roles, whispers, a leg hung up) ends with exactly the edges of the
same final state built at once, and the edges are the rules of topology.py."""

from __future__ import annotations

import random

from callroom.media import topology as topo
from callroom.media.engine import MediaEngine
from callroom.media.virtual_audio import VirtualAudioLeg
from callroom.model import media as m

LEGS = [f"leg{i}" for i in range(12)]


def edges(engine: MediaEngine) -> set[topo.Edge]:
    engine.mixer.apply()
    return {(src, dst) for dst in engine.mixer.ports for src in engine.mixer.sources(dst)}


def random_mix(rng: random.Random, conf_id: str, legs: list[str]) -> m.ConferenceMix:
    members = []
    for cid in rng.sample(legs, rng.randint(0, len(legs))):
        role = rng.choice(["none", "none", "none", "barge", "monitor", "whisper"])
        whisper_to = tuple(rng.sample(legs, rng.randint(0, 3))) if role == "whisper" else ()
        members.append(m.ConferenceMember(cid, muted=rng.random() < 0.2, on_hold=rng.random() < 0.15,
                                          supervisor_role=role, whisper_to=whisper_to))
    return m.ConferenceMix(conf_id, tuple(members), comfort_noise=rng.random() < 0.5)


def test_a_conference_changed_step_by_step_has_the_edges_of_its_final_state() -> None:
    rng = random.Random(11)
    for _round in range(20):
        stepped = MediaEngine()
        present = list(LEGS)
        for cid in present:
            stepped.add_leg(cid, VirtualAudioLeg())
        mix = random_mix(rng, "c1", present)
        for _step in range(15):
            if rng.random() < 0.15 and len(present) > 2:  # a leg hangs up
                gone = present.pop(rng.randrange(len(present)))
                stepped.remove_leg(gone)
            elif rng.random() < 0.1 and mix.members:  # a member leaves the conference for the park
                cid = rng.choice(mix.members).call_control_id
                mix = m.ConferenceMix("c1", tuple(mb for mb in mix.members if mb.call_control_id != cid),
                                      mix.comfort_noise)
                stepped.apply([mix, m.Park(cid)])
                continue
            mix = random_mix(rng, "c1", present)
            stepped.apply([mix])
        at_once = MediaEngine()
        for cid in present:
            at_once.add_leg(cid, VirtualAudioLeg())
        at_once.apply([mix])
        assert edges(stepped) == edges(at_once)
        inside = {mb.call_control_id for mb in mix.members} & set(present)
        assert edges(at_once) == topo.conference_edges(mix, inside)


def test_conference_mesh_follows_the_role_rules() -> None:
    mix = m.ConferenceMix("c", (
        m.ConferenceMember("a", muted=False, on_hold=False, supervisor_role="none"),
        m.ConferenceMember("b", muted=True, on_hold=False, supervisor_role="none"),
        m.ConferenceMember("h", muted=False, on_hold=True, supervisor_role="none"),
        m.ConferenceMember("mon", muted=False, on_hold=False, supervisor_role="monitor"),
        m.ConferenceMember("w", muted=False, on_hold=False, supervisor_role="whisper", whisper_to=("a", "h")),
    ), comfort_noise=False)
    mesh = topo.conference_mesh(mix, {"a", "b", "h", "mon", "w"})
    assert mesh.talkers == {"a"}
    assert mesh.listeners == {"a", "b", "mon", "w"}
    assert mesh.edges == {(topo.DEFAULT_HOLD, "h"), ("w", "a")}  # a held target does not hear the whisper
    assert mesh.expand() == {("a", "b"), ("a", "mon"), ("a", "w"), (topo.DEFAULT_HOLD, "h"), ("w", "a")}


def test_flag_changes_mute_and_hold_members_of_the_mix_as_it_stands() -> None:
    rng = random.Random(5)
    for _round in range(20):
        engine = MediaEngine()
        for cid in LEGS:
            engine.add_leg(cid, VirtualAudioLeg())
        mix = random_mix(rng, "c1", LEGS)
        engine.apply([mix])
        for _step in range(6):  # mutes and holds of random members, one change at a time
            if not mix.members:
                break
            named = tuple(mb.call_control_id for mb in rng.sample(mix.members, rng.randint(1, len(mix.members))))
            change = m.MemberFlags("c1", named, muted=rng.choice([None, True, False]),
                                   on_hold=rng.choice([None, True, False]))
            engine.apply([change])
            mix = topo.with_flags(mix, change)
        at_once = MediaEngine()
        for cid in LEGS:
            at_once.add_leg(cid, VirtualAudioLeg())
        at_once.apply([mix])
        assert edges(engine) == edges(at_once)


def test_a_flag_change_holds_nobody_but_those_it_names_and_keeps_a_waiting_conference_held() -> None:
    members = tuple(m.ConferenceMember(c, False, False, "none", hold_audio="url:a") for c in ("a", "b"))
    waiting = m.ConferenceMix("c1", members, beep="enter", started=False)
    unheld = topo.with_flags(waiting, m.MemberFlags("c1", ("a",), muted=True, on_hold=False))
    assert [(mb.muted, mb.on_hold) for mb in unheld.members] == [(True, True), (False, False)]  # not started
    assert unheld.beep is None  # a flag change plays no beep again
    held = topo.with_flags(m.ConferenceMix("c1", members), m.MemberFlags("c1", ("b",), on_hold=True,
                                                                          hold_audio="file:/m/x.wav"))
    assert [(mb.on_hold, mb.hold_audio) for mb in held.members] == [(False, "url:a"), (True, "file:/m/x.wav")]
    kept = topo.with_flags(held, m.MemberFlags("c1", ("b",), on_hold=True))
    assert kept.members[1].hold_audio == "file:/m/x.wav"


def test_a_supervisor_follows_the_bridge_it_supervises() -> None:
    engine = MediaEngine()
    for cid in ("agent", "caller", "other", "sup"):
        engine.add_leg(cid, VirtualAudioLeg())
    engine.apply([m.Bridge("agent", "caller"), m.Supervise("sup", "agent", "whisper")])
    assert edges(engine) == {("agent", "caller"), ("caller", "agent"), ("agent", "sup"), ("caller", "sup"),
                             ("sup", "agent")}
    engine.apply([m.Supervise("sup", "agent", "barge")])
    assert ("sup", "caller") in edges(engine)
    engine.apply([m.Supervise("sup", "agent", "monitor")])
    assert {e for e in edges(engine) if e[0] == "sup"} == set()
    engine.apply([m.Bridge("agent", "other"), m.Park("caller")])  # the agent takes another call
    assert edges(engine) == {("agent", "other"), ("other", "agent"), ("agent", "sup"), ("other", "sup")}
    engine.apply([m.Release("agent")])
    assert edges(engine) == set()
    assert topo.supervisor_edges("sup", "agent", None, "barge", {"sup", "agent"}) == {("agent", "sup"),
                                                                                      ("sup", "agent")}
