"""The media stream's pure parts: Telnyx's WebSocket messages round-trip and are parsed strictly, and a
stream's tap queues a bounded amount for a slow server, plays back what a server sends with its marks,
and clears on ``clear`` (no sockets: the adapter's part is in tests/api/test_streaming.py)."""

from __future__ import annotations

import numpy as np
import pytest

from callroom.errors import StreamMessageError
from callroom.media import stream_wire as w
from callroom.media.streams import PLAYOUT_LIMIT_SAMPLES, QUEUE_FRAMES, StreamTap, decode, encode
from callroom.media.tones import sine
from callroom.model import media as m
from callroom.rtp.g711 import ulaw_encode

MESSAGES: list[w.StreamMessage] = [
    w.Connected(),
    w.Connected(auth_token="secret"),
    w.Start(1, "s-1", "v3:abc", "sess", "+1555", "+1666", w.MediaFormat("PCMU", 8000), "c3RhdGU=", {"a": "b"}),
    w.Media(b"\x00\xff" * 80, "inbound", 3, 40, 5, "s-1"),
    w.Media(b"\x7f" * 160),
    w.Dtmf("#", 6, "s-1"),
    w.Mark("m-1", 7, "s-1"),
    w.Mark("from-server"),
    w.Clear(),
    w.Error(100002, "unknown_error", "bad", 8, "s-1"),
    w.Stop("v3:abc", 9, "s-1"),
]


@pytest.mark.parametrize("message", MESSAGES, ids=lambda msg: type(msg).__name__)
def test_every_message_round_trips(message: w.StreamMessage) -> None:
    assert w.parse(message.to_json()) == message


@pytest.mark.parametrize("text", [
    "not json", "[1]", '{"event": "bogus"}', '{"event": "media"}', '{"event": "media", "media": {"payload": "%%"}}',
    '{"event": "mark", "mark": {}}', '{"event": "media", "sequence_number": "x", "media": {"payload": ""}}',
    '{"event": "start", "stream_id": "s", "start": {"call_control_id": "c", "media_format": []}}',
])  # fmt: skip
def test_malformed_messages_are_refused_by_name(text: str) -> None:
    with pytest.raises(StreamMessageError):
        w.parse(text)


def _op(**kw: object) -> m.StartStream:
    return m.StartStream("s-1", "v3:abc", "ws://example.com/", **kw)  # type: ignore[arg-type]


def _open(op: m.StartStream) -> StreamTap:
    tap = StreamTap(op)
    tap.state = "connecting"
    tap.connected()
    assert [type(x) for x in tap.take()] == [w.Connected, w.Start]
    return tap


FRAME = sine(500, 20, amplitude=8000)


def test_a_slow_server_loses_the_oldest_audio_and_the_loss_is_counted() -> None:
    tap = _open(_op(track="both_tracks"))
    for _ in range(QUEUE_FRAMES):  # two tracks: twice as many messages as the queue holds
        tap.capture(FRAME, FRAME)
    tap.digit("5")
    queued = tap.take()
    media = [x for x in queued if isinstance(x, w.Media)]
    assert len(media) == QUEUE_FRAMES and tap.dropped == QUEUE_FRAMES
    assert [x.digit for x in queued if isinstance(x, w.Dtmf)] == ["5"]  # never dropped
    assert media[-1].chunk == QUEUE_FRAMES and media[0].chunk == QUEUE_FRAMES // 2 + 1  # the newest kept


def test_tracks_codecs_and_timestamps() -> None:
    tap = _open(_op(track="outbound_track", codec="L16"))
    tap.capture(None, FRAME)
    tap.capture(None, FRAME)
    first, second = tap.take()
    assert isinstance(first, w.Media) and isinstance(second, w.Media)
    assert (first.track, first.chunk, first.timestamp, second.timestamp) == ("outbound", 1, 0, 20)
    samples = np.frombuffer(second.payload, dtype=">i2")
    assert len(samples) == 320 and np.array_equal(samples[1::2], FRAME)  # 16 kHz, every other sample as sent
    back = decode("L16", 16000, second.payload)  # a server's 16 kHz audio comes back at 8 kHz
    assert len(back) == 160 and np.abs(back.astype(np.int32) - FRAME).max() < 1000
    assert len(decode("L16", 8000, encode("L16", FRAME)[0])) == 320


def test_audio_sent_back_plays_in_order_with_its_marks_and_clear_returns_the_rest() -> None:
    tap = _open(_op(bidirectional=True))
    tap.received(w.Mark("empty"))
    assert tap.take() == [w.Mark("empty", 2, "s-1")]  # nothing queued: at once
    tone = sine(900, 50, amplitude=8000)
    tap.received(w.Media(ulaw_encode(tone)))
    tap.received(w.Mark("after-50ms"))
    frames = [tap.next_frame() for _ in range(2)]
    assert tap.take() == []  # 40 ms played, the mark is 50 ms in
    frames.append(tap.next_frame())
    assert [x.name for x in tap.take() if isinstance(x, w.Mark)] == ["after-50ms"]
    assert np.abs(np.concatenate(frames)[:400]).max() > 4000 and not frames[2][80:].any()
    tap.received(w.Media(ulaw_encode(sine(900, 1000))))
    tap.received(w.Mark("never-played"))
    tap.received(w.Clear())
    assert [x.name for x in tap.take() if isinstance(x, w.Mark)] == ["never-played"]
    assert not tap.next_frame().any()


def test_audio_sent_back_beyond_the_limit_is_not_queued() -> None:
    tap = _open(_op(bidirectional=True))
    chunk = ulaw_encode(np.zeros(PLAYOUT_LIMIT_SAMPLES // 2 + 8, dtype=np.int16))
    tap.received(w.Media(chunk))
    tap.received(w.Media(chunk))
    assert tap.dropped_back == 16


def test_an_mp3_stream_plays_what_the_adapter_decoded_and_marks_follow_it() -> None:
    tap = _open(_op())  # no rtp mode: Telnyx's default, MP3 files that the adapter decodes off the tick
    assert not tap.wants_player
    tap.received(w.Media(b"ID3 not for the tap"))
    assert not tap.next_frame().any()
    tap.play(sine(700, 40, amplitude=8000))
    tap.received(w.Mark("after"))
    assert tap.wants_player and tap.take() == []
    assert np.abs(tap.next_frame()).max() > 4000 and tap.take() == []
    tap.next_frame()
    assert [x.name for x in tap.take() if isinstance(x, w.Mark)] == ["after"]


def test_stop_before_the_answer_ends_quietly_and_after_it_sends_stop() -> None:
    waiting = StreamTap(_op())
    waiting.stop()
    assert waiting.state == "ended" and waiting.failure is None
    tap = _open(_op())
    tap.stop()
    assert tap.closing and [type(x) for x in tap.take()] == [w.Stop]
    tap.ended("the server went away")  # what happens after a stop asked for is no failure
    assert tap.failure is None
