"""Sauté PPO (Sootla et al. 2022, "Sauté RL: Almost Surely Safe Reinforcement Learning Using State
Augmentation", ICML): PPO on the safety-augmented MDP.

The constraint Σ_t γ_c^t c_t ≤ d is removed from the problem by moving it into the state. The
remaining safety budget, normalized to start at 1,

    z_0 = 1,    z_{t+1} = (z_t − c_t / d̃) / γ_c                                  (Sauté's safety state)

is appended to the observation, and the reward is reshaped: r̃_t = r_t while z_{t+1} > 0, else the
fixed ``unsafe_reward`` (the paper's −∞ for a violated budget, approximated by a constant). The
safety state is the paper's discounted one (``cost_gamma`` = γ_c; γ_c = 1 gives the undiscounted
budget z_{t+1} = z_t − c_t / d). As in OmniSafe's ``SauteAdapter``, for γ_c < 1 the undiscounted
episode limit d is turned into the discounted budget d̃ = d (1 − γ_c^T) / ((1 − γ_c) T) of a cost
spread evenly over the T = ``max_steps_in_episode`` steps of an episode (d̃ = d when γ_c = 1), and
the reward is replaced from the step whose z_{t+1} is ≤ 0 on (as OmniSafe and the authors' code).
Costs are ≥ 0, so once z ≤ 0 it stays ≤ 0 until the episode ends; every reset, after a termination
or a truncation, restores z = 1 (OmniSafe's adapter restores it after terminations only). Then
plain PPO (clipped surrogate, Schulman et al. 2017, eq. 7; GAE, Schulman et al. 2016, eq. 16) learns
on the augmented MDP, bootstrapping through truncation from the pre-reset augmented observation.

The augmentation is ``Saute``, a small pure gymnax wrapper defined in this file (its parameters d,
γ_c and the unsafe reward live in ``SauteParams``, so they may be traced, e.g. swept by the CLI).
It returns the env's *own* reward, so that the training metrics and the CLI's evaluation report
the true return; the reshaped reward the agent optimizes travels in ``info["saute_reward"]`` and
the budget z_{t+1} in ``info["budget"]``. ``Trainer.env`` is the augmented env: a trained policy
acts on observations with z appended, in evaluation as in training.

Defaults are OmniSafe's ``PPOSaute.yaml`` (Ji et al. 2023) where they map onto this PPO: safety
budget d = 25 (the cost limit), saute γ_c = 0.999, unsafe reward −1, lr 3e-4, γ 0.99, GAE λ 0.95,
clip 0.2, no entropy bonus, grad-norm clip 40, critic L2 0.001, KL early stop at 0.02, tanh 64x64,
standardized advantages, no cost critic (``use_cost: False``). The rollout shape (4 envs x 128
steps, 4 epochs x 4 minibatches) is ``agents/online/ppo.py``'s (PureJaxRL), not OmniSafe's
20 000-step epochs. OmniSafe also normalizes observations; this file does not.

There is no Lagrange multiplier: the metric ``lambda`` is reported as 0 for every iteration (the
interface every safe agent shares). Metrics per iteration (over the episodes completed in that
iteration's rollout, NaN if none): ``episode_return`` (the env's reward, not the reshaped one),
``episode_cost``, ``over_limit`` (fraction of those episodes whose undiscounted cost exceeds
``cost_limit``), ``episodes``, ``lambda`` (0), ``unsafe_fraction`` (fraction of rollout steps with
an exhausted budget, z ≤ 0), ``epochs`` and the losses. A very large ``cost_limit`` (budget never
exhausted) gives plain PPO with z in the observation: the unconstrained baseline in the same program.

Measured (this 2-core CPU): with these defaults on SafeCartPole-v0 (5e5 steps, 4 seeds) the greedy
policies score return 200 at cost 0.0 (limit 25). On ``scripts/reproduce_safe.py``'s random tabular
CMDPs (4 CMDPs x 3 limits x 2 seeds, 2e5 steps, γ = γ_c = 1) the policy table read at z = 1
(``policy_logits``) meets the limit in 22 of 24 runs, V_c/d 0.77, value gap 13.4% to the LP optimum
(PPO-Lag there: 4.0%, V_c/d 0.90): Sauté keeps each episode's cost under the budget, a stronger
requirement than the expected-cost constraint the LP solves, so it is more conservative.

Run:  python agents/safe/saute_ppo.py --env SafeCartPole-v0 --num-seeds 8
"""
from __future__ import annotations

