"""VaGraM: Value-Gradient weighted Model loss (Voelcker, Liao, Garg & Farahmand 2022, "Value Gradient
weighted Model-Based Reinforcement Learning", ICLR), as the model objective of an MBPO-style agent
(Janner et al. 2019, Algorithm 2: SAC on short model rollouts branched from real states).

**The loss.** A model error ŝ' − s' matters to the agent through the value error V(ŝ') − V(s') ≈
∇V(s')ᵀ(ŝ' − s') (first-order Taylor at the real next state, Sec. 4). Its square is minimized by a
whole subspace of wrong predictions, so the paper bounds it by the axis-aligned (diagonal) form
(Sec. 4.2, the diagonal bound of Eq. 7, the one Fig. 1's caption refers to):

    L(ŝ', s') = Σ_i (∂V/∂s_i (s'))² (ŝ'_i − s'_i)²,

a squared error re-weighted per dimension by the squared value gradient at the *real* next state:
a dimension the value does not depend on (∂V/∂s_i = 0, e.g. a distractor) costs nothing to get
wrong, and the model's limited capacity goes to the dimensions that move the value. As in the paper's
code (``pairlab/vagram``, ``mbrl/models/vaml_mlp.py``, ``VAMLMLP`` with ``use_scaling``):

* V(s') = Q(s', μ_π(s')) with the policy's mean action held fixed (the gradient flows through Q's state
  input only), for each of the 4 critics, the twin online and the twin target Q-networks
  (``use_all_vf``); the per-critic losses are summed.
* The gradients are clipped: each critic's gradient vectors in norm at the 95% quantile of their norms
  (``bound_clipping_quantile``). They are then *not* normalized by default (``grad_norm="none"``, see
  Departures): the state term Σ_i ∂V/∂s_i² (ŝ'_i − s'_i)² is the squared Taylor value error, in value
  units, the same units as the reward's squared error, and the two enter the Bellman target alike.
* The model predicts means only (a deterministic ensemble; TS1 rollouts use the means), and the reward
  head keeps a plain squared error. The loss is scaled as the code's is (its per-dimension terms are
  averaged over the d state dimensions and the reward error is added to each):
  L = (1/d) Σ_v Σ_i g_{v,i}² (ŝ'_i − s'_i)² + (r̂ − r)².
* Warm-up: during MBPO's first epoch (``mse_warmup_steps`` env steps after the random warm-up) every
  retraining adds the plain squared error averaged over all outputs, (1/(d+1)) Σ_j (ŷ_j − y_j)², as the
  code's ``mbpo.py`` does (``add_mse = True`` for the first epoch, "add mse for first epoch"): the
  critic is still near its random init and its gradients weight the dimensions at random.
* The weights are computed once per model retraining, with the *current* critics and policy, over
  the whole real buffer (the code caches them per transition until the agent changes); the model is
  retrained every ``train_every`` env steps inside the compiled program, so the weights follow the
  value function as the agent learns. Held-out slots are scored by the same weighted error for early
  stopping (the code's ``eval_score``).

``model_loss="mle"`` swaps the objective for MBPO's Gaussian negative log-likelihood (probabilistic
ensemble, sampled TS1 rollouts): everything else is the same program, for the comparison the paper
makes (MLE vs VaGraM under small models and distracting dimensions; ``compare_model_losses`` and
``scripts/reproduce_mb_distractors.py``). The training loop is MBPO's (real buffer, schedule of the
rollout length, masked FIFO model buffer, G SAC updates per env step on 5%-real minibatches, known
termination rules in ``TERMINATION_FNS``; this file re-implements all of it, an agent never imports
another).

Defaults. The paper runs VaGraM inside MBPO with MBPO's hyperparameters (its code builds on
mbrl-lib's MBPO); the VaGraM-specific ones are its code's defaults: 95% norm-quantile clipping, all four
critics, no added MSE term after the first epoch (``add_mse=False``; ``mse_weight`` adds one
throughout). MBPO's: an ensemble of 4 hidden layers of 200 swish units, Adam 1e-3 (weight decay 5e-5), batch 256, 20% held out, early stopping
after 5 epochs without 1% improvement; M = 400 rollouts per env step; G = 20 SAC updates per env step;
5% real data; SAC with Adam 3e-4, batch 256, 2 × 256 ReLU, τ 0.005, γ 0.99, target entropy −|A|;
Pendulum-size schedule and cadence of mbrl-lib's ``mbpo_cartpole.yaml`` (k = 1, epochs of 200 env
steps, model retrained every 200 env steps, 5 000 env steps). Departures: (i) no elite subset (5
members, all used); (ii) one random episode (200 steps) of warm-up; (iii) the clipping quantile is taken
over the whole training split of each retraining, not per minibatch (the same weights for every
minibatch of a retraining); (iv) normalization. The code divides the clipped gradients by a running mean
of the gradient norms that starts at 1 and moves by 0.001 per critic and minibatch; with its Pendulum
cadence (``mbpo_pendulum.yaml``: retrained every 50 steps, batch 256, patience 1: a few minibatches per
retraining) it stays near 1 for thousands of env steps by our estimate, so the code trains on nearly
raw gradients early on. Our trainings take many more minibatches per retraining
(batch 64, patience 5), so the same rate converges to the mean norm within one retraining, and
normalized gradients (``grad_norm="running"`` or ``"retraining"``, unit mean norm) shrink the state
term far below the reward's: measured on Pendulum-v1 at 2 000 env steps (tests/test_vagram.py),
normalized per retraining (the previous implementation) −811 and running −842 (seeds 0-2); raw −293
(seeds 0-2) and −333 (seeds 10-12); MLE −229 (seeds 0-2). Hence the default ``"none"``;
the other two stay selectable. As in the code, both errors are in env units (the weights are rescaled
by the target normalizer's variance inside ``dynamics.train_ensemble``).

Run:  python agents/model_based/vagram.py --env Pendulum-Distract10-v0 --num-seeds 2
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
MODEL_LOSSES = ("vagram", "mle")
GRAD_NORMS = ("running", "retraining", "none")


# ----------------------------------------------------------------------------------------------
# Known termination functions of model transitions (mbrl-lib's term_fn)
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
    # envs/model_based/distractors.py: Pendulum with distracting dimensions never terminates either
    **{f"Pendulum-Distract{n}-v0": never_terminates for n in (5, 10, 15, 20)},
}


def termination_fn(config) -> Callable:
    """The termination rule of ``config.env`` (``termination="auto"``) or none (``"none"``)."""
    if config.termination == "none":
        return never_terminates
    if config.termination != "auto":
        raise ConfigError(f"termination must be 'auto' or 'none', got {config.termination!r}")
    if config.env not in TERMINATION_FNS:
        raise ConfigError(
            f"VaGraM needs the termination rule of {config.env!r} for its model rollouts, and knows only "
            f"{sorted(TERMINATION_FNS)}; add the env's rule to vagram.TERMINATION_FNS, or pass "
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
    # --- the model and its loss ---
    model_loss: str = "vagram"
    """``vagram``: value-gradient weighted squared error of the means (deterministic model); ``mle``:
    Gaussian NLL of a probabilistic ensemble (MBPO's model)."""
    clip_quantile: float = 0.95
    """VaGraM: each critic's value-gradient norms are clipped at this quantile of the training split."""
    mse_weight: float = 0.0
    """VaGraM: weight of an added plain squared error averaged over all outputs (the code's add_mse),
    at every retraining."""
    mse_warmup_steps: int = 200
    """VaGraM: retrainings within this many env steps after ``random_steps`` add the plain squared error
    with weight 1 (the code sets ``add_mse`` during MBPO's first epoch, while the critic is still
    near its random init); 0 turns it off."""
    grad_norm: str = "none"
    """VaGraM: how the clipped value gradients are normalized: ``running`` (the code: divided by a
    running mean of the gradient norms that starts at 1, rate ``norm_rate`` per critic and minibatch)
    or ``retraining`` (unit mean norm per critic at every retraining)."""
    norm_rate: float = 0.001
    """VaGraM: rate of the running mean of the gradient norms (``grad_norm="running"``)."""
    train_every: int = 200
    """Retrain the ensemble (with the current critics' value gradients) every this many env steps."""
    ensemble_size: int = 5
    """Members of the ensemble, all used in rollouts (the paper's MBPO trains 7, rolls out with 5 elites)."""
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
    """Early stopping: epochs without a relative ``min_delta`` improvement of the validation score."""
    min_delta: float = 0.01
    """Relative validation improvement that resets the patience counter."""
    holdout_ratio: float = 0.2
    """Fraction of the real buffer's slots held out for model validation."""
    logvar_penalty: float = 0.01
    """MLE: weight of Σ max_logvar − Σ min_logvar in the model loss."""
    # --- branched rollouts ---
    rollouts_per_step: int = 400
    """M: model rollouts per env step."""
    rollout_every: int = 1
    """Branch a batch of rollouts_per_step · rollout_every rollouts every this many env steps."""
    rollout_schedule: tuple[int, ...] = (1, 15, 1, 1)
    """(epoch_a, epoch_b, k_a, k_b): rollout length k_a until epoch a, linear to k_b at epoch b."""
    epoch_length: int = 200
    """Env steps per epoch of the rollout schedule and of the model buffer's retention."""
    model_retain_epochs: int = 1
    """Epochs of rollout batches the model buffer keeps (FIFO)."""
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
    """MBPO's rollout length k at ``epoch``: k_a while epoch ≤ a, then
    ⌊k_a + min((epoch − a)/(b − a), 1) · (k_b − k_a)⌋. Works on traced epochs."""
    a, b, k_a, k_b = schedule
    frac = jnp.clip((epoch - a) / max(b - a, 1), 0.0, 1.0) if b > a else jnp.where(epoch > a, 1.0, 0.0)
    return jnp.floor(k_a + frac * (k_b - k_a) + 1e-6).astype(jnp.int32)


# ----------------------------------------------------------------------------------------------
# The VaGraM loss
# ----------------------------------------------------------------------------------------------
def value_gradients(value_fns: list[Callable], next_obs):
    """∂V_v/∂s at every real next state, one V per critic: shape (V, N, obs_dim). Each
    ``value_fn(s) -> scalar`` is a value on one state. Non-finite entries become 1e5 (as the code's
    ``nan_to_num``); the clipping then bounds them."""
    grads = jnp.stack([jax.vmap(jax.grad(v))(next_obs) for v in value_fns])
    return jnp.nan_to_num(grads, nan=1e5, posinf=1e5, neginf=-1e5)


def masked_quantile(values, mask, q):
    """The ``q`` quantile (lower, no interpolation) of ``values`` (N,) where ``mask`` is true."""
    count = jnp.maximum(mask.sum(), 1)
    ordered = jnp.sort(jnp.where(mask, values, jnp.inf))
    return ordered[jnp.clip(jnp.floor(q * (count - 1)).astype(jnp.int32), 0, values.shape[0] - 1)]


def clip_gradients(grads, mask, clip_quantile):
    """The code's quantile clipping, per critic v: g ← g · min(1, c_v / ‖g‖) with c_v the ``clip_quantile``
    quantile of ‖g‖ over the ``mask`` rows. Returns the clipped gradients and each critic's mean
    *unclipped* norm over the mask rows (what the code folds into its running normalizer), shape (V,)."""
    def one(g):
        norms = jnp.linalg.norm(g, axis=-1)
        bound = masked_quantile(norms, mask, clip_quantile)
        g = g * jnp.minimum(1.0, bound / jnp.maximum(norms, 1e-12))[:, None]
        return g, jnp.where(mask, norms, 0.0).sum() / jnp.maximum(mask.sum(), 1)

    return jax.vmap(one)(grads)


def stabilize_gradients(grads, mask, clip_quantile):
    """Clipped gradients (``clip_gradients``) divided by their own mean clipped norm over the ``mask``
    rows: unit mean norm per critic (``grad_norm="retraining"``)."""
    clipped, _ = clip_gradients(grads, mask, clip_quantile)
    norms = jnp.linalg.norm(clipped, axis=-1)
    mean_norm = jnp.where(mask[None], norms, 0.0).sum(-1) / jnp.maximum(mask.sum(), 1)
    return clipped / jnp.maximum(mean_norm, 1e-12)[:, None, None]


def running_norm(average, mean_norms, num_steps, rate):
    """The code's running normalizer after ``num_steps`` minibatches: every minibatch folds each critic's
    mean gradient norm m_v in turn, avg ← (1 − rate) avg + rate m_v (``norm_avg``, from 1). With the
    m_v fixed over a retraining, n minibatches of that map are avg ← aⁿ avg + b (1 − aⁿ)/(1 − a),
    a = (1 − rate)^V, b = Σ_v rate (1 − rate)^(V−1−v) m_v."""
    num = mean_norms.shape[0]
    a = (1.0 - rate) ** num
    b = (rate * (1.0 - rate) ** jnp.arange(num - 1, -1, -1) * mean_norms).sum()
    a_n = a ** num_steps
    return a_n * average + b * (1.0 - a_n) / jnp.maximum(1.0 - a, 1e-12)


def vagram_weights(grads, mse_weight=0.0):
    """Per-sample weights of the target (Δs, r), shape (N, d + 1) for d state dimensions (Voelcker et al.
    2022, Eq. 7's diagonal weights ĝ_i², summed over the critics), scaled as the code's loss is: its
    per-dimension terms (ĝ_i e_i)² are averaged over the d state dimensions, the reward's squared error
    is added to each of them (so it keeps weight 1), and ``add_mse`` adds the plain squared error
    averaged over all d + 1 outputs. So: Σ_v ĝ_{v,i}² / d + mse_weight / (d + 1) on the state
    dimensions, 1 + mse_weight / (d + 1) on the reward."""
    dim = grads.shape[-1]
    mse = mse_weight / (dim + 1)
    state = (grads ** 2).sum(0) / dim + mse
    return jnp.concatenate([state, jnp.ones(state.shape[:-1] + (1,)) + mse], axis=-1)


def vagram_loss(predicted, target, weights):
    """VaGraM (Voelcker et al. 2022, Eq. 7, diagonal bound of the Taylor value error):
    mean over samples of Σ_j w_j (ŷ_j − y_j)² with ``weights`` from ``vagram_weights``. The training
    loop applies the same quantity through ``dynamics.train_ensemble(..., weights=...)``."""
    return (weights * (predicted - target) ** 2).sum(-1).mean()


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
# Buffers and model rollouts
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
    idx = (buffer.position + jnp.arange(valid.shape[0])) % capacity
    data = jax.tree.map(lambda store, x: store.at[idx].set(x.astype(store.dtype)), buffer.data, block)
    return ModelBuffer(data, buffer.valid.at[idx].set(valid), (buffer.position + valid.shape[0]) % capacity)


def mixed_batch(real: replay.ReplayBuffer, model: ModelBuffer, key, batch_size: int, real_ratio) -> Transition:
    """A SAC minibatch: the first ⌊real_ratio · batch_size⌋ rows uniformly from the filled real slots, the
    rest uniformly from the valid model slots (``real_ratio`` may be traced: both drawn, rows selected)."""
    real_key, model_key = jax.random.split(key)
    n_real = jnp.floor(real_ratio * batch_size + 1e-4).astype(jnp.int32)
    real_rows = replay.sample(real, real_key, batch_size)
    model_rows = jax.tree.map(lambda store: store[dynamics.sample_masked(model_key, model.valid, (batch_size,))],
                              model.data)
    take_real = jnp.arange(batch_size) < n_real
    return jax.tree.map(lambda r, m: jnp.where(take_real.reshape((-1,) + (1,) * (r.ndim - 1)), r, m),
                        real_rows, model_rows)


def model_rollout(ensemble: dynamics.Ensemble, model: dynamics.ModelParams, norm: dynamics.Normalizer,
                  policy_fn: Callable, starts, horizon: int, stochastic: bool, key):
    """``horizon`` steps from ``starts`` (P, obs_dim) with TS1 member sampling: every particle draws a
    member every step. ``stochastic``: sample (Δs, r) from the member's Gaussian (MLE model); otherwise
    take its mean (VaGraM's deterministic model). Returns (states (horizon + 1, P, ·), actions, rewards)."""
    num = starts.shape[0]

    def step(obs, step_key):
        policy_key, member_key, noise_key = jax.random.split(step_key, 3)
        action = policy_fn(obs, policy_key)
        mean, var = ensemble.predict(model, norm, obs, action)          # (E, P, obs_dim + 1)
        out = mean + jnp.sqrt(var) * jax.random.normal(noise_key, mean.shape) if stochastic else mean
        member = jax.random.randint(member_key, (num,), 0, ensemble.num_members)
        out = out[member, jnp.arange(num)]
        next_obs = obs + out[:, :-1]
        return next_obs, (next_obs, action, out[:, -1])

    _, (states, actions, rewards) = jax.lax.scan(step, starts, jax.random.split(key, horizon))
    return jnp.concatenate([starts[None], states]), actions, rewards


def branched_rollout(ensemble, model, norm, policy_fn, real: replay.ReplayBuffer, k, k_max: int, num_starts: int,
                     terminates: Callable, stochastic: bool, key):
    """Model rollouts branched from real states (Janner et al. 2019, Alg. 2, lines 8–10): ``num_starts``
    start states uniformly from the filled real slots, ``k_max`` steps; returns the transitions
    time-major, flattened to (k_max · num_starts, ·), and their validity (t < k, the particle has not
    terminated or diverged before, the prediction is finite; masked values are zeroed)."""
    start_key, rollout_key = jax.random.split(key)
    starts = real.data.obs[jax.random.randint(start_key, (num_starts,), 0, jnp.maximum(real.size, 1))]
    states, actions, rewards = model_rollout(ensemble, model, norm, policy_fn, starts, k_max, stochastic, rollout_key)
    obs, next_obs = states[:-1], states[1:]
    terminated = terminates(obs, actions, next_obs)
    finite = jnp.isfinite(next_obs).all(-1) & jnp.isfinite(rewards)
    stop = terminated | ~finite
    stopped_before = jnp.cumsum(stop, axis=0) - stop
    valid = (jnp.arange(k_max)[:, None] < k) & (stopped_before == 0) & finite
    block = Transition(obs, actions, rewards, next_obs, terminated.astype(jnp.float32))
    block = jax.tree.map(lambda x: jnp.where(jnp.isfinite(x), x, 0.0).reshape((k_max * num_starts,) + x.shape[2:]),
                         block)
    return block, valid.reshape(-1)


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
    grad_norm_avg: jax.Array         # () VaGraM's running mean of the value-gradient norms (from 1)
    env_state: object
    obs: jax.Array                   # (num_envs, obs_dim)
    key: jax.Array


def make_env(config: Config, env=None, env_params=None):
    if env is None:
        env, env_params = envs.make(config.env)
    env_params = env.default_params if env_params is None else env_params
    envs.require_action_space(config.env, env, env_params, "continuous", "VaGraM")
    flat = FlattenObservation(env) if len(env.observation_space(env_params).shape) > 1 else env
    return env, env_params, EpisodeStatistics(flat)


def validate(config: Config) -> None:
    if config.model_loss not in MODEL_LOSSES:
        raise ConfigError(f"model_loss must be one of {MODEL_LOSSES}, got {config.model_loss!r}")
    if config.grad_norm not in GRAD_NORMS:
        raise ConfigError(f"grad_norm must be one of {GRAD_NORMS}, got {config.grad_norm!r}")
    require(config.mse_warmup_steps >= 0, f"mse_warmup_steps must be >= 0, got {config.mse_warmup_steps}")
    require((0 < config.norm_rate) & (config.norm_rate <= 1), f"norm_rate must be in (0, 1], got {config.norm_rate}")
    require_positive(config, "total_timesteps", "num_envs", "buffer_size", "train_every", "ensemble_size",
                     "hidden_size", "num_layers", "model_lr", "model_batch_size", "max_epochs", "patience",
                     "rollouts_per_step", "rollout_every", "epoch_length", "model_retain_epochs", "updates_per_step",
                     "batch_size", "policy_lr", "q_lr", "alpha_lr", "init_alpha", "sac_hidden_size")
    parse_schedule(config.rollout_schedule)
    termination_fn(config)
    require_unit_interval(config, "gamma", "real_ratio")
    require((0 < config.clip_quantile) & (config.clip_quantile <= 1),
            f"clip_quantile must be in (0, 1], got {config.clip_quantile}")
    require(config.mse_weight >= 0, f"mse_weight must be >= 0, got {config.mse_weight}")
    require((0 < config.tau) & (config.tau <= 1), f"tau must be in (0, 1], got {config.tau}")
    require(config.model_weight_decay >= 0, f"model_weight_decay must be >= 0, got {config.model_weight_decay}")
    require(config.min_delta >= 0, f"min_delta must be >= 0, got {config.min_delta}")
    require(config.logvar_penalty >= 0, f"logvar_penalty must be >= 0, got {config.logvar_penalty}")
    require((0 <= config.holdout_ratio) & (config.holdout_ratio < 1),
            f"holdout_ratio must be in [0, 1), got {config.holdout_ratio}")
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


def require_observations(obs, obs_dim: int, env_id: str) -> None:
    """A clear ``ValueError`` at trace time when ``act`` gets observations of another env."""
    if obs.ndim < 2 or int(np.prod(obs.shape[1:])) != obs_dim:
        raise ValueError(f"VaGraM act: expected a batch of {env_id} observations, shape (batch, ...) with "
                         f"{obs_dim} numbers each, got shape {tuple(obs.shape)} (observations of another env, "
                         "or an unbatched observation?)")


def make_train(config: Config, env=None, env_params=None) -> Trainer:
    """Build the VaGraM (or, with ``model_loss="mle"``, MBPO) ``Trainer``."""
    validate(config)
    env, env_params, wrapped = make_env(config, env, env_params)
    terminates = termination_fn(config)
    obs_dim = int(np.prod(env.observation_space(env_params).shape))
    base_dim = obs_dim - int(getattr(env, "num_distractors", 0))   # the non-distractor dims (all of them if none)
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
    use_vagram = config.model_loss == "vagram"

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
                          model_buffer_init(config.model_buffer_capacity, example), jnp.float32(1.0), env_state,
                          obs.reshape((config.num_envs, obs_dim)), key)

    # ------------------------------------------------------------------------------------------
    # The model: value-gradient weights, training and branched rollouts
    # ------------------------------------------------------------------------------------------
    def critic_values(state: TrainState) -> list[Callable]:
        """V_v(s) = Q_v(s, μ_π(s)) for the 2 online and 2 target critics, the action held fixed."""
        def value(q_params, j):
            def v(s):
                mean, _ = actor.apply(state.actor_params, s[None])
                action = jax.lax.stop_gradient(squash(mean, low, high))
                return critic.apply(jax.tree.map(lambda x: x[j], q_params), s[None], action)[0]
            return v
        return [value(params, j) for params in (state.q_params, state.target_q_params) for j in range(2)]

    def model_weights(state: TrainState, env_steps):
        """VaGraM's per-slot weights of (Δs, r) over the whole real buffer, from the current critics, and
        the critics' mean gradient norms (for the running normalizer)."""
        grads = value_gradients(critic_values(state), state.buffer.data.next_obs)
        train_mask, _ = dynamics.split_masks(config.buffer_capacity, state.buffer.size, state.holdout_u,
                                             config.holdout_ratio)
        if config.grad_norm == "running":
            grads, mean_norms = clip_gradients(grads, train_mask, config.clip_quantile)
            grads = grads / jnp.maximum(state.grad_norm_avg, 1e-12)
        elif config.grad_norm == "none":
            grads, mean_norms = clip_gradients(grads, train_mask, config.clip_quantile)
            mean_norms = None
        else:
            grads, mean_norms = stabilize_gradients(grads, train_mask, config.clip_quantile), None
        warm = (config.mse_warmup_steps > 0) & (env_steps - config.random_steps <= config.mse_warmup_steps)
        mse_weight = config.mse_weight + jnp.where(warm, 1.0, 0.0)
        return vagram_weights(grads, mse_weight), mean_norms, train_mask.sum()

    def model_errors(state: TrainState, model, norm):
        """Held-out squared error of the ensemble's mean next state (env units), on the base dims and on
        the distractor dims (NaN without distractors)."""
        data = state.buffer.data
        _, val_mask = dynamics.split_masks(config.buffer_capacity, state.buffer.size, state.holdout_u,
                                           config.holdout_ratio)
        mean, _ = ensemble.predict(model, norm, data.obs, data.action)
        err = (data.obs + mean[..., :-1].mean(0) - data.next_obs) ** 2            # (capacity, obs_dim)
        per_dim = jnp.where(val_mask[:, None], err, 0.0).sum(0) / jnp.maximum(val_mask.sum(), 1)
        distract = per_dim[base_dim:].mean() if base_dim < obs_dim else jnp.float32(jnp.nan)
        return per_dim[:base_dim].mean(), distract

    def train_model(state: TrainState, env_steps, key):
        """Retrain the ensemble on the real buffer (early stopping inside ``dynamics.train_ensemble``)."""
        data = dynamics.ModelData(state.buffer.data.obs, state.buffer.data.action, state.buffer.data.reward,
                                  state.buffer.data.next_obs)
        weights, mean_norms, n_train = model_weights(state, env_steps) if use_vagram else (None, None, None)
        model, model_opt, norm, info = dynamics.train_ensemble(ensemble, model_tx, state.model, state.model_opt,
                                                               data, state.buffer.size, state.holdout_u, key, settings,
                                                               weights=weights)
        norm_avg = state.grad_norm_avg
        if mean_norms is not None:   # the code updates its running normalizer once per minibatch
            steps = info.epochs * ((n_train + config.model_batch_size - 1) // config.model_batch_size)
            norm_avg = running_norm(norm_avg, mean_norms, steps, config.norm_rate)
        base_mse, distractor_mse = model_errors(state, model, norm)
        metrics = {"model_epochs": info.epochs.astype(jnp.float32), "model_loss": info.train_loss,
                   "model_val_score": info.val_score, "model_base_mse": base_mse,
                   "model_distractor_mse": distractor_mse, "grad_norm_avg": norm_avg}
        return state._replace(model=model, model_opt=model_opt, norm=norm, grad_norm_avg=norm_avg), metrics

    def keep_model(state: TrainState, env_steps, key):
        nan = jnp.float32(jnp.nan)
        return state, {"model_epochs": nan, "model_loss": nan, "model_val_score": nan, "model_base_mse": nan,
                       "model_distractor_mse": nan, "grad_norm_avg": state.grad_norm_avg}

    def branch(state: TrainState, env_steps, key):
        """One batch of k-step rollouts from real states into the model buffer (FIFO)."""
        epoch = jnp.maximum(env_steps - config.random_steps, 0) // config.epoch_length
        k = rollout_length(schedule, epoch)

        def policy(obs, key):  # the current policy, actions sampled
            return policy_sample(state.actor_params, obs, key)[0]

        block, valid = branched_rollout(ensemble, state.model, state.norm, policy, state.buffer, k, k_max, n_starts,
                                        terminates, not use_vagram, key)
        state = state._replace(model_buffer=model_buffer_add(state.model_buffer, block, valid))
        return state, {"rollout_length": k.astype(jnp.float32),
                       "model_reward": jnp.where(valid, block.reward, 0.0).sum() / jnp.maximum(valid.sum(), 1)}

    def no_branch(state: TrainState, env_steps, key):
        nan = jnp.float32(jnp.nan)
        return state, {"rollout_length": nan, "model_reward": nan}

    # ------------------------------------------------------------------------------------------
    # SAC on mixed real/model minibatches
    # ------------------------------------------------------------------------------------------
    def q_loss_fn(q_params, target_q_params, actor_params, log_alpha, batch: Transition, key):
        """Soft Bellman residual of both critics (Haarnoja et al. 2018b, eq. 5, clipped double-Q):
        Σ_j E[(Q_j(s, a) − y)²], y = r + γ (1 − d)(min_j Q̄_j(s', a') − α log π(a'|s')), a' ~ π(·|s');
        d is 1 only on a termination (truncated episodes bootstrap)."""
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
    # One iteration of MBPO's Algorithm 2 with the VaGraM model
    # ------------------------------------------------------------------------------------------
    def update(state: TrainState, iteration):
        key, action_key, step_key, model_key, branch_key, learn_key = jax.random.split(state.key, 6)
        # ACT: uniform random actions during warm-up, then the SAC policy (sampled)
        warmup = iteration * config.num_envs < config.random_steps
        policy_action, _ = policy_sample(state.actor_params, state.obs, action_key)
        random_action = low + (high - low) * jax.random.uniform(action_key, policy_action.shape)
        action = jnp.where(warmup, random_action, policy_action)
        next_obs, env_state, reward, terminated, _, info = step_envs(step_key, state.env_state, action)
        # STORE the true next state (pre-reset on truncation); only a termination stops bootstrapping
        final_obs = info["final_observation"].reshape((config.num_envs, obs_dim))
        buffer = replay.add(state.buffer, Transition(state.obs, action, reward.astype(jnp.float32), final_obs,
                                                     terminated.astype(jnp.float32)))
        state = state._replace(buffer=buffer, env_state=env_state, obs=next_obs.reshape((config.num_envs, obs_dim)),
                               key=key)
        # MODEL: retrain (with the current critics' value gradients) at the end of warm-up, then every
        # train_every env steps; branch rollouts likewise every rollout_every env steps.
        before, after = iteration * config.num_envs, (iteration + 1) * config.num_envs
        last_warmup = (before < config.random_steps) & (after >= config.random_steps)

        def due(every):
            return last_warmup | ((after > config.random_steps) & (after // every > before // every))

        state, metrics = jax.lax.cond(due(config.train_every), train_model, keep_model, state, after,
                                      model_key)
        state, branch_metrics = jax.lax.cond(due(config.rollout_every), branch, no_branch, state, after, branch_key)
        metrics.update(branch_metrics)
        # POLICY: G SAC updates per env step once the first model batch exists
        state, sac_metrics = jax.lax.cond(after >= config.random_steps, learn, wait, state, learn_key)
        metrics.update(sac_metrics)
        metrics["model_buffer_valid"] = state.model_buffer.valid.sum().astype(jnp.float32)
        metrics.update(episode_metrics(info))
        return state, metrics

    def act(state: TrainState, obs, key):
        """Deterministic action: the squashed mean, in the env's bounds."""
        require_observations(obs, obs_dim, config.env)
        obs = obs.reshape((obs.shape[0], obs_dim))
        mean, _ = actor.apply(state.actor_params, obs)
        return squash(mean, low, high).reshape((obs.shape[0],) + action_shape)

    return Trainer(init=init, update=update, act=act, num_updates=config.num_updates,
                   env_steps_per_update=config.num_envs, env=env, env_params=env_params)


if __name__ == "__main__":
    from jaxrl.cli import main

    main(Config, make_train, algorithm="vagram")
