"""What listening to calls costs a node: media streams (both tracks), transcription, per leg, and how many a
core holds. Real SIP/RTP legs (SIPp) into one node, as ``run.py`` runs them.

    .venv/bin/python bench/media/listen.py --modes plain,stream --legs 50,100,200
    .venv/bin/python bench/media/listen.py --modes transcribe --legs 1,2,4,8
    .venv/bin/python bench/media/listen.py --modes transcribe --legs 4 --code /path/to/other/checkout

Each case starts a fresh node (``node_proc.py``), an application whose webhooks come here, and SIPp with N
calls. Every call sends speech: the ten phrases of ``bench/speech.py`` spoken by one voice (call i has voice
i of ``--voices``; SIPp's From names it), 1.5 s apart, as u-law RTP, once (``transcribe``) or looped. On
``call.initiated`` this process answers, with ``stream_url`` to a WebSocket server here and
``stream_track`` both_tracks (``stream``), with ``transcription`` of the inbound track (``transcribe``), or
plain (``plain``). Once every call is answered and after ``--settle`` seconds the window starts: node CPU
(the API process and its media process, and the media process's recogniser processes apart, from /proc;
a feature's cost per leg is the difference from ``plain`` with as many calls), the tick statistics
(late, work, skipped) and, for streams, the messages the server received. For transcription the window is
the speech: it measures how long after the end of each call's last phrase its last final result came
(``tail``: a recogniser that keeps up answers within about a second; one that falls behind real time
answers later and later, past 10 s of backlog it drops audio), and the word error rate of the calls'
final results against the phrases. ``--code DIR`` runs the node from another checkout (to compare with
the code before). Results: bench/results/media-listen.json. Loopback only; every run is bounded (SIPp
ends its calls, the node is stopped).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import soundfile
import websockets

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from bench.media.run import (  # noqa: E402
    SCENARIO,
    cpu_seconds,
    free_port,
    get_stats,
    machine_busy_seconds,
    serve_webhooks,
    stop_node,
)
from bench.speech import PHRASES, Sample, espeak, flite, recordings, word_errors  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "media-listen.json"
GAP_SECONDS = 1.5
VOICES = "flite:kal16,espeak:en-us+klatt2,flite:slt,espeak:en-us+m3,flite:awb,espeak:en-us+f3,flite:rms,human:all"


@dataclass
class Speech:
    """One voice's phrases as a u-law WAV for SIPp, and where each phrase ends (seconds from the start)."""

    voice: str
    wav: Path
    text: str
    ends: list[float]
    seconds: float


def make_speech(voice: str, folder: Path) -> Speech:
    source, _, name = voice.partition(":")
    if source == "espeak":
        parts = [espeak(name, p, 130 if "klatt" in name else None) for p in PHRASES]
    elif source == "flite":
        parts = [flite(name, p) for p in PHRASES]
    else:
        parts = [s for s in recordings() if s.voice in ("librivox", "cards", "goforward")]
    gap = np.zeros(int(8000 * GAP_SECONDS), dtype=np.int16)
    pieces: list[np.ndarray[Any, Any]] = [gap]
    ends: list[float] = []
    at = len(gap)
    for part in parts:
        pcm = Sample.phone(part)  # 8 kHz, as a call carries it
        pieces += [pcm, gap]
        at += len(pcm)
        ends.append(at / 8000)
        at += len(gap)
    pieces.append(np.zeros(8000 * 2, dtype=np.int16))
    pcm = np.concatenate(pieces)
    slug = voice.replace(":", "-").replace("+", "-")
    linear, wav = folder / f"{slug}-pcm.wav", folder / f"{slug}.wav"
    soundfile.write(linear, pcm, 8000, subtype="PCM_16")
    subprocess.run(["sox", str(linear), "-e", "u-law", "-b", "8", str(wav)], check=True)
    return Speech(voice, wav, " ".join(p.text for p in parts), ends, len(pcm) / 8000)


@dataclass
class App:
    """The application: answers every call with the case's options; records what comes back."""

    api: httpx.Client
    answer: dict[str, Any]
    lock: threading.Lock = field(default_factory=threading.Lock)
    answered: dict[str, tuple[float, str]] = field(default_factory=dict)  # cid -> (time answered, voice)
    finals: dict[str, list[tuple[float, str]]] = field(default_factory=dict)  # cid -> [(time, transcript)]
    interims: dict[str, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)

    def handle(self, event: dict[str, Any]) -> None:
        data = event.get("data", {})
        kind, payload = data.get("event_type"), data.get("payload", {})
        cid = payload.get("call_control_id", "")
        if kind == "call.initiated" and payload.get("direction") == "incoming":
            voice = str(payload.get("from", "")).split("@")[0].removeprefix("sip:")
            resp = self.api.post(f"/calls/{cid}/actions/answer", json=self.answer)
            with self.lock:
                if resp.status_code >= 400:
                    self.errors.append(f"answer: {resp.status_code} {resp.text[:200]}")
                else:
                    self.answered[cid] = (time.monotonic(), voice)
        elif kind == "call.transcription":
            result = payload.get("transcription_data", {})
            with self.lock:
                if result.get("is_final"):
                    self.finals.setdefault(cid, []).append((time.monotonic(), str(result.get("transcript", ""))))
                else:
                    self.interims[cid] = self.interims.get(cid, 0) + 1


