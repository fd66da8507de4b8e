"""dm_control suite tasks with flattened state observations."""
from cpr_edge.envs.dmc import TASKS, DMCEnv, make_env

__all__ = ["TASKS", "DMCEnv", "make_env"]