import dataclasses
from functools import partial
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct
from flax.linen.initializers import constant
from gymnax.environments import spaces
from gymnax.wrappers.purerl import GymnaxWrapper

from jaxrl import envs
from jaxrl.config import require, require_divides, require_positive, require_unit_interval
from jaxrl.initializers import orthogonal
from jaxrl.trainer import Trainer
from jaxrl.wrappers import ClipAction, EpisodeStatistics, VectorEnv


@dataclasses.dataclass(frozen=True)
class Config:
    env: str = "SafeCartPole-v0"
    """Environment id (gymnax or this project's envs/); the cost is read from info["cost"]."""
    total_timesteps: int = 500_000
    """Env steps per run (over all parallel envs)."""
    cost_limit: float = 25.0
    """d: the safety budget, a limit on the episode cost (> 0; discounted by cost_gamma, see the module doc)."""
    unsafe_reward: float = -1.0
    """The reward that replaces the env's once the budget is exhausted (z <= 0)."""
    lr: float = 3e-4
    """Adam learning rate of actor and critic (start value when annealed)."""
    anneal_lr: bool = True
    """Decay the learning rate linearly to 0 over training."""
    num_envs: int = 4
    """Parallel envs per run."""
    num_steps: int = 128
    """Steps per env per rollout."""
    update_epochs: int = 4
    """Passes over each rollout (fewer when the KL early stop triggers)."""
    num_minibatches: int = 4
    """Minibatches per epoch; num_envs * num_steps must divide by it."""
    gamma: float = 0.99
    """Discount factor of the (reshaped) reward."""
    cost_gamma: float = 0.999
    """γ_c of the safety state z_{t+1} = (z_t − c_t/d̃)/γ_c (OmniSafe's saute_gamma); 1 = undiscounted budget."""
    gae_lambda: float = 0.95
    """GAE λ."""
    clip_eps: float = 0.2
    """Clipping range of the probability ratio."""
    ent_coef: float = 0.0
    """Entropy bonus coefficient."""
    vf_coef: float = 0.5
    """Weight of the value loss."""
    critic_norm_coef: float = 0.001
    """L2 penalty on the critic's weights."""
    target_kl: float = 0.02
    """Stop the epochs of an iteration once the mean approximate KL of an epoch exceeds this."""
    max_grad_norm: float = 40.0
    """Global gradient-norm clip."""
    hidden_size: int = 64
    """Width of the two hidden layers of actor and critic."""
    activation: str = "tanh"
    """Hidden activation: tanh or relu."""

    @property
    def batch_size(self) -> int:
        return self.num_envs * self.num_steps

    @property
    def num_updates(self) -> int:
        return self.total_timesteps // self.batch_size


# ----------------------------------------------------------------------------------------------
# The safety-augmented env (Sauté MDP)
# ----------------------------------------------------------------------------------------------
@struct.dataclass
class SauteParams:
    env_params: Any
    cost_limit: float           # d
    cost_gamma: float           # γ_c
    unsafe_reward: float

    @property
    def max_steps_in_episode(self):
        return self.env_params.max_steps_in_episode


@struct.dataclass
class SauteState:
    env_state: Any
    budget: jax.Array           # z_t of the episode in progress


def discounted_budget(cost_limit, cost_gamma, horizon):
    """d̃ = d (1 − γ_c^T) / ((1 − γ_c) T): the discounted sum of the per-step share d/T over T steps
    (OmniSafe's budget scaling); d when γ_c = 1. Pure arithmetic, so its inputs may be traced."""
    discounted = cost_gamma < 1.0
    one_minus = jnp.where(discounted, 1.0 - cost_gamma, 1.0)
    scale = jnp.where(discounted, (1.0 - cost_gamma ** horizon) / (one_minus * horizon), 1.0)
    return cost_limit * scale


def next_budget(budget, cost, normalizer, cost_gamma):
    """Sauté's safety state: z_{t+1} = (z_t − c_t / d̃) / γ_c (Sootla et al. 2022, §3)."""
    return (budget - cost / normalizer) / cost_gamma


def reshaped_reward(reward, budget_after, unsafe_reward):
    """r̃_t = r_t while z_{t+1} > 0, else the unsafe reward (Sootla et al. 2022, the −∞ penalty as a constant)."""
    return jnp.where(budget_after > 0, reward, unsafe_reward)


