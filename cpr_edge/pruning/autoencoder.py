"""The paper's second experiment: an MLP autoencoder on scikit-learn's bundled 8x8 digits.

Two components (encoder 64 -> 128 -> 64 -> z, decoder z -> 64 -> 128 -> 64) coupled by the
latent z. The same accumulators track importance during training, the same allocation rules
split the budget (counted over all parameters), Torch-Pruning removes the units, and a short
fine-tuning recovers. The figure of merit is the test reconstruction MSE.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from cpr_edge.agents.told import mlp
from cpr_edge.errors import CprError
from cpr_edge.importance.groups import mlp_groups, reduce_units
from cpr_edge.importance.metrics import GRADIENT_METRICS, METRICS, WEIGHT_METRICS
from cpr_edge.pruning.allocation import ALLOCATIONS, Bounds, allocate
from cpr_edge.pruning.graph import build_graph, prune_units
from cpr_edge.pruning.pruner import ADDITIVE, lowest

IN_DIM = 64
DEFAULT_WIDTHS = {"encoder.0": 128, "encoder.1": 64, "latent": 16, "decoder.0": 64, "decoder.1": 128}
FIELDS = ["metric", "allocation", "ratio", "seed", "params_before", "params_after", "removed", "latent",
          "mse_unpruned", "mse_pruned", "mse_recovered"]


class AutoEncoder(nn.Module):
    def __init__(self, widths: dict[str, int]):
        super().__init__()
        self.widths = dict(widths)
        w = widths
        self.encoder = mlp(IN_DIM, [w["encoder.0"], w["encoder.1"]], w["latent"], "elu")
        self.decoder = mlp(w["latent"], [w["decoder.0"], w["decoder.1"]], IN_DIM, "elu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))


def ae_groups(model: AutoEncoder):
    return mlp_groups(model, {"encoder": "encoder", "decoder": "decoder"}, ["encoder.4"], ["decoder.0"])


def param_count(widths: dict[str, int]) -> int:
    with torch.device("meta"):
        return sum(p.numel() for p in AutoEncoder({**DEFAULT_WIDTHS, **widths}).parameters())


def digits(split_seed: int = 0):
    """Digits scaled to [0, 1], split 80/20 with a fixed seed."""
    from sklearn.datasets import load_digits

    x = torch.as_tensor(load_digits().data / 16.0, dtype=torch.float32)
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(split_seed))
    n_train = int(0.8 * len(x))
    return x[perm[:n_train]], x[perm[n_train:]]


def fit(model: nn.Module, x: torch.Tensor, epochs: int, seed: int, batch: int = 64, lr: float = 1e-3,
        hook: Callable[[nn.Module], None] | None = None) -> None:
    """Adam on the reconstruction MSE; ``hook(model)`` runs after each backward, before the step."""
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    for _ in range(epochs):
        for idx in torch.randperm(len(x), generator=gen).split(batch):
            loss = F.mse_loss(model(x[idx]), x[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if hook:
                hook(model)
            opt.step()


@torch.no_grad()
def mse(model: nn.Module, x: torch.Tensor) -> float:
    return float(F.mse_loss(model(x), x))


def train_with_importance(seed: int, epochs: int, x_train: torch.Tensor, ema_horizon: float = 200.0):
    """A trained autoencoder and its accumulators (grad, fisher, bayes) from training."""
    torch.manual_seed(seed)
    model = AutoEncoder(DEFAULT_WIDTHS)
    groups = ae_groups(model)
    accs = {"grad": GRADIENT_METRICS["grad"](groups, ema_horizon),
            "fisher": GRADIENT_METRICS["fisher"](groups, ema_horizon),
            "bayes": GRADIENT_METRICS["bayes"](groups, ema_horizon, n_data=len(x_train))}

    def hook(m):
        w = {n: p.detach() for n, p in m.named_parameters()}
        g = {n: p.grad for n, p in m.named_parameters()}
        for acc in accs.values():
            acc(w, g)

    fit(model, x_train, epochs, seed, hook=hook)
    return model, groups, accs


def prune_autoencoder(model: AutoEncoder, removed: dict[str, list[int]]) -> AutoEncoder:
    """Physically remove units through the dependency graph; rebuild from the new widths."""
    import copy

    work = copy.deepcopy(model)
    groups = {g.name: g for g in ae_groups(work)}
    DG = build_graph(work, (torch.zeros(2, IN_DIM),))
    for name in sorted(removed, key=lambda n: n == "latent"):
        if removed[name]:
            prune_units(DG, work.get_submodule(groups[name].root), removed[name])
    new = AutoEncoder({n: g.size - len(removed.get(n, [])) for n, g in groups.items()})
    new.load_state_dict(work.state_dict())
    return new


def run_autoencoder_sweep(metrics: list[str], allocations: list[str], ratios: list[float], seeds: list[int],
                          out: str | Path, epochs: int = 60, recover_epochs: int = 3,
                          log: Callable[[str], None] = lambda s: print(s, file=sys.stderr)) -> dict:
    for m in metrics:
        if m not in METRICS:
            raise CprError(f"unknown metric {m!r}; choose one of {', '.join(METRICS)}")
    for a in allocations:
        if a not in ALLOCATIONS:
            raise CprError(f"unknown allocation {a!r}; choose one of {', '.join(ALLOCATIONS)}")
    for r in ratios:
        if not 0 < r < 1:
            raise CprError(f"ratios must be strictly between 0 and 1, got {r}")
    if epochs < 1 or recover_epochs < 0:
        raise CprError("--epochs must be >= 1 and --recover-epochs >= 0")
    from cpr_edge.pruning.plots import plot_sweep
    from cpr_edge.pruning.sweep import write_rows

    x_train, x_test = digits()
    rows = []
    base = param_count(DEFAULT_WIDTHS)
    bounds = Bounds(hi=0.95, latent_hi=0.75)
    for seed in seeds:
        model, groups, accs = train_with_importance(seed, epochs, x_train)
        m0 = mse(model, x_test)
        log(f"seed {seed}: trained autoencoder, test MSE {m0:.5f}")
        weights = {n: p.detach() for n, p in model.named_parameters()}
        counts = {g.name: reduce_units(g, weights, "count") for g in groups}
        for metric in metrics:
            if metric in accs:
                scores = accs[metric].scores(weights, "ema")
            else:
                cls = WEIGHT_METRICS[metric]
                scores = (cls(groups, seed) if metric == "random" else cls(groups))(weights)
            for allocation in allocations:
                for ratio in ratios:
                    try:
                        n = allocate(groups, scores, ratio, param_count, allocation, bounds,
                                     counts if metric in ADDITIVE else None)
                    except CprError as e:
                        log(f"skip {metric} {allocation} {ratio}: {e}")
                        continue
                    pruned = prune_autoencoder(model, {k: lowest(scores[k], v) for k, v in n.items()})
                    m1 = mse(pruned, x_test)
                    fit(pruned, x_train, recover_epochs, seed + 1)
                    m2 = mse(pruned, x_test)
                    after = sum(p.numel() for p in pruned.parameters())
                    rows.append({"metric": metric, "allocation": allocation, "ratio": ratio, "seed": seed,
                                 "params_before": base, "params_after": after, "removed": round(1 - after / base, 5),
                                 "latent": pruned.widths["latent"], "mse_unpruned": round(m0, 6),
                                 "mse_pruned": round(m1, 6), "mse_recovered": round(m2, 6)})
            log(f"seed {seed}: {metric} done")
    out = Path(out)
    csv_path = out / "autoencoder.csv"
    write_rows(csv_path, rows, FIELDS)
    plots = [str(plot_sweep(rows, out / "autoencoder_mse_recovered.png", y="mse_recovered",
                            ylabel=f"test MSE after {recover_epochs} fine-tuning epochs", panel="allocation",
                            baseline="mse_unpruned", logy=True)),
             str(plot_sweep(rows, out / "autoencoder_mse_pruned.png", y="mse_pruned",
                            ylabel="test MSE right after pruning", panel="allocation",
                            baseline="mse_unpruned", logy=True))]
    return {"csv": str(csv_path), "rows": len(rows), "plots": plots, "summary": summarize_mse(rows)}


def summarize_mse(rows: list[dict]) -> list[dict]:
    """Mean test MSE over seeds per (allocation, ratio, metric), recovered and not."""
    table: dict[tuple, list[dict]] = {}
    for r in rows:
        table.setdefault((r["allocation"], r["ratio"], r["metric"]), []).append(r)
    return [{"allocation": a, "ratio": ratio, "metric": m, "n": len(v),
             "mse_pruned": float(np.mean([r["mse_pruned"] for r in v])),
             "mse_recovered": float(np.mean([r["mse_recovered"] for r in v])),
             "mse_unpruned": float(np.mean([r["mse_unpruned"] for r in v]))}
            for (a, ratio, m), v in sorted(table.items())]

