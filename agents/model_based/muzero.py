"""Gumbel MuZero: MuZero's learned model (Schrittwieser et al. 2020, "Mastering Atari, Go, Chess and
Shogi by Planning with a Learned Model", Nature) searched with Gumbel MuZero's policy improvement
(Danihelka et al. 2022, "Policy improvement by planning with Gumbel", ICLR), through DeepMind's
``mctx.gumbel_muzero_policy``.

Three networks act only in a learned latent space (paper, eq. 1 and Appendix G):

* representation h(o) -> s⁰, the latent of an observation (min-max scaled to [0, 1] per sample);
* dynamics g(sᵏ⁻¹, aᵏ) -> (sᵏ, rᵏ), the next latent (also min-max scaled) and the predicted reward;
* prediction f(sᵏ) -> (pᵏ, vᵏ), policy logits and value.

``mctx`` receives f(h(o)) as the root (``RootFnOutput``) and g followed by f as its ``recurrent_fn``
(``RecurrentFnOutput`` with discount γ at every latent step: the model does not predict episode ends).
Every env step runs a search of ``num_simulations`` simulations over all actions
(max_num_considered_actions = the number of actions, as the Gumbel paper recommends for few
actions); the action is the one Sequential Halving keeps (sampled through the Gumbel noise, so
exploration needs no ε or temperature), and the policy target is the search's ``action_weights``:
softmax(logits + σ(completed Q)), the improved policy of Danihelka et al. eq. 11 (σ of their eq. 8
with c_visit = ``maxvisit_init`` and c_scale = ``value_scale``, and Q completed by their mixed value
estimate: ``mctx.qtransform_completed_by_mix_value``). Greedy evaluation (``act``) runs the same
search with ``gumbel_scale`` 0.

Training follows MuZero (paper, eq. 1 and Appendix G): trajectories of ``num_envs`` vectorized envs
go to a fixed-capacity on-device time-major buffer (``TrajectoryBuffer``: ``buffer_steps`` rows per
env, circular). A batch of windows of K + n + 1 consecutive steps of one env each is sampled
uniformly; the model is unrolled K = ``unroll_steps`` steps from h(o_t) along the stored actions, and
at each unroll step k it is trained on

* the n-step value target z_{t+k} = Σ_{i<n} γⁱ u_{t+k+i} + γⁿ ν_{t+k+n} (``value_targets``), with
  ν the search's root value stored when acting (as in MuZero without Reanalyze). At an episode end
  inside the n steps the sum stops there: a termination adds nothing more, a time-limit truncation
  adds γ^(j+1) times the prediction network's value of the true (pre-reset) next observation
  (bootstrap through truncation, never through termination);
* the observed reward u_{t+k} (for k ≥ 1: the reward of the transition g modelled);
* the stored search policy π_{t+k} (cross-entropy).

Steps of the window after a termination are the absorbing state past the end of an episode of the
paper's pseudocode (value and reward targets 0, no policy loss); steps after a truncation belong to
another episode and are masked out of every loss (``unroll_masks``). Value and reward are
**scalars** trained by mean squared error (no categorical support); ``value_transform`` (default on)
regresses them in the invertible h(x) = sign(x)(√(|x|+1) − 1) + εx space of Pohlen et al. 2018
("Observe and Look Further", Prop. A.2), as MuZero does before its categorical projection, and the
search sees h⁻¹ of the network outputs.
The gradient into the dynamics is halved at each unroll step and the unrolled steps' losses are
scaled by 1/K (paper, Appendix G); the value loss is weighted by ``value_loss_coef`` (0.25, MuZero
Reanalyze).

Defaults. The paper's Atari settings where they carry over (K = 5 unroll steps, n = 10 step value
targets, value loss weight 0.25 from its Reanalyze appendix), the small-scale CartPole settings of
muax's ``examples/cartpole.ipynb`` (a JAX MuZero on mctx by B. Wang: γ 0.99, n = 10, a small latent,
batches of 32 windows), and mctx's Gumbel defaults (value_scale 0.1, maxvisit_init 50) with 16
simulations: the Gumbel paper shows policy improvement with as few as 2 simulations when all
actions are considered. Departures: Adam (lr 1e-3, grad-norm clip 5) instead of SGD with momentum and
weight decay; one-hidden-layer MLPs (latent 32, hidden 64) instead of residual networks; no
Reanalyze and no prioritized replay (uniform windows); scalar value and reward with the h-transform
instead of 601-bin categorical heads. The replay ratio (8 envs x 16 steps, then 16 gradient steps of
32 windows) was chosen on CartPole-v1 at 50 000 env steps, 3 seeds: greedy return 394 with it, 304
with 16 steps of 64 windows at lr 3e-3, 132 (4 seeds) with 8 steps of 32 windows at lr 3e-3.

Measured on 2 shared (heavily loaded) CPU cores, 4 seeds in one program, defaults: CartPole-v1
greedy return (16 episodes per seed, a noise-free search every step) 363 after 50 000 env steps
(322, 134, 500, 496; 48 s wall with compilation) and 486 after 200 000 (454, 489, 500, 500; IQM 495;
129 s wall); the mean training-episode return passes 200 after about 20 000 env steps. Random play
scores 21.6. Breakout-MinAtar (flattened 10x10x4 observation, same MLPs), 2 seeds, 100 000 env
steps: greedy return 2.9 (2.5, 3.25; 84 s wall), random play 0.33. ``tests/test_muzero.py`` has the
16 384-step CartPole check.

Run:  python agents/model_based/muzero.py --env CartPole-v1 --num-seeds 2
      python agents/model_based/muzero.py --env Breakout-MinAtar --total-timesteps 200000
"""
from __future__ import annotations

