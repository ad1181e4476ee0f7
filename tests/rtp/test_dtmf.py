from __future__ import annotations

import numpy as np
import pytest

from callroom.errors import RtpParseError
from callroom.media.tones import ToneGenerator, hold_music, sine
from callroom.rtp.dtmf import (
    DIGITS,
    DtmfDetector,
    ReceivedDigit,
    Rfc4733Receiver,
    Rfc4733Sender,
    TelephoneEvent,
    char_to_event,
    dtmf_tone,
    dtmf_tones,
    event_to_char,
)
from callroom.rtp.packet import RtpPacket
from tests.media.audio import speech_like, tone_level

ALL = "0123456789*#ABCD"


# -- RFC 4733 payload ---------------------------------------------------------------------------------


def test_telephone_event_round_trip_and_fields() -> None:
    data = bytes.fromhex("058a0320")
    ev = TelephoneEvent.parse(data)
    assert ev == TelephoneEvent(event=5, end=True, volume=10, duration=800)
    assert bytes(ev) == data
    odd = bytes.fromhex("0b7fffff")  # '#', R bit set, volume 63, max duration
    assert TelephoneEvent.parse(odd).reserved and bytes(TelephoneEvent.parse(odd)) == odd


@pytest.mark.parametrize("data", [b"", b"\x05\x8a\x03", b"\x05\x8a\x03\x20\x00"])
def test_telephone_event_bad_length(data: bytes) -> None:
    with pytest.raises(RtpParseError, match="4 bytes"):
        TelephoneEvent.parse(data)


def test_event_codes() -> None:
    assert [char_to_event(c) for c in "09*#AD"] == [0, 9, 10, 11, 12, 15]
    assert char_to_event("a") == 12 and event_to_char(11) == "#"
    with pytest.raises(ValueError):
        char_to_event("E")
    with pytest.raises(ValueError):
        event_to_char(16)


# -- sender ---------------------------------------------------------------------------------------------


def test_sender_packet_train_for_one_digit() -> None:
    sender = Rfc4733Sender(ssrc=0x1234, next_sequence=65534)
    packets = sender.digit_packets("7", timestamp=8000, duration_ms=100)
    events = [TelephoneEvent.parse(p.payload) for p in packets]
    assert [e.duration for e in events] == [160, 320, 480, 640, 800, 800, 800]
    assert [e.end for e in events] == [False] * 4 + [True] * 3
    assert {e.event for e in events} == {7}
    assert [p.marker for p in packets] == [True] + [False] * 6
    assert {p.timestamp for p in packets} == {8000}
    assert [p.sequence_number for p in packets] == [65534, 65535, 0, 1, 2, 3, 4]
    assert sender.next_sequence == 5


def test_sender_schedule_spacing() -> None:
    sender = Rfc4733Sender(ssrc=1)
    sched = list(sender.schedule("12", timestamp=1000, duration_ms=100, gap_ms=60))
    starts = [(tick, p.timestamp) for tick, p in sched if p.marker]
    assert starts == [(0, 1000), (8, 1000 + 8 * 160)]  # 160 ms -> 8 ticks of 20 ms
    ticks = [tick for tick, _ in sched]
    assert ticks == sorted(ticks) and len(set(ticks)) == len(ticks)


# -- receiver -------------------------------------------------------------------------------------------


def _train(digits: str, duration_ms: int = 100) -> list[RtpPacket]:
    return [p for _, p in Rfc4733Sender(ssrc=99).schedule(digits, timestamp=4000, duration_ms=duration_ms)]


def _receive(packets: list[RtpPacket], rx: Rfc4733Receiver | None = None) -> list[ReceivedDigit]:
    rx = rx or Rfc4733Receiver()
    return [d for p in packets for d in rx.receive(p)]


def test_receiver_reports_each_digit_once() -> None:
    got = _receive(_train(ALL))
    assert "".join(d.digit for d in got) == ALL
    assert all(d.duration == 800 for d in got)


def test_receiver_duplicates_and_redundant_end_packets() -> None:
    packets = _train("55")
    doubled = [p for p in packets for _ in range(2)]  # every packet twice
    assert "".join(d.digit for d in _receive(doubled)) == "55"


def test_receiver_lost_start_packets() -> None:
    packets = [p for p in _train("123") if TelephoneEvent.parse(p.payload).end]  # only end packets
    assert "".join(d.digit for d in _receive(packets)) == "123"


def test_receiver_lost_end_packets_closed_by_next_event_and_by_expiry() -> None:
    packets = [p for p in _train("98") if not TelephoneEvent.parse(p.payload).end]
    rx = Rfc4733Receiver(timeout_samples=800)
    got = _receive(packets, rx)
    assert [d.digit for d in got] == ["9"] and got[0].duration == 640  # closed when '8' started
    last = packets[-1].timestamp
    assert rx.expire(last + 640 + 799) == []
    (eight,) = rx.expire(last + 640 + 800)
    assert eight.digit == "8"
    assert rx.expire(last + 10_000) == []


