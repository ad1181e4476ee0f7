"""What storing recordings and uploads in the database costs (``callroom/store/blobs.py``), on SQLite and on
PostgreSQL: writing a file of ``--mb`` MB in 1 MiB chunks, reading it back a chunk at a time (as a download
streams it), making a node's copy of it (as a media process's play asks), and the memory a streamed read
holds at most. Then, on PostgreSQL, one node process serving the same file over HTTP: from its own copy and
streamed from the store.

Run: .venv/bin/python bench/stored_files.py [--mb 50] [--runs 3]   Writes bench/results/stored-files.json.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import httpx
import numpy as np
import soundfile

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from callroom.store.blobs import Blobs  # noqa: E402
from callroom.store.engine import Store  # noqa: E402
from tests.support.node import free_port  # noqa: E402
from tests.support.postgres import fresh_database  # noqa: E402
from tests.support.process import serve  # noqa: E402


def _timed(work: Callable[[], object]) -> float:
    start = time.perf_counter()
    work()
    return time.perf_counter() - start


def _read_all(blobs: Blobs, key: str) -> int:
    info = blobs.info(key)
    assert info is not None
    return sum(len(blobs.chunk(key, seq)) for seq in range(info.chunks))


def _store_figures(url: str, data: bytes, runs: int, tmp: Path) -> dict[str, object]:
    store = Store(url)
    store.migrate()
    mb = len(data) / 1e6
    writes, reads, copies = [], [], []
    peak = 0
    try:
        for run in range(runs):
            key = f"media/bench/v{run}/file.wav"
            here, there = Blobs(store, tmp / f"here{run}"), Blobs(store, tmp / f"there{run}")
            writes.append(_timed(lambda: here.put_bytes(key, data)))  # noqa: B023
            tracemalloc.start()
            reads.append(_timed(lambda: _read_all(there, key)))  # noqa: B023
            peak = max(peak, tracemalloc.get_traced_memory()[1])
            tracemalloc.stop()
            copies.append(_timed(lambda: there.materialise(key)))  # noqa: B023
    finally:
        store.dispose()
    return {
        "write_mb_s": round(mb / statistics.median(writes), 1),
        "read_mb_s": round(mb / statistics.median(reads), 1),
        "copy_mb_s": round(mb / statistics.median(copies), 1),
        "read_peak_python_mb": round(peak / 1e6, 2),
    }


def _http_figures(url: str, wav: bytes, tmp: Path) -> dict[str, object]:
    port = free_port()
    data_dir = tmp / "node"
    data_dir.mkdir()
    with serve(data_dir, port, "--sip-port", "-1", database_url=url):
        key = (data_dir / "initial-api-key").read_text().strip()
        headers = {"Authorization": f"Bearer {key}"}
        base = f"http://127.0.0.1:{port}/v2/media"
        start = time.perf_counter()
        up = httpx.post(base, headers=headers, files={"media": ("big.wav", wav, "audio/wav")},
                        data={"media_name": "big.wav"}, timeout=120)  # fmt: skip
        upload_s = time.perf_counter() - start
        assert up.status_code == 200, up.text

        def download() -> float:
            start = time.perf_counter()
            size = 0
            with httpx.stream("GET", f"{base}/big.wav/download", headers=headers, timeout=120) as resp:
                assert resp.status_code == 200
                for part in resp.iter_bytes():
                    size += len(part)
            assert size == len(wav)
            return time.perf_counter() - start

        from_copy = download()
        for copy in (data_dir / "files").rglob("big.wav"):
            copy.unlink()
        from_store = download()
    mb = len(wav) / 1e6
    return {"upload_s": round(upload_s, 2), "download_from_copy_mb_s": round(mb / from_copy, 1),
            "download_from_store_mb_s": round(mb / from_store, 1)}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mb", type=float, default=50.0)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    samples = int(args.mb * 1e6 / 2)  # 16-bit mono at 8 kHz: a playable WAV of about --mb MB
    rng = np.random.default_rng(1)
    buf = io.BytesIO()
    soundfile.write(buf, rng.integers(-8000, 8000, samples, dtype=np.int16), 8000, format="WAV",
                    subtype="PCM_16")  # fmt: skip
    wav = buf.getvalue()
    out: dict[str, object] = {"mb": round(len(wav) / 1e6, 1), "cpus": os.cpu_count()}
    with tempfile.TemporaryDirectory() as tmp:
        out["sqlite"] = _store_figures(f"sqlite:///{tmp}/bench.db", wav, args.runs, Path(tmp) / "sqlite")
    with fresh_database("callroom_bench") as url, tempfile.TemporaryDirectory() as tmp:
        out["postgres"] = _store_figures(url, wav, args.runs, Path(tmp) / "pg")
    with fresh_database("callroom_bench") as url, tempfile.TemporaryDirectory() as tmp:
        out["postgres_http"] = _http_figures(url, wav, Path(tmp))
    print(json.dumps(out, indent=2))
    (ROOT / "bench" / "results" / "stored-files.json").write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