import dataclasses
import functools
from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import mctx
import optax

from jaxrl import envs
from jaxrl.config import require, require_positive, require_unit_interval
from jaxrl.trainer import Trainer
from jaxrl.wrappers import EpisodeStatistics, VectorEnv, episode_metrics


@dataclasses.dataclass(frozen=True)
class Config:
    env: str = "CartPole-v1"
    """Environment id (gymnax or this project's envs/); discrete actions only."""
    total_timesteps: int = 50_000
    """Env steps per run (over all parallel envs)."""
    num_envs: int = 8
    """Parallel envs, each searched and stepped every iteration step."""
    num_steps: int = 16
    """Steps of every env collected per iteration before its gradient steps."""
    buffer_steps: int = 2_000
    """Rows of the trajectory buffer per env (capacity num_envs · buffer_steps transitions)."""
    learning_starts: int = 1_000
    """Env steps (over all envs) collected before the first gradient step."""
    updates_per_iteration: int = 16
    """Gradient steps after each iteration's num_envs · num_steps env steps."""
    batch_size: int = 32
    """Windows (one start state each, K + n + 1 steps long) per gradient step."""
    unroll_steps: int = 5
    """K: steps the dynamics network is unrolled from each sampled start state."""
    td_steps: int = 10
    """n: steps of the bootstrapped value targets."""
    gamma: float = 0.99
    """Discount factor (search and value targets)."""
    lr: float = 1e-3
    """Adam learning rate of all three networks."""
    max_grad_norm: float = 5.0
    """Global gradient-norm clip."""
    value_loss_coef: float = 0.25
    """Weight of the value loss (MuZero Reanalyze's 0.25)."""
    value_transform: bool = True
    """Regress value and reward in h(x) = sign(x)(sqrt(|x|+1) - 1) + 0.001 x space (Pohlen et al. 2018)."""
    num_simulations: int = 16
    """Simulations of each Gumbel MuZero search."""
    gumbel_scale: float = 1.0
    """Scale of the root Gumbel noise when acting in training (0: deterministic; evaluation uses 0)."""
    value_scale: float = 0.1
    """c_scale of σ(q̂) = (c_visit + max visits) · c_scale · q̂ (Danihelka et al. eq. 8; mctx default)."""
    maxvisit_init: float = 50.0
    """c_visit of σ (Danihelka et al. eq. 8; mctx default)."""
    latent_size: int = 32
    """Width of the latent state s."""
    hidden_size: int = 64
    """Width of the hidden layer of each network."""

    @property
    def num_updates(self) -> int:
        return self.total_timesteps // (self.num_envs * self.num_steps)

    @property
    def window(self) -> int:
        """Rows of one training window: K unroll steps plus n bootstrap steps plus the start."""
        return self.unroll_steps + self.td_steps + 1


