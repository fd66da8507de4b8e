"""How faithful the deployed quantised controller is to the float one, per shipped checkpoint
and quantisation mode (issue 9, item 7).

Modes (all per-channel int8 weights):
  ptq-none    post-training int8, input prescale none (the old default: the "before")
  ptq         post-training int8, input prescale standardize
  qat         quantisation-aware int8: qat_recover (default QatConfig) from the checkpoint's own
              float policy (the teacher), input prescale standardize
  16x8        post-training int16 activations, input prescale standardize

For each: the held-back action error (export.json: TFLM against the exported checkpoint's own
float policy; for every mode also against the float teacher, the unpruned checkpoint's float
policy, computed here with the host reference), the closed-loop mean return of the float teacher
and of the quantised model on the same evaluation seeds (the quantised model runs on the host
in the tflite-micro interpreter through cpr_edge.hil.reference.Int8Reference; the board is
bit-exact to it, which this script checks on held-back observations), flash and RAM from the
memory.json of a firmware build for --board, and instructions per inference from the board's
BENCH reply under QEMU -icount (deterministic).

    python benchmarks/int8_fidelity.py                         # everything (30+ min)
    python benchmarks/int8_fidelity.py --checkpoint cartpole-swingup_small --mode ptq --mode 16x8 --episodes 3
    python benchmarks/int8_fidelity.py --json > figures.json
"""
from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import sys
import tempfile
import time
from importlib import resources
from pathlib import Path

MODES = {
    "ptq-none": {"activations": "int8", "prescale": "none", "qat": False},
    "ptq": {"activations": "int8", "prescale": "standardize", "qat": False},
    "qat": {"activations": "int8", "prescale": "standardize", "qat": True},
    "16x8": {"activations": "int16", "prescale": "standardize", "qat": False},
}
EPISODES = {"reacher-easy": 20}
"""Closed-loop episodes per task (reacher-easy's returns are bimodal); others 10."""
BOARD_CHECKS = 50
"""Held-back observations on which the board's INFER must equal the host reference."""


def shipped() -> dict[str, Path]:
    folder = Path(str(resources.files("cpr_edge") / "data" / "checkpoints"))
    return {p.name[:-3]: p for p in sorted(folder.glob("*.pt"))}


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def abs_error(a, b) -> dict:
    import numpy as np

    e = np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64)).reshape(-1)
    return {"mean": float(e.mean()), "p99": float(np.percentile(e, 99)), "max": float(e.max())}


def float_actions(agent, obs):
    import numpy as np
    import torch

    with torch.no_grad():
        x = torch.as_tensor(np.asarray(obs, np.float32))
        return agent.model.pi(agent.model.encoder(x)).numpy()


def returns(task: str, seeds: list[int], act, action_repeat: int | None = None) -> list[float]:
    from cpr_edge.agents.evaluate import run_episode

    return [float(run_episode(task, s, lambda obs, t: act(obs), action_repeat=action_repeat)) for s in seeds]


def qat_checkpoint(ck, path: Path):
    """The checkpoint after quantisation-aware recovery from its own float policy, saved to
    ``path`` as ``cpr-edge qat`` writes it; returns (checkpoint, QatConfig as dict, record)."""
    from cpr_edge.agents.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
    from cpr_edge.quant.qat import QatConfig, qat_recover

    cfg = QatConfig()
    student = copy.deepcopy(ck.agent)
    record = qat_recover(student, ck.agent, ck, MODES["qat"]["prescale"], cfg)
    out = Checkpoint(student, ck.task, ck.preset, ck.spec, ck.normalization, ck.replay, ck.training,
                     {**ck.extra, "quantization": record}, None)
    save_checkpoint(out, path)
    return load_checkpoint(path), dataclasses.asdict(cfg), {k: v for k, v in record.items() if k != "ranges"}


