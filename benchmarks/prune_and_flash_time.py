"""Time of each stage of the default ``cpr-edge prune-and-flash`` run (target: <= 120 s total
on 2 cores, process start included).

    python benchmarks/prune_and_flash_time.py                    # the default run
    python benchmarks/prune_and_flash_time.py -- --board qemu-netduinoplus2 --episodes 5

The run is a fresh ``cpr-edge`` process, as a user starts it; the per-stage times come from
its report.json. The unpruned baseline (b) is exported and built in a worker process in
parallel with pruning; its own stage times are printed too.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGET_S = 120.0
STAGES = ["prune", "recover", "export", "verify", "generate", "build", "boot", "hil", "report"]


def main() -> int:
    extra = sys.argv[1:]
    if extra and extra[0] == "--":
        extra = extra[1:]
    with tempfile.TemporaryDirectory(prefix="prune-and-flash-") as tmp:
        out = Path(tmp) / "run"
        t = time.perf_counter()
        r = subprocess.run([sys.executable, "-m", "cpr_edge.cli", "prune-and-flash", "--out", str(out), "--json",
                            *extra], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        wall = time.perf_counter() - t
        if not (out / "report.json").is_file():
            print(r.stderr[-3000:], file=sys.stderr)
            print(f"prune-and-flash failed (exit {r.returncode}) after {wall:.1f} s")
            return 1
        report = json.loads((out / "report.json").read_text())
    times = report["timings"]
    print(f"prune-and-flash {' '.join(extra) or '(defaults)'}: exit {r.returncode}, "
          f"{'PASSED' if report['passed'] else 'FAILED'}; cores {os.cpu_count()}, load average {os.getloadavg()[0]:.1f}")
    print(f"{'stage':34s} {'seconds':>8s}")
    for i, s in enumerate(STAGES, 1):
        print(f"{i} {s:32s} {times.get(s, 0.0):8.1f}")
    print(f"  {'waiting for baseline (b)':32s} {times.get('baseline_wait', 0.0):8.1f}")
    base = (report.get("baseline_parallel") or {}).get("times") or {}
    if base:
        print("  baseline (b) in parallel: " + ", ".join(f"{k} {v:.1f} s" for k, v in base.items()))
    startup = wall - times["total"]
    print(f"  {'process start and imports':32s} {startup:8.1f}")
    print(f"total wall time {wall:.1f} s (target <= {TARGET_S:.0f} s): {'met' if wall <= TARGET_S else 'NOT met'}")
    for c in report["checks"]:
        print(f"  {'pass' if c['passed'] else 'FAIL'} {c['name']}: {c.get('note', '')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
