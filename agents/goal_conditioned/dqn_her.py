"""DQN with Hindsight Experience Replay (Andrychowicz et al. 2017, "Hindsight Experience Replay", NeurIPS).

A goal-conditioned Q-network Q(s ⊕ g, a) (a universal value function approximator, Schaul et al.
2015) trained by DQN (Mnih et al. 2015) from an on-device replay buffer of whole episodes, whose
transitions are replayed with hindsight goals (``jaxrl.relabel``): with probability k/(k+1) the
goal of a replayed transition is replaced by a goal the agent actually achieved later in the same
episode (strategy ``future``, k = 4), and its reward is recomputed with the env's
``compute_reward``. ``her=False`` gives plain DQN with the same everything else (the paper's
baseline in Fig. 1).

The loop follows the paper's training procedure (App. A): one iteration is one *cycle*:

1. COLLECT EPISODES: ``num_envs`` episodes from fresh resets, run in parallel to their end
   (ε-greedy: a uniformly random action with probability ``epsilon``);
2. STORE them in the episode buffer;
3. UPDATE NETWORK: ``num_optim_steps`` Adam steps on minibatches of ``batch_size`` replayed
   transitions, loss (Q(s‖g, a) − y)² with y = clip(r + γ (1 − terminated) max_a' Q_target(s'‖g, a'),
   −1/(1−γ), 0) (the paper clips targets to the range of returns of its −1/0 rewards);
4. UPDATE TARGET NETWORK: Polyak averaging θ' ← polyak·θ' + (1 − polyak)·θ.

Episodes end by the env's time limit (a truncation: the target bootstraps through it) or by
termination (no bootstrap). The paper's bit flipping task never terminates: episodes last n steps
and succeed if the goal is reached at any step.

Defaults are the paper's (App. A, "experiment details", shared by the bit-flipping experiment
except the network): one hidden layer of 256 ReLU units for bit flipping; Adam, learning rate
0.001; γ = 0.98; minibatch 128; 40 optimization steps per cycle; target network updated after
every cycle with decay 0.95; replay buffer of 10^6 transitions; 16 episodes per cycle (2 rollouts
per worker x 8 MPI workers); random actions with probability 0.2; `future` with k = 4; targets
clipped to [−1/(1−γ), 0]. The paper does not state its bit-flipping budget; the default here is
1,000 cycles (16,000 episodes) at 10 bits, which `scripts/reproduce_goal.py her-bitflip` also uses
for every n.

Differences from the paper, by design of the vectorized setting:

* one process: the 16 episodes of a cycle run as 16 parallel envs (the paper: 8 MPI workers whose
  gradients are averaged); there are no epochs, only cycles (``total_timesteps`` counts
  ``num_envs × max_steps_in_episode`` env steps per cycle, the paper's epoch is 50 cycles);
* DQN's discrete actions: the paper's "random action with probability 0.2" is ε-greedy with a
  constant ε = 0.2 (the Gaussian action noise of its DDPG has no discrete counterpart);
* the relabeled mixture is sampled (relabel probability k/(k+1)) instead of stored as k extra
  copies (the same distribution in expectation, as in OpenAI baselines' implementation);
* observations are not normalized (bit vectors are already in [0, 1]); the greedy policy is
  evaluated with the online network (the paper evaluates with the target network).

Metrics: ``success_rate`` (the headline: the fraction of this cycle's exploration episodes that
reached their goal at some step), ``episode_return``, ``episode_length``, ``td_loss``, ``q_value``
and ``relabeled_fraction``. The CLI's greedy evaluation reports ``eval_success`` per run.

Run:  python agents/goal_conditioned/dqn_her.py --env BitFlipping-10-v0 --num-seeds 4
      python agents/goal_conditioned/dqn_her.py --env BitFlipping-10-v0 --no-her       # plain DQN
      python agents/goal_conditioned/dqn_her.py --env FourRoomsGoal-v0    # runs; not tuned there (with the
      # bit-flipping defaults, 1,000 cycles gave greedy success 0.47 with HER and 0.40 without, 2 seeds)
"""
from __future__ import annotations

import dataclasses
from functools import partial
from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from gymnax.environments import spaces

