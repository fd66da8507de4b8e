"""Component-aware structured pruning of the TD-MPC agent (docs/importance.md)."""

__all__ = ["prune_checkpoint"]


def __getattr__(name: str):
    # Lazy: `cpr-edge --help` imports the commands module of this package, and torch with
    # torch-pruning takes seconds to import.
    if name == "prune_checkpoint":
        from cpr_edge.pruning.prune import prune_checkpoint

        return prune_checkpoint
    raise AttributeError(name)