# ----------------------------------------------------------------------------------------------
# Networks: representation h, dynamics g, prediction f
# ----------------------------------------------------------------------------------------------
def min_max_scale(x):
    """Scale each latent to [0, 1] over its features (MuZero, Appendix G)."""
    low = x.min(axis=-1, keepdims=True)
    high = x.max(axis=-1, keepdims=True)
    return (x - low) / jnp.maximum(high - low, 1e-5)


def scale_gradient(x, scale):
    """Identity forward; the gradient is multiplied by ``scale`` (MuZero's dynamics-gradient halving)."""
    return x * scale + jax.lax.stop_gradient(x) * (1.0 - scale)


class MuZeroNetwork(nn.Module):
    """h, g and f as methods of one module (one params tree)."""

    num_actions: int
    latent_size: int = 32
    hidden_size: int = 64

    def setup(self):
        self.repr_hidden = nn.Dense(self.hidden_size)
        self.repr_out = nn.Dense(self.latent_size)
        self.dyn_hidden = nn.Dense(self.hidden_size)
        self.dyn_out = nn.Dense(self.latent_size)
        self.reward_out = nn.Dense(1)
        self.pred_hidden = nn.Dense(self.hidden_size)
        self.policy_out = nn.Dense(self.num_actions)
        self.value_out = nn.Dense(1)

    def represent(self, obs):
        """h: observations ``(batch, *obs_shape)`` -> latents ``(batch, latent_size)``."""
        x = obs.astype(jnp.float32).reshape((obs.shape[0], -1))
        return min_max_scale(self.repr_out(nn.relu(self.repr_hidden(x))))

    def dynamics(self, latent, action):
        """g: (latent, action) -> (next latent, predicted reward, in value-transform space)."""
        x = jnp.concatenate([latent, jax.nn.one_hot(action, self.num_actions)], axis=-1)
        x = nn.relu(self.dyn_hidden(x))
        return min_max_scale(self.dyn_out(x)), self.reward_out(x)[..., 0]

    def predict(self, latent):
        """f: latent -> (policy logits, value in value-transform space)."""
        x = nn.relu(self.pred_hidden(latent))
        return self.policy_out(x), self.value_out(x)[..., 0]

    def __call__(self, obs, action):
        latent = self.represent(obs)
        next_latent, reward = self.dynamics(latent, action)
        return self.predict(next_latent), reward


# ----------------------------------------------------------------------------------------------
# Scalar transform h(x) of value and reward (Pohlen et al. 2018, Prop. A.2)
# ----------------------------------------------------------------------------------------------
TRANSFORM_EPS = 1e-3


def h_transform(x, eps=TRANSFORM_EPS):
    """h(x) = sign(x)(√(|x| + 1) − 1) + εx."""
    return jnp.sign(x) * (jnp.sqrt(jnp.abs(x) + 1.0) - 1.0) + eps * x


def h_inverse(y, eps=TRANSFORM_EPS):
    """h⁻¹(y) = sign(y)(((√(1 + 4ε(|y| + 1 + ε)) − 1) / (2ε))² − 1) (Pohlen et al. 2018, Prop. A.2)."""
    root = (jnp.sqrt(1.0 + 4.0 * eps * (jnp.abs(y) + 1.0 + eps)) - 1.0) / (2.0 * eps)
    return jnp.sign(y) * (root**2 - 1.0)


