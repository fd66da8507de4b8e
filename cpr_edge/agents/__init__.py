"""TD-MPC (v1) agent: TOLD model, MPPI planner, training and checkpoints."""
