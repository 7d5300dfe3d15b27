"""Deep Q-Network (Mnih et al. 2015, "Human-level control through deep reinforcement learning", Nature).

Q-learning with a neural network, an experience-replay buffer sampled uniformly, and a target
network that is copied from the online network every ``target_update_interval`` env steps (or
moved towards it by Polyak averaging with ``tau`` < 1). Exploration is ε-greedy with ε decaying
linearly from ``start_e`` to ``end_e`` over ``exploration_fraction`` of training. ``double_dqn``
picks the bootstrap action with the online network and evaluates it with the target network
(van Hasselt, Guez & Silver 2016, "Deep Reinforcement Learning with Double Q-learning", eq. 4).

Everything lives on device: the replay buffer is a fixed-capacity circular array in the train
state (a write position and a fill counter; sampling is uniform over the filled slots), so a run
is one compiled program and the CLI can checkpoint and resume it. One iteration is one step of
``num_envs`` parallel envs followed by the gradient steps and target update that CleanRL's
one-env loop would have done at those env-step indices (see ``update``): with ``num_envs=1`` the
schedule is exactly CleanRL's. (With several envs each env draws its own ε-greedy coin; when one
iteration passes several target-update indices, the target is updated once.)

Defaults are CleanRL's ``dqn_jax.py`` CartPole-v1 settings (Huang et al. 2022, "CleanRL",
JMLR; docs.cleanrl.dev/rl-algorithms/dqn/#dqn_jaxpy): Adam lr 2.5e-4, 1 env, buffer 10,000,
γ 0.99, τ 1.0 with a target update every 500 steps, batch 128, ε 1 → 0.05 over 50 % of training,
learning starts after 10,000 steps, one gradient step every 10 env steps, 500,000 steps, a
120-84 ReLU MLP. Like CleanRL (and unlike the Nature paper's error clipping, i.e. a Huber loss
with δ=1 and RMSProp) the default loss is the mean squared TD error; ``loss="huber"`` gives the
paper's. Observations of any shape are flattened by the network (MinAtar's 10x10xC included);
``network="minatar_conv"`` gives the MinAtar paper's network instead (Young & Tian 2019: one 3x3
convolution with 16 channels, stride 1, then the dense layers of ``hidden_sizes``, e.g. 128).

Run:  python agents/online/dqn.py --env CartPole-v1 --num-seeds 4
MinAtar, with settings near the MinAtar paper's DQN (buffer 100k, batch 32, target every 1,000 steps,
learning after 5,000, conv net with 128 units; 4 envs, one gradient step per 4 env steps):
      python agents/online/dqn.py --env Breakout-MinAtar --network minatar_conv --hidden-sizes 128 \
          --total-timesteps 1000000 --num-envs 4 --buffer-size 100000 --batch-size 32 --learning-starts 5000 \
          --train-frequency 4 --target-update-interval 1000 --exploration-fraction 0.1 --end-e 0.01
"""
from __future__ import annotations

import dataclasses
from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxrl import envs, replay
from jaxrl.config import ConfigError, require, require_positive, require_unit_interval
from jaxrl.trainer import Trainer
from jaxrl.wrappers import EpisodeStatistics, VectorEnv, episode_metrics


@dataclasses.dataclass(frozen=True)
class Config:
    env: str = "CartPole-v1"
    """Environment id (gymnax or this project's envs/); discrete actions only."""
    total_timesteps: int = 500_000
    """Env steps per run (over all parallel envs)."""
    lr: float = 2.5e-4
    """Adam learning rate."""
    num_envs: int = 1
    """Parallel envs stepped together each iteration."""
    buffer_size: int = 10_000
    """Capacity of the replay buffer (transitions); the oldest are overwritten when it is full."""
    gamma: float = 0.99
    """Discount factor."""
    tau: float = 1.0
    """Target update rate: 1.0 copies the online network (hard update), < 1 is Polyak averaging."""
    target_update_interval: int = 500
    """Env steps between target-network updates."""
    batch_size: int = 128
    """Transitions per gradient step, sampled uniformly from the filled part of the buffer."""
    start_e: float = 1.0
    """ε of the ε-greedy policy at the start of training."""
    end_e: float = 0.05
    """ε at the end of the linear decay (and after it)."""
    exploration_fraction: float = 0.5
    """Fraction of total_timesteps over which ε decays linearly from start_e to end_e."""
    learning_starts: int = 10_000
    """Env steps collected before the first gradient step (and target update)."""
    train_frequency: int = 10
    """One gradient step every this many env steps (counted over all parallel envs)."""
    loss: str = "mse"
    """TD loss: "mse" (CleanRL) or "huber" (δ=1, the Nature paper's error clipping)."""
    double_dqn: bool = False
    """Double DQN target: argmax by the online network, value by the target network."""
    network: str = "mlp"
    """"mlp" (flattens any observation) or "minatar_conv" (3x3x16 conv first; needs HxWxC obs)."""
    hidden_sizes: str = "120,84"
    """Comma-separated widths of the ReLU dense hidden layers, e.g. "120,84" or "128"."""

    @property
    def num_updates(self) -> int:
        return self.total_timesteps // self.num_envs