from jaxrl import envs, relabel
from jaxrl.config import ConfigError, require, require_positive, require_unit_interval
from jaxrl.trainer import Trainer
from jaxrl.wrappers import VectorEnv

GOAL_KEYS = ("observation", "achieved_goal", "desired_goal")


@dataclasses.dataclass(frozen=True)
class Config:
    env: str = "BitFlipping-10-v0"
    """Goal-conditioned environment id (dict observations with observation/achieved_goal/desired_goal); discrete actions."""
    total_timesteps: int = 160_000
    """Env steps per run; one cycle takes num_envs x max_steps_in_episode of them (default: 1,000 cycles at 10 bits)."""
    lr: float = 1e-3
    """Adam learning rate (paper: 0.001)."""
    num_envs: int = 16
    """Episodes collected in parallel per cycle (paper: 16, 2 per worker x 8 workers)."""
    num_optim_steps: int = 40
    """Gradient steps per cycle (paper: 40)."""
    batch_size: int = 128
    """Transitions per gradient step (paper: 128)."""
    buffer_size: int = 1_000_000
    """Replay capacity in transitions (paper: 10^6); stored as buffer_size // max_steps_in_episode episodes."""
    gamma: float = 0.98
    """Discount factor (paper: 0.98)."""
    polyak: float = 0.95
    """Target network decay per cycle: θ' ← polyak·θ' + (1 − polyak)·θ (paper: 0.95)."""
    epsilon: float = 0.2
    """Probability of a uniformly random action while collecting (paper: 0.2)."""
    her: bool = True
    """Replay with hindsight goals (False: plain DQN on the original goals)."""
    strategy: str = "future"
    """Hindsight goal strategy: "future", "final", "episode" or "random" (paper's best: future)."""
    replay_k: int = 4
    """Hindsight goals per original goal: a replayed goal is relabeled with probability k/(k+1) (paper: 4 -> 0.8)."""
    clip_target: bool = True
    """Clip TD targets to [-1/(1-γ), 0], the return range of -1/0 rewards (paper)."""
    hidden_sizes: str = "256"
    """Comma-separated widths of the ReLU hidden layers (paper, bit flipping: one layer of 256)."""


# ----------------------------------------------------------------------------------------------
# Network: Q(s ⊕ g, ·)
# ----------------------------------------------------------------------------------------------
def parse_hidden_sizes(hidden_sizes) -> tuple[int, ...]:
    """ "256" or "64,64" -> (256,) or (64, 64); raises ConfigError on anything else."""
    try:
        sizes = tuple(int(s) for s in str(hidden_sizes).replace(" ", "").split(",") if s)
    except ValueError:
        raise ConfigError(f"hidden_sizes must be comma-separated positive integers like '256', got {hidden_sizes!r}") from None
    if not sizes or min(sizes) <= 0:
        raise ConfigError(f"hidden_sizes must be one or more positive integers like '256', got {hidden_sizes!r}")
    return sizes


def goal_input(obs: dict) -> jax.Array:
    """The network input: the state ``observation`` and the ``desired_goal`` concatenated (s ⊕ g)."""
    return jnp.concatenate([obs["observation"], obs["desired_goal"]], axis=-1).astype(jnp.float32)


class QNetwork(nn.Module):
    """Q-values of every action for a batch of goal observations (dicts)."""

    num_actions: int
    hidden_sizes: tuple[int, ...] = (256,)

    @nn.compact
    def __call__(self, obs: dict):
        x = goal_input(obs)
        for width in self.hidden_sizes:
            x = nn.relu(nn.Dense(width)(x))
        return nn.Dense(self.num_actions)(x)


# ----------------------------------------------------------------------------------------------
# Loss
# ----------------------------------------------------------------------------------------------
def td_target(reward, terminated, next_q_target, gamma, clip_target: bool):
    """y = r + γ (1 − terminated) max_a' Q_target(s'‖g, a') (DQN, Mnih et al. 2015, eq. 3), clipped
    to [−1/(1−γ), 0] when ``clip_target`` (HER paper, App. A)."""
    y = reward + gamma * (1.0 - terminated) * next_q_target.max(axis=-1)
    if clip_target:
        y = jnp.clip(y, -1.0 / (1.0 - gamma), 0.0)
    return y


