"""What a wake-up costs on this machine: the same small piece of Python work done in a tight loop, and done
once per wake-up of a process that sleeps between them, at several wake-up rates.

Why it is here: a node's CPU per call set up falls as its rate of calls rises (``bench/cluster/setup_rate.py``:
about 15 ms at 30 calls/s, 11 at 60, 8 at 120 on the 2-core reference machine), so two nodes sharing a load
spend more per call than one node carrying it all. This shows how much of that is the machine's: a process
that sleeps between events pays for each wake (the scheduler, the virtual CPU's idle exit, cold caches) on
top of the work, and pays more per wake the fewer wakes there are.

Run: python bench/wakeups.py [--seconds 5] [--work 300]; writes bench/results/wakeups.json.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path


def work(n: int) -> dict[int, str]:
    """A few tens of microseconds of dictionary and string work, roughly what one event costs a node."""
    d: dict[int, str] = {}
    for i in range(n):
        d[i % 97] = str(i) * 3
    return d


def cpu() -> float:
    return time.process_time()  # the process's CPU time, user and system, in nanoseconds' resolution


def tight(n: int, seconds: float) -> float:
    """Microseconds of CPU per piece of work, back to back."""
    count, started, c0 = 0, time.monotonic(), cpu()
    while time.monotonic() - started < seconds:
        work(n)
        count += 1
    return (cpu() - c0) / count * 1e6


def paced(n: int, interval: float, seconds: float) -> float:
    """Microseconds of CPU per piece of work done once per wake-up, ``interval`` seconds apart."""
    count, started, c0 = 0, time.monotonic(), cpu()
    due = started
    while time.monotonic() - started < seconds:
        due += interval
        delay = due - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        work(n)
        count += 1
    return (cpu() - c0) / count * 1e6


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=5.0, help="seconds per measurement")
    parser.add_argument("--work", type=int, default=300, help="loop turns of one piece of work")
    args = parser.parse_args()
    result: dict[str, object] = {"when": time.strftime("%Y-%m-%d %H:%M"), "cores": os.cpu_count(),
                                 "tight_us": round(tight(args.work, args.seconds), 1)}  # fmt: skip
    per_wake = {}
    for rate in (250, 500, 1000, 2000):
        per_wake[rate] = round(paced(args.work, 1 / rate, args.seconds), 1)
    result["per_wake_us_by_wakes_per_s"] = per_wake
    result["loadavg"] = round(os.getloadavg()[0], 2)
    print(json.dumps(result))
    out = Path(__file__).resolve().parent / "results" / "wakeups.json"
    out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