# ----------------------------------------------------------------------------------------------
# Network
# ----------------------------------------------------------------------------------------------
def parse_hidden_sizes(hidden_sizes) -> tuple[int, ...]:
    """ "120,84" (or a sequence of ints) -> (120, 84); raises ConfigError on anything else."""
    try:
        if isinstance(hidden_sizes, str):
            sizes = tuple(int(s) for s in hidden_sizes.replace(" ", "").split(",") if s)
        else:
            sizes = tuple(int(s) for s in hidden_sizes)
    except (TypeError, ValueError):
        raise ConfigError(f"hidden_sizes must be comma-separated positive integers like '120,84', "
                          f"got {hidden_sizes!r}") from None
    if not sizes or min(sizes) <= 0:
        raise ConfigError(f"hidden_sizes must be one or more positive integers like '120,84', got {hidden_sizes!r}")
    return sizes


class QNetwork(nn.Module):
    """Q-values of every action for a batch of observations ``(batch, *obs_shape)``."""

    num_actions: int
    hidden_sizes: tuple[int, ...] = (120, 84)
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
# Transitions stored in the replay buffer (jaxrl.replay: fixed capacity, on device, circular)
# ----------------------------------------------------------------------------------------------
class Transition(NamedTuple):
    obs: jax.Array
    action: jax.Array
    reward: jax.Array
    next_obs: jax.Array        # the true next state: info["final_observation"] (pre-reset)
    terminated: jax.Array      # 1.0 where the episode terminated (no bootstrap); truncation is 0.0


# ----------------------------------------------------------------------------------------------
# Targets and schedules
# ----------------------------------------------------------------------------------------------
def td_target(reward, terminated, next_q_target, next_q_online, gamma, double_dqn: bool):
    """y = r + γ (1 − terminated) Q_target(s', a*), with a* = argmax Q_target (DQN) or argmax Q_online (Double DQN)."""
    if double_dqn:
        best = jnp.argmax(next_q_online, axis=-1)
    else:
        best = jnp.argmax(next_q_target, axis=-1)
    next_value = jnp.take_along_axis(next_q_target, best[..., None], axis=-1)[..., 0]
    return reward + gamma * (1.0 - terminated) * next_value


def linear_epsilon(step, start_e, end_e, duration):
    """ε at env step ``step``: linear from start_e to end_e over ``duration`` steps, then end_e."""
    frac = jnp.clip(step / duration, 0.0, 1.0)
    return start_e + frac * (end_e - start_e)


