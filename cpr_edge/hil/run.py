"""The HIL stage: episodes of the model on the board against the three baselines, then checks.

Controllers, all on the same seeds:
- ``pruned_board``: the (pruned) int8 model on the board, every action over the link;
- ``unpruned_float_host`` (a): the unpruned float policy on the host;
- ``unpruned_int8_board`` (b): the unpruned int8 model on the same board;
- ``pruned_float_host`` (c): the pruned float policy on the host.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from cpr_edge.errors import CprError
from cpr_edge.hil import checks
from cpr_edge.hil.closed_loop import (EpisodeSet, EpisodesStopped, Int8Reference, board_episodes, check_seeds,
                                      host_episode)
from cpr_edge.hil.link import LinkError
from cpr_edge.hil.identity import check_checkpoint, check_firmware, check_hello_identity, check_task_export
from cpr_edge.hil.session import board_field, is_emulated, open_session, sha256_file

LABELS = {
    "pruned_board": "pruned int8 on board",
    "unpruned_float_host": "(a) unpruned float on host",
    "unpruned_int8_board": "(b) unpruned int8 on board",
    "pruned_float_host": "(c) pruned float on host",
}


@dataclass
class HilConfig:
    board: object
    """Board definition (``cpr_edge.boards.load_board``)."""
    model_dir: Path
    """Exported model that runs on the board (``model_int8.tflite``, ``export.json``)."""
    firmware: Path
    """ELF built from ``model_dir`` for ``board``."""
    checkpoint: Path
    """Float checkpoint the model was exported from (baseline c when pruned)."""
    baseline_checkpoint: Path | None = None
    """Unpruned float checkpoint (baseline a); None if ``checkpoint`` is itself unpruned."""
    baseline_model_dir: Path | None = None
    """Exported unpruned int8 model (baseline b); None if the model is itself unpruned."""
    baseline_firmware: Path | None = None
    memory: dict | None = None
    """memory.json of the build (the memory check); None skips the check's figures."""
    port: str | None = None
    """Serial port of a real board, or the TCP port for QEMU's serial (default: a free one)."""
    episodes: int = 3
    seed: int = 0
    budget_s: float | None = None
    """Latency budget; default: the task's control period."""
    min_return_ratio: float = checks.DEFAULT_MIN_RETURN_RATIO
    min_fidelity_ratio: float = checks.DEFAULT_MIN_FIDELITY_RATIO
    """int8_fidelity: pruned int8 on board / pruned float on host must reach this."""
    selection_seeds: list[int] = field(default_factory=list)
    """Seeds that chose anything (pruning's evaluation); the check seeds must avoid them."""
    baseline_memory: dict | None = None
    """memory.json of the baseline (b) build."""
    foreign_max_lsb: int | None = None
    """Allowed distance of a board action from the host int8 reference, in output LSBs, for
    firmware this tool did not build (no source id in HELLO); None refuses such firmware.
    Firmware built by this tool must match bit for bit."""
    lanes: int = 2
    """Episodes interleaved on the board (host physics overlaps board compute)."""
    log_dir: Path | None = None
    """Where QEMU logs go."""
    session_kw: dict = field(default_factory=dict)


def _policy(path: Path):
    """The checkpoint's float policy as the board runs it: the checkpoint's observation
    normalisation, then encoder -> pi (the export folds the same normalisation into the model)."""
    from cpr_edge.agents.checkpoint import load_checkpoint
    from cpr_edge.export.onnx_graph import normalize

    ck = load_checkpoint(path)
    norm = ck.normalization or {"kind": "none"}
    return ck, lambda obs: ck.agent.policy_action(np.asarray(normalize(np.asarray(obs, np.float32), norm), np.float32))