# ----------------------------------------------------------------------------------------------
# The learned model as mctx sees it
# ----------------------------------------------------------------------------------------------
def make_model_fns(network: MuZeroNetwork, gamma, value_transform: bool):
    """``(root_fn, recurrent_fn)`` for ``mctx``: f(h(o)) at the root, g then f inside the tree.

    ``root_fn(params, obs) -> RootFnOutput`` for a batch of observations; ``recurrent_fn(params, key,
    action, latent) -> (RecurrentFnOutput, next_latent)`` for a batch of latents, with discount γ at
    every step (the model predicts no episode ends). Values and rewards are returned as scalars
    (h⁻¹ of the network outputs when ``value_transform``).
    """
    from_net = h_inverse if value_transform else (lambda x: x)

    def root_fn(params, obs):
        latent = network.apply(params, obs, method=MuZeroNetwork.represent)
        logits, value = network.apply(params, latent, method=MuZeroNetwork.predict)
        return mctx.RootFnOutput(prior_logits=logits, value=from_net(value), embedding=latent)

    def recurrent_fn(params, key, action, latent):
        next_latent, reward = network.apply(params, latent, action, method=MuZeroNetwork.dynamics)
        logits, value = network.apply(params, next_latent, method=MuZeroNetwork.predict)
        output = mctx.RecurrentFnOutput(reward=from_net(reward), discount=jnp.full_like(reward, gamma),
                                        prior_logits=logits, value=from_net(value))
        return output, next_latent

    return root_fn, recurrent_fn


# ----------------------------------------------------------------------------------------------
# Targets from a window of consecutive steps of one env
# ----------------------------------------------------------------------------------------------
def value_targets(rewards, terminated, truncated, search_values, bootstrap_values, gamma, td_steps: int):
    """n-step value targets z_t = Σ_{i<n} γⁱ u_{t+i} + γⁿ ν_{t+n} (Schrittwieser et al. 2020, the n-step
    return z_t of the "MuZero algorithm" section; our u_t is the reward of the step taken at t).

    Arrays are time-major windows ``(L, ...)``: ``rewards[t]`` is the reward of the transition from
    step t, ``terminated[t]``/``truncated[t]`` say whether the episode ended by it, ``search_values[t]``
    is ν_t (the search's root value at step t) and ``bootstrap_values[t]`` the value of the true next
    observation of step t (used only when it was truncated). If the episode ends at step t + j < t + n,
    the sum stops after u_{t+j}; a truncation then adds γ^(j+1) · bootstrap_values[t+j] (bootstrap
    through the time limit), a termination adds nothing (also when the same step hit the time limit).
    Returns the L − n targets of t = 0..L−n−1.
    """
    length = rewards.shape[0] - td_steps
    target = jnp.zeros_like(rewards[:length])
    alive = jnp.ones_like(target)
    discount = jnp.ones_like(target)
    for i in range(td_steps):
        reward, term, trunc = rewards[i:i + length], terminated[i:i + length], truncated[i:i + length]
        # bootstrap only through a truncation (a step both terminated and truncated does not bootstrap)
        bootstrap = trunc * (1.0 - term) * bootstrap_values[i:i + length]
        target = target + alive * discount * (reward + gamma * bootstrap)
        alive = alive * (1.0 - jnp.maximum(term, trunc))
        discount = discount * gamma
    return target + alive * discount * search_values[td_steps:td_steps + length]


def unroll_masks(terminated, truncated, unroll_steps: int):
    """Which of the K + 1 unroll positions of a window starting at row 0 train what.

    Returns ``(alive, absorbing)``, each ``(K + 1, ...)``: ``alive[k]`` when no episode ended in rows
    0..k−1 (position k is the same episode as the start); ``absorbing[k]`` when the first end among
    those rows was a termination (position k is MuZero's absorbing state: value and reward 0). After
    a truncation neither is set: the position belongs to another episode and trains nothing.
    """
    alive = [jnp.ones_like(terminated[0])]
    absorbing = [jnp.zeros_like(terminated[0])]
    for k in range(unroll_steps):
        absorbing.append(absorbing[-1] + alive[-1] * terminated[k])
        alive.append(alive[-1] * (1.0 - jnp.maximum(terminated[k], truncated[k])))
    return jnp.stack(alive), jnp.stack(absorbing)


# ----------------------------------------------------------------------------------------------
# The on-device trajectory buffer (time-major, circular, num_envs columns)
# ----------------------------------------------------------------------------------------------
class Step(NamedTuple):
    obs: jax.Array
    action: jax.Array
    reward: jax.Array
    terminated: jax.Array       # 1.0 where the episode terminated after this step (no bootstrap)
    truncated: jax.Array        # 1.0 where it was cut by the time limit (bootstrap from bootstrap_value)
    search_value: jax.Array     # ν_t: the search's root value at obs
    bootstrap_value: jax.Array  # f(h(final observation)) value: the true next state's, for truncation
    policy: jax.Array           # π_t: the search's action_weights (the policy target)


