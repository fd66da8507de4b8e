"""dm_control suite tasks with flattened state observations (docs/tasks.md)."""
from cpr_edge.envs.tasks import TASKS, default_action_repeat, resolve_task

__all__ = ["TASKS", "DMCEnv", "default_action_repeat", "make_env", "resolve_task"]


def __getattr__(name: str):
    if name in ("DMCEnv", "make_env"):  # lazy: dm_control and numpy take seconds to import
        from cpr_edge.envs import dmc

        return getattr(dmc, name)
    raise AttributeError(name)