class Saute(GymnaxWrapper):
    """Append the normalized safety budget z to the (flattened) observation; see the module docstring.

    The returned reward is the env's own; ``info["saute_reward"]`` is the reshaped one and
    ``info["budget"]`` z_{t+1}. ``info["final_observation"]`` carries the pre-reset z_{t+1}.
    ``default_params`` uses OmniSafe's defaults (d 25, γ_c 0.999, unsafe reward −1).
    """

    @property
    def default_params(self) -> SauteParams:
        return SauteParams(self._env.default_params, 25.0, 0.999, -1.0)

    def observation_space(self, params=None):
        inner = self._env.observation_space(None if params is None else params.env_params)
        return spaces.Box(-jnp.inf, jnp.inf, (int(np.prod(inner.shape)) + 1,), jnp.float32)

    def action_space(self, params=None):
        return self._env.action_space(None if params is None else params.env_params)

    @staticmethod
    def augment(obs, budget):
        return jnp.concatenate([jnp.reshape(obs, (-1,)).astype(jnp.float32), jnp.reshape(budget, (1,))])

    @partial(jax.jit, static_argnames=("self",))
    def reset(self, key, params=None):
        params = self.default_params if params is None else params
        obs, env_state = self._env.reset(key, params.env_params)
        budget = jnp.float32(1.0)
        return self.augment(obs, budget), SauteState(env_state, budget)

    @partial(jax.jit, static_argnames=("self",))
    def step(self, key, state: SauteState, action, params=None):
        params = self.default_params if params is None else params
        obs, env_state, reward, terminated, truncated, info = self._env.step(key, state.env_state, action,
                                                                            params.env_params)
        cost = jnp.asarray(info["cost"], jnp.float32)
        normalizer = discounted_budget(params.cost_limit, params.cost_gamma, params.max_steps_in_episode)
        budget = next_budget(state.budget, cost, normalizer, params.cost_gamma)
        done = jnp.logical_or(terminated, truncated)
        carried = jnp.where(done, jnp.float32(1.0), budget)           # a new episode starts with z = 1
        info = {**info, "saute_reward": reshaped_reward(jnp.asarray(reward, jnp.float32), budget, params.unsafe_reward),
                "budget": budget, "final_observation": self.augment(info["final_observation"], budget)}
        return self.augment(obs, carried), SauteState(env_state, carried), reward, terminated, truncated, info


# ----------------------------------------------------------------------------------------------
# Network
# ----------------------------------------------------------------------------------------------
class ActorCritic(nn.Module):
    """Actor (logits or Gaussian mean) and reward critic: two separate MLPs on the augmented observation."""

    action_dim: int
    discrete: bool
    hidden_size: int = 64
    activation: str = "tanh"

    @nn.compact
    def __call__(self, obs):
        act = nn.tanh if self.activation == "tanh" else nn.relu

        def mlp(x, out_dim, out_scale, name):
            for i in range(2):
                x = act(nn.Dense(self.hidden_size, kernel_init=orthogonal(np.sqrt(2)), bias_init=constant(0.0),
                                 name=f"{name}_{i}")(x))
            return nn.Dense(out_dim, kernel_init=orthogonal(out_scale), bias_init=constant(0.0), name=f"{name}_out")(x)

        actor_out = mlp(obs, self.action_dim, 0.01, "actor")
        value = mlp(obs, 1, 1.0, "critic")[..., 0]
        log_std = self.param("log_std", constant(0.0), (self.action_dim,)) if not self.discrete else None
        return actor_out, log_std, value


def log_prob_and_entropy(actor_out, log_std, action, discrete: bool):
    """Log-probability of ``action`` and the policy entropy (categorical or diagonal Gaussian)."""
    if discrete:
        logp_all = jax.nn.log_softmax(actor_out)
        logp = jnp.take_along_axis(logp_all, action[..., None].astype(jnp.int32), axis=-1)[..., 0]
        entropy = -(jnp.exp(logp_all) * logp_all).sum(-1)
        return logp, entropy
    std = jnp.exp(log_std)
    logp = (-0.5 * ((action - actor_out) / std) ** 2 - log_std - 0.5 * jnp.log(2 * jnp.pi)).sum(-1)
    entropy = jnp.broadcast_to((log_std + 0.5 * jnp.log(2 * jnp.pi * jnp.e)).sum(-1), logp.shape)
    return logp, entropy


