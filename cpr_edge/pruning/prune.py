"""``prune_checkpoint``: importance -> allocation -> structured pruning -> recovery -> returns."""
from __future__ import annotations

import time
from typing import Callable

import numpy as np
import torch

from cpr_edge.agents.checkpoint import Checkpoint
from cpr_edge.agents.evaluate import evaluate
from cpr_edge.errors import CprError
from cpr_edge.importance.metrics import check_prune_metric, ranking_and_allocation
from cpr_edge.pruning.allocation import ALLOCATIONS, DEPLOYED, TARGETS, Bounds, count, told_allocate
from cpr_edge.pruning.pruner import is_additive, latent_sizes, lowest, prune_agent, prune_scores, weights_per_unit
from cpr_edge.pruning.recovery import RECOVERIES, distill, finetune
from cpr_edge.quant.calibration import train_and_held, training_episodes
from cpr_edge.quant.qat import QatConfig, qat_recover
from cpr_edge.quant.sim_eval import ACTIVATIONS as QUANT_ACTIVATIONS, quantized_returns


def check_args(metric: str, ratio: float, allocation: str, target: str, recover: str, recover_steps: int,
               allow_zero: bool = False) -> None:
    """``allow_zero``: ratio 0 (nothing removed) is valid, as when ``cpr-edge fit`` finds the
    unpruned model fits its board."""
    check_prune_metric(metric)
    if not (isinstance(ratio, (int, float)) and (0.0 <= ratio if allow_zero else 0.0 < ratio) and ratio < 1.0):
        raise CprError(f"--ratio must be a fraction strictly between 0 and 1, got {ratio}")
    if allocation not in ALLOCATIONS:
        raise CprError(f"unknown allocation {allocation!r}; choose one of {', '.join(ALLOCATIONS)}")
    if target not in TARGETS:
        raise CprError(f"unknown target {target!r}; choose one of {', '.join(TARGETS)}")
    if recover not in RECOVERIES:
        raise CprError(f"unknown recovery {recover!r}; choose one of {', '.join(RECOVERIES)}")
    if recover_steps < 0:
        raise CprError(f"--recover-steps must be >= 0, got {recover_steps}")


def check_quant_eval(activations: str | None) -> None:
    if activations not in (None, *QUANT_ACTIVATIONS):
        raise CprError(f"--quant must be one of {', '.join(QUANT_ACTIVATIONS)}, got {activations!r}")


def check_latent_cap(cap: float) -> None:
    if not (isinstance(cap, (int, float)) and 0.0 <= cap < 1.0):
        raise CprError(f"--latent-cap must be a fraction in [0, 1), got {cap}")


def param_summary(arch) -> dict:
    c = count(arch)
    return {"deployed": sum(c[k]["params"] for k in DEPLOYED), "all": sum(v["params"] for v in c.values()),
            "components": {k: v["params"] for k, v in c.items()},
            "macs": {k: v["macs"] for k, v in c.items()}}


def checkpoint_repeat(ck: Checkpoint) -> int | None:
    """The action repeat ``ck`` was trained at (``train --action-repeat``); None: the task's default."""
    return (ck.spec or {}).get("action_repeat")


def policy_returns(agent, task, episodes, seed, action_repeat: int | None = None) -> list[float]:
    """Policy-only returns at ``action_repeat`` (pass the checkpoint's: ``checkpoint_repeat``)."""
    return ([float(r) for r in evaluate(agent, task, episodes, "policy", seed, action_repeat)]
            if episodes > 0 else [])