# ----------------------------------------------------------------------------------------------
# Training
# ----------------------------------------------------------------------------------------------
class TrainState(NamedTuple):
    params: dict
    target_params: dict
    opt_state: optax.OptState
    buffer: relabel.EpisodeBuffer
    key: jax.Array


def make_env(config: Config):
    env, env_params = envs.make(config.env)
    return env, env_params


def episode_steps(env_params) -> int:
    """T: the env's time limit, the longest an episode can be (a Python int: it sets array shapes)."""
    return int(env_params.max_steps_in_episode)


def validate(config: Config) -> None:
    """Raise ConfigError for settings that cannot work (before anything compiles)."""
    require_positive(config, "lr", "total_timesteps", "num_envs", "num_optim_steps", "batch_size", "buffer_size")
    require_unit_interval(config, "gamma", "epsilon")
    require((0 <= config.polyak) & (config.polyak < 1), f"polyak must be in [0, 1), got {config.polyak!r}")
    require(config.gamma < 1, f"gamma must be < 1 (targets are clipped to [-1/(1-gamma), 0]), got {config.gamma!r}")
    require(config.strategy in relabel.STRATEGIES,
            f"strategy must be one of {', '.join(relabel.STRATEGIES)}, got {config.strategy!r}")
    require(isinstance(config.replay_k, int) and config.replay_k >= 0, f"replay_k must be an integer >= 0, got {config.replay_k!r}")
    parse_hidden_sizes(config.hidden_sizes)
    env, env_params = make_env(config)
    envs.require_action_space(config.env, env, env_params, "discrete", "DQN+HER")
    space = env.observation_space(env_params)
    keys = sorted(getattr(space, "spaces", {}) or {})
    require(isinstance(space, spaces.Dict) and set(GOAL_KEYS) <= set(keys) and hasattr(env, "compute_reward"),
            f"DQN+HER needs a goal-conditioned env (dict observations with {', '.join(GOAL_KEYS)} and a "
            f"compute_reward method), but {config.env} has observation space {type(space).__name__} {keys or ''}. "
            "Try BitFlipping-10-v0.")
    steps = episode_steps(env_params)
    cycle = config.num_envs * steps
    require(config.total_timesteps >= cycle,
            f"total_timesteps={config.total_timesteps} is less than one cycle ({config.num_envs} envs x "
            f"{steps} steps = {cycle}); raise it")
    require(config.buffer_size >= cycle,
            f"buffer_size={config.buffer_size} must hold one cycle of episodes ({config.num_envs} x {steps} = {cycle} transitions)")


