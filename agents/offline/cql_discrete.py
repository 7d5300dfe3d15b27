"""Conservative Q-Learning for discrete actions (Kumar et al. 2020, "Conservative Q-Learning for Offline
Reinforcement Learning", NeurIPS 2020), the DQN-based variant.

Variant: CQL(H) of eq. 4 on a DQN critic. With finitely many actions the log-sum-exp is exact, so the
critic minimizes

    TD(Q, Q̄)  +  α · E_(s,a)~D [ log Σ_a' exp Q(s, a')  −  Q(s, a) ],

a TD loss (Huber, as DQN/Dopamine, or MSE) against a target network, plus the regularizer, which is
the cross-entropy of the dataset action under softmax(Q(s, ·)): it pushes down every action the
critic likes and pulls up the one in the data. The paper's Atari experiments put this regularizer
on QR-DQN (a distributional critic with 200 quantiles); this file uses an expected-value DQN critic
instead (the paper's Section 3.2 describes CQL on any Q-learning backbone, and the official
repository ships a DQN config, ``atari/batch_rl/fixed_replay/configs/dqn.gin``, with
``min_q_weight``). The Double-DQN target (online argmax, target value) is an option.
The target bootstraps through time-limit truncation: the dataset's ``next_observations`` are the
true next states and only ``terminations`` stop the backup.

Defaults come from the official CQL Atari code (aviralkumar2907/CQL,
``atari/batch_rl/fixed_replay/configs/quantile_*.gin``, the configuration of the paper's Atari
table): min-Q weight α = 1.0 (the README's 1%-data command), Adam with lr 5e-5 and ε = 3.125e-4,
batch 32, γ 0.99, Huber TD loss, a hard target-network copy every 8000 agent steps with one
gradient step per 4 agent steps, i.e. every 2000 gradient updates. The Nature-DQN conv net is
replaced by an MLP for vector observations (two hidden layers of 256), or by the MinAtar conv
torso (Young & Tian 2019) for MinAtar's image observations. ``num_updates`` defaults to 100 000.

Run:  python agents/offline/cql_discrete.py --env CartPole-v1 --dataset PATH --num-seeds 5
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
from jaxrl.config import ConfigError, require, require_positive, require_unit_interval
from jaxrl.trainer import Trainer


@dataclasses.dataclass(frozen=True)
class Config:
    env: str = "CartPole-v1"
    """Environment id of the dataset (gymnax or this project's envs/); must have a Discrete action space."""
    num_updates: int = 100_000
    """Gradient updates per run."""
    batch_size: int = 32
    """Transitions per gradient update, sampled uniformly from the dataset."""
    lr: float = 5e-5
    """Adam learning rate."""
    adam_eps: float = 3.125e-4
    """Adam ε (Dopamine's 0.01 / batch 32)."""
    gamma: float = 0.99
    """Discount factor."""
    cql_alpha: float = 1.0
    """α, the weight of the CQL(H) regularizer (the official code's ``minq_weight``)."""
    target_update_interval: int = 2_000
    """Gradient updates between target-network updates."""
    tau: float = 1.0
    """Target update rate at each target update (1 = hard copy, as DQN)."""
    loss: str = "huber"
    """TD loss: "huber" (δ=1, DQN/Dopamine) or "mse"."""
    double_dqn: bool = False
    """Double DQN target: argmax by the online network, value by the target network."""
    network: str = "mlp"
    """"mlp" (flattens any observation) or "minatar_conv" (3x3x16 conv first; needs HxWxC obs)."""
    hidden_sizes: str = "256,256"
    """Comma-separated widths of the ReLU dense hidden layers."""


# ----------------------------------------------------------------------------------------------
# Network
# ----------------------------------------------------------------------------------------------
def parse_hidden_sizes(hidden_sizes) -> tuple[int, ...]:
    """ "256,256" (or a sequence of ints) -> (256, 256); raises ConfigError on anything else."""
    try:
        if isinstance(hidden_sizes, str):
            sizes = tuple(int(s) for s in hidden_sizes.replace(" ", "").split(",") if s)
        else:
            sizes = tuple(int(s) for s in hidden_sizes)
    except (TypeError, ValueError):
        raise ConfigError(f"hidden_sizes must be comma-separated positive integers like '256,256', "
                          f"got {hidden_sizes!r}") from None
    if not sizes or min(sizes) <= 0:
        raise ConfigError(f"hidden_sizes must be one or more positive integers like '256,256', got {hidden_sizes!r}")
    return sizes


class QNetwork(nn.Module):
    """Q-values of every action for a batch of observations ``(batch, *obs_shape)``."""

    num_actions: int
    hidden_sizes: tuple[int, ...] = (256, 256)
    conv: bool = False

    @nn.compact
    def __call__(self, obs):
        x = obs.astype(jnp.float32)
        if self.conv:  # MinAtar (Young & Tian 2019): 16 filters 3x3, stride 1, no padding
            x = nn.relu(nn.Conv(16, kernel_size=(3, 3), strides=(1, 1), padding="VALID")(x))
        x = x.reshape((x.shape[0], -1))
        for width in self.hidden_sizes:
            x = nn.relu(nn.Dense(width)(x))
        return nn.Dense(self.num_actions)(x)


def make_network(config: Config, num_actions: int) -> QNetwork:
    return QNetwork(num_actions, parse_hidden_sizes(config.hidden_sizes), config.network == "minatar_conv")


# ----------------------------------------------------------------------------------------------
# Losses
# ----------------------------------------------------------------------------------------------
def td_target(reward, terminated, next_q_target, next_q_online, gamma, double_dqn: bool):
    """y = r + γ (1 − terminated) Q̄(s', a*), a* = argmax Q̄(s', ·) (DQN) or argmax Q(s', ·) (Double DQN)."""
    best = jnp.argmax(next_q_online if double_dqn else next_q_target, axis=-1)
    next_value = jnp.take_along_axis(next_q_target, best[..., None], axis=-1)[..., 0]
    return reward + gamma * (1.0 - terminated) * next_value


def cql_regularizer(q_all, action):
    """log Σ_a' exp Q(s, a') − Q(s, a) per sample (≥ 0; the cross-entropy of ``action`` under softmax(Q))."""
    q_data = jnp.take_along_axis(q_all, action[..., None], axis=-1)[..., 0]
    return jax.scipy.special.logsumexp(q_all, axis=-1) - q_data


# ----------------------------------------------------------------------------------------------
# Training
# ----------------------------------------------------------------------------------------------
class TrainState(NamedTuple):
    params: dict
    target_params: dict
    opt_state: optax.OptState
    key: jax.Array


def validate(config: Config) -> None:
    """Raise ConfigError for settings that cannot work (before anything compiles)."""
    require_positive(config, "num_updates", "batch_size", "lr", "adam_eps", "target_update_interval")
    require_unit_interval(config, "gamma")
    require((0 < config.tau) & (config.tau <= 1), f"tau must be in (0, 1], got {config.tau!r}")
    require(config.cql_alpha >= 0, f"cql_alpha must be >= 0, got {config.cql_alpha!r}")
    require(config.loss in ("mse", "huber"), f"loss must be 'mse' or 'huber', got {config.loss!r}")
    require(config.network in ("mlp", "minatar_conv"), f"network must be 'mlp' or 'minatar_conv', got {config.network!r}")
    parse_hidden_sizes(config.hidden_sizes)


def make_train(config: Config, dataset: data_lib.Dataset, env=None, env_params=None) -> Trainer:
    """Build the discrete CQL trainer on ``dataset``. ``env``/``env_params`` replace the env of ``config.env``
    when given: an env that needs constructor arguments, or ``jaxrl.envs.SpacesOnly`` for a D4RL/Minari
    dataset from a simulator gymnax does not have."""
    validate(config)
    if env is None:
        env, env_params = data_lib.env_for(config.env, dataset)
    env_params = env.default_params if env_params is None else env_params
    envs.require_action_space(config.env, env, env_params, "discrete", "CQL (discrete)")
    data_lib.check_compatible(dataset, config.env, env, env_params, "cql_discrete")
    obs_shape = tuple(env.observation_space(env_params).shape)
    require(config.network != "minatar_conv" or len(obs_shape) == 3,
            f"network='minatar_conv' needs image observations (H, W, C); {config.env} has shape {obs_shape}. "
            "Use network='mlp'.")
    num_actions = int(env.action_space(env_params).n)
    network = make_network(config, num_actions)
    tx = optax.adam(config.lr, eps=config.adam_eps)

    def init(key) -> TrainState:
        key, net_key = jax.random.split(key)
        params = network.init(net_key, jnp.zeros((1,) + obs_shape))
        return TrainState(params, params, tx.init(params), key)

    def loss_fn(params, target_params, batch: data_lib.Dataset):
        q_all = network.apply(params, batch.observations)
        next_q_target = network.apply(target_params, batch.next_observations)
        next_q_online = network.apply(params, batch.next_observations) if config.double_dqn else next_q_target
        target = jax.lax.stop_gradient(td_target(batch.rewards, batch.terminations, next_q_target, next_q_online,
                                                 config.gamma, config.double_dqn))
        q_data = jnp.take_along_axis(q_all, batch.actions[:, None], axis=-1)[:, 0]
        if config.loss == "huber":
            td_loss = optax.huber_loss(q_data, target, delta=1.0).mean()
        else:
            td_loss = ((q_data - target) ** 2).mean()
        cql_loss = cql_regularizer(q_all, batch.actions).mean()
        loss = td_loss + config.cql_alpha * cql_loss
        # How often the greedy action is the dataset's: the regularizer drives this towards the data.
        agreement = (jnp.argmax(q_all, axis=-1) == batch.actions).mean()
        return loss, {"td_loss": td_loss, "cql_loss": cql_loss, "q_data": q_data.mean(),
                      "q_max": q_all.max(axis=-1).mean(), "data_action_agreement": agreement}

    def update(state: TrainState, i, data: data_lib.Dataset):
        # SAMPLE A BATCH from the dataset argument (never from the closed-over `dataset`)
        key, sample_key = jax.random.split(state.key)
        batch = data_lib.sample_batch(data, sample_key, config.batch_size)
        batch = batch.replace(actions=batch.actions.astype(jnp.int32))

        # UPDATE NETWORK: TD loss + α · CQL(H)
        (loss, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params, state.target_params, batch)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)

        # UPDATE TARGET NETWORK every target_update_interval updates (i is an unbatched scan input)
        target_params = jax.lax.cond(
            (i + 1) % config.target_update_interval == 0,
            lambda: optax.incremental_update(params, state.target_params, config.tau),
            lambda: state.target_params,
        )
        return TrainState(params, target_params, opt_state, key), {"loss": loss, **aux}

    def act(state: TrainState, obs, key):
        """Greedy action argmax_a Q(obs, a) for a batch of raw env observations."""
        return jnp.argmax(network.apply(state.params, obs), axis=-1)

    return Trainer(init=init, update=update, act=act, num_updates=config.num_updates, env_steps_per_update=0,
                   env=env, env_params=env_params, data=dataset)


if __name__ == "__main__":
    from jaxrl.cli import main

    main(Config, make_train, algorithm="cql_discrete", offline=True)