def on_board(board: str, folder: Path, ref, held) -> dict:
    """Firmware build for ``board`` (memory.json), then on the emulated board: INFER on
    held-back observations equal to the host reference, and BENCH instructions per inference."""
    import numpy as np

    from cpr_edge.boards import load_board
    from cpr_edge.firmware_build import build_firmware
    from cpr_edge.hil.session import QemuSession, sha256_file

    res = build_firmware(board, folder, folder / "firmware" / board)
    mem = res["memory"]
    out = {"flash_bytes": mem["flash"]["total"], "ram_bytes": mem["ram"]["total"],
           "activation_bytes": mem["ram"]["activations"], "model_constants_bytes": mem["flash"]["model_constants"]}
    b = load_board(board)
    if not b.emulated:
        return out
    obs = held[np.linspace(0, len(held) - 1, BOARD_CHECKS).astype(int)]
    with QemuSession(b, res["elf"], sha256_file(folder / "model_int8.tflite")) as s:
        ref.check_hello(s.hello)
        got = np.stack([s.link.infer(o)[0] for o in obs])
        bench = s.link.bench(20)
        unit = s.hello.counter_unit
    want = np.stack([ref(o) for o in obs])
    out.update({"board_bit_exact": bool(got.tobytes() == want.astype(np.float32).tobytes()),
                "board_checked": len(obs), "invoke_min": bench["min"], "invoke_max": bench["max"],
                "invoke_unit": unit})
    return out


def run_checkpoint(name: str, path: Path, modes: list[str], episodes: int | None, board: str, work: Path) -> list[dict]:
    import numpy as np

    from cpr_edge.agents.checkpoint import load_checkpoint
    from cpr_edge.agents.evaluate import EVAL_SEED_OFFSET
    from cpr_edge.export.pipeline import export_checkpoint
    from cpr_edge.hil.reference import Int8Reference
    from cpr_edge.quant.calibration import split_observations

    ck = load_checkpoint(path)
    n_ep = episodes or EPISODES.get(ck.task, 10)
    seeds = [EVAL_SEED_OFFSET + k for k in range(n_ep)]
    _, held = split_observations(ck)
    teacher_held = float_actions(ck.agent, held)
    log(f"{name}: float teacher, {n_ep} episodes")
    float_ret = returns(ck.task, seeds, ck.agent.policy_action, ck.spec.get("action_repeat"))
    rows = []
    for mode in modes:
        spec = MODES[mode]
        t0 = time.perf_counter()
        row = {"checkpoint": name, "task": ck.task, "preset": ck.preset, "mode": mode, **spec,
               "episodes": n_ep, "seeds": seeds, "float_returns": float_ret,
               "float_return": float(np.mean(float_ret))}
        src = ck
        if spec["qat"]:
            log(f"{name} {mode}: quantisation-aware recovery")
            src, row["qat_config"], row["qat_record"] = qat_checkpoint(ck, work / f"{name}-qat.pt")
            student_ret = returns(ck.task, seeds, src.agent.policy_action, ck.spec.get("action_repeat"))
            row["student_float_return"] = float(np.mean(student_ret))
        folder = work / f"{name}-{mode}"
        log(f"{name} {mode}: export ({spec['activations']} activations, prescale {spec['prescale']})")
        info = export_checkpoint(src, folder, activations=spec["activations"], prescale=spec["prescale"])
        err = info["error"]
        row["error"] = {"mean": err["mean_abs"], "p99": err["p99_abs"], "max": err["max_abs"],
                        "reference": "exported checkpoint's float policy"}
        ref = Int8Reference(folder)
        quant_held = np.stack([ref(o) for o in held])
        row["error_vs_teacher"] = abs_error(quant_held, teacher_held)
        row["model_bytes"], row["tflm_arena_bytes"] = info["model_bytes"], info["tflm"]["arena_bytes"]
        log(f"{name} {mode}: closed loop on the host TFLM, {n_ep} episodes")
        q_ret = returns(ck.task, seeds, ref, ck.spec.get("action_repeat"))
        row["quant_returns"], row["quant_return"] = q_ret, float(np.mean(q_ret))
        row["return_ratio"] = row["quant_return"] / row["float_return"] if row["float_return"] else None
        log(f"{name} {mode}: firmware for {board}")
        row["board"] = board
        row.update(on_board(board, folder, ref, held))
        row["wall_s"] = round(time.perf_counter() - t0, 1)
        rows.append(row)
        log(f"{name} {mode}: err mean {err['mean_abs']:.4f}, return {row['float_return']:.1f} -> "
            f"{row['quant_return']:.1f}, {row['wall_s']} s")
    base = next((r for r in rows if r["mode"] == "ptq"), None)
    for r in rows:  # cost relative to post-training int8 with the same prescale
        if base is not None:
            for k in ("flash_bytes", "ram_bytes", "invoke_min"):
                if k in r and k in base:
                    r[f"{k}_vs_ptq"] = r[k] / base[k]
    return rows