def make_train(config: Config) -> Trainer:
    validate(config)
    env, env_params = make_env(config)
    num_actions = int(env.action_space(env_params).n)
    network = QNetwork(num_actions, parse_hidden_sizes(config.hidden_sizes))
    tx = optax.adam(config.lr)
    num_envs, steps = config.num_envs, episode_steps(env_params)
    capacity = config.buffer_size // steps
    relabel_prob = relabel.relabel_probability(config.replay_k) if config.her else 0.0
    vec_env = VectorEnv(env, num_envs)
    # Envs that can terminate on success say which relabeled transitions would have terminated.
    compute_terminated = (partial(env.compute_terminated, params=env_params)
                          if hasattr(env, "compute_terminated") else None)

    def init(key) -> TrainState:
        key, net_key, env_key = jax.random.split(key, 3)
        obs, _ = env.reset(env_key, env_params)
        params = network.init(net_key, jax.tree.map(lambda x: x[None], obs))
        buffer = relabel.init(capacity, steps, obs)
        return TrainState(params, params, tx.init(params), buffer, key)

    def collect(params, key):
        """``num_envs`` ε-greedy episodes from fresh resets, each run for ``steps`` steps; steps after
        an episode's end (its first termination or truncation) are masked out by its length."""
        reset_key, run_key = jax.random.split(key)
        obs, env_state = vec_env.reset(reset_key, env_params)

        def env_step(carry, step_key):
            obs, env_state, alive = carry
            explore_key, random_key, env_key = jax.random.split(step_key, 3)
            greedy = jnp.argmax(network.apply(params, obs), axis=-1)
            random_action = jax.random.randint(random_key, (num_envs,), 0, num_actions)
            explore = jax.random.uniform(explore_key, (num_envs,)) < config.epsilon
            action = jnp.where(explore, random_action, greedy)
            next_obs, env_state, reward, terminated, truncated, info = vec_env.step(env_key, env_state, action, env_params)
            out = (action, reward.astype(jnp.float32), terminated.astype(jnp.float32),
                   info["final_observation"], info["success"], alive)
            return (next_obs, env_state, alive & ~(terminated | truncated)), out

        alive = jnp.ones(num_envs, bool)
        _, (action, reward, terminated, reached, success, valid) = jax.lax.scan(
            env_step, (obs, env_state, alive), jax.random.split(run_key, steps))
        # time-major [T, num_envs] -> episode-major [num_envs, T]; states s_0 .. s_T
        states = jax.tree.map(lambda first, rest: jnp.concatenate([first[None], rest]).swapaxes(0, 1), obs, reached)
        action, reward, terminated, success, valid = (x.swapaxes(0, 1) for x in (action, reward, terminated, success, valid))
        length = valid.sum(axis=1).astype(jnp.int32)
        stats = {
            "success_rate": jnp.any(success & valid, axis=1).astype(jnp.float32).mean(),
            "episode_return": jnp.where(valid, reward, 0.0).sum(axis=1).mean(),
            "episode_length": length.astype(jnp.float32).mean(),
        }
        return (states, action, reward, terminated, length), stats

    def loss_fn(params, target_params, batch: relabel.Transition):
        """Mean squared TD error (Q(s‖g, a) − y)² of DQN (Mnih et al. 2015, eq. 2) on hindsight-relabeled
        transitions (Andrychowicz et al. 2017, Alg. 1), with y from ``td_target``."""
        next_q = network.apply(target_params, batch.next_obs)
        target = jax.lax.stop_gradient(td_target(batch.reward, batch.terminated, next_q, config.gamma, config.clip_target))
        q = jnp.take_along_axis(network.apply(params, batch.obs), batch.action[:, None], axis=-1)[:, 0]
        return ((q - target) ** 2).mean(), q.mean()

    def update(state: TrainState, i):
        key, collect_key, train_key = jax.random.split(state.key, 3)

        # COLLECT EPISODES and STORE them
        episodes, stats = collect(state.params, collect_key)
        buffer = relabel.add(state.buffer, *episodes)

        # UPDATE NETWORK: num_optim_steps gradient steps on hindsight-relabeled minibatches
        def gradient_step(carry, step_key):
            params, opt_state = carry
            batch = relabel.sample(step_key, buffer, config.batch_size, config.strategy, relabel_prob,
                                   env.compute_reward, compute_terminated)
            (loss, q_mean), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, state.target_params, batch)
            updates, opt_state = tx.update(grads, opt_state, params)
            return (optax.apply_updates(params, updates), opt_state), (loss, q_mean, batch.relabeled.mean())

        (params, opt_state), (loss, q_mean, relabeled) = jax.lax.scan(
            gradient_step, (state.params, state.opt_state), jax.random.split(train_key, config.num_optim_steps))

        # UPDATE TARGET NETWORK (Polyak averaging, once per cycle)
        target_params = optax.incremental_update(params, state.target_params, 1.0 - config.polyak)

        metrics = {**stats, "td_loss": loss.mean(), "q_value": q_mean.mean(), "relabeled_fraction": relabeled.mean(),
                   "buffer_episodes": buffer.size}
        return TrainState(params, target_params, opt_state, buffer, key), metrics

    def act(state: TrainState, obs, key):
        """Greedy action argmax_a Q(s ⊕ g, a) for a batch of goal observation dicts."""
        return jnp.argmax(network.apply(state.params, obs), axis=-1)

    return Trainer(init=init, update=update, act=act, num_updates=config.total_timesteps // (num_envs * steps),
                   env_steps_per_update=num_envs * steps, env=env, env_params=env_params)


if __name__ == "__main__":
    from jaxrl.cli import main

    main(Config, make_train, algorithm="dqn_her")
