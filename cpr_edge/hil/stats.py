"""Paired return statistics of a HIL check: per-seed pairs of returns (the same held-out seed
for both controllers), the ratio of mean returns with a one-sided 95 % bound, and a verdict
PASS / FAIL / INCONCLUSIVE with the episode count that would decide it (docs/report.md).

The ratio R = mean(subject) / mean(reference) is linearised per pair as d_i = s_i - R r_i, so
se(R) = sd(d) / (sqrt(n) mean(r)) (delta method); the bounds use Student's t with n - 1
degrees of freedom. PASS needs the lower bound at or above the threshold, FAIL the upper
bound below it; anything between, or fewer than two pairs (no variance), is INCONCLUSIVE.
"""
from __future__ import annotations

import math

import numpy as np

CONFIDENCE = 0.95
MAX_EPISODES = 1000

TASK_RATIO_SPREAD = {
    "cartpole-swingup": 0.05,
    "cartpole-balance": 0.03,
    "reacher-easy": 0.35,
    "reacher-hard": 0.4,
    "cheetah-run": 0.2,
    "walker-walk": 0.15,
    "finger-spin": 0.1,
}
"""Prior spread (standard deviation) of per-seed paired return ratios per task, used only to
choose the default episode count before anything ran. Cartpole's returns barely move between
seeds; reacher's depend on where the target lands (a few steps more or less to reach it), and
cheetah's on the gait found: the issue-12 cheetah-run measurement had 3-episode means 38 % off
the 10-episode mean. Tasks not listed get 0.25."""


def t_quantile(p: float, dof: int) -> float:
    from scipy.stats import t

    return float(t.ppf(p, dof))


def ratio_bounds(subject, reference, confidence: float = CONFIDENCE) -> dict:
    """``{n, ratio, lower, upper, se, sd_pair}`` of the paired ratio of means; the bounds are
    one-sided at ``confidence`` each (None below two pairs or for a non-positive reference)."""
    s, r = np.asarray(subject, np.float64), np.asarray(reference, np.float64)
    n = int(s.size)
    out = {"n": n, "ratio": None, "lower": None, "upper": None, "se": None, "sd_pair": None,
           "confidence": confidence}
    if n == 0 or r.size != n or r.mean() <= 0:
        return out
    ratio = float(s.mean() / r.mean())
    out["ratio"] = ratio
    if n < 2:
        return out
    d = s - ratio * r
    sd = float(d.std(ddof=1))
    se = sd / (math.sqrt(n) * float(r.mean()))
    t = t_quantile(confidence, n - 1)
    out.update(lower=ratio - t * se, upper=ratio + t * se, se=se, sd_pair=sd / float(r.mean()))
    return out


def episodes_to_decide(ratio: float, spread: float, threshold: float,
                       confidence: float = CONFIDENCE) -> int | None:
    """Smallest n with t(n-1) * spread / sqrt(n) <= |ratio - threshold|: how many paired episodes
    a ratio this far from the threshold, with this spread, needs; None beyond MAX_EPISODES."""
    gap = abs(ratio - threshold)
    if spread == 0:
        return 2
    if gap == 0:
        return None
    for n in range(2, MAX_EPISODES + 1):
        if t_quantile(confidence, n - 1) * spread / math.sqrt(n) <= gap:
            return n
    return None


def verdict(bounds: dict, threshold: float) -> tuple[str, int | None]:
    """(PASS | FAIL | INCONCLUSIVE, episodes that would decide it)."""
    if bounds["ratio"] is None:
        return "FAIL", None
    if bounds["lower"] is None:  # one pair: no variance to bound with
        spread = TASK_RATIO_SPREAD.get("", 0.25)
        return "INCONCLUSIVE", episodes_to_decide(bounds["ratio"], spread, threshold) or MAX_EPISODES
    if bounds["lower"] >= threshold:
        return "PASS", bounds["n"]
    if bounds["upper"] < threshold:
        return "FAIL", bounds["n"]
    need = episodes_to_decide(bounds["ratio"], bounds["sd_pair"], threshold)
    return "INCONCLUSIVE", need


def default_episodes(task: str, threshold: float = 0.95, expected_ratio: float = 1.0) -> int:
    """Episodes per controller chosen from the task's spread: enough that a model as good as
    its reference (ratio ``expected_ratio``) clears ``threshold`` with the one-sided bound;
    at least 3, at most 50."""
    spread = TASK_RATIO_SPREAD.get(task, 0.25)
    n = episodes_to_decide(expected_ratio, spread, threshold) or 50
    return int(min(50, max(3, n)))
