"""COPlanner: MBPO with uncertainty-aware policy-guided MPC (Wang, Zheng, Sun, Jia, Wongkamjan, Xu, Huang,
"COPlanner: Plan to Roll Out Conservatively but to Explore Optimistically for Model-Based RL", ICLR 2024;
Algorithm 1 and Sec. 4) on an MBPO backbone (Janner et al. 2019, NeurIPS, Algorithm 2).

**UP-MPC** (Uncertainty-aware Policy-guided MPC, Sec. 4.1, ``up_mpc``). From a state s, K = ``num_candidates``
action sequences are drawn from the current policy through the learned ensemble for H = ``planning_horizon``
steps: at each step the policy samples an action for every candidate, every member of the ensemble samples
its (Δs, r) from its own Gaussian, the step's uncertainty is the members' disagreement and one member, drawn
uniformly per particle, gives the next state and the reward. Each candidate is scored by

    score = Σ_t γ_r^t r̂_t  ±  α · Σ_t γ_u^t u_t,     u_t = mean over the (Δs, r) dimensions of the
                                                        standard deviation across members of their samples

(``disagreement``: the model disagreement the paper uses, as its code computes it, in env units, Bessel
corrected), and the first action of the best candidate is returned. The sign is the point of the method:

* **Optimistic exploration**: every real env step takes the UP-MPC action with the bonus
  + α_o · uncertainty (``optimistic_rate``), so the agent visits high-reward regions the model is unsure
  about and the model learns there.
* **Conservative rollouts**: every step of every branched model rollout takes the UP-MPC action
  with the penalty − α_c · uncertainty (``conservative_rate``), so the policy's training data avoid the
  regions where the model is wrong.

With α = 0 UP-MPC is a return-maximizing shooting planner over policy samples. The greedy policy used for
evaluation (``act``) is the SAC policy's squashed mean, without planning (as the paper's code evaluates).

**The MBPO backbone** (duplicated from ``agents/model_based/mbpo.py``, an agent never imports another):

* **Real data.** Every env step goes to a fixed-capacity on-device replay buffer (``jaxrl.replay``);
  the first ``random_steps`` env steps use uniform random actions, then UP-MPC (optimistic) acts.
* **The model.** A probabilistic ensemble over (Δs, r) (``jaxrl.dynamics``: Gaussian NLL with learned
  log-variance bounds, masked normalization, held-out validation and early stopping inside the
  program) is retrained on the real buffer at the end of the warm-up and then every ``train_every``
  env steps, in a ``lax.cond``.
* **Branched rollouts.** Every ``rollout_every`` env steps, start states are drawn uniformly from the real
  buffer and rolled out k steps, each step's action chosen by conservative UP-MPC and the step itself
  sampled from one uniformly drawn member per particle (TS1, as the paper's code steps its model env).
  k follows MBPO's linear schedule ``rollout_schedule = (epoch_a, epoch_b, k_a, k_b)``.
* **The model buffer** is a FIFO with a validity mask (``ModelBuffer``): slots of steps t ≥ k, of particles
  that terminated earlier and of non-finite predictions are never sampled.
* **Policy updates.** G = ``updates_per_step`` SAC updates per env step on minibatches with exactly
  ⌊``real_ratio`` · B⌋ real transitions, the rest from the model buffer; SAC as in mbpo.py (tanh-squashed
  Gaussian policy, twin critics, Polyak targets, automatic entropy tuning; Haarnoja et al. 2018,
  "Soft Actor-Critic Algorithms and Applications"). Real transitions bootstrap through time-limit
  truncation (the pre-reset ``final_observation`` is stored); only a true termination stops the bootstrap.

**Terminations in the model are given, not learned** (``TERMINATION_FNS``, as mbpo.py, mbrl-lib's ``term_fn``):
Pendulum-v1 and CartPoleSwingUp-v0 never terminate; MountainCarContinuous-v0 terminates at the goal
(position ≥ 0.45 and velocity ≥ 0). An env with no entry raises a ``ConfigError`` before compilation;
``termination="none"`` declares an env that never terminates. Inside UP-MPC a candidate collects no reward
and no uncertainty after its predicted termination (a departure: the paper's code sums through it; it
changes nothing for envs that never terminate).

Defaults. UP-MPC from the paper's code for MBPO (``DMC-MBPO-COPlanner/mbrl/examples/conf/algorithm/
mbpo.yaml``: ``ntraj`` 5, ``planning_horizon`` 5, ``reward_gamma`` 0.97, ``uncertainty_gamma`` 0.97,
``conservative_rate`` 2, ``optimistic_rate`` 1): K = 5 candidates, H = 5, γ_r = γ_u = 0.97, α_c = 2, α_o = 1.
Everything else is mbpo.py's defaults (the MBPO paper's appendix and mbrl-lib's ``mbpo_cartpole.yaml``
for a Pendulum-size task: ensemble 5 × 4 swish layers of 200, M = 400 rollouts per env step of length
k = 1, G = 20 SAC updates per env step, 5% real data, epochs of 200 env steps, 5 000 env steps, one random
episode of 200 steps), so that the two files differ only by UP-MPC. Departures from the paper's code:
the same as mbpo.py's (one random episode instead of 5 000 steps of exploration; rollouts branched
every env step by default; like COPlanner's code, which runs every member in UP-MPC and in rollouts,
no elite subset), and the ensemble must have at least 2 members (the disagreement
is a standard deviation across members).

Cost. Every rollout step runs K · H ensemble steps (25 with the defaults) instead of one, and every real
step K · H more: a branched batch costs about 25× mbpo.py's.

Measured on 2 shared CPU cores (load ≈ 8) with mbpo.py's measurement setting (ensemble 5 × 2 swish layers
of 64, model batch 64; SAC 2 × 64, batch 128; M = 100; G = 20; 200 random steps; UP-MPC defaults),
Pendulum-v1, seeds 0–2, 10 000 env steps (25 min wall): the mean training-episode return first reaches
-200 at 3 400 env steps (per seed 3 400, 1 000, 2 600), final greedy return -124 (16 episodes per seed:
-136, -103, -133). mbpo.py in the same setting: 2 400 env steps and -132; our SAC: 4 600 and -126. So on
Pendulum, with one run of 3 seeds, UP-MPC did not speed MBPO up. ``tests/test_coplanner.py`` has the
2 000-step check.

Run:  python agents/model_based/coplanner.py --env Pendulum-v1 --num-seeds 2
"""
from __future__ import annotations