def sample_action(key, actor_out, log_std, discrete: bool):
    if discrete:
        return jax.random.categorical(key, actor_out)
    return actor_out + jnp.exp(log_std) * jax.random.normal(key, actor_out.shape)


def policy_logits(config: Config, params, obs, budget=1.0):
    """The actor's output (action logits; the Gaussian mean for Box actions) for a batch of raw env
    observations ``obs`` (batch, ...) with the safety budget z = ``budget`` appended (default 1, the
    budget at the start of an episode). A Sauté policy depends on z: a table read at one z is the
    policy of the states that still have that budget left, not a stationary policy of the CMDP."""
    obs = jnp.reshape(obs, (obs.shape[0], -1)).astype(jnp.float32)
    z = jnp.broadcast_to(jnp.asarray(budget, jnp.float32), (obs.shape[0], 1))
    action_dim = params["params"]["actor_out"]["kernel"].shape[-1]
    discrete = "log_std" not in params["params"]
    network = ActorCritic(action_dim, discrete, config.hidden_size, config.activation)
    return network.apply(params, jnp.concatenate([obs, z], axis=-1))[0]


# ----------------------------------------------------------------------------------------------
# Advantages and statistics
# ----------------------------------------------------------------------------------------------
class Transition(NamedTuple):
    obs: jax.Array              # augmented observation (with z_t)
    action: jax.Array
    log_prob: jax.Array
    value: jax.Array
    reward: jax.Array           # the reshaped (Sauté) reward
    terminated: jax.Array
    done: jax.Array             # terminated or truncated: the episode ends after this step
    next_value: jax.Array       # V(s_{t+1}, z_{t+1}) of the pre-reset next state


def gae(reward, value, next_value, terminated, done, gamma, gae_lambda):
    """GAE(λ) over (time, env) arrays (Schulman et al. 2016, eq. 16).

    δ_t = r_t + γ (1 − terminated_t) V(s'_t) − V(s_t), bootstrapping through truncation (s'_t is the
    true next state) but not through termination; A_t = δ_t + γλ (1 − done_t) A_{t+1}.
    Returns (advantages, value targets = advantages + values).
    """

    def backward(next_adv, xs):
        r, v, nv, term, d = xs
        delta = r + gamma * (1.0 - term) * nv - v
        adv = delta + gamma * gae_lambda * (1.0 - d) * next_adv
        return adv, adv

    _, advantages = jax.lax.scan(backward, jnp.zeros_like(value[0]), (reward, value, next_value, terminated, done),
                                 reverse=True)
    return advantages, advantages + value


def standardize(x):
    return (x - x.mean()) / (x.std() + 1e-8)


def completed_episode_metrics(info, cost_limit) -> dict:
    """Means over the episodes that ended during the rollout (``info`` is (time, env)-batched)."""
    done = info["episode_done"]
    n = done.sum()

    def mean(x):
        return jnp.where(n > 0, jnp.where(done, x.astype(jnp.float32), 0.0).sum() / jnp.maximum(n, 1), jnp.nan)

    return {
        "episode_return": mean(info["episode_return"]),
        "episode_cost": mean(info["episode_cost"]),
        "episode_length": mean(info["episode_length"]),
        "over_limit": mean(info["episode_cost"] > cost_limit),
        "episodes": n.astype(jnp.float32),
    }


# ----------------------------------------------------------------------------------------------
# Training
# ----------------------------------------------------------------------------------------------
class TrainState(NamedTuple):
    params: dict
    opt_state: optax.OptState
    env_state: object
    obs: jax.Array
    key: jax.Array


def make_env(config: Config, env=None, env_params=None):
    """The env of ``config.env`` (or ``env``/``env_params``), its Sauté augmentation and params, and
    the augmentation wrapped for training. Returns (saute_env, saute_params, wrapped, discrete)."""
    if env is None:
        env, env_params = envs.make(config.env)
    env_params = env.default_params if env_params is None else env_params
    envs.require_cost(config.env, env, env_params, "Sauté PPO")
    discrete = envs.is_discrete(env, env_params)
    saute = Saute(env)
    # the config's values as they are (Python floats, or tracers when swept): floats keep the params hashable
    saute_params = SauteParams(env_params, config.cost_limit, config.cost_gamma, config.unsafe_reward)
    wrapped = EpisodeStatistics(saute)
    if not discrete:
        wrapped = ClipAction(wrapped)
    return saute, saute_params, wrapped, discrete