def _board_run(cfg: HilConfig, label: str, model_dir: Path, elf: Path, task: str, seeds, spec,
               progress, firmware_id: dict) -> tuple[list, dict]:
    tflite = Path(model_dir) / "model_int8.tflite"
    if not tflite.is_file():
        raise CprError(f"no model_int8.tflite in {model_dir}")
    sha = sha256_file(tflite)
    ref = Int8Reference(model_dir)  # from the export folder alone, before the board speaks
    log = (Path(cfg.log_dir) / f"qemu-{label}.log") if cfg.log_dir else None
    kw = dict(cfg.session_kw)
    if log and is_emulated(cfg.board):
        kw["log_path"] = log
    t0 = time.perf_counter()
    verb = "booting" if is_emulated(cfg.board) else "flashing"
    progress(f"boot/flash: {verb} {board_field(cfg.board, 'name')} with {elf} ({LABELS[label]})")
    with open_session(cfg.board, elf, sha, cfg.port, **kw) as s:
        boot_s = time.perf_counter() - t0
        h = s.hello
        progress(f"boot/flash: HELLO after {boot_s:.2f} s: {h.board_id}, {h.fw_version}, model {h.model_sha256[:12]}, "
                 f"{h.counter_unit} at {h.clock_hz / 1e6:g} MHz")
        if h.input_len != spec["obs_dim"] or h.output_len != spec["act_dim"]:
            raise CprError(f"board model takes {h.input_len} inputs / gives {h.output_len} outputs; "
                           f"task {task} has obs_dim {spec['obs_dim']}, act_dim {spec['act_dim']}")
        ref.check_hello(h)
        acceptance = _acceptance(cfg, h, firmware_id)
        s.episode_steps = spec.get("episode_length")
        info = {"hello": h.to_dict(), "kind": s.kind, "boot_s": round(boot_s, 3), "model_sha256": sha,
                "elf_sha256": firmware_id["elf_sha256"], "firmware_source_id": firmware_id["firmware_source_id"],
                "acceptance": acceptance,
                "frames": "INFER_Q (integer observation)" if ref.integer_input and h.input_elem_bytes == ref.input_itemsize
                else "INFER (float32 observation)"}
        t_eps = time.perf_counter()
        try:
            eps = board_episodes(label, s, task, seeds, reference=ref, max_lsb=acceptance["max_lsb"], lanes=cfg.lanes,
                                 action_repeat=spec.get("action_repeat"))
        except EpisodesStopped as e:
            info["link"] = dict(s.link.counters.__dict__)
            e.label, e.info = label, info
            raise
        wall = time.perf_counter() - t_eps
        for e in eps:
            progress(f"{LABELS[label]}: seed {e.seed} return {e.ret:.1f} in {e.steps} steps"
                     + (f" FAILED: {e.failed}" if e.failed else "")
                     + (f" (resumed after {len(e.resets)} board reset(s))" if e.resets else ""))
        info["bench"] = s.link.bench(100)
        info["stats"] = s.link.stats()
        info["link"] = dict(s.link.counters.__dict__)
    steps = sum(e.steps for e in eps)
    info["steps_per_s"] = round(steps / wall, 1) if wall else None
    return eps, info


def _acceptance(cfg: HilConfig, hello, firmware_id: dict) -> dict:
    """Exact for firmware this tool built (its source id in HELLO); a tolerance only for
    foreign firmware and only when asked for, named in the report."""
    from cpr_edge.firmware_build.identity import source_id_of

    if source_id_of(hello.fw_version) is None and cfg.foreign_max_lsb is not None:
        return {"exact": False, "max_lsb": int(cfg.foreign_max_lsb),
                "reason": f"foreign firmware {hello.fw_version!r}: tolerance of {cfg.foreign_max_lsb} output LSB"}
    check_hello_identity(hello, firmware_id)
    return {"exact": True, "max_lsb": 0,
            "reason": f"firmware built by this tool (source id {firmware_id['firmware_source_id']}): "
                      f"every action bit for bit the host TFLM reference's"}