class TrajectoryBuffer(NamedTuple):
    data: Step                  # every leaf ``(buffer_steps, num_envs, ...)``
    position: jax.Array         # next row to write
    size: jax.Array             # filled rows (≤ buffer_steps)


def buffer_init(rows: int, example: Step) -> TrajectoryBuffer:
    data = jax.tree.map(lambda x: jnp.zeros((rows,) + x.shape, x.dtype), example)
    return TrajectoryBuffer(data, jnp.int32(0), jnp.int32(0))


def buffer_add(buffer: TrajectoryBuffer, steps: Step) -> TrajectoryBuffer:
    """Write ``T`` consecutive rows ``(T, num_envs, ...)`` at the write position, wrapping around."""
    rows = buffer.data.reward.shape[0]
    n = steps.reward.shape[0]
    idx = (buffer.position + jnp.arange(n)) % rows
    data = jax.tree.map(lambda store, x: store.at[idx].set(x.astype(store.dtype)), buffer.data, steps)
    return TrajectoryBuffer(data, (buffer.position + n) % rows, jnp.minimum(buffer.size + n, rows))


def buffer_sample(buffer: TrajectoryBuffer, key, batch_size: int, window: int) -> Step:
    """``batch_size`` windows of ``window`` consecutive rows of one env each, uniform over the valid
    starts (the oldest row up to the last one that still has ``window`` rows after it).
    Leaves are ``(window, batch_size, ...)``."""
    rows, num_envs = buffer.data.reward.shape[:2]
    env_key, start_key = jax.random.split(key)
    env = jax.random.randint(env_key, (batch_size,), 0, num_envs)
    offset = jax.random.randint(start_key, (batch_size,), 0, jnp.maximum(buffer.size - window + 1, 1))
    start = buffer.position - buffer.size + offset
    idx = (start[None, :] + jnp.arange(window)[:, None]) % rows
    return jax.tree.map(lambda store: store[idx, env[None, :]], buffer.data)


# ----------------------------------------------------------------------------------------------
# Training
# ----------------------------------------------------------------------------------------------
class TrainState(NamedTuple):
    params: dict
    opt_state: optax.OptState
    buffer: TrajectoryBuffer
    env_state: object
    obs: jax.Array
    key: jax.Array
    losses: dict                # of the latest gradient step (NaN before the first)


def make_env(config: Config):
    env, env_params = envs.make(config.env)
    return env, env_params, EpisodeStatistics(env)


def validate(config: Config) -> None:
    """Raise ConfigError for settings that cannot work (before anything compiles)."""
    require_positive(config, "total_timesteps", "num_envs", "num_steps", "buffer_steps", "batch_size",
                     "unroll_steps", "td_steps", "num_simulations", "lr", "max_grad_norm", "latent_size",
                     "hidden_size", "updates_per_iteration", "value_scale", "maxvisit_init")
    require_unit_interval(config, "gamma")
    require(config.value_loss_coef >= 0, f"value_loss_coef must be >= 0, got {config.value_loss_coef!r}")
    require(config.gumbel_scale >= 0, f"gumbel_scale must be >= 0, got {config.gumbel_scale!r}")
    require(config.learning_starts >= 0, f"learning_starts must be >= 0, got {config.learning_starts}")
    require(config.num_updates >= 1,
            f"total_timesteps={config.total_timesteps} is less than one iteration of num_envs={config.num_envs} "
            f"x num_steps={config.num_steps} env steps")
    require(config.buffer_steps >= max(config.window, config.num_steps),
            f"buffer_steps={config.buffer_steps} must hold one training window (unroll_steps + td_steps + 1 = "
            f"{config.window} rows) and one iteration (num_steps={config.num_steps} rows)")
    first = first_learning_iteration(config)
    require(first < config.num_updates,
            f"no gradient step would be taken: learning starts at iteration {first} (learning_starts="
            f"{config.learning_starts} env steps, and the buffer needs {config.window} rows per env), but the "
            f"run has {config.num_updates} iterations of {config.num_envs * config.num_steps} env steps")
    env, env_params = envs.make(config.env)
    envs.require_action_space(config.env, env, env_params, "discrete", "MuZero")


