"""Gradual (during-training) pruning: the schedule, coupling and optimiser state after every
pruning step, the tracker following the removed units, the checkpoint section, and the
``train --prune-to`` / ``prune --gradual`` / ``sweep --mode gradual`` / ``prune-and-flash --no-prune``
commands. Small widths and a few hundred env steps keep it to seconds."""
from __future__ import annotations

import csv
import json

import pytest
import torch

from cpr_edge.agents.checkpoint import load_checkpoint, save_checkpoint
from cpr_edge.cli import main
from cpr_edge.pruning.allocation import param_total
from cpr_edge.pruning.gradual import GradualPruner, GradualSchedule, scheduled_fraction, shrink_agent, take
from cpr_edge.pruning.pruner import latent_sizes

A = 1  # cartpole action size
CHEAP = dict(batch_size=16, iterations=1, num_samples=16, num_elites=4, num_pi_trajs=4, train_iterations=1,
             train_num_samples=16)
"""Planner and batch sizes that make an update and a plan cost milliseconds."""


def test_schedules_run_from_zero_to_the_ratio():
    for kind in ("cosine", "linear", "cubic"):
        values = [scheduled_fraction(kind, 0.9, s / 10) for s in range(11)]
        assert values[0] == 0.0 and values[-1] == pytest.approx(0.9)
        assert all(b >= a for a, b in zip(values, values[1:]))  # never grows back
        assert scheduled_fraction(kind, 0.9, -1) == 0.0 and scheduled_fraction(kind, 0.9, 2) == pytest.approx(0.9)
    assert scheduled_fraction("cosine", 0.8, 0.5) == pytest.approx(0.4)       # slow at both ends
    assert scheduled_fraction("cubic", 0.8, 0.5) == pytest.approx(0.7)        # 0.8 (1 - 0.5^3)
    assert scheduled_fraction("linear", 0.8, 0.25) == pytest.approx(0.2)
    s = GradualSchedule(0.9, 1000, 2000, steps=4)
    assert s.points() == [1250, 1500, 1750, 2000]


def _coupling(agent) -> None:
    """Every module agrees with the arch and with the latent (model and EMA target alike)."""
    arch = agent.arch
    for net in (agent.model, agent.target):
        net.arch = arch
        assert set(latent_sizes(net).values()) == {arch.latent_dim}
        assert net.encoder.net[0].out_features == arch.encoder[0] == net.encoder.net[2].in_features
        for comp in ("dynamics", "reward", "pi"):
            lin = [m for m in net.get_submodule(f"{comp}.net") if isinstance(m, torch.nn.Linear)]
            assert [m.out_features for m in lin[:-1]] == getattr(arch, comp)
            assert all(a.out_features == b.in_features for a, b in zip(lin, lin[1:]))
        for q in ("q1", "q2"):
            seq = net.get_submodule(f"{q}.net")
            assert seq[0].out_features == seq[1].normalized_shape[0] == seq[3].in_features == getattr(arch, q)[0]
            assert seq[3].out_features == seq[5].in_features == getattr(arch, q)[1]
        assert net.dynamics.net[0].in_features == net.reward.net[0].in_features == arch.latent_dim + A
        assert net.pi.net[-1].out_features == A
    params = dict(agent.model.named_parameters())
    by_id = {id(p): n for n, p in params.items()}
    for optim in (agent.optim, agent.pi_optim):
        for p in optim.param_groups[0]["params"]:
            assert id(p) in by_id  # the optimisers hold the current parameters
            st = optim.state.get(p)
            if st:
                assert st["exp_avg"].shape == st["exp_avg_sq"].shape == p.shape


@pytest.fixture(scope="module")
def gradual_run(tmp_path_factory):
    """1500 env steps of cartpole at widths 64/64/16: seeding to 1000, pruning 90 % of the
    deployed parameters by fisher at 4 points in (1000, 1400] on the cosine schedule."""
    from cpr_edge.agents.train import TrainConfig, train
    from cpr_edge.importance.tracker import ImportanceTracker

    out = tmp_path_factory.mktemp("gradual") / "gradual.pt"
    tracker = ImportanceTracker(snapshot_every=10)
    pruner = GradualPruner(GradualSchedule(0.9, 1000, 1400, steps=4, metric="fisher"), tracker)
    seen = []

    def after_step(agent, step):
        n = len(pruner.events)
        pruner(agent, step)
        if len(pruner.events) > n:  # checked after every pruning step, while training goes on
            _coupling(agent)
            seen.append((step, param_total(agent.arch, "deployed"), agent.n_updates))

    tc = TrainConfig(task="cartpole-swingup", steps=1500, eval_freq=0, eval_episodes=1, eval_mpc=False,
                     final_mpc=False, replay_sample=250, out=str(out),
                     config_overrides=dict(seed_steps=1000, enc_dim=64, mlp_dim=64, latent_dim=16, **CHEAP))
    ck = train(tc, hooks=[tracker], log=lambda s: None, after_step=after_step,
               extra_sections=lambda: {"importance": tracker.state_dict(), "gradual_pruning": pruner.state_dict()})
    return out, ck, pruner, tracker, seen


