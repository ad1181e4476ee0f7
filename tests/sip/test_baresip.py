"""baresip as a real participant: a SIP softphone calls in, plays a 500 Hz tone from a WAV, records what
it hears, and sits in a conference with a virtual phone sending 900 Hz."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile
from numpy.typing import NDArray

from tests.media.audio import tone_level
from tests.support.baresip import SAFETY_SECONDS, baresip, baresip_config, quit_baresip, segment, tone_wav
from tests.support.tenant import Tenant

pytestmark = pytest.mark.sip

CONFERENCE_TAIL_SECONDS = 3.0  # the conference, after the virtual phone has been heard, before the hang-up


def test_baresip_in_a_conference_hears_and_is_heard(tenant: Tenant, tmp_path: Path) -> None:
    exe = baresip()
    config = tmp_path / "baresip"
    config.mkdir()
    source = config / "tone500.wav"
    tone_wav(source, 500, SAFETY_SECONDS + 5)
    baresip_config(config, source)
    target = f"sip:{tenant.connection_id}@127.0.0.1:{tenant.node.sip_port}"
    proc = subprocess.Popen(
        [exe, "-f", str(config), "-e", f"/dial {target}", "-t", str(SAFETY_SECONDS)],
        cwd=config, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    try:
        try:
            initiated = tenant.receiver.wait_for(
                lambda r: r.path == tenant.path and r.event_type == "call.initiated"
                and r.payload.get("direction") == "incoming", timeout=8)[0]
        except AssertionError:
            proc.kill()
            output = proc.communicate()[0].decode(errors="replace")
            raise AssertionError(f"baresip's call never reached the application:\n{output[-3000:]}") from None
        cid = initiated.payload["call_control_id"]
        assert "baresip@127.0.0.1" in initiated.payload["from"]
        tenant.client.calls.actions.answer(cid)
        tenant.event("call.answered", cid)
        conf = tenant.client.conferences.create(call_control_id=cid, name="with-baresip", comfort_noise=False)
        assert conf.data is not None
        phone = tenant.dial("tone900", "answer_after=0;tone=900")
        tenant.client.conferences.actions.join(conf.data.id, call_control_id=phone)
        time.sleep(2.0)
        heard = tenant.heard(phone, 1.5)
        assert tone_level(heard, 500) > 3000, "the virtual phone should hear baresip's 500 Hz"
        assert tone_level(heard, 900) < 100, "the virtual phone must not hear itself"
        time.sleep(CONFERENCE_TAIL_SECONDS)
        tenant.client.calls.actions.hangup(cid)
        tenant.event("call.hangup", cid, timeout=10)
        out = quit_baresip(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    output = out.decode(errors="replace")
    assert proc.returncode == 0, output[-3000:]

    dumps = sorted(config.glob("dump-*-dec.wav"))
    assert dumps, f"baresip wrote no recording of what it heard:\n{output[-3000:]}"
    recorded, rate = soundfile.read(dumps[-1], dtype="int16")
    assert rate == 8000
    recorded = np.asarray(recorded, dtype=np.int16)
    assert len(recorded) > 4 * 8000, f"baresip's recording is only {len(recorded) / 8000:.1f} s long"
    # The virtual phone joined a couple of seconds into the call; the last seconds are the conference.
    tail = segment(recorded, -2.5, -0.5)
    assert tone_level(tail, 900) > 3000, "baresip should hear the virtual phone's 900 Hz"
    assert tone_level(tail, 500) < 0.02 * tone_level(tail, 900), "baresip must not hear itself"


def _regions(samples: NDArray[np.int16], threshold: float = 300.0, gap_s: float = 0.35) -> list[tuple[int, int]]:
    """(start, end) sample indexes of the stretches with sound, joining gaps shorter than ``gap_s``."""
    frame = 160
    n = len(samples) // frame
    loud = [float(np.sqrt(np.mean(samples[i * frame:(i + 1) * frame].astype(float) ** 2))) > threshold
            for i in range(n)]
    regions: list[tuple[int, int]] = []
    for i, on in enumerate(loud):
        if not on:
            continue
        if regions and (i * frame - regions[-1][1]) <= gap_s * 8000:
            regions[-1] = (regions[-1][0], (i + 1) * frame)
        else:
            regions.append((i * frame, (i + 1) * frame))
    return regions


def test_baresip_hears_speech_and_a_played_file(tenant: Tenant, tmp_path: Path) -> None:
    """What callroom says and plays reaches a real softphone: the speech lasts as long as the synthesis,
    and the played file is found in the recording by correlation."""
    from callroom.audio.tts import synthesize
    from tests.support.media_server import MediaServer

    exe = baresip()
    config = tmp_path / "baresip"
    config.mkdir()
    silence = config / "silence.wav"
    soundfile.write(silence, np.zeros(8000 * (SAFETY_SECONDS + 5), dtype=np.int16), 8000, subtype="PCM_16")
    baresip_config(config, silence)
    rng = np.random.default_rng(7)
    t = np.arange(int(8000 * 1.5)) / 8000
    pattern = sum(np.sin(2 * np.pi * f * t + rng.uniform(0, 6.28)) for f in rng.uniform(400, 2800, 6))
    played = (2500 * pattern).astype(np.int16)
    media = MediaServer()
    url = media.add("/pattern.wav", _wav_bytes(played))
    text = "Welcome to callroom. Please hold while we connect you."
    proc = subprocess.Popen(
        [exe, "-f", str(config), "-e", f"/dial sip:{tenant.connection_id}@127.0.0.1:{tenant.node.sip_port}",
         "-t", str(SAFETY_SECONDS)],
        cwd=config, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    try:
        initiated = tenant.receiver.wait_for(
            lambda r: r.path == tenant.path and r.event_type == "call.initiated"
            and r.payload.get("direction") == "incoming", timeout=8)[0]
        cid = initiated.payload["call_control_id"]
        tenant.client.calls.actions.answer(cid)
        tenant.event("call.answered", cid)
        time.sleep(1.0)
        tenant.client.calls.actions.speak(cid, payload=text, voice="female", language="en-US")
        tenant.event("call.speak.ended", cid, timeout=15)
        time.sleep(1.0)
        tenant.client.calls.actions.start_playback(cid, audio_url=url)
        tenant.event("call.playback.ended", cid, timeout=10)
        time.sleep(0.5)  # the last frames on their way
        tenant.client.calls.actions.hangup(cid)
        tenant.event("call.hangup", cid, timeout=10)
        out = quit_baresip(proc)
    finally:
        media.close()
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, out.decode(errors="replace")[-3000:]
    dumps = sorted(config.glob("dump-*-dec.wav"))
    assert dumps, "baresip wrote no recording of what it heard"
    heard, _rate = soundfile.read(dumps[-1], dtype="int16")
    heard = np.asarray(heard, dtype=np.int16)
    regions = _regions(heard)
    assert len(regions) >= 2, f"expected speech then the file, found {regions}"
    speech_s = (regions[0][1] - regions[0][0]) / 8000
    expected_s = len(synthesize(text, voice="female", language="en-US")) / 8000
    assert abs(speech_s - expected_s) < 0.6, f"speech lasted {speech_s:.2f} s, synthesis {expected_s:.2f} s"
    # Normalised cross-correlation of the played file against what baresip heard.
    x = heard.astype(float)
    y = played.astype(float)
    corr = np.correlate(x, y, mode="valid")
    energy = np.sqrt(np.convolve(x * x, np.ones(len(y)), mode="valid") * float(np.sum(y * y)))
    peak = float(np.max(corr / np.maximum(energy, 1e-9)))
    assert peak > 0.8, f"the played file is not in the recording (correlation {peak:.2f})"


def _wav_bytes(samples: NDArray[np.int16]) -> bytes:
    import io

    buf = io.BytesIO()
    soundfile.write(buf, samples, 8000, format="WAV", subtype="PCM_16")
    return buf.getvalue()
