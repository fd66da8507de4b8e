"""Wall time of the same small pruning sweep on a local Ray with 1 and with 2 workers.

Each run is a fresh ``cpr-edge sweep`` process into an empty folder, so the figure is what a
user waits for: Python and torch imports, starting and stopping Ray, and the cells. No
assertion: the ratio depends on the machine's cores and on what else runs on it.

    python benchmarks/sweep_ray.py                       # shipped cartpole-swingup small
    python benchmarks/sweep_ray.py --checkpoint A.pt --recover-steps 300 --episodes 2
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def sweep_once(args, workers: int, out: Path) -> tuple[float, dict]:
    ck = ["--checkpoint", args.checkpoint] if args.checkpoint else ["--task", args.task]
    cmd = [sys.executable, "-m", "cpr_edge.cli", "sweep", *ck, "--metrics", args.metrics, "--ratios", args.ratios,
           "--seeds", args.seeds, "--recover", "distill", "--recover-steps", str(args.recover_steps),
           "--episodes", str(args.episodes), "--out", str(out), "--workers", str(workers), "--json"]
    t = time.perf_counter()
    run = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "MUJOCO_GL": "disable"})
    wall = time.perf_counter() - t
    if run.returncode != 0:
        sys.exit(f"sweep with {workers} workers failed:\n{run.stderr[-2000:]}")
    return wall, json.loads(run.stdout)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", default=None)
    ap.add_argument("--task", default="cartpole-swingup")
    ap.add_argument("--metrics", default="l1,random")
    ap.add_argument("--ratios", default="0.5,0.7")
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--recover-steps", type=int, default=100)
    ap.add_argument("--episodes", type=int, default=1)
    args = ap.parse_args()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for workers in (1, 2):
            wall, out = sweep_once(args, workers, Path(tmp) / f"w{workers}")
            cells = out["cells"]["run"]
            results[workers] = wall
            print(f"{workers} worker{'s' if workers > 1 else ' '}: {wall:6.1f} s wall for {cells} cells "
                  f"(Ray {out['ray_version']}, {out['cells']['failed']} failed)", flush=True)
    print(f"ratio 1 worker / 2 workers: {results[1] / results[2]:.2f}x on {os.cpu_count()} cores "
          f"(load average at the end {os.getloadavg()[0]:.1f})")


if __name__ == "__main__":
    main()
