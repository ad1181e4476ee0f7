"""Run ``callroom`` under cProfile (used by ``run.py --profile``): profiled_node.py OUT.prof <callroom args>.

The stats are written when the node exits (run.py stops it with SIGINT, which uvicorn handles gracefully).
Print them with: .venv/bin/python -m pstats OUT.prof  (then ``sort cumtime`` / ``stats 30``).
"""

from __future__ import annotations

import cProfile
import sys

from callroom.cli import main

if __name__ == "__main__":
    out = sys.argv[1]
    profiler = cProfile.Profile()
    profiler.enable()
    try:
        code = main(sys.argv[2:])
    finally:
        profiler.disable()
        profiler.dump_stats(out)
    raise SystemExit(code)