import dataclasses
from typing import Callable, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxrl import dynamics, envs, replay
from jaxrl.config import ConfigError, require, require_positive, require_unit_interval
from jaxrl.trainer import Trainer
from jaxrl.wrappers import EpisodeStatistics, FlattenObservation, episode_metrics

LOG_STD_MIN, LOG_STD_MAX = -5.0, 2.0  # bounds of the policy's log-std


# ----------------------------------------------------------------------------------------------
# Known termination functions of model transitions (mbrl-lib's term_fn, the paper's static/<env>.py)
# ----------------------------------------------------------------------------------------------
def never_terminates(obs, action, next_obs):
    """For envs whose episodes end only by the time limit (no model transition is terminal)."""
    return jnp.zeros(next_obs.shape[:-1], bool)


def mountain_car_terminates(obs, action, next_obs):
    """gymnax MountainCarContinuous-v0: the goal is reached at position ≥ 0.45 with velocity ≥ 0."""
    return (next_obs[..., 0] >= 0.45) & (next_obs[..., 1] >= 0.0)


TERMINATION_FNS: dict[str, Callable] = {
    "Pendulum-v1": never_terminates,
    "CartPoleSwingUp-v0": never_terminates,
    "MountainCarContinuous-v0": mountain_car_terminates,
}


def termination_fn(config) -> Callable:
    """The termination rule of ``config.env`` (``termination="auto"``) or none (``"none"``)."""
    if config.termination == "none":
        return never_terminates
    if config.termination != "auto":
        raise ConfigError(f"termination must be 'auto' or 'none', got {config.termination!r}")
    if config.env not in TERMINATION_FNS:
        raise ConfigError(
            f"COPlanner needs the termination rule of {config.env!r} for its model rollouts, and knows only "
            f"{sorted(TERMINATION_FNS)}; add the env's rule to coplanner.TERMINATION_FNS, or pass "
            "termination='none' if its episodes end only by the time limit")
    return TERMINATION_FNS[config.env]