def check_identity(cfg: HilConfig) -> dict:
    """Everything that must belong together, checked before anything boots (one-line errors)."""
    check_task_export(cfg.model_dir)
    if cfg.baseline_model_dir is not None:
        check_task_export(cfg.baseline_model_dir)
    ident = {"model": {**check_checkpoint(cfg.model_dir, cfg.checkpoint),
                       **check_firmware(cfg.model_dir, cfg.firmware, cfg.memory)}}
    if cfg.baseline_model_dir is not None:
        if cfg.baseline_firmware is None or cfg.baseline_checkpoint is None:
            raise CprError("baseline (b) needs the unpruned model's firmware and checkpoint")
        mem = cfg.baseline_memory
        if mem is None:
            mem_path = Path(cfg.baseline_firmware).parent / "memory.json"
            mem = json.loads(mem_path.read_text()) if mem_path.is_file() else None
        ident["baseline"] = {**check_checkpoint(cfg.baseline_model_dir, cfg.baseline_checkpoint),
                             **check_firmware(cfg.baseline_model_dir, cfg.baseline_firmware, mem)}
    elif cfg.baseline_checkpoint is not None:
        from cpr_edge.hil.identity import checkpoint_sha256

        ident["baseline"] = {"checkpoint_sha256": checkpoint_sha256(cfg.baseline_checkpoint)}
    return ident


def run_hil(cfg: HilConfig, progress: Callable[[str], None] | None = None) -> tuple[dict, EpisodeSet]:
    """Run every controller on the same held-out seeds; return the result (figures + checks).

    Baselines that are not given are reported missing, never filled in with another run."""
    progress = progress or (lambda msg: None)
    identity = check_identity(cfg)
    seeds = check_seeds(cfg.episodes, cfg.seed, cfg.selection_seeds)
    torch.set_num_threads(1)
    ck, pruned_policy = _policy(cfg.checkpoint)
    task, spec = ck.task, ck.spec
    base_ck = base_policy = None
    if cfg.baseline_checkpoint is not None:
        base_ck, base_policy = _policy(cfg.baseline_checkpoint)
        if base_ck.task != task:
            raise CprError(f"baseline checkpoint is for {base_ck.task}, the model for {task}")
        if "pruning" in base_ck.extra:
            raise CprError(f"baseline checkpoint {cfg.baseline_checkpoint} is itself pruned: (a) and (b) "
                           f"must be the unpruned checkpoint")
    pruned_model = "pruning" in ck.extra
    if base_ck is None and not pruned_model:  # the model on the board is the unpruned one itself
        base_policy = pruned_policy
    es = EpisodeSet(seeds)
    boards = {}
    missing = {}

    stopped = None
    try:
        eps, boards["pruned_board"] = _board_run(cfg, "pruned_board", cfg.model_dir, cfg.firmware, task,
                                                  seeds, spec, progress, identity["model"])
        es.runs["pruned_board"] = eps
        if cfg.baseline_model_dir is not None:
            eps, boards["unpruned_int8_board"] = _board_run(cfg, "unpruned_int8_board", cfg.baseline_model_dir,
                                                             cfg.baseline_firmware, task, seeds, spec, progress,
                                                             identity["baseline"])
            es.runs["unpruned_int8_board"] = eps
        else:
            missing["unpruned_int8_board"] = ("the model on the board is unpruned: it is this controller"
                                              if not pruned_model else "no unpruned export built for the board")
        host = [("pruned_float_host", pruned_policy)]
        if base_policy is not None:
            host.insert(0, ("unpruned_float_host", base_policy))
        else:
            missing["unpruned_float_host"] = "no unpruned checkpoint given"
        for label, policy in host:
            es.runs[label] = []
            for seed in seeds:
                torch.manual_seed(seed), np.random.seed(seed)
                e = host_episode(label, policy, task, seed, spec.get("action_repeat"))
                es.runs[label].append(e)
                progress(f"{LABELS[label]}: seed {seed} return {e.ret:.1f}")
    except EpisodesStopped as e:  # a run that reached the board always leaves a report
        es.runs[e.label] = e.episodes
        boards[e.label] = e.info
        stopped = {"kind": e.kind, "reason": e.reason, "controller": e.label}
    except LinkError as e:
        stopped = {"kind": "link", "reason": str(e), "controller": None}
    except KeyboardInterrupt:
        stopped = {"kind": "interrupted", "reason": "interrupted (Ctrl-C)", "controller": None}
    if stopped is not None:
        progress(f"run stopped ({stopped['kind']}): {stopped['reason']}")
        if "pruned_board" not in boards:
            raise CprError(f"stopped before the board answered: {stopped['reason']}",
                           exit_code=130 if stopped["kind"] == "interrupted" else 2)
        es.runs.setdefault("pruned_board", [])
    return _result(cfg, task, spec, seeds, es, boards, missing, identity, stopped), es


