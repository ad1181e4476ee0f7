"""How well live transcription hears known speech at a phone line's 8 kHz, and what it costs.

    .venv/bin/python bench/transcribe_speed.py [--sources espeak,flite,human] [--wideband] [--interim]

Every sample of ``bench/speech.py`` (phrases spoken by espeak-ng's and flite's voices, and people's
recordings) is brought to 8 kHz through G.711 u-law as a call carries it, padded with a second of silence
each side, cut into 20 ms frames and recognised by the same code a call's transcription runs (``Job``:
the queue and upsampler, then ``recognise``, here on this thread as a recogniser process runs it); its
final results, joined, are compared with the transcript. ``--wideband`` also decodes each sample at
16 kHz straight from its source with the same model (no phone line), which separates what the 8 kHz line
costs from what the voice itself costs. The real-time factor is this thread's CPU time over the seconds
of audio. Results go to ``bench/results/transcription.json``, under ``--label``. ``CALLROOM_CODE=DIR``
takes callroom from another checkout (to measure the code before a change with the same samples).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [os.environ.get("CALLROOM_CODE", str(ROOT)), str(ROOT)]

from bench.speech import Sample, samples, to_rate, word_errors  # noqa: E402
from callroom.audio.pcm import FRAME_SAMPLES, SAMPLE_RATE  # noqa: E402
from callroom.media.recognise import DECODERS, Hypothesis, Job, hypothesis, recognise  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "transcription.json"


def through_transcriber(sample: Sample, interim: bool) -> tuple[str, float, float]:
    """(what it heard, CPU seconds, audio seconds) for one sample through a call's transcription code."""
    silence = np.zeros(SAMPLE_RATE, dtype=np.int16)
    pcm = np.concatenate((silence, sample.phone(), silence))
    heard: list[str] = []

    def post(hyp: Hypothesis) -> None:
        if hyp.is_final:
            heard.append(hyp.transcript)

    job = Job(interim, post)
    for i in range(0, len(pcm) - FRAME_SAMPLES + 1, FRAME_SAMPLES):
        job.push(pcm[i : i + FRAME_SAMPLES])
    job.queue.close()
    started = time.thread_time()
    recognise(job)  # on this thread, so its CPU time is this thread's
    return " ".join(heard), time.thread_time() - started, len(pcm) / SAMPLE_RATE


def wideband(sample: Sample) -> str:
    """The sample at 16 kHz, straight from its source, decoded whole by the same model."""
    decoder = DECODERS.take()
    pad = np.zeros(8000, dtype=np.int16)
    decoder.start_utt()
    decoder.process_raw(np.concatenate((pad, to_rate(sample.pcm, sample.rate, 16000), pad)).tobytes(),
                        full_utt=True)
    decoder.end_utt()
    hyp = decoder.hyp()
    DECODERS.give_back(decoder)
    found = hypothesis(hyp.hypstr, hyp.score, decoder.n_frames(), True) if hyp is not None else None
    return found.transcript if found is not None else ""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sources", default="espeak,flite,human")
    parser.add_argument("--wideband", action="store_true", help="also decode each sample at 16 kHz, no phone line")
    parser.add_argument("--interim", action="store_true", help="with interim results (a live decode as well)")
    parser.add_argument("--quiet", action="store_true", help="no line per sample")
    parser.add_argument("--label", default="", help="a name for this run in the results file")
    args = parser.parse_args()
    rows: dict[tuple[str, str], dict[str, float]] = {}
    cpu = audio = 0.0
    for sample in samples(tuple(args.sources.split(","))):
        heard, used, seconds = through_transcriber(sample, args.interim)
        cpu, audio = cpu + used, audio + seconds
        row = rows.setdefault((sample.source, sample.voice), {"words": 0, "errors": 0, "wideband_errors": 0})
        row["words"] += len(sample.text.split())
        row["errors"] += word_errors(sample.text, heard)
        line = f"  [{sample.voice}] {sample.text!r} -> {heard!r}"
        if args.wideband:
            wide = wideband(sample)
            row["wideband_errors"] += word_errors(sample.text, wide)
            line += f" (16 kHz: {wide!r})"
        if not args.quiet:
            print(line, flush=True)
    report(rows, args, cpu, audio)


def report(rows: dict[tuple[str, str], dict[str, float]], args: argparse.Namespace, cpu: float, audio: float) -> None:
    def wer(errors: float, words: float) -> float:
        return round(100 * errors / words, 1)

    by_source: dict[str, dict[str, float]] = {}
    print(f"{'source':8} {'voice':14} {'words':>5}  WER 8 kHz" + ("  WER 16 kHz" if args.wideband else ""))
    for (source, voice), row in rows.items():
        total = by_source.setdefault(source, {"words": 0, "errors": 0, "wideband_errors": 0})
        for key in total:
            total[key] += row[key]
        print(f"{source:8} {voice:14} {row['words']:5.0f}  {wer(row['errors'], row['words']):8.1f} %"
              + (f"  {wer(row['wideband_errors'], row['words']):8.1f} %" if args.wideband else ""))
    for source, total in by_source.items():
        print(f"{source:8} {'(all)':14} {total['words']:5.0f}  {wer(total['errors'], total['words']):8.1f} %"
              + (f"  {wer(total['wideband_errors'], total['words']):8.1f} %" if args.wideband else ""))
    print(f"{audio:.1f} s of audio in {cpu:.2f} s of CPU: real-time factor {cpu / audio:.3f}"
          f" (interim results {'on' if args.interim else 'off'})")
    result: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M"), "interim": args.interim, "real_time_factor": round(cpu / audio, 3),
        "voices": {f"{s}/{v}": {"words": r["words"], "wer_8k": wer(r["errors"], r["words"]),
                                **({"wer_16k": wer(r["wideband_errors"], r["words"])} if args.wideband else {})}
                   for (s, v), r in rows.items()},
        "sources": {s: {"words": t["words"], "wer_8k": wer(t["errors"], t["words"]),
                        **({"wer_16k": wer(t["wideband_errors"], t["words"])} if args.wideband else {})}
                    for s, t in by_source.items()},
    }
    runs: dict[str, Any] = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    runs[args.label or "latest"] = result
    RESULTS.write_text(json.dumps(runs, indent=1) + "\n")


if __name__ == "__main__":
    main()