def count_multiples(first, last, period):
    """How many multiples of ``period`` lie in the integer range [first, last] (0 if empty)."""
    return jnp.maximum(last // period - (first - 1) // period, 0)


# ----------------------------------------------------------------------------------------------
# Training
# ----------------------------------------------------------------------------------------------
class TrainState(NamedTuple):
    params: dict
    target_params: dict
    opt_state: optax.OptState
    buffer: replay.ReplayBuffer
    env_state: object
    obs: jax.Array
    key: jax.Array
    td_loss: jax.Array         # of the latest gradient step (NaN before the first)
    q_value: jax.Array         # mean Q(s, a) of the latest sampled batch (NaN before the first)


def make_env(config: Config):
    env, env_params = envs.make(config.env)
    return env, env_params, EpisodeStatistics(env)


def validate(config: Config) -> None:
    """Raise ConfigError for settings that cannot work (before anything compiles)."""
    require_positive(config, "lr", "total_timesteps", "num_envs", "buffer_size", "batch_size",
                     "target_update_interval", "train_frequency", "exploration_fraction")
    require_unit_interval(config, "gamma", "start_e", "end_e", "exploration_fraction")
    require((0 < config.tau) & (config.tau <= 1), f"tau must be in (0, 1], got {config.tau!r}")
    require(config.learning_starts >= 0, f"learning_starts must be >= 0, got {config.learning_starts}")
    require(config.learning_starts < config.total_timesteps,
            f"learning_starts={config.learning_starts} must be below total_timesteps={config.total_timesteps} "
            "(otherwise no gradient step is ever taken)")
    require(config.total_timesteps >= config.num_envs,
            f"total_timesteps={config.total_timesteps} is less than one step of num_envs={config.num_envs} envs")
    require(config.buffer_size >= config.num_envs,
            f"buffer_size={config.buffer_size} must hold at least one step of num_envs={config.num_envs} envs")
    require(config.loss in ("mse", "huber"), f"loss must be 'mse' or 'huber', got {config.loss!r}")
    require(config.network in ("mlp", "minatar_conv"), f"network must be 'mlp' or 'minatar_conv', got {config.network!r}")
    parse_hidden_sizes(config.hidden_sizes)
    env, env_params = envs.make(config.env)
    envs.require_action_space(config.env, env, env_params, "discrete", "DQN")
    obs_shape = tuple(env.observation_space(env_params).shape)
    require(config.network != "minatar_conv" or len(obs_shape) == 3,
            f"network='minatar_conv' needs image observations (H, W, C); {config.env} has shape {obs_shape}. "
            "Use network='mlp'.")


def make_train(config: Config) -> Trainer:
    validate(config)
    env, env_params, wrapped = make_env(config)
    num_actions = int(env.action_space(env_params).n)
    network = make_network(config, num_actions)
    tx = optax.adam(config.lr)
    num_envs, period = config.num_envs, config.train_frequency
    exploration_steps = config.exploration_fraction * config.total_timesteps

    vec_env = VectorEnv(wrapped, num_envs)

    def init(key) -> TrainState:
        key, net_key, env_key = jax.random.split(key, 3)
        obs, env_state = vec_env.reset(env_key, env_params)
        params = network.init(net_key, obs[:1])
        example = Transition(obs[0], jnp.int32(0), jnp.float32(0), obs[0], jnp.float32(0))
        nan = jnp.float32(jnp.nan)
        return TrainState(params, params, tx.init(params), replay.init(config.buffer_size, example),
                          env_state, obs, key, nan, nan)

    def loss_fn(params, target_params, batch: Transition):
        next_q_target = network.apply(target_params, batch.next_obs)
        next_q_online = network.apply(params, batch.next_obs) if config.double_dqn else next_q_target
        target = jax.lax.stop_gradient(
            td_target(batch.reward, batch.terminated, next_q_target, next_q_online, config.gamma, config.double_dqn))
        q = jnp.take_along_axis(network.apply(params, batch.obs), batch.action[:, None], axis=-1)[:, 0]
        if config.loss == "huber":
            loss = optax.huber_loss(q, target, delta=1.0).mean()
        else:
            loss = ((q - target) ** 2).mean()
        return loss, q.mean()

    def update(state: TrainState, i):
        # The env steps of this iteration have (0-based) indices [first, last], as in CleanRL's loop.
        first = i * num_envs
        last = first + num_envs - 1

        # COLLECT EXPERIENCE (ε-greedy, one step of every env)
        key, explore_key, random_key, step_key = jax.random.split(state.key, 4)
        epsilon = linear_epsilon(first, config.start_e, config.end_e, exploration_steps)
        greedy = jnp.argmax(network.apply(state.params, state.obs), axis=-1)
        random_action = jax.random.randint(random_key, (num_envs,), 0, num_actions)
        explore = jax.random.uniform(explore_key, (num_envs,)) < epsilon
        action = jnp.where(explore, random_action, greedy)
        next_obs, env_state, reward, terminated, truncated, info = vec_env.step(step_key, state.env_state, action, env_params)
        # Bootstrap through truncation: the next state is the pre-reset observation; mask only termination.
        transition = Transition(state.obs, action.astype(jnp.int32), reward.astype(jnp.float32),
                                info["final_observation"], terminated.astype(jnp.float32))
        buffer = replay.add(state.buffer, transition)

        # UPDATE NETWORK: one gradient step per env-step index t > learning_starts with t % train_frequency == 0.
        # The count depends only on the (unbatched) iteration index, so under vmap it stays a real loop.
        start = jnp.maximum(first, config.learning_starts + 1)
        num_grad_steps = count_multiples(start, last, period)

        def gradient_step(_, carry):
            params, opt_state, key, _, _ = carry
            key, sample_key = jax.random.split(key)
            batch = replay.sample(buffer, sample_key, config.batch_size)
            (loss, q_mean), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, state.target_params, batch)
            updates, opt_state = tx.update(grads, opt_state, params)
            return optax.apply_updates(params, updates), opt_state, key, loss, q_mean

        params, opt_state, key, td_loss, q_value = jax.lax.fori_loop(
            0, num_grad_steps, gradient_step, (state.params, state.opt_state, key, state.td_loss, state.q_value))

        # UPDATE TARGET NETWORK: once if an index t > learning_starts with t % target_update_interval == 0 was passed.
        do_target = count_multiples(start, last, config.target_update_interval) > 0
        target_params = jax.lax.cond(
            do_target,
            lambda: optax.incremental_update(params, state.target_params, config.tau),
            lambda: state.target_params,
        )

        metrics = {"td_loss": td_loss, "q_value": q_value, "epsilon": jnp.asarray(epsilon, jnp.float32),
                   "buffer_size": buffer.size}
        metrics.update(episode_metrics(info))
        new_state = TrainState(params, target_params, opt_state, buffer, env_state, next_obs, key, td_loss, q_value)
        return new_state, metrics

    def act(state: TrainState, obs, key):
        """Greedy action argmax_a Q(obs, a) for a batch of raw env observations."""
        return jnp.argmax(network.apply(state.params, obs), axis=-1)

    return Trainer(init=init, update=update, act=act, num_updates=config.num_updates,
                   env_steps_per_update=num_envs, env=env, env_params=env_params)


if __name__ == "__main__":
    from jaxrl.cli import main

    main(Config, make_train, algorithm="dqn")
