"""dm_control suite tasks with flattened state observations."""
from cpr_edge.envs.tasks import TASKS

__all__ = ["TASKS", "DMCEnv", "make_env"]


def __getattr__(name: str):
    if name in ("DMCEnv", "make_env"):  # lazy: dm_control and numpy take seconds to import
        from cpr_edge.envs import dmc

        return getattr(dmc, name)
    raise AttributeError(name)
