"""``prune-and-flash --no-prune``: deploy a checkpoint as it is, typically one pruned while it
trained (``train --prune-to``, ``prune --gradual``: its ``gradual_pruning`` section).

Stages 1-2 do nothing: no pruning, no distillation. There is no unpruned model of the same
training run (the agent lost its units while it learned), so no baseline (b) is built and the
HIL compares the board with the checkpoint's own float policy (docs/importance.md, "Gradual
pruning"). Quantisation-aware recovery still runs, with a frozen copy of the checkpoint as
its teacher.
"""
from __future__ import annotations

import copy

from cpr_edge.errors import CprError

NO_BASELINE = "--no-prune: the checkpoint is deployed as it is, there is no unpruned model of it to build"


def check_no_prune_args(args) -> None:
    """What ``--no-prune`` cannot be combined with, refused before anything is read."""
    if args.ratio is not None:
        raise CprError("--no-prune deploys the checkpoint as it is: drop --ratio")
    if getattr(args, "fit", False):
        raise CprError("--no-prune deploys the checkpoint as it is: drop --fit (it chooses a ratio)")


def as_pruned(ck, src, metric: str) -> tuple[object, object, dict]:
    """``(teacher, checkpoint to deploy, prune.json dict)``: a frozen copy of the checkpoint as
    the quantisation-aware teacher, the checkpoint itself, and what its pruning during training
    did. ``metric`` names the importance plotted when the checkpoint was not pruned gradually."""
    from cpr_edge.pruning.prune import param_summary

    if "pruning" in ck.extra:  # the HIL would then want the unpruned source as baseline (b)
        raise CprError(f"{src} was pruned in one cut (cpr-edge prune): run prune-and-flash on the checkpoint it "
                       f"was pruned from, or prune it with --gradual")
    g = ck.extra.get("gradual_pruning")
    after = param_summary(ck.arch)
    info = {"task": ck.task, "checkpoint": str(src), "no_prune": True, "recover": "none", "recover_steps": 0,
            "baseline": NO_BASELINE, "importance_source": "gradual" if g else "none",
            "return": {"policy": {"unpruned": None, "pruned": None, "recovered": None}, "episodes": 0,
                       "per_episode": {}}}
    if g:
        from cpr_edge.agents.told import Arch

        before = param_summary(Arch(**g["unpruned"]["arch"]))
        sched = g["schedule"]
        info.update({k: sched[k] for k in ("metric", "ratio", "allocation", "target", "seed")})
        info.update({"schedule": sched, "pruning_steps": len(g["events"]), "done": g["done"],
                     "widths": {"before": g["unpruned"]["widths"], "after": {n: len(k) for n, k in g["kept"].items()}},
                     "kept": g["kept"]})
    else:
        before = after
        info.update({"metric": metric, "ratio": 0.0})
    info["params"] = {k: {"before": before[k], "after": after[k], "removed_fraction": 1 - after[k] / before[k]}
                      for k in ("deployed", "all")}
    return copy.deepcopy(ck), ck, info
