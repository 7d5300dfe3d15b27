"""Behaviour cloning, and BC on the top fraction of episodes ("BC-10%").

Supervised imitation of the dataset's actions:

* discrete actions: a categorical policy trained with cross-entropy on the dataset action; the
  greedy action is the argmax of the logits;
* Box actions: a deterministic tanh-squashed actor trained with the mean squared error to the
  dataset action, the BC baseline of Fujimoto & Gu 2021 ("A Minimalist Approach to Offline
  Reinforcement Learning", Sec. 5) and of CORL. Actions are mapped to [-1, 1] by the env's bounds
  for training (with D4RL's bounds of ±1 this is the env's own scale) and mapped back in ``act``.

``top_fraction < 1`` is "%BC" / "BC-10%" (Chen et al. 2021, "Decision Transformer", Sec. 5.1 and
Table 3; CORL's ``any_percent_bc.py``): episodes are ranked by their (undiscounted) return and only
the transitions of the best ``max(1, int(top_fraction · #episodes))`` episodes are cloned. The ranking
is done once on the host in ``make_train`` from the dataset's episode boundaries
(``terminations | truncations``); the selected indices travel in ``trainer.data`` (as
``extras["bc_index"]``), never as a constant of the compiled program.

Defaults are CORL's ``any_percent_bc.py`` (Tarasov et al. 2022, "CORL: Research-oriented Deep
Offline Reinforcement Learning Library"): Adam lr 3e-4, batch 256, two hidden layers of 256 ReLU
units, states normalized by the dataset's mean and std (std + 1e-3), 1M gradient updates,
``top_fraction`` 1.0 (plain BC; CORL's "10% BC" uses 0.1).

Run:  python agents/offline/bc.py --env Pendulum-v1 --dataset PATH --num-seeds 5 --num-updates 100000
      python agents/offline/bc.py --env CartPole-v1 --dataset PATH --top-fraction 0.1
"""
from __future__ import annotations

import dataclasses
from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxrl import data as data_lib
from jaxrl import envs
from jaxrl.config import ConfigError, require, require_positive
from jaxrl.trainer import Trainer

INDEX_KEY = "bc_index"
"""``data.extras`` entry holding the indices of the cloned transitions (first ``count`` entries)."""


@dataclasses.dataclass(frozen=True)
class Config:
    env: str = "Pendulum-v1"
    """Environment id the dataset was collected in (gymnax or this project's envs/)."""
    num_updates: int = 1_000_000
    """Gradient updates per run."""
    lr: float = 3e-4
    """Adam learning rate."""
    batch_size: int = 256
    """Transitions per gradient update, sampled uniformly (with replacement) from the cloned set."""
    hidden_size: int = 256
    """Width of each hidden layer of the policy."""
    num_layers: int = 2
    """Number of hidden ReLU layers of the policy."""
    normalize_states: bool = True
    """Standardize observations by the dataset's mean and std (computed once in make_train)."""
    top_fraction: float = 1.0
    """Clone only the best top_fraction of episodes by return (0.1: BC-10%); 1.0 clones everything.
    Chooses the training subset on the host, so it cannot be swept inside one program."""


# ----------------------------------------------------------------------------------------------
# Network
# ----------------------------------------------------------------------------------------------
class Policy(nn.Module):
    """MLP on flattened observations: logits (discrete) or a tanh-squashed action in [-1, 1]."""

    action_dim: int
    discrete: bool
    hidden_size: int = 256
    num_layers: int = 2

    @nn.compact
    def __call__(self, obs):
        x = obs.reshape((obs.shape[0], -1))
        for _ in range(self.num_layers):
            x = nn.relu(nn.Dense(self.hidden_size)(x))
        out = nn.Dense(self.action_dim)(x)
        return out if self.discrete else jnp.tanh(out)


# ----------------------------------------------------------------------------------------------
# Dataset statistics (host side, once per make_train)
# ----------------------------------------------------------------------------------------------
def episode_ids(terminations, truncations) -> np.ndarray:
    """Episode index of every transition of a stream-ordered dataset (episodes end at term | trunc)."""
    ends = (np.asarray(terminations) > 0) | (np.asarray(truncations) > 0)
    return np.concatenate([[0], np.cumsum(ends[:-1])]).astype(np.int64)


def top_episode_indices(rewards, terminations, truncations, top_fraction: float) -> np.ndarray:
    """Indices (ascending) of the transitions of the best ``max(1, int(top_fraction · E))`` of E episodes.

    Episodes are ranked by undiscounted return; ties keep the earlier episode (stable sort).
    """
    ids = episode_ids(terminations, truncations)
    returns = np.bincount(ids, weights=np.asarray(rewards, np.float64))
    keep = max(1, int(top_fraction * len(returns)))
    best = np.argsort(-returns, kind="stable")[:keep]
    return np.flatnonzero(np.isin(ids, best))


def state_statistics(observations, enabled: bool, eps: float = 1e-3):
    """(mean, std + eps) of the flattened observations, or (0, 1) when normalization is off."""
    obs = np.asarray(observations, np.float32).reshape((observations.shape[0], -1))
    if not enabled:
        return np.zeros(obs.shape[1], np.float32), np.ones(obs.shape[1], np.float32)
    return obs.mean(0).astype(np.float32), (obs.std(0) + eps).astype(np.float32)


