"""Gradient-based importance of the TD-MPC agent's unit groups (docs/importance.md)."""
from cpr_edge.importance.groups import UnitGroup, told_groups
from cpr_edge.importance.metrics import GRADIENT_METRICS, METRICS, WEIGHT_METRICS
from cpr_edge.importance.tracker import ImportanceTracker

__all__ = ["UnitGroup", "told_groups", "GRADIENT_METRICS", "METRICS", "WEIGHT_METRICS", "ImportanceTracker"]