def _result(cfg: HilConfig, task, spec, seeds, es: EpisodeSet, boards: dict, missing: dict, identity: dict,
            stopped: dict | None) -> dict:
    """Figures and checks of whatever ran; a stopped run fails with ``stopped`` saying why."""
    h = boards["pruned_board"]["hello"]
    budget = float(cfg.budget_s if cfg.budget_s is not None else spec["control_timestep"])
    counts = np.concatenate([e.invoke_counts for e in es.runs["pruned_board"]] or [np.zeros(0)])
    if "pruned_float_host" not in es.runs:
        missing.setdefault("pruned_float_host", "the run stopped before the host episodes")
    export_json = Path(cfg.model_dir) / "export.json"
    export_info = json.loads(export_json.read_text())
    if "unpruned_float_host" in es.runs:
        ratio = checks.return_ratio_check(es.returns("pruned_board"), es.returns("unpruned_float_host"),
                                          cfg.min_return_ratio)
    else:
        ratio = checks.make_check("return_ratio", False, None, cfg.min_return_ratio, "",
                                  "baseline (a), the unpruned float policy, is missing")
    cpi = float(getattr(cfg.board, "cycles_per_instruction", 1.0))  # the board's latency model
    cpi_basis = getattr(cfg.board, "latency_basis", None)
    result_checks = [
        checks.completion_check(es.runs["pruned_board"], len(seeds)),
        ratio,
        checks.int8_fidelity_check(es.returns("pruned_board") if "pruned_float_host" in es.runs else [],
                                   es.returns("pruned_float_host"),
                                   cfg.min_fidelity_ratio, export_info.get("error")),
        checks.latency_check(counts, h["counter_unit"], h["clock_hz"], budget, cpi),
    ]
    if cfg.baseline_model_dir is not None:
        result_checks.append(checks.completion_check(es.runs.get("unpruned_int8_board", []), len(seeds)))
        result_checks[-1]["name"] = "baseline_board_episodes_completed"
    if cfg.memory is not None:
        result_checks.append(checks.memory_check(cfg.memory, boards["pruned_board"].get("stats")))
    else:
        result_checks.append(checks.make_check("memory_fits", False, None, None, "bytes",
                                               "no memory.json next to the firmware"))
    identity["model"]["fw_version"] = h["fw_version"]
    result = {
        "task": task,
        "board": {"name": board_field(cfg.board, "name"), "emulated": is_emulated(cfg.board),
                  "counter_unit": h["counter_unit"], "clock_hz": h["clock_hz"],
                  "fw_version": h["fw_version"]},
        "model": {"dir": str(cfg.model_dir), "sha256": boards["pruned_board"]["model_sha256"],
                  "bytes": (Path(cfg.model_dir) / "model_int8.tflite").stat().st_size,
                  "checkpoint": str(cfg.checkpoint),
                  "baseline_checkpoint": str(cfg.baseline_checkpoint) if cfg.baseline_checkpoint else None,
                  "export": export_info},
        "identity": identity,
        "seeds": seeds,
        "seeds_used": {"check": seeds, "selection": sorted(cfg.selection_seeds),
                       "note": "check seeds are held out: disjoint from the seeds that chose the model"},
        "baselines_missing": missing,
        "returns": {k: es.returns(k) for k in LABELS if k in es.runs},
        "mean_return": {k: float(np.mean(es.returns(k))) for k in LABELS if es.returns(k)},
        "episodes": {k: [e.summary() for e in v] for k, v in es.runs.items()},
        "latency": {"estimate": h["counter_unit"] == "instructions", "budget_s": budget,
                    **checks.latency_stats(counts, h["counter_unit"], h["clock_hz"], cpi, cpi_basis)},
        "memory": cfg.memory,
        "boards": boards,
        "acceptance": boards["pruned_board"].get("acceptance"),
        "stopped": stopped,
        "checks": result_checks,
        "passed": stopped is None and all(c["passed"] for c in result_checks),
    }
    if stopped is not None:
        result["checks"].insert(0, checks.make_check("run_completed", False, stopped["kind"], None, "",
                                                     stopped["reason"]))
    return result
