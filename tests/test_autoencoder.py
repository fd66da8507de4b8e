"""The digits autoencoder experiment: coupled pruning of encoder/decoder and its sweep command."""
from __future__ import annotations

import csv

import torch

from cpr_edge.pruning.autoencoder import (DEFAULT_WIDTHS, digits, mse, param_count, prune_autoencoder,
                                          train_with_importance)
from cpr_edge.pruning.pruner import lowest


def test_prune_keeps_exact_units_and_latent_coupling():
    x_train, x_test = digits()
    assert x_train.shape[1] == 64 and 0 <= x_train.min() and x_train.max() <= 1
    model, groups, accs = train_with_importance(seed=0, epochs=2, x_train=x_train[:256])
    weights = {n: p.detach() for n, p in model.named_parameters()}
    scores = accs["fisher"].scores(weights)
    removed = {g.name: lowest(scores[g.name], g.size // 2) for g in groups}
    pruned = prune_autoencoder(model, removed)
    keep = {g.name: [i for i in range(g.size) if i not in removed[g.name]] for g in groups}
    assert pruned.widths["latent"] == 8 == pruned.decoder[0].in_features == pruned.encoder[4].out_features
    assert pruned.encoder[0].in_features == 64 and pruned.decoder[4].out_features == 64  # in/out stay whole
    assert torch.equal(pruned.encoder[4].weight, model.encoder[4].weight[keep["latent"]][:, keep["encoder.1"]])
    assert torch.equal(pruned.decoder[0].weight, model.decoder[0].weight[keep["decoder.0"]][:, keep["latent"]])
    assert sum(p.numel() for p in pruned.parameters()) == param_count(pruned.widths) < param_count(DEFAULT_WIDTHS)
    assert mse(pruned, x_test) > 0


def test_autoencoder_sweep_cli_writes_csv_and_plots(tmp_path, capsys):
    from cpr_edge.cli import main

    rc = main(["autoencoder", "--metrics", "grad,l1", "--allocations", "component,global", "--ratios", "0.5",
               "--seeds", "0", "--epochs", "3", "--recover-epochs", "1", "--out", str(tmp_path)])
    assert rc == 0
    rows = list(csv.DictReader(open(tmp_path / "autoencoder.csv")))
    assert {(r["metric"], r["allocation"]) for r in rows} == {("grad", "component"), ("grad", "global"),
                                                            ("l1", "component"), ("l1", "global")}
    for r in rows:
        assert float(r["removed"]) >= 0.5
        assert float(r["mse_pruned"]) > float(r["mse_unpruned"])
    assert (tmp_path / "autoencoder_mse_recovered.png").stat().st_size > 1000


def test_autoencoder_bad_ratio_is_one_line(tmp_path, capsys):
    from cpr_edge.cli import main

    rc = main(["autoencoder", "--ratios", "1.2", "--out", str(tmp_path / "x")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err == "cpr-edge: error: ratios must be strictly between 0 and 1, got 1.2"
    assert not (tmp_path / "x").exists()
