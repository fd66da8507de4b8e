"""The supported dm_control tasks and their action repeat (TD-MPC v1: cartpole 8, walker 2, others 4).

Kept free of heavy imports: the command-line parser reads it.
"""

TASKS: dict[str, int] = {
    "cartpole-swingup": 8,
    "pendulum-swingup": 4,
    "reacher-easy": 4,
    "cheetah-run": 4,
    "walker-walk": 2,
}