def test_removals_follow_the_schedule(gradual_run):
    out, ck, pruner, _, seen = gradual_run
    g = load_checkpoint(out).extra["gradual_pruning"]
    assert g["schedule"] == {"ratio": 0.9, "start_step": 1000, "end_step": 1400, "steps": 4, "kind": "cosine",
                             "metric": "fisher", "allocation": "component", "target": "deployed", "seed": 0}
    assert [e["step"] for e in g["events"]] == [1104, 1200, 1304, 1400]  # first agent step at each point
    base = g["unpruned"]["params"]["deployed"]
    for e, (_, deployed, _) in zip(g["events"], seen):
        scheduled = scheduled_fraction("cosine", 0.9, (e["step"] - 1000) / 400)
        assert e["scheduled"] == pytest.approx(scheduled if e["step"] < 1400 else 0.9, abs=1e-6)
        done = e["removed_fraction"]["deployed"]
        assert done == pytest.approx(1 - deployed / base)
        assert scheduled - 1e-9 <= done <= scheduled + 0.03  # counts round up, never far ahead
    assert g["done"] and g["removed_fraction"]["deployed"] >= 0.9
    assert param_total(ck.arch, "deployed") <= 0.1 * base
    # updates went on between and after the pruning steps
    assert [u for *_, u in seen] == sorted(u for *_, u in seen) and ck.agent.n_updates > seen[-1][2]
    # the units removed when: disjoint, and with the kept ones they are every unpruned unit
    for name, size in g["unpruned"]["widths"].items():
        gone = [i for e in g["events"] for i in e["removed"].get(name, [])]
        assert len(gone) == len(set(gone)) and sorted(gone + g["kept"][name]) == list(range(size))
        assert len(g["kept"][name]) == g["events"][-1]["widths"][name]


def test_pruned_checkpoint_loads_with_a_matching_trace(gradual_run, tmp_path):
    from cpr_edge.export.pipeline import export_checkpoint
    from cpr_edge.pruning.prune import prune_checkpoint

    out, ck, _, tracker, _ = gradual_run
    loaded = load_checkpoint(out)
    assert loaded.arch == ck.arch and loaded.arch.latent_dim < 16
    _coupling(loaded.agent)
    units = [row["units"]["pi"] for row in loaded.extra["importance"]["trace"]]
    assert units[0] == 128 and units[-1] == sum(loaded.arch.pi)  # the trace follows the units as they go
    # the trace matches the pruned widths: a further cut uses it, not a post-hoc estimate
    _, info = prune_checkpoint(loaded, "fisher", 0.3, recover="none", eval_episodes=1)
    assert info["importance_source"] == "trace"
    exported = export_checkpoint(loaded, tmp_path / "model")
    assert exported["model_bytes"] > 0 and (tmp_path / "model" / "export.json").is_file()


def test_shrink_carries_adam_moments_and_tracker_scores(tiny_checkpoint):
    from cpr_edge.importance.groups import told_groups
    from cpr_edge.importance.posthoc import replay_buffer
    from cpr_edge.importance.tracker import ImportanceTracker

    ck = load_checkpoint(tiny_checkpoint)
    agent = ck.agent
    tracker = ImportanceTracker()
    agent.hooks.append(tracker)
    buf = replay_buffer(agent, ck.replay)
    for _ in range(3):
        agent.update(buf.sample(16), step=10**6)
    old = {n: p.detach().clone() for n, p in agent.model.named_parameters()}
    old_state = {n: {k: v.clone() for k, v in opt.state[p].items()}
                 for opt in (agent.optim, agent.pi_optim) for n, p in agent.model.named_parameters()
                 if p in opt.state}
    groups = told_groups(agent.model)
    scores = tracker.scores("fisher", old)
    old_scores = {k: v.clone() for k, v in scores.items()}
    old_bayes = {k: v.clone() for k, v in tracker.accumulators["bayes"].ema.items()}
    sched = GradualSchedule(0.5, 0, 1, metric="fisher", target="all")
    removed, kept, index = shrink_agent(agent, groups, scores, 0.5, sched, seed=0)
    tracker.follow_pruning(agent.model, kept, lambda n, t: take(t, index[n]))
    assert all(removed[g.name] for g in groups)  # target all: every group lost units
    _coupling(agent)
    for opt in (agent.optim, agent.pi_optim):
        for n, p in agent.model.named_parameters():
            if p in opt.state:
                st = opt.state[p]
                assert torch.equal(p.detach(), take(old[n], index[n]))
                assert torch.equal(st["exp_avg"], take(old_state[n]["exp_avg"], index[n]))
                assert torch.equal(st["exp_avg_sq"], take(old_state[n]["exp_avg_sq"], index[n]))
                assert float(st["step"]) == float(old_state[n]["step"]) == 3
    now = tracker.scores("fisher", {n: p.detach() for n, p in agent.model.named_parameters()})
    for name, k in kept.items():
        assert torch.equal(now[name], old_scores[name][k])
    params = dict(agent.model.named_parameters())
    ema = tracker.accumulators["bayes"].ema  # every parameter a unit group owns (not the heads' biases)
    assert len(ema) == len(params) - 4 and all(v.shape == params[n].shape for n, v in ema.items())
    assert torch.equal(tracker.accumulators["bayes"].ema["pi.net.2.weight"],
                       take(old_bayes["pi.net.2.weight"], index["pi.net.2.weight"]))
    info = agent.update(buf.sample(16), step=10**6)  # training goes on with the smaller agent
    assert info["losses"]["total"] == info["losses"]["total"]  # not nan
    assert tracker.updates == 4