def test_receiver_ignores_late_packets_and_other_payload_types() -> None:
    packets = _train("46")
    late_first = packets[0]  # a straggler of '4' arriving after '6' was reported
    audio = RtpPacket(payload_type=0, sequence_number=1, timestamp=0, ssrc=99, payload=bytes(160))
    got = _receive([audio, *packets, late_first])
    assert [d.digit for d in got] == ["4", "6"]


def test_receiver_reordered_end_and_update() -> None:
    packets = _train("3")
    reordered = [*packets[:3], packets[4], packets[3], *packets[5:]]
    assert [d.digit for d in _receive(reordered)] == ["3"]


# -- in-band ---------------------------------------------------------------------------------------------


def test_tone_generator_frequencies() -> None:
    x = dtmf_tone("5", ms=200)
    assert tone_level(x, 770) > 6500 and tone_level(x, 1336) > 6500
    assert tone_level(x, 697) < 700 and tone_level(x, 1209) < 700
    assert len(dtmf_tones("12", 100, 50)) == 2 * (800 + 400)


@pytest.mark.parametrize("offset", [0, 37, 159])
def test_detects_all_sixteen_digits(offset: int) -> None:
    signal = np.concatenate([np.zeros(offset, np.int16), dtmf_tones(ALL, on_ms=80, off_ms=60)])
    assert DtmfDetector().process_samples(signal) == ALL


@pytest.mark.parametrize("snr_db", [20.0, 12.0])
def test_detects_in_white_noise(snr_db: float) -> None:
    rng = np.random.default_rng(7)
    clean = dtmf_tones(ALL, on_ms=100, off_ms=80, amplitude=5000)
    signal_power = 5000**2  # two sines of peak 5000: 2 * A**2 / 2
    noise = rng.standard_normal(len(clean)) * np.sqrt(signal_power / 10 ** (snr_db / 10))
    noisy = np.clip(clean + noise, -32768, 32767).astype(np.int16)
    assert DtmfDetector().process_samples(noisy) == ALL


def test_long_press_reports_once_and_repeated_key_twice() -> None:
    det = DtmfDetector()
    assert det.process_samples(dtmf_tone("8", ms=2000)) == "8"
    assert DtmfDetector().process_samples(dtmf_tones("88", on_ms=100, off_ms=60)) == "88"


def test_twist_limits() -> None:
    assert DtmfDetector().process_samples(np.concatenate([dtmf_tone("1", 200, 4000, twist_db=4)])) == "1"
    assert DtmfDetector().process_samples(dtmf_tone("1", 200, 4000, twist_db=-12)) == ""
    assert DtmfDetector().process_samples(dtmf_tone("1", 200, 2000, twist_db=12)) == ""


def test_too_quiet_is_ignored() -> None:
    assert DtmfDetector().process_samples(dtmf_tones("123", amplitude=150)) == ""


def test_no_digits_from_speech_single_tones_noise_or_music() -> None:
    rng = np.random.default_rng(3)
    sources = [speech_like(3.0, seed) for seed in range(8)]
    sources += [sine(f, 500, 10000) for f in (697.0, 770.0, 852.0, 941.0, 1209.0, 1336.0, 1477.0, 1633.0)]
    sources.append(sine(1000, 500, 10000))
    dial = ToneGenerator([350, 440], amplitude=10000)
    sources.append(np.concatenate([dial.next_frame() for _ in range(50)]))
    sources.append((rng.standard_normal(16000) * 4000).astype(np.int16))
    sources.append(hold_music())
    for s in sources:
        assert DtmfDetector().process_samples(s) == ""


def test_speech_does_not_break_digit_detection() -> None:
    speech = speech_like(1.0, 1, peak=2000)
    signal = np.concatenate([speech, dtmf_tones("42", 100, 80), speech])
    assert DtmfDetector().process_samples(signal) == "42"


def test_frame_length_checked() -> None:
    with pytest.raises(ValueError):
        DtmfDetector().classify(np.zeros(80, np.int16))
    assert DIGITS == ALL


def test_classify_many_agrees_with_classify_frame_by_frame() -> None:
    """The engine's batch search must decide exactly as the per-frame detector does."""
    from callroom.rtp.dtmf import DtmfDetector, dtmf_tones

    rng = np.random.default_rng(3)
    frames = []
    for digit in "0123456789*#ABCD":
        tone = dtmf_tones(digit, on_ms=40, off_ms=0)
        frames.append(tone[:160])
        frames.append((tone[:160] + rng.normal(0, 400, 160)).astype(np.int16))
    t = np.arange(160) / 8000
    frames.append((6000 * np.sin(2 * np.pi * 1000 * t)).astype(np.int16))  # one tone: no digit
    frames.append(rng.normal(0, 3000, 160).astype(np.int16))  # noise: no digit
    frames.append(np.zeros(160, dtype=np.int16))
    detector = DtmfDetector()
    batch = detector.classify_many(np.stack(frames))
    assert batch == [detector.classify(f) for f in frames]
    assert batch[0] == "0" and batch[-1] is None and batch[-2] is None and batch[-3] is None