def prune_structure(agent, groups, scores, metric: str, ratio: float, target: str = "deployed",
                    allocation: str = "component", bounds: Bounds | None = None, seed: int = 0,
                    alloc_scores: dict | None = None):
    """The agent with ``ratio`` of its ``target`` parameters removed by ``scores`` (no recovery):
    ``(pruned agent, removed units, kept units, group sizes)``. Ratio 0 removes nothing.
    ``alloc_scores`` (a ``RANK@ALLOCATION`` metric's second half) set how many units each group
    loses; ``scores`` which ones."""
    alloc_metric = ranking_and_allocation(metric)[1]
    alloc_scores = scores if alloc_scores is None else alloc_scores
    per_weight = weights_per_unit(agent, groups) if is_additive(alloc_metric) else None
    n_remove = (told_allocate(agent.arch, groups, alloc_scores, ratio, target, allocation, bounds, per_weight)
                if ratio > 0 else {})
    removed = {n: lowest(scores[n], k) for n, k in n_remove.items()}
    sizes = {g.name: g.size for g in groups}
    kept = {n: sorted(set(range(sizes[n])) - set(removed.get(n, []))) for n in sizes}
    return prune_agent(agent, removed, seed), removed, kept, sizes


def prune_checkpoint(ck: Checkpoint, metric: str = "fisher", ratio: float = 0.5, allocation: str = "component",
                     target: str = "deployed", recover: str = "distill", recover_steps: int = 300,
                     seed: int = 0, eval_episodes: int = 5, progress: Callable[[str], None] | None = None,
                     bounds: Bounds | None = None, posthoc_steps: int = 16, finetune_batch: int = 64,
                     unpruned_returns: list[float] | None = None,
                     input_prescale: str = "standardize", qat_activations: str = "int16",
                     quant_eval: str | None = None) -> tuple[Checkpoint, dict]:
    """Prune ``ck`` and recover; returns the pruned checkpoint and the prune.json dict.

    Returns are policy-only (encoder -> pi, what a board runs), over ``eval_episodes`` episodes
    with the same seeds before and after, so the comparison is paired. ``unpruned_returns``
    skips re-evaluating the unpruned agent (sweeps pass it once per seed). ``recover="qat"``
    distils through the int8 forward of the export with ``input_prescale`` (cpr_edge.quant).
    ``quant_eval`` (``int8`` or ``int16``): also the returns of the quantised policy, pruned and
    recovered, on the same episodes (``return.quant``; cpr_edge.quant.sim_eval).
    """
    check_args(metric, ratio, allocation, target, recover, recover_steps, allow_zero=True)
    check_quant_eval(quant_eval)
    say = progress or (lambda s: None)
    t0 = time.perf_counter()
    torch.manual_seed(seed)
    np.random.seed(seed)
    agent = ck.agent
    repeat = checkpoint_repeat(ck)
    times = {}

    groups, scores, alloc_scores, source = prune_scores(agent, metric, ck.extra.get("importance"), ck.replay,
                                                        seed, posthoc_steps=posthoc_steps)
    times["importance"] = time.perf_counter() - t0
    say(f"importance {metric} from {source} in {times['importance']:.1f} s")
    t = time.perf_counter()
    pruned, removed, kept, sizes = prune_structure(agent, groups, scores, metric, ratio, target, allocation,
                                                   bounds, seed, alloc_scores)
    times["prune"] = time.perf_counter() - t
    before, after = param_summary(agent.arch), param_summary(pruned.arch)
    say(f"pruned {target} params {before[target]} -> {after[target]} "
        f"({1 - after[target] / before[target]:.1%} removed), latent {agent.arch.latent_dim} -> {pruned.arch.latent_dim}")

    t = time.perf_counter()
    r_unpruned = (list(unpruned_returns) if unpruned_returns is not None
                  else policy_returns(agent, ck.task, eval_episodes, seed, repeat))
    r_pruned = policy_returns(pruned, ck.task, eval_episodes, seed, repeat)
    if quant_eval:
        q_pruned = quantized_returns(pruned, ck, ck.task, eval_episodes, seed, quant_eval, repeat, input_prescale)
    times["evaluate"] = time.perf_counter() - t
    t = time.perf_counter()
    losses: list[float] = []
    quantization = None
    if recover in ("distill", "distill+qat") and recover_steps > 0:
        losses = distill(pruned, agent, train_and_held(ck)[0], recover_steps, seed=seed)
    if recover in ("qat", "distill+qat") and recover_steps > 0:
        quantization = qat_recover(pruned, agent, ck, input_prescale,
                                   QatConfig(steps=recover_steps, seed=seed, activations=qat_activations))
        losses = [losses[0] if losses else quantization["loss_first"], quantization["loss_last"]]
    elif recover == "finetune" and recover_steps > 0:
        losses = finetune(pruned, training_episodes(ck.replay), recover_steps, finetune_batch, seed)
    times["recover"] = time.perf_counter() - t
    t = time.perf_counter()
    recovered = recover != "none" and recover_steps > 0
    r_recovered = policy_returns(pruned, ck.task, eval_episodes, seed, repeat) if recovered else r_pruned
    if quant_eval:
        q_recovered = (quantized_returns(pruned, ck, ck.task, eval_episodes, seed, quant_eval, repeat, input_prescale)
                       if recovered else q_pruned)
    times["evaluate"] += time.perf_counter() - t
    times["total"] = time.perf_counter() - t0
    mean = lambda r: float(np.mean(r)) if r else None
    say(f"policy-only return: unpruned {mean(r_unpruned)}, pruned {mean(r_pruned)}, recovered {mean(r_recovered)}")

    info = {
        "task": ck.task, "checkpoint": str(ck.path) if ck.path else None,
        "metric": metric, "ratio": ratio, "allocation": allocation, "target": target,
        "latent_cap": (bounds or Bounds()).latent_hi, "recover": recover, "recover_steps": recover_steps,
        "seed": seed, "importance_source": source,
        "params": {k: {"before": before[k], "after": after[k], "removed_fraction": 1 - after[k] / before[k]}
                   for k in ("deployed", "all")},
        "params_per_component": {c: {"before": before["components"][c], "after": after["components"][c]}
                                 for c in before["components"]},
        "macs": {c: {"before": before["macs"][c], "after": after["macs"][c]} for c in before["macs"]},
        "widths": {"before": sizes, "after": {n: len(k) for n, k in kept.items()}},
        "units_removed_fraction": {n: len(removed.get(n, [])) / sizes[n] for n in sizes},
        "latent_sizes": latent_sizes(pruned.model),
        "kept": kept,
        "return": {"policy": {"unpruned": mean(r_unpruned), "pruned": mean(r_pruned), "recovered": mean(r_recovered)},
                   "episodes": eval_episodes,
                   "per_episode": {"unpruned": r_unpruned, "pruned": r_pruned, "recovered": r_recovered}},
        "recovery_loss": {"first": losses[0] if losses else None, "last": losses[-1] if losses else None},
        **({"return_quant": {"activations": quant_eval, "prescale": input_prescale, "pruned": mean(q_pruned),
                             "recovered": mean(q_recovered),
                             "per_episode": {"pruned": q_pruned, "recovered": q_recovered}}} if quant_eval else {}),
        "time_s": {k: round(v, 3) for k, v in times.items()},
    }
    if quantization is not None:
        info["quantization"] = {k: v for k, v in quantization.items() if k != "ranges"}
    extra = {k: v for k, v in ck.extra.items() if k not in ("pruning", "quantization")}
    if quantization is not None:
        extra["quantization"] = quantization
    if "importance" in extra and extra["importance"].get("metrics"):
        # accumulators describe the unpruned widths; keep the trace for plots, drop the rest
        extra["importance"] = {**extra["importance"], "groups": [], "metrics": {}}
    extra["pruning"] = {k: info[k] for k in ("metric", "ratio", "allocation", "target", "recover", "recover_steps",
                                              "seed", "importance_source", "params", "widths", "kept", "return")}
    extra["pruning"]["previous"] = ck.extra.get("pruning")
    new_ck = Checkpoint(pruned, ck.task, ck.preset, ck.spec, ck.normalization, ck.replay, ck.training, extra, None)
    return new_ck, info
