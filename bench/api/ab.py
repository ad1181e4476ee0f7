"""The API benchmark, this tree against an earlier commit, run after run.

Run: .venv/bin/python bench/api/ab.py --base REV [--pairs N] [--db sqlite|postgres] [-- run.py options]

On a shared VM the speed of the same code changes by up to ~2x within a day, so figures of different
hours cannot be compared; two versions can, if their runs alternate. This checks ``REV`` out in a
temporary git worktree, then runs ``bench/api/run.py`` of each tree in turn (in ABBA order, so that a
drift of the machine's speed within a pair weighs on both sides alike), each with its own code, and
prints every run and, per pair, this tree's throughput against the base's. The worktree is removed
afterwards; ``bench/results`` of this tree keeps the last run of this tree only.

Example: .venv/bin/python bench/api/ab.py --base e842d11 --pairs 3 --db postgres -- --seconds 10
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


def run_once(tree: Path, db: str, extra: list[str]) -> dict[str, Any]:
    """One run of ``tree``'s benchmark; its result as that tree's run.py wrote it."""
    cmd = [sys.executable, str(tree / "bench" / "api" / "run.py"), "--db", db, "--concurrency", "16", *extra]
    proc = subprocess.run(cmd, cwd=tree, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"benchmark of {tree} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    doc = json.loads((tree / "bench" / "results" / f"api-{db}.json").read_text())
    run: dict[str, Any] = doc["runs"][-1]
    return run


def line(label: str, run: dict[str, Any]) -> str:
    overall = run["overall"]
    return (f"{label:5} {overall['rps']:9.1f} req/s  p50 {overall['p50_ms']:6.2f}  p99 {overall['p99_ms']:6.2f} ms  "
            f"API {run['node_cpu']['cores_used']:.2f} cores  PostgreSQL {run.get('postgres_cores_used', 0):.2f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", required=True, help="the commit to compare with (any git revision)")
    parser.add_argument("--pairs", type=int, default=3, help="pairs of runs (1-10)")
    parser.add_argument("--db", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("extra", nargs="*", help="options for run.py, after --")
    args = parser.parse_args(argv)
    if not 1 <= args.pairs <= 10:
        parser.error("--pairs must be in [1, 10]")
    if "--concurrency" in args.extra or "--db" in args.extra:
        parser.error("--db is ab.py's own, and the concurrency is 16 (one run per pair and side)")
    base_rev = subprocess.run(["git", "rev-parse", "--short", args.base], cwd=ROOT, capture_output=True, text=True,
                              check=True).stdout.strip()
    with tempfile.TemporaryDirectory(prefix="callroom-ab-") as tmp:
        base_tree = Path(tmp) / "base"
        subprocess.run(["git", "worktree", "add", "--detach", "--quiet", str(base_tree), base_rev], cwd=ROOT,
                       check=True)
        try:
            ratios = []
            for pair in range(args.pairs):
                order = [("base", base_tree), ("this", ROOT)]
                if pair % 2:
                    order.reverse()
                got = {}
                for label, tree in order:
                    got[label] = run_once(tree, args.db, args.extra)
                    print(line(label, got[label]), flush=True)
                ratio = got["this"]["overall"]["rps"] / got["base"]["overall"]["rps"]
                ratios.append(ratio)
                print(f"pair {pair + 1}: this tree / {base_rev} = {ratio:.3f}", flush=True)
            print(f"{args.db}: this tree / {base_rev}, {len(ratios)} pairs: median {statistics.median(ratios):.3f}, "
                  f"range {min(ratios):.3f}-{max(ratios):.3f}, better in {sum(r > 1 for r in ratios)}")
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(base_tree)], cwd=ROOT, check=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