# ----------------------------------------------------------------------------------------------
# Training
# ----------------------------------------------------------------------------------------------
class TrainState(NamedTuple):
    params: dict
    opt_state: optax.OptState
    key: jax.Array


def validate(config: Config) -> None:
    require_positive(config, "num_updates", "lr", "batch_size", "hidden_size", "num_layers")
    if isinstance(config.top_fraction, jax.core.Tracer):
        raise ConfigError("top_fraction chooses the cloned episodes on the host and cannot be swept; "
                          "run one command per value")
    require(0 < config.top_fraction <= 1, f"top_fraction must be in (0, 1], got {config.top_fraction}")


def make_train(config: Config, dataset: data_lib.Dataset, env=None, env_params=None) -> Trainer:
    """Build the BC trainer on ``dataset``. ``env``/``env_params`` replace ``config.env`` when given
    (an env that needs constructor arguments, e.g. ``envs.make("Probe-Action", continuous=True)``).

    With ``top_fraction < 1`` the returned ``trainer.data`` is ``dataset`` plus ``extras["bc_index"]``
    (the cloned transitions); train with it: ``jax.jit(jax.vmap(trainer, in_axes=(0, None)))(keys, trainer.data)``.
    """
    validate(config)
    if env is None:
        env, env_params = data_lib.env_for(config.env, dataset)
    env_params = env.default_params if env_params is None else env_params
    data_lib.check_compatible(dataset, config.env, env, env_params, "BC")
    discrete = envs.is_discrete(env, env_params)
    space = env.action_space(env_params)
    if discrete:
        action_dim, action_shape = int(space.n), ()
    else:
        low, high = envs.action_bounds(env, env_params)
        action_shape = tuple(low.shape)
        action_dim = int(np.prod(action_shape))
        mid, half = ((high + low) / 2).reshape(-1), ((high - low) / 2).reshape(-1)
    obs_dim = int(np.prod(dataset.observations.shape[1:]))
    policy = Policy(action_dim, discrete, config.hidden_size, config.num_layers)
    tx = optax.adam(config.lr)

    # Host-side constants: observation statistics (small) and the number of cloned transitions.
    # The index array itself is as long as the dataset, so it goes into the data, not the program.
    obs_mean, obs_std = state_statistics(dataset.observations, config.normalize_states)
    subset = config.top_fraction < 1.0
    data = dataset
    if subset:
        chosen = top_episode_indices(dataset.rewards, dataset.terminations, dataset.truncations, config.top_fraction)
        count = int(len(chosen))
        index = np.concatenate([chosen, np.full(dataset.size - count, chosen[-1])]).astype(np.int32)
        data = dataset.replace(extras={**dataset.extras, INDEX_KEY: jnp.asarray(index)})

    def normalize(obs):
        return (obs.reshape((obs.shape[0], -1)) - obs_mean) / obs_std

    def init(key) -> TrainState:
        key, net_key = jax.random.split(key)
        params = policy.init(net_key, jnp.zeros((1, obs_dim)))
        return TrainState(params, tx.init(params), key)

    def loss_fn(params, obs, actions):
        out = policy.apply(params, normalize(obs))
        if discrete:
            log_probs = jax.nn.log_softmax(out)
            loss = -jnp.take_along_axis(log_probs, actions[:, None].astype(jnp.int32), axis=1).mean()
            accuracy = (jnp.argmax(out, -1) == actions).mean()
            return loss, {"bc_loss": loss, "accuracy": accuracy}
        target = jnp.clip((actions.reshape((actions.shape[0], -1)) - mid) / half, -1.0, 1.0)
        loss = ((out - target) ** 2).mean()
        return loss, {"bc_loss": loss}

    def update(state: TrainState, _iteration, data: data_lib.Dataset):
        # SAMPLE A BATCH (uniformly over the cloned transitions; indices read from the data argument)
        key, sample_key = jax.random.split(state.key)
        if subset:
            if INDEX_KEY not in data.extras:
                raise ValueError(f"bc with top_fraction < 1 reads its cloned indices from extras[{INDEX_KEY!r}]: "
                                 "pass trainer.data (the dataset make_train returns), not the raw dataset")
            slot = jax.random.randint(sample_key, (config.batch_size,), 0, count)
            idx = data.extras[INDEX_KEY][slot]
        else:
            idx = jax.random.randint(sample_key, (config.batch_size,), 0, data.rewards.shape[0])
        obs, actions = data.observations[idx], data.actions[idx]
        # UPDATE POLICY
        grads, metrics = jax.grad(loss_fn, has_aux=True)(state.params, obs, actions)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        return TrainState(params, opt_state, key), metrics

    def act(state: TrainState, obs, key):
        """Greedy action: argmax of the logits, or the actor's output mapped to the env's bounds."""
        out = policy.apply(state.params, normalize(obs))
        if discrete:
            return jnp.argmax(out, axis=-1)
        return (mid + half * out).reshape((obs.shape[0],) + action_shape)

    return Trainer(init=init, update=update, act=act, num_updates=config.num_updates, env_steps_per_update=0,
                   env=env, env_params=env_params, data=data)


if __name__ == "__main__":
    from jaxrl.cli import main

    main(Config, make_train, algorithm="bc", offline=True)
