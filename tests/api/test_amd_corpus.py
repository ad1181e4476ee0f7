"""Answering-machine detection on real dialled calls: every recording of ``tests/media/amd_corpus.py`` is
uploaded as the account's media, played by a virtual phone (``play=<name>``) that answers a dial with
``answering_machine_detection=detect_beep``, and decided by the node's detector on the call's audio. At least
90 % of the human/machine decisions are right (on the whole set and on its held-out third), and the beeps
are found. The confusion table and the decision times (from the answer's ``occurred_at`` to the verdict's)
are printed (``pytest -s``)."""

from __future__ import annotations

import shutil
import time
from datetime import datetime

import httpx
import pytest

from tests.media.amd_corpus import Decision, Recording, accuracy, recordings, table, wav_bytes
from tests.support.receiver import Received
from tests.support.tenant import Tenant

pytestmark = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")


def _occurred(received: Received) -> float:
    return datetime.fromisoformat(str(received.json["data"]["occurred_at"])).timestamp()


def _upload(tenant: Tenant, recording: Recording) -> None:
    resp = httpx.post(f"{tenant.node.base_url}/media", headers={"Authorization": f"Bearer {tenant.api_key}"},
                      files={"media": (f"{recording.name}.wav", wav_bytes(recording.samples), "audio/wav")},
                      data={"media_name": recording.name}, timeout=30)
    assert resp.status_code < 300, resp.text


def _decision(tenant: Tenant, recording: Recording, cid: str) -> Decision:
    answered = tenant.event("call.answered", cid)
    detected = tenant.event("call.machine.detection.ended", cid, timeout=30)
    beep_at = None
    if recording.spec.beep_hz is not None and detected.payload["result"] == "machine":
        beep = tenant.event("call.machine.greeting.ended", cid, timeout=45)
        beep_at = _occurred(beep) - _occurred(answered) if beep.payload["result"] == "beep_detected" else None
    return Decision(recording.name, recording.truth, recording.held_out, str(detected.payload["result"]),
                    _occurred(detected) - _occurred(answered), recording.spec.beep_hz is not None,
                    beep_at is not None, beep_at)


def _dialled(tenant: Tenant, chosen: tuple[Recording, ...]) -> list[Decision]:
    """Each of ``chosen`` played by a dialled virtual phone, all at once (the longest greeting bounds the
    time, not their sum), dialled 16 a second: under the node's default limit of new calls per second."""
    for recording in chosen:
        _upload(tenant, recording)
    calls = []
    for at in range(0, len(chosen), 16):
        started = time.monotonic()
        for recording in chosen[at : at + 16]:
            calls.append((recording, tenant.dial(recording.name, f"answer_after=0;play={recording.name}",
                                                 wait_answered=False, answering_machine_detection="detect_beep")))
        time.sleep(max(0.0, 1.0 - (time.monotonic() - started)))
    decisions = [_decision(tenant, recording, cid) for recording, cid in calls]
    for _, cid in calls:
        tenant.client.calls.actions.hangup(cid)
    return decisions


def _check(decisions: list[Decision], title: str) -> None:
    print("\n" + table(decisions, title))
    assert accuracy(decisions) >= 0.9
    assert accuracy([d for d in decisions if d.held_out]) >= 0.9
    beeps = [d for d in decisions if d.beep_expected]
    assert sum(d.beep_found for d in beeps) >= 0.9 * len(beeps)


def test_the_detector_decides_nine_in_ten_dialled_held_out_recordings_right(tenant: Tenant) -> None:
    """The held-out third (16 recordings, 8 machines with 7 beeps), in the suite; the whole set is the slow
    test below (the detector alone decides the whole set in ``tests/media/test_amd_corpus.py``)."""
    held_out = tuple(r for r in recordings() if r.held_out)
    _check(_dialled(tenant, held_out), "dialled calls to virtual phones playing the held-out recordings")


@pytest.mark.slow  # every recording: about 35 s (run with `pytest -m slow tests/api/test_amd_corpus.py`)
def test_the_detector_decides_nine_in_ten_dialled_recordings_right(tenant: Tenant) -> None:
    _check(_dialled(tenant, recordings()), "dialled calls to virtual phones playing the recordings (detect_beep)")