def first_learning_iteration(config: Config) -> int:
    """The first iteration (0-based) after whose collection gradient steps are taken: learning_starts env
    steps collected and at least one full window of rows per env."""
    per_iteration = config.num_envs * config.num_steps
    by_steps = -(-config.learning_starts // per_iteration)
    by_window = -(-config.window // config.num_steps)
    return max(by_steps, by_window, 1) - 1


def make_train(config: Config) -> Trainer:
    validate(config)
    env, env_params, wrapped = make_env(config)
    num_actions = int(env.action_space(env_params).n)
    network = MuZeroNetwork(num_actions, config.latent_size, config.hidden_size)
    tx = optax.chain(optax.clip_by_global_norm(config.max_grad_norm), optax.adam(config.lr))
    vec_env = VectorEnv(wrapped, config.num_envs)
    start_iteration = first_learning_iteration(config)
    K = config.unroll_steps

    to_net = h_transform if config.value_transform else (lambda x: x)
    root_fn, recurrent_fn = make_model_fns(network, config.gamma, config.value_transform)

    # SEARCH ------------------------------------------------------------------------------------
    def search(params, obs, key, gumbel_scale):
        """Gumbel MuZero search at a batch of observations -> (PolicyOutput, network root value)."""
        root = root_fn(params, obs)
        qtransform = functools.partial(mctx.qtransform_completed_by_mix_value, value_scale=config.value_scale,
                                       maxvisit_init=config.maxvisit_init)
        out = mctx.gumbel_muzero_policy(params, key, root, recurrent_fn, num_simulations=config.num_simulations,
                                        max_num_considered_actions=num_actions, qtransform=qtransform,
                                        gumbel_scale=gumbel_scale)
        return out, root.value

    # LOSS ---------------------------------------------------------------------------------------
    def loss_fn(params, batch: Step):
        """MuZero's loss (Schrittwieser et al. 2020, eq. 1, without the L2 term): Σ_k l^v(z_{t+k}, v^k)
        + l^r(u_{t+k}, r^k) + l^p(π_{t+k}, p^k) over K unroll steps; value and reward by squared error
        (in h-space when value_transform), policy by cross-entropy to the Gumbel search's improved
        policy (Danihelka et al. 2022, eq. 11). Leaves of ``batch`` are ``(window, batch, ...)``."""
        z = value_targets(batch.reward, batch.terminated, batch.truncated, batch.search_value,
                          batch.bootstrap_value, config.gamma, config.td_steps)[:K + 1]
        alive, absorbing = unroll_masks(batch.terminated, batch.truncated, K)
        value_target = to_net(alive * z)            # absorbing: 0 (and h(0) = 0)
        value_weight = alive + absorbing
        reward_target = to_net(alive[:K] * batch.reward[:K])
        reward_weight = value_weight[:K]

        def unroll_step(latent, action):
            latent, reward = network.apply(params, latent, action, method=MuZeroNetwork.dynamics)
            latent = scale_gradient(latent, 0.5)
            logits, value = network.apply(params, latent, method=MuZeroNetwork.predict)
            return latent, (reward, logits, value)

        latent = network.apply(params, batch.obs[0], method=MuZeroNetwork.represent)
        logits, value = network.apply(params, latent, method=MuZeroNetwork.predict)
        _, (rewards, unrolled_logits, unrolled_values) = jax.lax.scan(unroll_step, latent, batch.action[:K])
        logits = jnp.concatenate([logits[None], unrolled_logits])        # (K + 1, batch, actions)
        values = jnp.concatenate([value[None], unrolled_values])         # (K + 1, batch)

        step_scale = jnp.array([1.0] + [1.0 / K] * K)[:, None]   # the unrolled steps' losses scaled by 1/K
        cross_entropy = -(batch.policy[:K + 1] * jax.nn.log_softmax(logits)).sum(-1)
        value_loss = (step_scale * value_weight * (values - value_target) ** 2).sum(0).mean()
        policy_loss = (step_scale * alive * cross_entropy).sum(0).mean()
        reward_loss = (reward_weight * (rewards - reward_target) ** 2 / K).sum(0).mean()
        loss = config.value_loss_coef * value_loss + reward_loss + policy_loss
        return loss, {"loss": loss, "value_loss": value_loss, "reward_loss": reward_loss, "policy_loss": policy_loss}

    # TRAIN STATE ---------------------------------------------------------------------------------
    def init(key) -> TrainState:
        key, net_key, env_key = jax.random.split(key, 3)
        obs, env_state = vec_env.reset(env_key, env_params)
        params = network.init(net_key, obs[:1], jnp.zeros((1,), jnp.int32))
        n = config.num_envs
        zeros = jnp.zeros(n, jnp.float32)
        example = Step(obs, jnp.zeros(n, jnp.int32), zeros, zeros, zeros, zeros, zeros,
                       jnp.zeros((n, num_actions), jnp.float32))
        nan = jnp.float32(jnp.nan)
        losses = {"loss": nan, "value_loss": nan, "reward_loss": nan, "policy_loss": nan}
        return TrainState(params, tx.init(params), buffer_init(config.buffer_steps, example), env_state, obs, key,
                          losses)

    def env_step(params, carry, key):
        env_state, obs = carry
        search_key, step_key = jax.random.split(key)
        out, network_value = search(params, obs, search_key, config.gumbel_scale)
        next_obs, env_state, reward, terminated, truncated, info = vec_env.step(step_key, env_state, out.action,
                                                                                 env_params)
        bootstrap = root_fn(params, info["final_observation"]).value
        search_value = out.search_tree.node_values[:, out.search_tree.ROOT_INDEX]
        step = Step(obs, out.action.astype(jnp.int32), reward.astype(jnp.float32), terminated.astype(jnp.float32),
                    truncated.astype(jnp.float32), search_value, bootstrap, out.action_weights)
        stats = {"search_value": search_value.mean(), "network_value": network_value.mean()}
        return (env_state, next_obs), (step, stats, info)

    def update(state: TrainState, i):
        # COLLECT TRAJECTORIES: num_steps searches and steps of every env
        key, collect_key = jax.random.split(state.key)
        (env_state, obs), (steps, stats, info) = jax.lax.scan(
            functools.partial(env_step, state.params), (state.env_state, state.obs),
            jax.random.split(collect_key, config.num_steps))
        buffer = buffer_add(state.buffer, steps)

        # UPDATE NETWORKS: updates_per_iteration gradient steps once learning has started. The count
        # depends only on the (unbatched) iteration index, so under vmap it stays a real loop.
        num_grad_steps = jnp.where(i >= start_iteration, config.updates_per_iteration, 0)

        def gradient_step(_, carry):
            params, opt_state, key, _ = carry
            key, sample_key = jax.random.split(key)
            batch = buffer_sample(buffer, sample_key, config.batch_size, config.window)
            grads, losses = jax.grad(loss_fn, has_aux=True)(params, batch)
            updates, opt_state = tx.update(grads, opt_state, params)
            return optax.apply_updates(params, updates), opt_state, key, losses

        params, opt_state, key, losses = jax.lax.fori_loop(
            0, num_grad_steps, gradient_step, (state.params, state.opt_state, key, state.losses))

        metrics = {**losses, **jax.tree.map(jnp.mean, stats)}
        metrics.update(episode_metrics(jax.tree.map(lambda x: x[-1], info)))
        return TrainState(params, opt_state, buffer, env_state, obs, key, losses), metrics

    @jax.jit  # a search traced op by op (an un-jitted call on a loaded run) is 5x slower than compiling it
    def act(state: TrainState, obs, key):
        """The action of a noise-free search (gumbel_scale 0) for a batch of raw env observations."""
        return search(state.params, obs, key, 0.0)[0].action

    return Trainer(init=init, update=update, act=act, num_updates=config.num_updates,
                   env_steps_per_update=config.num_envs * config.num_steps, env=env, env_params=env_params)


if __name__ == "__main__":
    from jaxrl.cli import main

    main(Config, make_train, algorithm="muzero")
