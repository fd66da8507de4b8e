"""Mean unit importance and kept fraction per component, for the prune-and-flash report."""
from __future__ import annotations


def mean_importance(ck, metric: str, seed: int) -> dict[str, float]:
    """Mean unit score per component: the scores that drive pruning, recomputed with the same
    metric, seed and source (training trace or post hoc) as ``prune_checkpoint``."""
    import numpy as np
    import torch

    from cpr_edge.pruning.pruner import importance_scores

    torch.manual_seed(seed)  # as prune_checkpoint seeds before scoring
    np.random.seed(seed)
    groups, scores, _ = importance_scores(ck.agent, metric, ck.extra.get("importance"), ck.replay, seed)
    sums: dict[str, list[float]] = {}
    for g in groups:
        v = scores[g.name].detach().double()
        acc = sums.setdefault(g.component, [0.0, 0])
        acc[0] += float(v.sum())
        acc[1] += int(v.numel())
    return {c: a / n for c, (a, n) in sums.items() if n}


def component_importance(ck, info: dict, seed: int, per: dict | None = None) -> dict:
    """Mean unit importance and kept fraction per component, for the report's plot: from
    prune.json when it holds them, else ``per`` (computed by the baseline worker), else now."""
    per = (info.get("importance_per_component") or (info.get("importance") or {}).get("per_component")
           or per)
    kept = {}
    widths = info.get("widths", {})
    for name, before in widths.get("before", {}).items():
        comp = name.split(".")[0]
        k = kept.setdefault(comp, [0, 0])
        k[0] += widths.get("after", {}).get(name, before)
        k[1] += before
    kept = {c: a / b for c, (a, b) in kept.items() if b}
    if not per:
        per = mean_importance(ck, info["metric"], seed)
    return {"metric": info.get("metric"), "ratio": info.get("ratio"), "importance": {"per_component": per},
            "kept_fraction": kept, "return": info.get("return")}