def validate(config: Config) -> None:
    require_positive(config, "lr", "total_timesteps", "num_envs", "num_steps", "update_epochs", "num_minibatches",
                     "hidden_size", "max_grad_norm", "clip_eps", "target_kl")
    require_unit_interval(config, "gamma", "gae_lambda")
    require((0 < config.cost_gamma) & (config.cost_gamma <= 1), f"cost_gamma must be in (0, 1], got {config.cost_gamma}")
    require(config.cost_limit > 0, f"cost_limit must be > 0 (Sauté divides the cost by the budget), got {config.cost_limit}")
    require(config.unsafe_reward <= 0, f"unsafe_reward must be <= 0 (a penalty for an exhausted budget), "
            f"got {config.unsafe_reward}")
    for name in ("ent_coef", "vf_coef", "critic_norm_coef"):
        require(getattr(config, name) >= 0, f"{name} must be >= 0, got {getattr(config, name)}")
    require(config.activation in ("tanh", "relu"), f"activation must be 'tanh' or 'relu', got {config.activation!r}")
    require_divides("num_envs * num_steps", config.batch_size, "num_minibatches", config.num_minibatches)
    require(config.num_updates >= 1, f"total_timesteps={config.total_timesteps} is less than one rollout "
            f"(num_envs * num_steps = {config.batch_size})")