@pytest.fixture(scope="module")
def cheap_trained(tmp_path_factory, tiny_checkpoint):
    """The tiny checkpoint as if trained past its seed steps, with cheap planning and batches."""
    import dataclasses

    ck = load_checkpoint(tiny_checkpoint)
    ck.agent.cfg = dataclasses.replace(ck.agent.cfg, **CHEAP)
    ck.training["env_steps"] = 6000
    return save_checkpoint(ck, tmp_path_factory.mktemp("cheap") / "trained.pt")


def test_prune_gradual_cli(cheap_trained, tmp_path, capsys):
    out = tmp_path / "pg"
    rc = main(["prune", "--checkpoint", str(cheap_trained), "--ratio", "0.8", "--gradual", "500",
               "--prune-steps", "3", "--schedule", "linear", "--episodes", "1", "--out", str(out), "--json"])
    assert rc == 0
    info = json.loads(capsys.readouterr().out)
    assert info["recover"] == "gradual" and info["importance_source"] == "continuation"
    assert info["params"]["deployed"]["removed_fraction"] >= 0.8
    ck = load_checkpoint(out / "checkpoint.pt")
    assert ck.training["env_steps"] == 7000  # training runs whole episodes (1000 env steps)
    g = ck.extra["gradual_pruning"]
    assert (g["schedule"]["start_step"], g["schedule"]["end_step"], g["schedule"]["kind"]) == (6000, 6400, "linear")
    assert [e["scheduled"] for e in g["events"]] == pytest.approx([0.8 * 136 / 400, 0.8 * 272 / 400, 0.8])
    assert g["source"]["env_steps"] == 6000
    assert json.loads((out / "prune.json").read_text())["widths"]["after"]["latent"] == ck.arch.latent_dim
    _coupling(ck.agent)


@pytest.mark.slow
def test_train_prune_to_cli(tmp_path, capsys):
    """The command's wiring: l1 needs no gradients, so one episode (before any update) prunes.
    About 50 s, most of it the replay top-up (9 policy episodes, an environment built for each)."""
    out = tmp_path / "l1.pt"
    rc = main(["train", "--steps", "1000", "--prune-to", "0.5", "--metric", "l1", "--prune-start", "0",
               "--prune-end", "1", "--prune-steps", "2", "--schedule", "cubic", "--eval-episodes", "1", "--no-final-mpc",
               "--out", str(out), "--json"])
    assert rc == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["gradual_pruning"]["done"] and summary["gradual_pruning"]["schedule"]["kind"] == "cubic"
    assert "mpc" not in summary["evals"][-1]
    g = load_checkpoint(out).extra["gradual_pruning"]
    assert [(e["step"], e["scheduled"], e["source"]) for e in g["events"]] == [(504, pytest.approx(0.5 * (
        1 - (1 - 504 / 1000) ** 3), abs=1e-6), "weights"), (1000, 0.5, "weights")]
    assert 0.5 <= g["removed_fraction"]["deployed"] < 0.53
    assert "importance" not in load_checkpoint(out).extra  # l1 without --importance: no tracker