def table(rows: list[dict]) -> str:
    head = ("| checkpoint | mode | err mean / p99 / max (own float) | vs float teacher | return float → quantised "
            "| ratio | flash B (×ptq) | RAM B (×ptq), activations | instr./inference (×ptq) | board = TFLM |")
    lines = [head, "|" + "---|" * 10]
    for r in rows:
        e, t = r["error"], r["error_vs_teacher"]
        ret = f"{r['float_return']:.1f} → {r['quant_return']:.1f}"
        if "student_float_return" in r:
            ret += f" (student float {r['student_float_return']:.1f})"

        def cost(k):
            if k not in r:
                return "–"
            rel = r.get(f"{k}_vs_ptq")
            return f"{r[k]:,}".replace(",", " ") + (f" ({rel:.2f})" if rel is not None else "")

        exact = "–" if "board_bit_exact" not in r else ("yes" if r["board_bit_exact"] else "**NO**") + f" ({r['board_checked']})"
        lines.append(f"| {r['checkpoint']} | {r['mode']} | {e['mean']:.4f} / {e['p99']:.3f} / {e['max']:.3f} "
                     f"| {t['mean']:.4f} / {t['p99']:.3f} / {t['max']:.3f} | {ret} ({r['episodes']} ep.) "
                     f"| {r['return_ratio']:.3f} | {cost('flash_bytes')} | {cost('ram_bytes')}, {r['activation_bytes']} "
                     f"| {cost('invoke_min')} | {exact} |")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", action="append", default=None,
                    help="shipped checkpoint name (e.g. cartpole-swingup_small) or a .pt path; repeatable (default: all shipped)")
    ap.add_argument("--mode", action="append", choices=list(MODES), default=None,
                    help="quantisation mode; repeatable (default: all)")
    ap.add_argument("--episodes", type=int, default=None,
                    help="closed-loop episodes per controller (default 10, 20 for reacher-easy)")
    ap.add_argument("--board", default="qemu-mps2-an386", help="board for memory.json and BENCH")
    ap.add_argument("--work", default=None, help="keep the export folders here (default: a temporary folder)")
    ap.add_argument("--json", action="store_true", help="one JSON object on stdout instead of the table")
    ap.add_argument("--save", default=None, help="also write that JSON object to this file")
    args = ap.parse_args()
    if args.episodes is not None and args.episodes < 1:
        ap.error("--episodes must be at least 1")
    available = shipped()
    chosen = {}
    for c in args.checkpoint or list(available):
        if c in available:
            chosen[c] = available[c]
        elif Path(c).is_file():
            chosen[Path(c).stem] = Path(c)
        else:
            ap.error(f"no shipped checkpoint {c!r} and no such file (shipped: {', '.join(available)})")
    modes = args.mode or list(MODES)

    import torch

    torch.set_num_threads(1)
    t0 = time.perf_counter()
    rows = []
    with tempfile.TemporaryDirectory(prefix="cpr-fidelity-") as tmp:
        work = Path(args.work) if args.work else Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        for name, path in chosen.items():
            rows += run_checkpoint(name, path, modes, args.episodes, args.board, work)
    result = {"board": args.board, "wall_s": round(time.perf_counter() - t0, 1), "rows": rows}
    if args.save:
        from cpr_edge.fileio import write_json_atomic

        write_json_atomic(args.save, result)
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"held-back action error (abs, action range ±1); closed-loop mean return on evaluation seeds "
          f"{EVAL_NOTE}; memory and BENCH on {args.board}; ×ptq = relative to post-training int8 (standardize)")
    print(table(rows))
    qat = next((r for r in rows if "qat_config" in r), None)
    if qat:
        print(f"QatConfig: {json.dumps(qat['qat_config'])}")
    print(f"total {time.perf_counter() - t0:.0f} s")
    return 0 if all(r.get("board_bit_exact", True) for r in rows) else 1


EVAL_NOTE = "10000 + i, quantised model in the host tflite-micro interpreter (cpr_edge.hil.reference)"

if __name__ == "__main__":
    sys.exit(main())
