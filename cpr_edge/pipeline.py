"""``cpr-edge prune-and-flash``: the main job, every stage in one run.

1 prune  2 recover  3 export  4 verify with TFLM  5 generate code  6 build  7 boot/flash
8 HIL episodes against the baselines  9 report.  Exit status 0 only if every check passes.

Run folder (``--out``)::

    pruned.pt  prune.json              the pruned, recovered checkpoint and what pruning did
    model/                             export of the pruned checkpoint (model_int8.tflite, export.json)
    model/firmware/BOARD/                 generated code, firmware.elf, memory.json
    baseline/  baseline/firmware/BOARD/   the same for the unpruned checkpoint (baseline b)
    report.json report.md *.png episodes.npz qemu-*.log
"""
from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from contextlib import contextmanager
from pathlib import Path

from cpr_edge.errors import CprError

STAGES = ["prune", "recover", "export", "verify", "generate", "build", "boot", "hil", "report"]
STAGE_TITLES = {"prune": "prune", "recover": "recover", "export": "export int8",
                "verify": "verify with TFLM", "generate": "generate code", "build": "build firmware",
                "boot": "boot/flash", "hil": "HIL episodes against baselines", "report": "report"}


def register(sub) -> None:
    from cpr_edge.cli import add_checkpoint_args
    from cpr_edge.fit.commands import add_fit_args
    from cpr_edge.hil.commands import add_hil_args
    from cpr_edge.precision import add_export_args

    p = sub.add_parser("prune-and-flash", help="the main job: prune, export, build, run on the board, check, report",
                       description="Prune a TD-MPC checkpoint, recover, export int8, verify with TFLM, generate "
                                   "code, build, boot (QEMU) or flash (real board), run closed-loop episodes "
                                   "against the baselines and write the report. With no arguments: the shipped "
                                   "cartpole-swingup small checkpoint, fisher importance, ratio 0.5, board "
                                   "qemu-mps2-an386. Exit status 0 only if every check passes.")
    add_checkpoint_args(p)
    p.add_argument("--metric", default="fisher", help="importance metric (default fisher)")
    p.add_argument("--ratio", type=float, default=None,
                   help="fraction of deployed parameters to remove (default 0.5; with --fit: chosen by the fit)")
    p.add_argument("--recover-steps", type=int, default=300, help="distillation steps after pruning (default 300)")
    p.add_argument("--no-prune", action="store_true",
                   help="deploy the checkpoint as it is, e.g. one pruned while it trained (train --prune-to, "
                        "prune --gradual): no pruning, no distillation, no unpruned baseline (b)")
    p.add_argument("--board", default="qemu-mps2-an386", help="board name (default qemu-mps2-an386)")
    add_hil_args(p)
    add_export_args(p)
    add_fit_args(p, flag=True)
    p.add_argument("--out", default=None, help="run folder (default runs/TASK_PRESET-METRIC-RATIO-BOARD, RATIO 'fit' with --fit)")
    p.add_argument("--json", action="store_true", help="print the report's checks and figures as one JSON object")
    p.set_defaults(func=cmd_prune_and_flash)


class StageClock:
    """Numbers, times and announces the stages on stderr."""

    def __init__(self, say):
        self.say = say
        self.times: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str, detail: str = ""):
        i = STAGES.index(name) + 1
        self.say(f"[{i}/{len(STAGES)}] {STAGE_TITLES[name]}" + (f": {detail}" if detail else ""))
        t = time.perf_counter()
        yield
        self.times[name] = self.times.get(name, 0.0) + time.perf_counter() - t
        self.say(f"[{i}/{len(STAGES)}] {STAGE_TITLES[name]} done in {self.times[name]:.1f} s")

    def add(self, name: str, seconds: float) -> None:
        self.times[name] = self.times.get(name, 0.0) + seconds


