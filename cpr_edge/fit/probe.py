"""One probe of the fit search: the deployed controller pruned to one ratio, measured on the board.

A probe is prune (structure only, no recovery: recovery changes weights, not sizes) + export
(not verified in TFLM: only its size and speed count) + generate + build for the board + an
instruction count in the emulator (BENCH). Flash and RAM come from the board's own build
(memory.json); the instruction count from the board itself when it is emulated, else from its
``emulated_twin`` (same core and FPU), and becomes an estimated time through the board's
latency model (``cycles_per_instruction`` at ``clock_hz``, docs/boards.md).
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from cpr_edge.errors import CprError, DoesNotFit

BENCH_INVOKES = 5
"""Invokes timed per probe: QEMU's instruction count is deterministic, 5 shows it."""


@dataclass(frozen=True)
class Limits:
    """What the board allows, before the margin."""

    flash_bytes: int
    ram_bytes: int
    latency_budget_s: float

    def to_dict(self) -> dict:
        return {"flash_bytes": self.flash_bytes, "ram_bytes": self.ram_bytes,
                "latency_budget_s": self.latency_budget_s}


def latency_estimate_s(board, instructions: int) -> float:
    """Instructions counted in QEMU -> estimated seconds on ``board`` (its latency model)."""
    return instructions * board.cycles_per_instruction / board.clock_hz


def count_instructions(board, build: dict, model_dir: Path, invokes: int = BENCH_INVOKES) -> int:
    """Slowest of ``invokes`` invokes of the built HIL firmware, booted in QEMU."""
    from cpr_edge.hil.session import QemuSession, sha256_file

    with QemuSession(board, build["elf"], sha256_file(Path(model_dir) / "model_int8.tflite")) as s:
        bench = s.link.bench(invokes)
        if s.hello.counter_unit != "instructions":
            raise CprError(f"{board.name} counts {s.hello.counter_unit}, not instructions")
    return int(bench["max"])


def uses(p: dict, limits: Limits, margin: float) -> dict[str, float | None]:
    """Each constraint's use as a fraction of its limit less the margin (> 1: does not hold)."""
    keep = 1.0 - margin
    lat = p.get("latency_s_estimate")
    return {"flash": p["flash_bytes"] / (keep * limits.flash_bytes) if p.get("flash_bytes") is not None else None,
            "ram": p["ram_bytes"] / (keep * limits.ram_bytes) if p.get("ram_bytes") is not None else None,
            "latency": lat / (keep * limits.latency_budget_s) if lat is not None else None}


def judge(p: dict, limits: Limits, margin: float) -> dict:
    """``fits`` (every constraint measured and within its limit less the margin) and
    ``binding`` (the constraint closest to, or furthest over, its limit)."""
    u = {k: v for k, v in uses(p, limits, margin).items() if v is not None}
    p["uses"] = {k: round(v, 4) for k, v in u.items()}
    p["binding"] = max(u, key=u.get) if u else None
    p["fits"] = len(u) == 3 and all(v <= 1.0 for v in u.values())
    return p


def run_probe(ck, structure, ratio: float, precision: str, board, twin, work: Path, export_kw: dict,
              limits: Limits, margin: float, say) -> dict:
    """Measure the controller pruned to ``ratio`` at ``precision`` on ``board``: a probe row
    (docs/report.md ``fit.probes``)."""
    from cpr_edge.agents.checkpoint import Checkpoint
    from cpr_edge.export.pipeline import export_checkpoint
    from cpr_edge.firmware_build import build_firmware
    from cpr_edge.pruning.prune import param_summary

    t0 = time.perf_counter()
    agent = structure(ratio)
    pck = Checkpoint(agent, ck.task, ck.preset, ck.spec, ck.normalization, ck.replay, ck.training,
                     {k: v for k, v in ck.extra.items() if k != "quantization"}, None)
    tag = f"{precision}-{ratio:.4f}"
    model_dir = work / tag / "model"
    export_checkpoint(pck, model_dir, checks=False, **export_kw)
    row = {"ratio": ratio, "precision": precision, "params": param_summary(agent.arch)["deployed"],
           "flash_bytes": None, "ram_bytes": None, "invoke_instructions": None, "latency_s_estimate": None,
           "latency_measured_on": None, "return_float": None}
    build = None
    try:
        build = build_firmware(board, model_dir, work / tag / board.name)
        mem = build["memory"]
    except DoesNotFit as e:
        mem = e.memory
        if mem is None:
            raise
    row["flash_bytes"], row["ram_bytes"] = mem["flash"]["total"], mem["ram"]["total"]
    if build is not None:  # an image that fits its memory: count its instructions
        if twin is not board:
            try:
                build = build_firmware(twin, model_dir, work / tag / twin.name)
            except DoesNotFit:
                build = None
        if build is not None:
            row["invoke_instructions"] = count_instructions(twin, build, model_dir)
            row["latency_s_estimate"] = latency_estimate_s(board, row["invoke_instructions"])
            row["latency_measured_on"] = twin.name
    row["seconds"] = round(time.perf_counter() - t0, 1)
    judge(row, limits, margin)
    lat = row["latency_s_estimate"]
    say(f"probe {ratio:.2f} {precision}: {row['params']} params, flash {row['flash_bytes']} B, "
        f"RAM {row['ram_bytes']} B, latency {'-' if lat is None else f'{lat * 1e3:.2f} ms (estimate)'}: "
        f"{'fits' if row['fits'] else 'does not fit, ' + str(row['binding']) + ' binds'} ({row['seconds']:.0f} s)")
    return row