def make_train(config: Config, network: nn.Module | None = None, env=None, env_params=None) -> Trainer:
    """Build the Sauté PPO trainer. ``network`` replaces ``ActorCritic`` (same three outputs, on the
    augmented observation). ``env``/``env_params`` replace the env of ``config.env`` when given."""
    validate(config)
    saute, saute_params, wrapped, discrete = make_env(config, env, env_params)
    obs_shape = saute.observation_space(saute_params).shape
    action_space = saute.action_space(saute_params)
    action_dim = action_space.n if discrete else int(np.prod(action_space.shape))
    if network is None:
        network = ActorCritic(action_dim, discrete, config.hidden_size, config.activation)
    minibatch_size = config.batch_size // config.num_minibatches

    def lr_schedule(count):
        frac = 1.0 - (count // (config.num_minibatches * config.update_epochs)) / config.num_updates
        return config.lr * frac if config.anneal_lr else config.lr

    tx = optax.chain(optax.clip_by_global_norm(config.max_grad_norm), optax.adam(lr_schedule, eps=1e-5))
    vec_env = VectorEnv(wrapped, config.num_envs)

    def init(key) -> TrainState:
        key, net_key, env_key = jax.random.split(key, 3)
        params = network.init(net_key, jnp.zeros(obs_shape))
        obs, env_state = vec_env.reset(env_key, saute_params)
        return TrainState(params, tx.init(params), env_state, obs, key)

    def critic_l2(params):
        leaves = [x for path, x in jax.tree_util.tree_leaves_with_path(params)
                  if any("critic" in str(getattr(p, "key", "")) for p in path) and x.ndim == 2]
        return sum((x**2).sum() for x in leaves)

    def loss_fn(params, batch: Transition, advantages, targets):
        """PPO's loss (Schulman et al. 2017, eq. 9 without the shared-network coupling) on the Sauté MDP:
        −clipped surrogate (eq. 7) of the standardized advantage, PPO2's clipped value loss, critic L2."""
        actor_out, log_std, value = network.apply(params, batch.obs)
        log_prob, entropy = log_prob_and_entropy(actor_out, log_std, batch.action, discrete)
        advantages = standardize(advantages)
        ratio = jnp.exp(log_prob - batch.log_prob)
        surrogate = jnp.minimum(ratio * advantages, jnp.clip(ratio, 1 - config.clip_eps, 1 + config.clip_eps) * advantages)
        policy_loss = -surrogate.mean()
        clipped = batch.value + jnp.clip(value - batch.value, -config.clip_eps, config.clip_eps)
        v_loss = 0.5 * jnp.maximum((value - targets) ** 2, (clipped - targets) ** 2).mean()
        entropy = entropy.mean()
        total = policy_loss + config.vf_coef * v_loss + config.critic_norm_coef * critic_l2(params) - config.ent_coef * entropy
        approx_kl = ((ratio - 1) - (log_prob - batch.log_prob)).mean()
        return total, {"policy_loss": policy_loss, "value_loss": v_loss, "entropy": entropy, "approx_kl": approx_kl}

    def collect(state: TrainState):
        def env_step(carry, _):
            params, env_state, obs, key = carry
            key, act_key, step_key = jax.random.split(key, 3)
            actor_out, log_std, value = network.apply(params, obs)
            action = sample_action(act_key, actor_out, log_std, discrete)
            log_prob, _ = log_prob_and_entropy(actor_out, log_std, action, discrete)
            next_obs, env_state, _, terminated, truncated, info = vec_env.step(step_key, env_state, action, saute_params)
            done = jnp.logical_or(terminated, truncated)
            _, _, next_value = network.apply(params, info["final_observation"])
            transition = Transition(obs, action, log_prob, value, info["saute_reward"], terminated.astype(jnp.float32),
                                    done.astype(jnp.float32), next_value)
            stats = {k: info[k] for k in ("episode_done", "episode_return", "episode_cost", "episode_length", "budget",
                                          "cost")}
            return (params, env_state, next_obs, key), (transition, stats)

        (_, env_state, obs, key), (traj, stats) = jax.lax.scan(
            env_step, (state.params, state.env_state, state.obs, state.key), None, config.num_steps)
        return traj, stats, env_state, obs, key

    def update(state: TrainState, _iteration):
        # COLLECT TRAJECTORIES (on the augmented MDP)
        traj, stats, env_state, obs, key = collect(state)

        # CALCULATE ADVANTAGES of the reshaped reward
        advantages, targets = gae(traj.reward, traj.value, traj.next_value, traj.terminated, traj.done,
                                  config.gamma, config.gae_lambda)

        # UPDATE NETWORK (epochs stop once an epoch's mean KL exceeds target_kl)
        def update_epoch(carry, _):
            params, opt_state, key, stopped = carry
            key, perm_key = jax.random.split(key)
            perm = jax.random.permutation(perm_key, config.batch_size)
            flat = jax.tree.map(lambda x: x.reshape((config.batch_size,) + x.shape[2:]), (traj, advantages, targets))
            shuffled = jax.tree.map(lambda x: x[perm].reshape((config.num_minibatches, minibatch_size) + x.shape[1:]), flat)

            def update_minibatch(carry, minibatch):
                params, opt_state = carry
                grads, aux = jax.grad(loss_fn, has_aux=True)(params, *minibatch)
                updates, opt_state = tx.update(grads, opt_state, params)
                return (optax.apply_updates(params, updates), opt_state), aux

            (new_params, new_opt_state), aux = jax.lax.scan(update_minibatch, (params, opt_state), shuffled)
            keep = lambda new, old: jax.tree.map(lambda a, b: jnp.where(stopped, b, a), new, old)  # noqa: E731
            params, opt_state = keep(new_params, params), keep(new_opt_state, opt_state)
            ran = ~stopped
            stopped = stopped | (aux["approx_kl"].mean() > config.target_kl)
            return (params, opt_state, key, stopped), (aux, ran)

        (params, opt_state, key, _), (aux, ran) = jax.lax.scan(
            update_epoch, (state.params, state.opt_state, key, jnp.bool_(False)), None, config.update_epochs)
        metrics = {k: (v.mean(-1) * ran).sum() / ran.sum() for k, v in aux.items()}
        metrics["epochs"] = ran.sum().astype(jnp.float32)
        metrics.update(completed_episode_metrics(stats, config.cost_limit))
        metrics["lambda"] = jnp.float32(0.0)      # no multiplier in Sauté RL (see the module docstring)
        metrics["unsafe_fraction"] = (stats["budget"] <= 0).mean()
        metrics["step_cost"] = stats["cost"].astype(jnp.float32).mean()
        return TrainState(params, opt_state, env_state, obs, key), metrics

    def act(state: TrainState, obs, key):
        """Greedy action on augmented observations (env observation with z appended): argmax of the
        logits, or the Gaussian mean clipped to the action bounds."""
        obs = obs.reshape((obs.shape[0], -1))
        actor_out = network.apply(state.params, obs)[0]
        if discrete:
            return jnp.argmax(actor_out, axis=-1)
        return jnp.clip(actor_out, action_space.low, action_space.high)

    return Trainer(init=init, update=update, act=act, num_updates=config.num_updates,
                   env_steps_per_update=config.batch_size, env=saute, env_params=saute_params)


if __name__ == "__main__":
    from jaxrl.cli import main

    main(Config, make_train, algorithm="saute_ppo")