class BuildTimer:
    """Splits ``build_firmware`` into its code generation (stage 5) and compile (stage 6) by
    the progress lines it prints."""

    def __init__(self, say):
        self.say, self.marks = say, []

    def __call__(self, msg: str) -> None:
        self.marks.append((time.perf_counter(), msg))
        self.say(f"      {msg}")

    def split(self, t0: float, t1: float) -> tuple[float, float]:
        compile_at = next((t for t, m in self.marks if m.startswith("compiling")), t0)
        return compile_at - t0, t1 - compile_at


def export_and_build(ck, model_dir: Path, board, say, times: dict, export_kw: dict | None = None) -> tuple[dict, dict]:
    """Stages 3-6 for one checkpoint: export with ``export_kw`` (its TFLM verification timed
    as stage 4), generate code and build. ``times`` receives the seconds per stage."""
    from cpr_edge.firmware_build import build_firmware, default_out_dir
    from cpr_edge.export.pipeline import export_checkpoint

    t = time.perf_counter()
    say(f"[3/9] export int8: {model_dir}")
    info = export_checkpoint(ck, model_dir, progress=lambda m: say(f"      {m}"), **(export_kw or {}))
    verify = float(info.get("timings_s", {}).get("verify", 0.0))
    times["export"] = times.get("export", 0.0) + time.perf_counter() - t - verify
    times["verify"] = times.get("verify", 0.0) + verify
    say(f"[4/9] verify with TFLM: {info['model_bytes']} B {info.get('activations', 'int8')}-activation model, ops {' '.join(dict.fromkeys(info['ops']))}, "
        f"arena {info['tflm']['arena_bytes']} B, action error vs float max {info['error']['max_abs']:.4f} "
        f"({verify:.1f} s, inside export)")
    timer = BuildTimer(say)
    t = time.perf_counter()
    say(f"[5/9] generate code, [6/9] build for {board.name}")
    build = build_firmware(board, model_dir, default_out_dir(model_dir, board.name), progress=timer)
    gen, comp = timer.split(t, time.perf_counter())
    times["generate"] = times.get("generate", 0.0) + gen
    times["build"] = times.get("build", 0.0) + comp
    return info, build


def baseline_job(checkpoint: str, model_dir: str, board_name: str, metric: str, seed: int,
                 export_kw: dict | None = None, precisions: list[str] | None = None) -> dict:
    """Export and build the unpruned checkpoint (baseline b) in a worker process, in parallel
    with pruning: it does not depend on it. Also the importance per component for the report.
    ``precisions`` are tried in order (post-training, no recovery: it is the unpruned model);
    the first whose firmware fits the board is kept."""
    from cpr_edge.precision import STEPS, does_not_fit
    import torch

    from cpr_edge.agents.checkpoint import load_checkpoint
    from cpr_edge.boards import load_board
    from cpr_edge.report.component_importance import mean_importance

    torch.set_num_threads(1)
    say = lambda m: print(f"  baseline: {m.strip()}", file=sys.stderr, flush=True)
    times: dict[str, float] = {}
    ck = load_checkpoint(checkpoint)
    t = time.perf_counter()
    importance = mean_importance(ck, metric, seed)
    times["importance"] = time.perf_counter() - t
    precisions = precisions or ["int8"]
    for i, precision in enumerate(precisions):
        kw = {**(export_kw or {}), "activations": STEPS[precision]}
        try:
            info, build = export_and_build(ck, Path(model_dir), load_board(board_name), say, times, kw)
        except CprError as e:
            if does_not_fit(e) and i + 1 < len(precisions):
                say(f"{precision} does not fit: {e}; trying {precisions[i + 1]}")
                continue
            return {"error": str(e), "does_not_fit": does_not_fit(e), "times": times, "importance": importance}
        return {"export": info, "build": build, "times": times, "importance": importance, "precision": precision}


