"""Component-aware structured pruning of the TD-MPC agent (docs/importance.md)."""
from cpr_edge.pruning.prune import prune_checkpoint

__all__ = ["prune_checkpoint"]
