"""What people hear, end to end through a node: virtual phones sending tones into bridges, queues
and conferences, and what each phone records. Assertions measure the audio (per-frequency levels),
so they fail if routing, mute, hold or roles are wrong."""

from __future__ import annotations

import time

from tests.media.audio import tone_level
from tests.support.tenant import Tenant

HEARD = 1500.0  # a tone sent at 6,000 peak arrives well above this
SILENT = 150.0


def _settle() -> None:
    time.sleep(0.6)  # topology changes apply at the next 20 ms tick; let fresh audio accumulate


def _levels(tenant: Tenant, cid: str, freqs: dict[str, float]) -> dict[str, float]:
    heard = tenant.heard(cid, 0.4)
    assert len(heard) >= 2400, "the phone should have heard at least 0.3 s"
    return {name: tone_level(heard, f) for name, f in freqs.items()}


def test_bridged_legs_hear_each_other(tenant: Tenant) -> None:
    a = tenant.dial("a", "answer_after=0;tone=500")
    b = tenant.dial("b", "answer_after=0;tone=900")
    _settle()
    assert _levels(tenant, a, {"b": 900})["b"] < SILENT  # parked: hears nothing
    tenant.client.calls.actions.bridge(a, call_control_id_to_bridge_with=b)
    tenant.event("call.bridged", b)
    _settle()
    la = _levels(tenant, a, {"own": 500, "b": 900})
    lb = _levels(tenant, b, {"own": 900, "a": 500})
    assert la["b"] > HEARD and la["own"] < SILENT
    assert lb["a"] > HEARD and lb["own"] < SILENT


def test_conference_mute_hold_monitor_whisper(tenant: Tenant) -> None:
    # A's and B's tones sit where the default hold music has no energy (it is a tonal melody whose
    # notes and harmonics are near 494, 523, 880 Hz...), so C on hold can be checked for them
    freqs = {"A": 1900.0, "B": 2500.0, "C": 500.0, "M": 900.0, "W": 1300.0}
    legs = {n: tenant.dial(n, f"answer_after=0;tone={int(f)}") for n, f in freqs.items()}
    conf = tenant.client.conferences.create(call_control_id=legs["A"], name="audio", comfort_noise=False)
    assert conf.data is not None
    cid = conf.data.id
    for n in ("B", "C"):
        tenant.client.conferences.actions.join(cid, call_control_id=legs[n])
    tenant.client.conferences.actions.join(cid, call_control_id=legs["M"], supervisor_role="monitor")
    tenant.client.conferences.actions.join(
        cid, call_control_id=legs["W"], supervisor_role="whisper", whisper_call_control_ids=[legs["B"]]
    )
    _settle()
    heard = {n: _levels(tenant, legs[n], freqs) for n in freqs}
    for n in ("A", "B", "C"):
        assert heard[n][n] < SILENT, f"{n} hears itself"
        for other in ("A", "B", "C"):
            if other != n:
                assert heard[n][other] > HEARD, f"{n} does not hear {other}"
        assert heard[n]["M"] < SILENT, f"{n} hears the monitor"
    assert heard["B"]["W"] > HEARD and heard["A"]["W"] < SILENT and heard["C"]["W"] < SILENT
    assert all(heard["M"][x] > HEARD for x in ("A", "B", "C"))
    assert heard["M"]["W"] < SILENT  # a whisper reaches only its targets

    tenant.client.conferences.actions.mute(cid, call_control_ids=[legs["A"]])
    _settle()
    assert _levels(tenant, legs["B"], freqs)["A"] < SILENT
    assert _levels(tenant, legs["A"], freqs)["B"] > HEARD  # a muted participant still hears
    tenant.client.conferences.actions.unmute(cid, call_control_ids=[legs["A"]])
    _settle()
    assert _levels(tenant, legs["B"], freqs)["A"] > HEARD

    tenant.client.conferences.actions.hold(cid, call_control_ids=[legs["C"]])
    _settle()
    on_hold = tenant.heard(legs["C"], 0.4)
    assert all(tone_level(on_hold, freqs[n]) < SILENT for n in ("A", "B"))  # hears none of the conference
    assert float(abs(on_hold.astype(float)).mean()) > 100  # but hears hold music
    assert _levels(tenant, legs["A"], freqs)["C"] < SILENT

    tenant.client.conferences.actions.update(cid, call_control_id=legs["W"], supervisor_role="barge")
    _settle()
    assert _levels(tenant, legs["A"], freqs)["W"] > HEARD


def test_queued_caller_hears_hold_music_then_the_agent(tenant: Tenant) -> None:
    caller = tenant.call_in(from_="virtual:caller;tone=700")
    tenant.client.calls.actions.enqueue(caller, queue_name="music")
    _settle()
    waiting = tenant.heard(caller, 0.4)
    assert float(abs(waiting.astype(float)).mean()) > 100
    agent = tenant.dial("agent", "answer_after=0;tone=1100")
    tenant.dequeue(agent, "music")
    tenant.event("call.bridged", caller)
    _settle()
    assert tone_level(tenant.heard(caller, 0.4), 1100) > HEARD
    assert tone_level(tenant.heard(agent, 0.4), 700) > HEARD


def test_inband_dtmf_from_a_phone_is_reported(tenant: Tenant) -> None:
    cid = tenant.call_in()
    time.sleep(0.1)
    tenant.press(cid, "15#")
    digits = [tenant.event("call.dtmf.received", cid, digit=d).payload["digit"] for d in "15#"]
    assert digits == ["1", "5", "#"]
    time.sleep(0.3)
    assert [e for e in tenant.events(cid) if e == "call.dtmf.received"] == ["call.dtmf.received"] * 3


def test_floor_changes_to_the_talker(tenant: Tenant) -> None:
    quiet = tenant.dial("quiet")
    talker = tenant.dial("talker", "answer_after=0;tone=600")
    conf = tenant.client.conferences.create(call_control_id=quiet, name="floor")
    assert conf.data is not None
    tenant.client.conferences.actions.join(conf.data.id, call_control_id=talker)
    ev = tenant.event("conference.floor.changed", conference_id=conf.data.id)
    assert ev.payload["call_control_id"] == talker