def run(args: argparse.Namespace, say=None) -> tuple[dict, Path]:
    import multiprocessing

    import torch

    from cpr_edge.agents.checkpoint import load_checkpoint, resolve_checkpoint, save_checkpoint
    from cpr_edge.boards import load_board
    from cpr_edge.firmware_build import default_out_dir
    from cpr_edge.fileio import write_json_atomic, write_text_atomic
    from cpr_edge.hil.closed_loop import eval_seeds
    from cpr_edge.hil.commands import budget_from_args
    from cpr_edge.hil.run import HilConfig, run_hil
    from cpr_edge.hil.session import check_real_board_port
    from cpr_edge.pruning import prune_checkpoint
    from cpr_edge.export.pipeline import resolve_prescale
    from cpr_edge.precision import candidates, export_options
    from cpr_edge.pruning.prune import check_args
    from cpr_edge.report.component_importance import component_importance
    from cpr_edge.report.write import markdown, write_report

    say = say or (lambda m: print(m, file=sys.stderr, flush=True))
    torch.set_num_threads(1)
    t_start = time.perf_counter()
    budget = budget_from_args(args)
    if args.episodes is not None and args.episodes < 1:
        raise CprError("--episodes must be at least 1")
    fitting, no_prune = getattr(args, "fit", False), getattr(args, "no_prune", False)
    if fitting and args.ratio is not None:
        raise CprError("give --ratio or --fit, not both: --fit chooses the ratio")
    if no_prune:
        from cpr_edge.pruning.already_pruned import NO_BASELINE, as_pruned, check_no_prune_args

        check_no_prune_args(args)
    args.ratio = 0.5 if args.ratio is None and not fitting else args.ratio
    check_args(args.metric, 0.5 if fitting or no_prune else args.ratio, "component", "deployed", "distill",
               args.recover_steps)
    opts = export_options(args)
    precisions = candidates(args.precision)
    board = load_board(args.board)
    check_real_board_port(board, args.port)  # without --port: the board file's serial device
    src = resolve_checkpoint(args.checkpoint, args.task, args.preset)
    ck = load_checkpoint(src)
    opts.prescale = resolve_prescale(ck, opts.prescale)  # one prescale for the model and baseline b
    from cpr_edge.preflight import preflight
    from cpr_edge.runfolder import RunFolder

    preflight(args, board, ck)  # task, port, tools, episodes: refused before any slow stage
    fit = None
    if fitting:  # before the run folder: an unfittable request leaves nothing written
        from cpr_edge.fit.commands import fit_for_args

        say(f"[0/9] fit: smallest removal for which {board.name}'s flash, RAM and latency budget hold")
        t = time.perf_counter()
        fit = fit_for_args(args, ck, board, budget, precisions, opts, lambda m: say(f"      {m}"))
        args.ratio, precisions = fit["chosen"]["ratio"], [fit["chosen"]["precision"]]
        say(f"[0/9] fit: ratio {args.ratio:g} ({precisions[0]}), {fit['chosen']['binding']} binds, "
            f"{len(fit['probes'])} probes in {time.perf_counter() - t:.0f} s")
    if no_prune:
        teacher, pruned, info = as_pruned(ck, src, args.metric)
        args.metric, args.ratio = info["metric"], info["ratio"]
    ratio_tag = "fit" if fitting else "asis" if no_prune else f"{args.ratio:g}"
    out = Path(args.out or f"runs/{ck.task}_{ck.preset}-{args.metric}-{ratio_tag}-{board.name}")
    run_folder = RunFolder(out, "prune-and-flash").__enter__()  # locked; an earlier run's files gone
    clock = StageClock(say)
    say(f"prune-and-flash: {src} ({ck.task}) -> {board.name}, metric {args.metric}, ratio {args.ratio:g}, out {out}")

    # leaving the with-block terminates the worker: an error here does not wait for it
    with multiprocessing.get_context("spawn").Pool(1, initializer=_worker_ignores_sigint) as pool:
        baseline = None
        if no_prune:
            say(f"[1/9] prune, [2/9] recover: skipped (--no-prune), {info['params']['deployed']['after']} of "
                f"{info['params']['deployed']['before']} deployed parameters left by pruning during training")
        else:
            teacher = ck
            say("      baseline (b): exporting and building the unpruned model in parallel")
            baseline = pool.apply_async(baseline_job, (str(src), str(out / "baseline"), args.board, args.metric,
                                                       args.seed, opts.kwargs("int8"), precisions))
            with clock.stage("prune", f"{args.metric} importance, remove {args.ratio:.0%} of the deployed parameters"):
                pruned, info = prune_checkpoint(ck, metric=args.metric, ratio=args.ratio,
                                                recover_steps=args.recover_steps, eval_episodes=args.episodes,
                                                seed=args.seed, progress=lambda m: say(f"      {m}"))
            rec = float(info.get("time_s", {}).get("recover", 0.0))  # prune_checkpoint recovers too
            clock.times["prune"] -= rec
            clock.add("recover", rec)
            say(f"[2/9] recover: distillation, {args.recover_steps} steps in {rec:.1f} s (inside prune)")
            from cpr_edge.firmware_build.identity import sha256_of

            # identity: which checkpoint this one was pruned from (cpr-edge hil checks the baseline)
            pruned.extra["pruning"]["source_sha256"] = sha256_of(src)
        export_info, build, choice, deployed = deploy(teacher, pruned, out, board, precisions, opts, args.qat_steps,
                                                      args.seed, say, clock, budget)
        info["precision"] = choice.chosen
        if "quantization" in deployed.extra:  # prune.json's returns are those before this recovery
            info["quantization"] = {k: v for k, v in deployed.extra["quantization"].items() if k != "ranges"}
        write_json_atomic(out / "prune.json", info)
        t = time.perf_counter()
        base = baseline.get() if baseline else {"error": NO_BASELINE, "absent": True}
        clock.add("baseline_wait", time.perf_counter() - t)
    if "error" in base:
        if not (base.get("does_not_fit") or base.get("absent")):
            raise CprError(f"baseline (b), the unpruned model: {base['error']}")
        say(f"      baseline (b) skipped: {base['error']}")

    with clock.stage("hil", f"{args.episodes} episode(s) per controller, same seeds"):
        cfg = HilConfig(board=board, model_dir=out / "model",
                        firmware=default_out_dir(out / "model", board.name) / "firmware.elf",
                        checkpoint=out / "pruned.pt", baseline_checkpoint=None if no_prune else Path(src),
                        baseline_model_dir=None if "error" in base else out / "baseline",
                        baseline_firmware=None if "error" in base else default_out_dir(out / "baseline", board.name) / "firmware.elf",
                        memory=build["memory"], port=args.port, episodes=args.episodes, seed=args.seed,
                        budget_s=budget, min_return_ratio=args.min_return_ratio,
                        min_fidelity_ratio=args.min_fidelity_ratio, log_dir=out,
                        selection_seeds=eval_seeds(args.episodes, args.seed))
        result, episodes = run_hil(cfg, progress=lambda m: say(f"[7/9] {m}" if m.startswith("boot/flash") else f"      {m}"))
    boot = sum(b.get("boot_s", 0.0) for b in result["boards"].values())
    clock.times["hil"] -= boot
    clock.add("boot", boot)
    say(f"      boot/flash took {boot:.1f} s over {len(result['boards'])} session(s), counted as stage 7")

    with clock.stage("report"):
        extra = {"job": {"checkpoint": str(src), "metric": args.metric, "ratio": args.ratio, "board": args.board,
                         "episodes": args.episodes, "out": str(out)},
                 "precision": {**choice.to_dict(), "baseline": base.get("precision")},
                 "quantization": {"precision": choice.to_dict(), "action_error": export_info.get("error"),
                                  "attribution": export_info.get("attribution"),
                                  "recovery": export_info.get("quantization_aware")},
                 "baseline_parallel": {"times": base.get("times"), "skipped": base.get("error")}}
        if fit is not None:
            from cpr_edge.fit.commands import fit_with_return

            extra["fit"] = fit_with_return(fit, result)
        if "error" in base:
            result["returns"].pop("unpruned_int8_board", None)
        importance = component_importance(ck, info, args.seed, base.get("importance"))
        report = write_report(out, result, episodes, prune_report=importance, timings=dict(clock.times), extra=extra)
    clock.times["total"] = time.perf_counter() - t_start
    report["timings"] = {**{s: round(clock.times.get(s, 0.0), 2) for s in [*STAGES, "baseline_wait"]},
                         "total": round(clock.times["total"], 2)}
    write_json_atomic(out / "report.json", report)
    write_text_atomic(out / "report.md", markdown(report))
    run_folder.__exit__()
    return report, out