class StreamServer:
    """A WebSocket server (the application's media server) that reads every message and counts them."""

    def __init__(self) -> None:
        self.port = free_port()
        self.media = 0
        self.bytes = 0
        self.streams = 0
        self._stop: asyncio.Future[None] | None = None
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        self._ready.wait(10)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._serve())

    async def _serve(self) -> None:
        async def handler(ws: Any) -> None:
            self.streams += 1
            async for message in ws:
                self.bytes += len(message)
                if '"media"' in message[:40]:
                    self.media += 1

        self._stop = self._loop.create_future()
        async with websockets.serve(handler, "127.0.0.1", self.port, max_size=None):
            self._ready.set()
            await self._stop

    def close(self) -> None:
        if self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set_result, None)
        self._thread.join(10)


def children_cpu(parent: int) -> float:
    """CPU seconds of a process's children (the media process's recogniser processes), from /proc."""
    total = 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            text = stat.read_text()
            fields = text[text.rindex(")") + 2:].split()
            if int(fields[1]) == parent:
                total += cpu_seconds(int(stat.parent.name))
    return total


def run_case(mode: str, n: int, args: argparse.Namespace, speech: list[Speech], work: Path) -> dict[str, Any]:
    api_port, sip_port = free_port(), free_port()
    code = Path(args.code).resolve() if args.code else ROOT
    node_log = (work / f"node-{mode}-{n}.log").open("w")
    node = subprocess.Popen(
        [sys.executable, str(Path(__file__).with_name("node_proc.py")), "--data-dir", str(work / f"data-{mode}-{n}"),
         "--port", str(api_port), "--sip-port", str(sip_port), "--rtp-ports", f"30000-{30000 + 4 * n + 200}"],
        cwd=code, env={**os.environ, "PYTHONPATH": str(code)}, stdout=subprocess.PIPE, stderr=node_log, text=True)
    streams = StreamServer() if mode == "stream" else None
    answer: dict[str, Any] = {}
    if streams is not None:
        answer = {"stream_url": f"ws://127.0.0.1:{streams.port}/media", "stream_track": "both_tracks"}
    elif mode == "transcribe":
        answer = {"transcription": True, "transcription_config": {"transcription_tracks": "inbound"}}
    sipps: list[subprocess.Popen[bytes]] = []
    server: ThreadingHTTPServer | None = None
    result: dict[str, Any] = {"mode": mode, "n": n, "code": str(code)}
    try:
        assert node.stdout is not None
        info = json.loads(node.stdout.readline() or "{}")
        pid = int(info["pid"])
        api = httpx.Client(base_url=f"http://127.0.0.1:{api_port}/v2", timeout=30,
                           headers={"Authorization": f"Bearer {info['api_key']}"})
        app = App(api, answer)
        server = serve_webhooks(app.handle)
        created = api.post("/call_control_applications", json={
            "application_name": f"listen-{mode}-{n}",
            "webhook_event_url": f"http://127.0.0.1:{server.server_address[1]}/hooks"})
        created.raise_for_status()
        connection_id = created.json()["data"]["id"]
        once = mode == "transcribe"
        longest = max(s.seconds for s in speech)
        ramp = n / args.rate
        window = longest if once else args.window
        hold_ms = int((ramp + args.settle + window + 5) * 1000)
        # One SIPp per voice (its From names the voice), calls spread over the voices.
        counts = [n // len(speech) + (1 if i < n % len(speech) else 0) for i in range(len(speech))]
        for s, count in zip(speech, counts, strict=True):
            if not count:
                continue
            slug = s.wav.stem
            scenario = work / f"{slug}.xml"
            scenario.write_text(SCENARIO.replace("{wav},-1,0", f"{s.wav},{1 if once else -1},0")
                                .replace("{hold_ms}", str(hold_ms)).replace("sip:sipp@", f"sip:{slug}@"))
            sipps.append(subprocess.Popen(
                [args.sipp, "-sf", str(scenario), "-s", connection_id, f"127.0.0.1:{sip_port}", "-i", "127.0.0.1",
                 "-p", str(free_port()), "-mi", "127.0.0.1", "-mp", str(free_port()), "-m", str(count),
                 "-l", str(count), "-r", str(max(1.0, args.rate * count / n)), "-rp", "1000", "-nostdin",
                 "-timeout", f"{int(hold_ms / 1000 + ramp + 60)}s", "-timeout_error"],
                cwd=work, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        deadline = time.monotonic() + ramp + 30
        while len(app.answered) + len(app.errors) < n and time.monotonic() < deadline:
            time.sleep(0.05)
        result["answered"] = len(app.answered)
        result["errors"] = app.errors[:3]
        first_answer = min((t for t, _ in app.answered.values()), default=time.monotonic())
        if not once:
            time.sleep(args.settle)
        stats_url = f"http://127.0.0.1:{api_port}/bench/stats"
        media_pid = int(get_stats(stats_url, reset=1, legs=0)["media_pid"])
        cpu0, busy0 = cpu_seconds(pid) + cpu_seconds(media_pid), machine_busy_seconds()
        media0, w0 = cpu_seconds(media_pid), time.monotonic()
        recognisers0 = children_cpu(media_pid)
        messages0 = streams.media if streams else 0
        if once:  # the window is the speech of the last call answered
            last_answer = max((t for t, _ in app.answered.values()), default=w0)
            time.sleep(max(0.0, last_answer + longest - time.monotonic()))
        else:
            time.sleep(window)
        cpu1, busy1 = cpu_seconds(pid) + cpu_seconds(media_pid), machine_busy_seconds()
        media1, w1 = cpu_seconds(media_pid), time.monotonic()
        recognisers1 = children_cpu(media_pid)
        ticks = get_stats(stats_url, reset=1, legs=0)["summary"]
        wall = w1 - w0
        result.update({
            "window_seconds": round(wall, 1),
            "node_cpu_percent": round(100 * (cpu1 - cpu0) / wall, 1),
            "media_process_percent": round(100 * (media1 - media0) / wall, 1),
            "recogniser_processes_percent": round(100 * (recognisers1 - recognisers0) / wall, 1),
            "machine_busy_percent": round(100 * (busy1 - busy0) / wall, 1),
            "ticks": {k: round(v, 2) for k, v in ticks.items()},
        })
        if streams is not None:
            result["stream_media_per_second"] = round((streams.media - messages0) / wall, 1)
            result["streams_connected"] = streams.streams
        if once:
            time.sleep(args.tail_wait)  # late results still count; how late they were is measured
            result.update(transcripts(app, speech, first_answer))
        return result
    finally:
        for p in sipps:
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(timeout=5 if once else 60)
            if p.poll() is None:
                p.kill()
                p.wait()
        stop_node(node, node_log, server)
        if streams is not None:
            streams.close()


def transcripts(app: App, speech: list[Speech], first_answer: float) -> dict[str, Any]:
    """Word errors per voice and the tail: from the end of a call's last phrase to its last final result."""
    by_slug = {s.wav.stem: s for s in speech}
    errors: dict[str, list[int]] = {}
    tails: list[float] = []
    with app.lock:
        calls = list(app.answered.items())
        finals = {cid: list(v) for cid, v in app.finals.items()}
        interims = sum(app.interims.values())
    for cid, (answered, slug) in calls:
        s = by_slug.get(slug)
        if s is None:
            continue
        got = finals.get(cid, [])
        heard = " ".join(text for _, text in got)
        e = errors.setdefault(s.voice, [0, 0])
        e[0] += word_errors(s.text, heard)
        e[1] += len(s.text.split())
        if got:
            tails.append(got[-1][0] - (answered + s.ends[-1]))
    words = sum(v[1] for v in errors.values())
    return {
        "wer_percent": round(100 * sum(v[0] for v in errors.values()) / max(words, 1), 1),
        "wer_by_voice": {v: round(100 * e / max(w, 1), 1) for v, (e, w) in errors.items()},
        "tail_seconds_p50": round(float(np.percentile(tails, 50)), 2) if tails else None,
        "tail_seconds_max": round(max(tails), 2) if tails else None,
        "calls_with_results": len(tails),
        "interim_results": interims,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--modes", default="plain,stream")
    ap.add_argument("--legs", default="50,100")
    ap.add_argument("--voices", default=VOICES)
    ap.add_argument("--window", type=float, default=15.0, help="seconds measured (plain, stream)")
    ap.add_argument("--settle", type=float, default=3.0)
    ap.add_argument("--rate", type=float, default=20.0, help="calls per second SIPp places")
    ap.add_argument("--tail-wait", type=float, default=20.0, help="seconds to wait for late final results")
    ap.add_argument("--code", default="", help="run the node from this checkout")
    ap.add_argument("--sipp", default="sipp")
    ap.add_argument("--label", default="")
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        speech = [make_speech(v, work) for v in args.voices.split(",")]
        for mode in args.modes.split(","):
            for n in (int(x) for x in args.legs.split(",")):
                row = run_case(mode, n, args, speech, work)
                print(json.dumps(row), flush=True)
                rows.append(row)
    runs: dict[str, Any] = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    runs[args.label or time.strftime("%Y-%m-%d %H:%M")] = rows
    RESULTS.write_text(json.dumps(runs, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
