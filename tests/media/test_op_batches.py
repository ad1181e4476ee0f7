"""Instructions applied per tick: conference mixes superseded by a later one are left out only where that
changes nothing the engine ends with."""

from __future__ import annotations

import random

from callroom.endpoints.media_process import _merged_ops
from callroom.media.engine import MediaEngine
from callroom.media.op_batches import without_superseded_mixes
from callroom.media.virtual_audio import VirtualAudioLeg
from callroom.model import media as m
from callroom.model.messages import AddVirtualLeg, Instructions, ToMedia
from tests.media.test_wiring import LEGS, edges, random_mix


def mix(conf: str, *legs: str, beep: str | None = None) -> m.ConferenceMix:
    return m.ConferenceMix(conf, tuple(m.ConferenceMember(c, muted=False, on_hold=False, supervisor_role="none")
                                       for c in legs), beep=beep)


def test_only_the_last_of_a_conference_s_mixes_is_left() -> None:
    a, b, c = mix("c1", "x", "y"), mix("c1", "x", "y"), mix("c1", "x", "y", "z")
    other = mix("c2", "p")
    assert without_superseded_mixes([a, other, b, m.Park("q"), c]) == [other, m.Park("q"), c]


def test_a_mix_stays_if_the_later_one_leaves_out_one_of_its_legs() -> None:
    a, b = mix("c1", "x", "y"), mix("c1", "x")  # y left: its own instruction usually follows
    assert without_superseded_mixes([a, b, m.Park("y")]) == [a, b, m.Park("y")]


def test_a_mix_stays_if_one_of_its_legs_was_placed_in_between() -> None:
    a, b = mix("c1", "x", "y"), mix("c1", "x")
    for between in (m.Park("y"), m.Release("y"), m.HoldInQueue("y", "q1"), m.Bridge("y", "w"), mix("c2", "y")):
        assert without_superseded_mixes([a, between, b]) == [a, between, b]


def test_a_mix_stays_across_anything_else_and_when_it_beeps() -> None:
    a, b = mix("c1", "x"), mix("c1", "x", "y")
    play = m.Play(job_id="j1", audio=m.AudioSpec(kind="url", value="http://h/a.wav"), conference_id="c1")
    assert without_superseded_mixes([a, play, b]) == [a, play, b]
    assert without_superseded_mixes([a, m.ConferenceClosed("c1"), b]) == [a, m.ConferenceClosed("c1"), b]
    beeping = mix("c1", "x", beep="enter")
    assert without_superseded_mixes([beeping, b]) == [beeping, b]
    assert without_superseded_mixes([a, beeping, b]) == [beeping, b]


def test_the_engine_ends_the_same_with_or_without_the_superseded_mixes() -> None:
    rng = random.Random(7)
    left_out = 0
    for _round in range(200):
        ops: list[m.MediaOp] = []
        for _step in range(12):
            roll = rng.random()
            if roll < 0.3:
                ops.append(random_mix(rng, rng.choice(["c1", "c2"]), LEGS))
            elif roll < 0.55 and ops and isinstance(ops[-1], m.ConferenceMix):  # a mute: same legs, new flags
                last = ops[-1]
                ops.append(m.ConferenceMix(last.conference_id, tuple(
                    m.ConferenceMember(mb.call_control_id, muted=rng.random() < 0.5, on_hold=mb.on_hold,
                                       supervisor_role=mb.supervisor_role, whisper_to=mb.whisper_to)
                    for mb in last.members), comfort_noise=last.comfort_noise))
            elif roll < 0.7:
                ops.append(m.Park(rng.choice(LEGS)))
            elif roll < 0.8:
                x, y = rng.sample(LEGS, 2)
                ops.append(m.Bridge(x, y))
            elif roll < 0.9:
                ops.append(m.HoldInQueue(rng.choice(LEGS), "q1"))
            else:
                ops.append(m.Release(rng.choice(LEGS)))
        engines = []
        for batch in (ops, without_superseded_mixes(ops)):
            engine = MediaEngine()
            for cid in LEGS:
                engine.add_leg(cid, VirtualAudioLeg())
            engine.apply(batch)
            engines.append(engine)
        assert edges(engines[0]) == edges(engines[1])
        assert engines[0].conferences == engines[1].conferences
        left_out += len(ops) - len(without_superseded_mixes(ops))
    assert left_out > 20  # the comparison did cover mixes left out


def test_the_api_side_sends_consecutive_instructions_as_one_message() -> None:
    a, b = mix("c1", "x"), mix("c1", "x")
    messages: list[ToMedia] = [Instructions((a,)), Instructions((m.Park("q"), b)), AddVirtualLeg("v1", (440.0,)),
                               Instructions((a,))]
    assert _merged_ops(messages) == [Instructions((m.Park("q"), b)), AddVirtualLeg("v1", (440.0,)),
                                     Instructions((a,))]