@dataclasses.dataclass(frozen=True)
class Config:
    env: str = "Pendulum-v1"
    """Environment id (gymnax or this project's envs/); must have a Box action space."""
    total_timesteps: int = 5_000
    """Env steps per run (over all parallel envs)."""
    num_envs: int = 1
    """Parallel envs per run; each iteration steps every env once."""
    random_steps: int = 200
    """Env steps of uniform random actions before the first model is trained and SAC starts."""
    buffer_size: int = 1_000_000
    """Capacity of the real replay buffer (capped to total_timesteps)."""
    termination: str = "auto"
    """How model transitions terminate: ``auto`` (the env's known rule in TERMINATION_FNS) or ``none``."""
    # --- the model ---
    train_every: int = 200
    """Retrain the ensemble (and refill the model buffer) every this many env steps."""
    ensemble_size: int = 5
    """Members of the probabilistic ensemble, all used in rollouts (the paper's code trains 7 and uses all of them
    in UP-MPC and in rollouts)."""
    hidden_size: int = 200
    """Width of each member's hidden layers."""
    num_layers: int = 4
    """Hidden layers per member (swish)."""
    model_lr: float = 1e-3
    """Adam learning rate of the ensemble."""
    model_weight_decay: float = 5e-5
    """Decoupled weight decay on the members' weight matrices."""
    model_batch_size: int = 256
    """Minibatch per member and gradient step of the model."""
    max_epochs: int = 50
    """Most model training epochs per retraining."""
    patience: int = 5
    """Early stopping: epochs without a relative ``min_delta`` improvement of the validation MSE."""
    min_delta: float = 0.01
    """Relative validation improvement that resets the patience counter."""
    holdout_ratio: float = 0.2
    """Fraction of the real buffer's slots held out for model validation."""
    logvar_penalty: float = 0.01
    """Weight of Σ max_logvar − Σ min_logvar in the model loss."""
    # --- branched rollouts ---
    rollouts_per_step: int = 400
    """M: model rollouts per env step."""
    rollout_every: int = 1
    """Branch a batch of rollouts_per_step · rollout_every rollouts every this many env steps (1: every
    step, Algorithm 2 as written; train_every: once after each retraining, as the paper's code)."""
    rollout_schedule: tuple[int, ...] = (1, 15, 1, 1)
    """(epoch_a, epoch_b, k_a, k_b): rollout length k_a until epoch a, linear to k_b at epoch b."""
    epoch_length: int = 200
    """Env steps per epoch of the rollout schedule and of the model buffer's retention."""
    model_retain_epochs: int = 1
    """Epochs of rollout batches the model buffer keeps (FIFO)."""
    # --- UP-MPC (COPlanner) ---
    num_candidates: int = 5
    """K: action sequences sampled from the policy per planned state (the paper's code: ntraj 5)."""
    planning_horizon: int = 5
    """H: model steps of each candidate (the paper's code: planning_horizon 5)."""
    optimistic_rate: float = 1.0
    """α_o: weight of the uncertainty bonus when planning real env actions (the paper's code: 1)."""
    conservative_rate: float = 2.0
    """α_c: weight of the uncertainty penalty when planning model-rollout actions (the paper's code: 2)."""
    reward_discount: float = 0.97
    """γ_r: discount of the predicted rewards inside a candidate (the paper's code: reward_gamma 0.97)."""
    uncertainty_discount: float = 0.97
    """γ_u: discount of the per-step uncertainties inside a candidate (the paper's code: uncertainty_gamma 0.97)."""
    # --- SAC ---
    updates_per_step: int = 20
    """G: SAC gradient updates per env step."""
    real_ratio: float = 0.05
    """Fraction of each SAC minibatch drawn from the real buffer (the rest from the model buffer)."""
    batch_size: int = 256
    """Transitions per SAC gradient step."""
    policy_lr: float = 3e-4
    """Adam learning rate of the policy."""
    q_lr: float = 3e-4
    """Adam learning rate of the twin Q-networks."""
    alpha_lr: float = 3e-4
    """Adam learning rate of log α."""
    gamma: float = 0.99
    """Discount factor."""
    tau: float = 0.005
    """Polyak averaging rate of the target Q-networks."""
    init_alpha: float = 1.0
    """Initial entropy coefficient (tuned automatically towards the target entropy)."""
    target_entropy_scale: float = 1.0
    """Target entropy = −target_entropy_scale · |A|."""
    sac_hidden_size: int = 256
    """Width of the two hidden layers of the policy and of each Q-network."""

    @property
    def num_updates(self) -> int:
        return self.total_timesteps // self.num_envs

    @property
    def buffer_capacity(self) -> int:
        """Slots of the real buffer: buffer_size capped to the whole budget."""
        return max(1, min(self.buffer_size, self.num_updates * self.num_envs))

    @property
    def schedule(self) -> tuple[int, int, int, int]:
        return parse_schedule(self.rollout_schedule)

    @property
    def max_rollout_length(self) -> int:
        """k_max: the static length of every rollout (steps t ≥ k are masked)."""
        return max(self.schedule[2], self.schedule[3])

    @property
    def rollout_interval(self) -> int:
        """Env steps between two rollout batches: rollout_every, or one iteration of all envs if longer."""
        return max(self.rollout_every, self.num_envs)

    @property
    def rollout_batch(self) -> int:
        """Start states per rollout batch: M per env step since the last batch."""
        return self.rollouts_per_step * self.rollout_interval

    @property
    def model_buffer_capacity(self) -> int:
        """retain epochs × rollout batches per epoch × k_max × starts (the paper's model pool size)."""
        batches_per_epoch = -(-self.epoch_length // self.rollout_interval)
        return self.model_retain_epochs * batches_per_epoch * self.max_rollout_length * self.rollout_batch


def parse_schedule(schedule) -> tuple[int, int, int, int]:
    """(epoch_a, epoch_b, k_a, k_b) from a tuple of four integers, or the CLI's strings ("1,15,1,1")."""
    parts = [p for item in (schedule if isinstance(schedule, (tuple, list)) else (schedule,))
             for p in str(item).replace(" ", "").split(",") if p]
    try:
        values = tuple(int(p) for p in parts)
    except ValueError:
        values = ()
    if len(values) != 4 or min(values) < 0 or values[2] < 1 or values[3] < 1 or values[1] < values[0]:
        raise ConfigError("rollout_schedule must be four integers (epoch_a, epoch_b, k_a, k_b) with "
                          f"0 <= epoch_a <= epoch_b and k_a, k_b >= 1, like (1, 15, 1, 1); got {schedule!r}")
    return values


def rollout_length(schedule, epoch):
    """The paper's rollout length k at ``epoch`` (its code's ``_set_rollout_length``):
    k_a while epoch ≤ a, then ⌊k_a + min((epoch − a)/(b − a), 1) · (k_b − k_a)⌋. Works on traced epochs."""
    a, b, k_a, k_b = schedule
    frac = jnp.clip((epoch - a) / max(b - a, 1), 0.0, 1.0) if b > a else jnp.where(epoch > a, 1.0, 0.0)
    return jnp.floor(k_a + frac * (k_b - k_a) + 1e-6).astype(jnp.int32)


# ----------------------------------------------------------------------------------------------
# SAC networks and the squashed Gaussian
# ----------------------------------------------------------------------------------------------
class Actor(nn.Module):
    """Gaussian policy head before squashing: mean and log-std in [LOG_STD_MIN, LOG_STD_MAX]."""

    action_dim: int
    hidden_size: int = 256

    @nn.compact
    def __call__(self, obs):
        x = obs
        for _ in range(2):
            x = nn.relu(nn.Dense(self.hidden_size)(x))
        mean = nn.Dense(self.action_dim)(x)
        log_std = jnp.tanh(nn.Dense(self.action_dim)(x))
        return mean, LOG_STD_MIN + 0.5 * (LOG_STD_MAX - LOG_STD_MIN) * (log_std + 1.0)


class QNetwork(nn.Module):
    """Soft Q-function Q(s, a); the twin critics are two parameter sets stacked on a leading axis."""

    hidden_size: int = 256

    @nn.compact
    def __call__(self, obs, action):
        x = jnp.concatenate([obs, action], axis=-1)
        for _ in range(2):
            x = nn.relu(nn.Dense(self.hidden_size)(x))
        return nn.Dense(1)(x)[..., 0]


def squash(u, low, high):
    """a = mid + half_range · tanh(u): a pre-squash sample mapped into the action bounds."""
    return 0.5 * (high + low) + 0.5 * (high - low) * jnp.tanh(u)


def squashed_log_prob(mean, log_std, u, low, high):
    """log π(a) of a = squash(u), u ~ N(mean, exp(log_std)²) (Haarnoja et al. 2018, Appendix C, eq. 21,
    with the rescaling to the bounds); log(1 − tanh²u) = 2 (log 2 − u − softplus(−2u)) stays finite."""
    gaussian = -0.5 * ((u - mean) / jnp.exp(log_std)) ** 2 - log_std - 0.5 * jnp.log(2.0 * jnp.pi)
    log_det = jnp.log(0.5 * (high - low)) + 2.0 * (jnp.log(2.0) - u - jax.nn.softplus(-2.0 * u))
    return (gaussian - log_det).sum(-1)


def sample_action(key, mean, log_std, low, high):
    """Reparameterized sample of the squashed policy: (action in [low, high], its log-probability)."""
    u = mean + jnp.exp(log_std) * jax.random.normal(key, mean.shape)
    return squash(u, low, high), squashed_log_prob(mean, log_std, u, low, high)


# ----------------------------------------------------------------------------------------------
# Buffers: real transitions (jaxrl.replay) and the masked FIFO model buffer
# ----------------------------------------------------------------------------------------------
class Transition(NamedTuple):
    obs: jax.Array          # (obs_dim,)
    action: jax.Array       # (action_dim,), in env units
    reward: jax.Array       # ()
    next_obs: jax.Array     # (obs_dim,): the true next state, also on truncation
    terminated: jax.Array   # () float: 1 only on a real termination (no bootstrap)


class ModelBuffer(NamedTuple):
    """Fixed-capacity FIFO of model transitions; only slots with ``valid`` true are ever sampled."""

    data: Transition        # every leaf with leading axis capacity
    valid: jax.Array        # (capacity,) bool
    position: jax.Array     # next slot to write (int32)


def model_buffer_init(capacity: int, example: Transition) -> ModelBuffer:
    data = jax.tree.map(lambda x: jnp.zeros((capacity,) + jnp.shape(x), jnp.asarray(x).dtype), example)
    return ModelBuffer(data, jnp.zeros(capacity, bool), jnp.int32(0))


def model_buffer_add(buffer: ModelBuffer, block: Transition, valid) -> ModelBuffer:
    """Write ``n`` rows (and their validity) at the write position, overwriting the oldest (FIFO)."""
    capacity = buffer.valid.shape[0]
    n = valid.shape[0]
    idx = (buffer.position + jnp.arange(n)) % capacity
    data = jax.tree.map(lambda store, x: store.at[idx].set(x.astype(store.dtype)), buffer.data, block)
    return ModelBuffer(data, buffer.valid.at[idx].set(valid), (buffer.position + n) % capacity)


def mixed_batch(real: replay.ReplayBuffer, model: ModelBuffer, key, batch_size: int, real_ratio) -> Transition:
    """A SAC minibatch of ``batch_size`` rows: the first ⌊real_ratio · batch_size⌋ uniformly from the
    filled real slots, the rest uniformly from the valid model slots (the paper's
    ``env_batch_size = int(batch_size · real_ratio)``). ``real_ratio`` may be traced: both sources are
    drawn in full and a row-wise select keeps the shapes static."""
    real_key, model_key = jax.random.split(key)
    n_real = jnp.floor(real_ratio * batch_size + 1e-4).astype(jnp.int32)
    real_rows = replay.sample(real, real_key, batch_size)
    model_idx = dynamics.sample_masked(model_key, model.valid, (batch_size,))
    model_rows = jax.tree.map(lambda store: store[model_idx], model.data)
    take_real = jnp.arange(batch_size) < n_real
    return jax.tree.map(lambda r, m: jnp.where(take_real.reshape((-1,) + (1,) * (r.ndim - 1)), r, m),
                        real_rows, model_rows)


# ----------------------------------------------------------------------------------------------
# UP-MPC: uncertainty-aware policy-guided planning through the ensemble
# ----------------------------------------------------------------------------------------------
def disagreement(samples):
    """Model uncertainty of one step (COPlanner, Sec. 4: the ensemble's disagreement): ``samples`` holds
    every member's sampled (Δs, r), shape (E, ..., out_dim); the result, shape (...), is the standard
    deviation across the E members (Bessel-corrected, ddof = 1, as the paper's code's ``torch.std``),
    averaged over the out_dim dimensions."""
    return jnp.std(samples, axis=0, ddof=1).mean(-1)


def model_step(predict: Callable, obs, action, key):
    """One step of the ensemble for a batch of particles (the paper's code's ``step_ensemble``).

    ``predict(obs, action) -> (mean, variance)`` of (Δs, r) in env units, shape (E, ..., out_dim).
    Every member samples from its Gaussian; the step's uncertainty is their ``disagreement``; one member
    drawn uniformly per particle gives s' = s + Δs and r. Returns ``(next_obs, reward, uncertainty)``.
    """
    noise_key, member_key = jax.random.split(key)
    mean, variance = predict(obs, action)
    samples = mean + jnp.sqrt(variance) * jax.random.normal(noise_key, mean.shape)
    member = jax.random.randint(member_key, samples.shape[1:-1], 0, samples.shape[0])
    chosen = jnp.take_along_axis(samples, member[None, ..., None], axis=0)[0]
    return obs + chosen[..., :-1], chosen[..., -1], disagreement(samples)


class Plan(NamedTuple):
    action: jax.Array        # (N, action_dim): the first action of the chosen candidate
    index: jax.Array         # (N,) int: the chosen candidate
    returns: jax.Array       # (K, N): Σ_t γ_r^t r̂_t of every candidate
    uncertainty: jax.Array   # (K, N): Σ_t γ_u^t u_t of every candidate
    score: jax.Array         # (K, N): returns + rate · uncertainty (non-finite → −inf)


def up_mpc(predict: Callable, policy_fn: Callable, terminates: Callable, obs, key, num_candidates: int,
           horizon: int, rate, reward_discount, uncertainty_discount) -> Plan:
    """Uncertainty-aware Policy-guided MPC (COPlanner, Sec. 4 and Algorithm 1) for a batch ``obs`` (N, obs_dim).

    K = ``num_candidates`` copies of every state are rolled ``horizon`` steps through the model
    (``model_step``) with actions sampled from ``policy_fn(t, obs, key)`` (obs of shape (K, N, obs_dim)).
    Each candidate scores Σ_t γ_r^t r̂_t + rate · Σ_t γ_u^t u_t; ``rate`` = +α_o plans optimistically
    (real exploration), ``rate`` = −α_c conservatively (model rollouts), 0 maximizes the predicted return.
    A candidate stops collecting reward and uncertainty after its predicted termination
    (``terminates(s, a, s')``). The first action of the highest-scoring candidate is returned per state.
    ``rate`` and the discounts may be traced.
    """
    states = jnp.broadcast_to(obs, (num_candidates,) + obs.shape)

    def step(carry, inputs):
        states, alive, returns, uncertainty = carry
        t, step_key = inputs
        policy_key, model_key = jax.random.split(step_key)
        actions = policy_fn(t, states, policy_key)
        next_states, reward, u = model_step(predict, states, actions, model_key)
        returns = returns + jnp.where(alive, jnp.power(reward_discount, t) * reward, 0.0)
        uncertainty = uncertainty + jnp.where(alive, jnp.power(uncertainty_discount, t) * u, 0.0)
        alive = alive & ~terminates(states, actions, next_states)
        return (next_states, alive, returns, uncertainty), actions

    zeros = jnp.zeros(states.shape[:-1])
    carry = (states, jnp.ones(states.shape[:-1], bool), zeros, zeros)
    (_, _, returns, uncertainty), actions = jax.lax.scan(
        step, carry, (jnp.arange(horizon), jax.random.split(key, horizon)))
    score = returns + rate * uncertainty
    score = jnp.where(jnp.isfinite(score), score, -jnp.inf)
    index = jnp.argmax(score, axis=0)
    first = jnp.take_along_axis(actions[0], index[None, :, None], axis=0)[0]
    return Plan(first, index, returns, uncertainty, score)


def branched_rollout(predict: Callable, act_fn: Callable, real: replay.ReplayBuffer, k, k_max: int,
                     num_starts: int, terminates: Callable, key):
    """Model rollouts branched from real states (Janner et al. 2019, Alg. 2, lines 8–10), every action
    chosen by ``act_fn(t, obs, key)`` (COPlanner: conservative UP-MPC).

    ``num_starts`` start states are drawn uniformly from the filled slots of the real buffer and stepped
    ``k_max`` times with ``model_step`` (one uniformly drawn member per particle and step, TS1). Returns the
    transitions time-major, flattened to (k_max · num_starts, ·), their validity (t < k, with k possibly
    traced; no termination or divergence at an earlier step; a finite prediction) and the per-step
    uncertainty (k_max · num_starts,). Non-finite values are zeroed so that masked slots never hold NaN.
    """
    start_key, rollout_key = jax.random.split(key)
    starts = real.data.obs[jax.random.randint(start_key, (num_starts,), 0, jnp.maximum(real.size, 1))]

    def step(obs, inputs):
        t, step_key = inputs
        act_key, model_key = jax.random.split(step_key)
        action = act_fn(t, obs, act_key)
        next_obs, reward, u = model_step(predict, obs, action, model_key)
        return next_obs, (obs, action, reward, next_obs, u)

    _, (obs, actions, rewards, next_obs, u) = jax.lax.scan(
        step, starts, (jnp.arange(k_max), jax.random.split(rollout_key, k_max)))
    terminated = terminates(obs, actions, next_obs)
    finite = jnp.isfinite(next_obs).all(-1) & jnp.isfinite(rewards)
    stop = terminated | ~finite
    stopped_before = jnp.cumsum(stop, axis=0) - stop          # ends at steps < t
    valid = (jnp.arange(k_max)[:, None] < k) & (stopped_before == 0) & finite
    block = Transition(obs, actions, rewards, next_obs, terminated.astype(jnp.float32))
    block = jax.tree.map(lambda x: jnp.where(jnp.isfinite(x), x, 0.0).reshape((k_max * num_starts,) + x.shape[2:]),
                         block)
    return block, valid.reshape(-1), u.reshape(-1)


# ----------------------------------------------------------------------------------------------
# Training
# ----------------------------------------------------------------------------------------------
class TrainState(NamedTuple):
    actor_params: dict
    q_params: dict           # both critics, stacked on a leading axis of 2
    target_q_params: dict
    log_alpha: jax.Array
    actor_opt: optax.OptState
    q_opt: optax.OptState
    alpha_opt: optax.OptState
    model: dynamics.ModelParams
    model_opt: optax.OptState
    norm: dynamics.Normalizer
    buffer: replay.ReplayBuffer      # real transitions
    holdout_u: jax.Array             # (capacity,) fixed per real slot: held out when < holdout_ratio
    model_buffer: ModelBuffer
    env_state: object
    obs: jax.Array                   # (num_envs, obs_dim)
    key: jax.Array


def make_env(config: Config, env=None, env_params=None):
    if env is None:
        env, env_params = envs.make(config.env)
    env_params = env.default_params if env_params is None else env_params
    envs.require_action_space(config.env, env, env_params, "continuous", "COPlanner")
    flat = FlattenObservation(env) if len(env.observation_space(env_params).shape) > 1 else env
    return env, env_params, EpisodeStatistics(flat)


def validate(config: Config) -> None:
    require_positive(config, "total_timesteps", "num_envs", "buffer_size", "train_every", "ensemble_size",
                     "hidden_size", "num_layers", "model_lr", "model_batch_size", "max_epochs", "patience",
                     "rollouts_per_step", "rollout_every", "epoch_length", "model_retain_epochs", "updates_per_step",
                     "batch_size",
                     "policy_lr", "q_lr", "alpha_lr", "init_alpha", "sac_hidden_size")
    parse_schedule(config.rollout_schedule)
    termination_fn(config)
    require_unit_interval(config, "gamma", "real_ratio")
    require((0 < config.tau) & (config.tau <= 1), f"tau must be in (0, 1], got {config.tau}")
    require(config.model_weight_decay >= 0, f"model_weight_decay must be >= 0, got {config.model_weight_decay}")
    require(config.min_delta >= 0, f"min_delta must be >= 0, got {config.min_delta}")
    require(config.logvar_penalty >= 0, f"logvar_penalty must be >= 0, got {config.logvar_penalty}")
    require((0 <= config.holdout_ratio) & (config.holdout_ratio < 1),
            f"holdout_ratio must be in [0, 1), got {config.holdout_ratio}")
    require(isinstance(config.num_candidates, int) and config.num_candidates >= 1,
            f"num_candidates (K) must be an integer >= 1, got {config.num_candidates!r}")
    require(isinstance(config.planning_horizon, int) and config.planning_horizon >= 1,
            f"planning_horizon (H) must be an integer >= 1, got {config.planning_horizon!r}")
    require(isinstance(config.ensemble_size, int) and config.ensemble_size >= 2,
            f"ensemble_size must be an integer >= 2, got {config.ensemble_size!r}: UP-MPC's uncertainty is the "
            "disagreement (standard deviation) across the members")
    require(config.optimistic_rate >= 0, f"optimistic_rate (α_o) must be >= 0, got {config.optimistic_rate}")
    require(config.conservative_rate >= 0, f"conservative_rate (α_c) must be >= 0, got {config.conservative_rate}")
    require_unit_interval(config, "reward_discount", "uncertainty_discount")
    require(config.rollout_every % config.num_envs == 0 or config.num_envs % config.rollout_every == 0,
            f"rollout_every={config.rollout_every} and num_envs={config.num_envs} must divide one another "
            "(a rollout batch is due at whole iterations)")
    require(config.num_updates >= 1, f"total_timesteps={config.total_timesteps} is less than one vector step "
            f"(num_envs = {config.num_envs})")
    require(config.random_steps >= config.num_envs,
            f"random_steps={config.random_steps} must be >= num_envs={config.num_envs}: the first model "
            "needs data to train on")
    require(config.random_steps < config.total_timesteps,
            f"random_steps={config.random_steps} must be below total_timesteps={config.total_timesteps}, "
            "or the policy is never trained")


def require_observations(obs, obs_dim: int, env_id: str, algorithm: str) -> None:
    """Raise a clear ``ValueError`` (at trace time, before anything compiles) when ``act`` gets a batch
    whose observations are not this model's: e.g. a checkpoint of one env acting on another env's states."""
    if obs.ndim < 2 or int(np.prod(obs.shape[1:])) != obs_dim:
        raise ValueError(f"{algorithm} act: expected a batch of {env_id} observations, shape (batch, ...) with "
                         f"{obs_dim} numbers each, got shape {tuple(obs.shape)} (observations of another env, "
                         "or an unbatched observation?)")


def make_train(config: Config, env=None, env_params=None) -> Trainer:
    """Build the COPlanner ``Trainer``; ``env``/``env_params`` replace ``config.env`` when given."""
    validate(config)
    env, env_params, wrapped = make_env(config, env, env_params)
    terminates = termination_fn(config)
    obs_dim = int(np.prod(env.observation_space(env_params).shape))
    low, high = envs.action_bounds(env, env_params)
    action_shape = tuple(low.shape)
    action_dim = int(np.prod(action_shape))
    low, high = low.reshape(-1), high.reshape(-1)
    actor = Actor(action_dim, config.sac_hidden_size)
    critic = QNetwork(config.sac_hidden_size)
    target_entropy = -config.target_entropy_scale * action_dim
    actor_tx, q_tx, alpha_tx = optax.adam(config.policy_lr), optax.adam(config.q_lr), optax.adam(config.alpha_lr)
    ensemble = dynamics.Ensemble(obs_dim, action_dim, config.ensemble_size, config.hidden_size, config.num_layers)
    model_tx = dynamics.make_optimizer(config.model_lr, config.model_weight_decay)
    settings = dynamics.TrainSettings(config.model_batch_size, config.max_epochs, config.patience, config.min_delta,
                                      config.holdout_ratio, config.logvar_penalty)
    schedule, k_max, n_starts = config.schedule, config.max_rollout_length, config.rollout_batch
    updates_per_iteration = config.updates_per_step * config.num_envs

    def q_values(q_params, obs, action):
        """Both critics: shape (2, batch)."""
        return jax.vmap(critic.apply, in_axes=(0, None, None))(q_params, obs, action)

    def policy_sample(actor_params, obs, key):
        mean, log_std = actor.apply(actor_params, obs)
        return sample_action(key, mean, log_std, low, high)

    # ------------------------------------------------------------------------------------------
    # Env interaction
    # ------------------------------------------------------------------------------------------
    def reset_envs(key):
        return jax.vmap(wrapped.reset, in_axes=(0, None))(jax.random.split(key, config.num_envs), env_params)

    def step_envs(key, env_state, action):
        keys = jax.random.split(key, config.num_envs)
        env_action = action.reshape((config.num_envs,) + action_shape)
        return jax.vmap(wrapped.step, in_axes=(0, 0, 0, None))(keys, env_state, env_action, env_params)

    def init(key) -> TrainState:
        key, actor_key, q_key, model_key, env_key, split_key = jax.random.split(key, 6)
        dummy_obs, dummy_action = jnp.zeros((1, obs_dim)), jnp.zeros((1, action_dim))
        actor_params = actor.init(actor_key, dummy_obs)
        q_params = jax.vmap(critic.init, in_axes=(0, None, None))(jax.random.split(q_key, 2), dummy_obs, dummy_action)
        log_alpha = jnp.log(jnp.asarray(config.init_alpha, jnp.float32))
        model = ensemble.init(model_key)
        example = Transition(jnp.zeros(obs_dim), jnp.zeros(action_dim), jnp.float32(0), jnp.zeros(obs_dim),
                             jnp.float32(0))
        obs, env_state = reset_envs(env_key)
        return TrainState(actor_params, q_params, q_params, log_alpha, actor_tx.init(actor_params),
                          q_tx.init(q_params), alpha_tx.init(log_alpha), model, model_tx.init(model),
                          dynamics.identity_normalizer(ensemble.in_dim, ensemble.out_dim),
                          replay.init(config.buffer_capacity, example),
                          jax.random.uniform(split_key, (config.buffer_capacity,)),
                          model_buffer_init(config.model_buffer_capacity, example), env_state,
                          obs.reshape((config.num_envs, obs_dim)), key)

    # ------------------------------------------------------------------------------------------
    # The model: training and branched rollouts
    # ------------------------------------------------------------------------------------------
    def train_model(state: TrainState, key):
        """Retrain the ensemble on the real buffer (early stopping inside ``dynamics.train_ensemble``)."""
        data = dynamics.ModelData(state.buffer.data.obs, state.buffer.data.action, state.buffer.data.reward,
                                  state.buffer.data.next_obs)
        model, model_opt, norm, info = dynamics.train_ensemble(ensemble, model_tx, state.model, state.model_opt,
                                                               data, state.buffer.size, state.holdout_u, key, settings)
        metrics = {"model_epochs": info.epochs.astype(jnp.float32), "model_loss": info.train_loss,
                   "model_val_mse": info.val_score}
        return state._replace(model=model, model_opt=model_opt, norm=norm), metrics

    def keep_model(state: TrainState, key):
        nan = jnp.float32(jnp.nan)
        return state, {"model_epochs": nan, "model_loss": nan, "model_val_mse": nan}

    def predictor(state: TrainState):
        """The ensemble's (mean, variance) of (Δs, r) in env units, every member: (E, ..., out_dim)."""
        return lambda obs, action: ensemble.predict(state.model, state.norm, obs, action)

    def plan(state: TrainState, obs, key, rate) -> Plan:
        """UP-MPC from ``obs`` (N, obs_dim) with the current policy (actions sampled) and model."""
        def policy(t, states, key):
            return policy_sample(state.actor_params, states, key)[0]

        return up_mpc(predictor(state), policy, terminates, obs, key, config.num_candidates,
                      config.planning_horizon, rate, config.reward_discount, config.uncertainty_discount)

    def branch(state: TrainState, env_steps, key):
        """One batch of k-step conservative rollouts from real states into the model buffer (FIFO); k from
        the schedule, epochs counted from the end of the warm-up."""
        epoch = jnp.maximum(env_steps - config.random_steps, 0) // config.epoch_length
        k = rollout_length(schedule, epoch)

        def conservative(t, obs, key):  # UP-MPC with the penalty −α_c · uncertainty
            return plan(state, obs, key, -config.conservative_rate).action

        block, valid, u = branched_rollout(predictor(state), conservative, state.buffer, k, k_max, n_starts,
                                           terminates, key)
        state = state._replace(model_buffer=model_buffer_add(state.model_buffer, block, valid))
        n_valid = jnp.maximum(valid.sum(), 1)
        return state, {"rollout_length": k.astype(jnp.float32),
                       "model_reward": jnp.where(valid, block.reward, 0.0).sum() / n_valid,
                       "rollout_uncertainty": jnp.where(valid, u, 0.0).sum() / n_valid}

    def no_branch(state: TrainState, env_steps, key):
        nan = jnp.float32(jnp.nan)
        return state, {"rollout_length": nan, "model_reward": nan, "rollout_uncertainty": nan}

    # ------------------------------------------------------------------------------------------
    # SAC on mixed real/model minibatches
    # ------------------------------------------------------------------------------------------
    def q_loss_fn(q_params, target_q_params, actor_params, log_alpha, batch: Transition, key):
        """Soft Bellman residual of both critics (Haarnoja et al. 2018b, eq. 5, with the clipped
        double-Q target of Sec. 6): Σ_j E[(Q_j(s, a) − y)²] with
        y = r + γ (1 − d)(min_j Q̄_j(s', a') − α log π(a'|s')), a' ~ π(·|s'); d is 1 only on a
        termination (truncated episodes bootstrap)."""
        next_action, next_log_prob = policy_sample(actor_params, batch.next_obs, key)
        next_q = q_values(target_q_params, batch.next_obs, next_action).min(axis=0)
        soft_value = next_q - jnp.exp(log_alpha) * next_log_prob
        target = jax.lax.stop_gradient(batch.reward + config.gamma * (1.0 - batch.terminated) * soft_value)
        q = q_values(q_params, batch.obs, batch.action)
        return ((q - target) ** 2).mean(axis=1).sum(), q.mean()

    def actor_loss_fn(actor_params, q_params, log_alpha, obs, key):
        """Policy loss (Haarnoja et al. 2018b, eq. 7): E[α log π(f(ε; s)|s) − min_j Q_j(s, f(ε; s))]."""
        action, log_prob = policy_sample(actor_params, obs, key)
        q = q_values(q_params, obs, action).min(axis=0)
        return (jnp.exp(log_alpha) * log_prob - q).mean(), log_prob

    def alpha_loss_fn(log_alpha, log_prob):
        """Temperature loss (Haarnoja et al. 2018b, eq. 18) on log α: E[−log α (log π(a|s) + H̄)]."""
        return -(log_alpha * jax.lax.stop_gradient(log_prob + target_entropy)).mean()

    def gradient_step(state: TrainState, key):
        batch_key, q_key, actor_key = jax.random.split(key, 3)
        batch = mixed_batch(state.buffer, state.model_buffer, batch_key, config.batch_size, config.real_ratio)
        (q_loss, q_mean), q_grads = jax.value_and_grad(q_loss_fn, has_aux=True)(
            state.q_params, state.target_q_params, state.actor_params, state.log_alpha, batch, q_key)
        q_updates, q_opt = q_tx.update(q_grads, state.q_opt, state.q_params)
        q_params = optax.apply_updates(state.q_params, q_updates)
        (actor_loss, log_prob), actor_grads = jax.value_and_grad(actor_loss_fn, has_aux=True)(
            state.actor_params, q_params, state.log_alpha, batch.obs, actor_key)
        actor_updates, actor_opt = actor_tx.update(actor_grads, state.actor_opt, state.actor_params)
        actor_params = optax.apply_updates(state.actor_params, actor_updates)
        alpha_grad = jax.grad(alpha_loss_fn)(state.log_alpha, log_prob)
        alpha_update, alpha_opt = alpha_tx.update(alpha_grad, state.alpha_opt, state.log_alpha)
        log_alpha = optax.apply_updates(state.log_alpha, alpha_update)
        target_q_params = optax.incremental_update(q_params, state.target_q_params, config.tau)
        state = state._replace(actor_params=actor_params, q_params=q_params, target_q_params=target_q_params,
                               log_alpha=log_alpha, actor_opt=actor_opt, q_opt=q_opt, alpha_opt=alpha_opt)
        return state, {"q_loss": q_loss, "actor_loss": actor_loss, "q_mean": q_mean, "entropy": -log_prob.mean(),
                       "alpha": jnp.exp(log_alpha)}

    def learn(state: TrainState, key):
        state, metrics = jax.lax.scan(gradient_step, state, jax.random.split(key, updates_per_iteration))
        return state, {k: v.mean() for k, v in metrics.items()}

    def wait(state: TrainState, key):
        nan = jnp.float32(jnp.nan)
        return state, {"q_loss": nan, "actor_loss": nan, "q_mean": nan, "entropy": nan,
                       "alpha": jnp.exp(state.log_alpha)}

    # ------------------------------------------------------------------------------------------
    # One iteration of Algorithm 2
    # ------------------------------------------------------------------------------------------
    def update(state: TrainState, iteration):
        key, action_key, step_key, model_key, branch_key, learn_key = jax.random.split(state.key, 6)
        # ACT: uniform random actions during warm-up, then optimistic UP-MPC (bonus +α_o · uncertainty)
        warmup = iteration * config.num_envs < config.random_steps
        random_key, plan_key = jax.random.split(action_key)
        explore = plan(state, state.obs, plan_key, config.optimistic_rate)
        random_action = low + (high - low) * jax.random.uniform(random_key, explore.action.shape)
        action = jnp.where(warmup, random_action, explore.action)
        next_obs, env_state, reward, terminated, _, info = step_envs(step_key, state.env_state, action)
        # STORE the true next state (pre-reset on truncation); only a termination stops bootstrapping
        final_obs = info["final_observation"].reshape((config.num_envs, obs_dim))
        buffer = replay.add(state.buffer, Transition(state.obs, action, reward.astype(jnp.float32), final_obs,
                                                     terminated.astype(jnp.float32)))
        state = state._replace(buffer=buffer, env_state=env_state, obs=next_obs.reshape((config.num_envs, obs_dim)),
                               key=key)
        # MODEL: retrain at the end of warm-up, then every train_every env steps; branch rollouts at the
        # end of warm-up, then every rollout_every env steps. ``iteration`` is an unbatched scan input,
        # so under vmap the conds stay real branches.
        before, after = iteration * config.num_envs, (iteration + 1) * config.num_envs
        last_warmup = (before < config.random_steps) & (after >= config.random_steps)

        def due(every):
            return last_warmup | ((after > config.random_steps) & (after // every > before // every))

        state, metrics = jax.lax.cond(due(config.train_every), train_model, keep_model, state, model_key)
        state, branch_metrics = jax.lax.cond(due(config.rollout_every), branch, no_branch, state, after, branch_key)
        metrics.update(branch_metrics)
        # POLICY: G SAC updates per env step once the first model batch exists
        state, sac_metrics = jax.lax.cond(after >= config.random_steps, learn, wait, state, learn_key)
        metrics.update(sac_metrics)
        metrics["model_buffer_valid"] = state.model_buffer.valid.sum().astype(jnp.float32)
        chosen = jnp.take_along_axis(explore.uncertainty, explore.index[None], axis=0)[0]
        metrics["explore_uncertainty"] = jnp.where(warmup, jnp.nan, chosen.mean())
        metrics.update(episode_metrics(info))
        return state, metrics

    def act(state: TrainState, obs, key):
        """Deterministic action: the squashed mean, in the env's bounds."""
        require_observations(obs, obs_dim, config.env, "COPlanner")
        obs = obs.reshape((obs.shape[0], obs_dim))
        mean, _ = actor.apply(state.actor_params, obs)
        return squash(mean, low, high).reshape((obs.shape[0],) + action_shape)

    return Trainer(init=init, update=update, act=act, num_updates=config.num_updates,
                   env_steps_per_update=config.num_envs, env=env, env_params=env_params)


if __name__ == "__main__":
    from jaxrl.cli import main

    main(Config, make_train, algorithm="coplanner")