@pytest.mark.parametrize("argv, message", [
    (["prune", "--gradual", "0"], "--gradual must be at least 1"),
    (["prune", "--gradual", "100", "--schedule", "exp"], "unknown schedule 'exp'"),
    (["prune", "--gradual", "100", "--prune-start", "0.9", "--prune-end", "0.5"], "--prune-start < --prune-end"),
    (["train", "--prune-to", "1.2"], "--prune-to must be a fraction"),
    (["train", "--prune-to", "0.9", "--steps", "60000", "--prune-start", "0.05"], "before the first update"),
    (["train", "--prune-to", "0.9", "--resume", "x.pt"], "prune --checkpoint CK --gradual"),
    (["prune-and-flash", "--no-prune", "--ratio", "0.5"], "drop --ratio"),
])
def test_bad_gradual_arguments_are_one_line(tiny_checkpoint, tmp_path, capsys, argv, message):
    if argv[0] != "train":
        argv = argv[:1] + ["--checkpoint", str(tiny_checkpoint), "--out", str(tmp_path / "o")] + argv[1:]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("cpr-edge: error:") and message in err and "\n" not in err
    assert not (tmp_path / "o").exists()


def test_prune_and_flash_no_prune_refuses_a_one_cut_checkpoint(tiny_checkpoint, tmp_path, capsys):
    assert main(["prune", "--checkpoint", str(tiny_checkpoint), "--ratio", "0.5", "--recover", "none",
                 "--episodes", "1", "--out", str(tmp_path / "p")]) == 0
    capsys.readouterr()
    rc = main(["prune-and-flash", "--checkpoint", str(tmp_path / "p" / "checkpoint.pt"), "--no-prune",
               "--episodes", "3", "--out", str(tmp_path / "run")])
    assert rc == 2 and "pruned in one cut" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_sweep_gradual_mode(cheap_trained, tmp_path, capsys):
    argv = ["sweep", "--checkpoint", str(cheap_trained), "--metrics", "l1", "--ratios", "0.7", "--seeds", "0",
            "--mode", "gradual", "--gradual-steps", "300", "--prune-steps", "2", "--episodes", "1",
            "--out", str(tmp_path), "--json"]
    assert main(argv) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["cells"] == {"total": 1, "run": 1, "skipped": 0, "failed": 0}
    rows = list(csv.DictReader(open(tmp_path / "sweep.csv")))
    assert [(r["metric"], r["recover"], r["recover_steps"], r["status"]) for r in rows] == [
        ("l1", "gradual", "300", "ok")]
    assert float(rows[0]["removed_deployed"]) >= 0.7 and rows[0]["importance_source"] == "weights"
    assert "recovery: gradual" in (tmp_path / "sweep_summary.md").read_text()
    assert main(argv[:-1] + ["--mode", "sideways"]) == 2


@pytest.mark.qemu
@pytest.mark.slow
def test_prune_and_flash_takes_a_gradually_pruned_checkpoint(gradual_run, tmp_path, capsys):
    out_ck = gradual_run[0]
    run = tmp_path / "run"
    rc = main(["prune-and-flash", "--checkpoint", str(out_ck), "--no-prune", "--episodes", "3",
               "--qat-steps", "50", "--out", str(run), "--json"])
    captured = capsys.readouterr()
    report = json.loads((run / "report.json").read_text())
    failed = [c for c in report["checks"] if not c["passed"]]
    assert rc == 0 and report["passed"], failed
    prune = json.loads((run / "prune.json").read_text())
    assert prune["no_prune"] and prune["schedule"]["ratio"] == 0.9
    assert prune["params"]["deployed"]["removed_fraction"] >= 0.9
    assert "skipped (--no-prune)" in captured.err and not (run / "baseline").exists()
    # the board ran the checkpoint's own widths: nothing was pruned on the way
    assert load_checkpoint(run / "pruned.pt").arch == load_checkpoint(out_ck).arch


def test_many_cuts_keep_the_one_cut_floors(tiny_checkpoint):
    """Twenty cuts to 90 %: no group ends narrower than one 90 % cut can make it (the bounds'
    fractions hold against the unpruned widths; applied to the current widths they compound,
    and the 32-wide latent fell to 4)."""
    from cpr_edge.importance.groups import told_groups
    from cpr_edge.pruning.allocation import Bounds, unpruned_floor

    agent = load_checkpoint(tiny_checkpoint).agent
    floor = unpruned_floor(told_groups(agent.model), Bounds())
    assert floor["latent"] == agent.arch.latent_dim - int(0.75 * agent.arch.latent_dim)
    pruner = GradualPruner(GradualSchedule(0.9, 0, 2000, steps=20, metric="l1"))
    for step in pruner.schedule.points():
        pruner(agent, step)
    assert pruner.state_dict()["done"] and len(pruner.events) >= 15
    assert param_total(agent.arch, "deployed") <= 0.1 * pruner.unpruned["params"]["deployed"]
    for e in pruner.events:
        assert all(e["widths"][n] >= floor[n] for n in floor), e["widths"]
    assert agent.arch.latent_dim == floor["latent"]  # l1 takes the latent to its floor at 90 %