def _worker_ignores_sigint() -> None:
    """Ctrl-C reaches the whole process group: the parent stops the worker; the worker itself
    must not print its own KeyboardInterrupt traceback (``Process SpawnPoolWorker-1:``)."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)


def deploy(ck, pruned, out: Path, board, precisions: list[str], opts, qat_steps: int, seed: int, say, clock,
           budget_s: float | None = None):
    """Stages 3-6 at the most faithful precision whose firmware fits ``board`` (flash, RAM, and
    on an emulated board the latency budget, default the task's control period): 16x8, else
    int8, each after quantisation-aware recovery of the distilled checkpoint for that
    precision (the unpruned agent the teacher; int8 weights and activations on int16 grids for
    16x8). The deployed checkpoint is ``pruned.pt`` (baseline c is its float policy)."""
    from cpr_edge.agents.checkpoint import load_checkpoint, save_checkpoint
    from cpr_edge.precision import STEPS, Choice, does_not_fit, latency_probe

    budget_s = float(budget_s if budget_s is not None else ck.spec["control_timestep"])

    choice = Choice(requested="auto" if len(precisions) > 1 else precisions[0])
    for i, precision in enumerate(precisions):
        deployed = copy.deepcopy(pruned) if i + 1 < len(precisions) else pruned
        if qat_steps > 0:
            from cpr_edge.quant.qat import QatConfig, qat_recover

            t = time.perf_counter()
            prescale = opts.prescale
            what = "int8 weights" if precision == "16x8" else "int8 weights and activations"
            say(f"[2/9] recover: quantisation-aware ({what}), {qat_steps} steps, input prescale {prescale}")
            deployed.extra["quantization"] = qat_recover(
                deployed.agent, ck.agent, deployed, prescale,
                QatConfig(steps=qat_steps, seed=seed, activations=STEPS[precision], granularity=opts.granularity))
            clock.add("recover", time.perf_counter() - t)
        save_checkpoint(deployed, out / "pruned.pt")
        deployed = load_checkpoint(out / "pruned.pt")  # export records this path as the model's source
        times: dict[str, float] = {}
        try:
            info, build = export_and_build(deployed, out / "model", board, say, times, opts.kwargs(precision))
        except CprError as e:
            if not (does_not_fit(e) and i + 1 < len(precisions)):
                raise
            choice.tried.append({"precision": precision, "result": str(e)})
            say(f"      {precision} does not fit {board.name}; next: {precisions[i + 1]}")
            continue
        finally:
            for k, v in times.items():
                clock.add(k, v)
        if i + 1 < len(precisions):  # a slower precision with a faster one left to try
            lat = latency_probe(board, build, out / "model", budget_s)
            if lat is not None and not lat["fits"]:
                why = (f"invoke {lat['invoke_max']} {lat['unit']} = {lat['seconds_estimate'] * 1e3:.2f} ms "
                       f"(estimate) over the {budget_s * 1e3:g} ms budget")
                choice.tried.append({"precision": precision, "result": why})
                say(f"      {precision}: {why}; next: {precisions[i + 1]}")
                continue
        choice.tried.append({"precision": precision, "result": "fits"})
        choice.chosen = precision
        return info, build, choice, deployed
    raise CprError("no precision left to try")  # unreachable: the last failure re-raises


def cmd_prune_and_flash(args: argparse.Namespace) -> int:
    from cpr_edge.cli import emit
    from cpr_edge.hil.commands import summary_json, summary_text

    report, out = run(args)
    emit(args, summary_json(report, out),
         summary_text(report, out) + f"\ntotal {report['timings']['total']:.1f} s")
    from cpr_edge.hil.commands import exit_status

    return exit_status(report)
