"""Episode replay with prioritised sampling of (horizon+1)-step sequences (TD-MPC v1)."""
from __future__ import annotations

import numpy as np
import torch


class ReplayBuffer:
    """Fixed-length episodes in preallocated arrays.

    A sample is a batch of sequences starting at step t of an episode, with
    ``t + horizon <= episode_length`` so that no sequence crosses an episode boundary.
    """

    def __init__(self, obs_dim: int, act_dim: int, episode_length: int, capacity_episodes: int,
                 horizon: int, alpha: float = 0.6, beta: float = 0.4, seed: int = 0):
        self.T, self.H = episode_length, horizon
        self.obs = np.zeros((capacity_episodes, episode_length + 1, obs_dim), np.float32)
        self.act = np.zeros((capacity_episodes, episode_length, act_dim), np.float32)
        self.rew = np.zeros((capacity_episodes, episode_length), np.float32)
        self.prio = np.zeros((capacity_episodes, episode_length), np.float64)
        self.alpha, self.beta = alpha, beta
        self.n_episodes = 0
        self.rng = np.random.default_rng(seed)

    @property
    def capacity(self) -> int:
        return self.obs.shape[0]

    def __len__(self) -> int:
        return min(self.n_episodes, self.capacity) * self.T

    def add(self, obs: np.ndarray, act: np.ndarray, rew: np.ndarray) -> None:
        """Add one full episode: obs [T+1, O], act [T, A], rew [T]."""
        i = self.n_episodes % self.capacity
        self.obs[i], self.act[i], self.rew[i] = obs, act, rew
        filled = min(self.n_episodes, self.capacity)
        top = self.prio[:filled].max() if filled else 1.0
        self.prio[i] = top if top > 0 else 1.0
        self.prio[i, self.T - self.H:] = 0.0  # these starts would cross the episode end
        self.n_episodes += 1

    def sample(self, batch: int):
        """Return obs [B,O], next_obs [H,B,O], action [H,B,A], reward [H,B,1], idx, weights [B]."""
        filled = min(self.n_episodes, self.capacity)
        p = self.prio[:filled].ravel() ** self.alpha
        p /= p.sum()
        flat = self.rng.choice(p.size, size=batch, p=p)
        w = (p.size * p[flat]) ** (-self.beta)
        w /= w.max()
        ep, t = np.divmod(flat, self.T)
        steps = t[None, :] + np.arange(self.H)[:, None]
        obs = self.obs[ep, t]
        next_obs = self.obs[ep[None, :], steps + 1]
        action = self.act[ep[None, :], steps]
        reward = self.rew[ep[None, :], steps][..., None]
        as_t = torch.from_numpy
        return (as_t(obs), as_t(next_obs), as_t(action), as_t(reward), (ep, t),
                torch.from_numpy(w.astype(np.float32)))

    def update_priorities(self, idx, priorities: np.ndarray) -> None:
        ep, t = idx
        self.prio[ep, t] = np.maximum(priorities, 1e-8)

    def transitions(self, limit: int | None = None) -> dict[str, np.ndarray]:
        """The newest full episodes, newest last, as arrays (for the checkpoint sample)."""
        filled = min(self.n_episodes, self.capacity)
        order = [(self.n_episodes - filled + k) % self.capacity for k in range(filled)]
        if limit is not None:
            order = order[-max(1, -(-limit // self.T)):]
        return {"obs": self.obs[order], "action": self.act[order], "reward": self.rew[order]}
