"""Probabilistic ensemble dynamics models for model-based agents (PETS, Chua et al. 2018).

Everything here runs inside one compiled program, on a fixed-capacity on-device buffer whose
unfilled slots are masked out (the dataset of a model-based agent grows; array shapes cannot):

* ``Ensemble``: E members, each an MLP from a normalized (s, a) to the mean and log-variance of a
  diagonal Gaussian over the normalized (Δs, r); members are one flax module vmapped over stacked
  parameters. The log-variance is softly bounded by learned ``max_logvar``/``min_logvar``
  (Chua et al. 2018, appendix on the probabilistic networks), shared by the members.
* ``gaussian_nll`` and ``ensemble_loss``: the Gaussian negative log-likelihood of the paper's
  Sec. 4.1 (loss_Gauss) plus the small penalty 0.01·(Σ max_logvar − Σ min_logvar) that keeps the bounds tight.
* ``fit_normalizer``: input/output mean and std over the filled (and training) slots only.
* ``train_ensemble``: epochs of minibatch Adam(W) steps in a ``lax.while_loop`` with a held-out
  validation split and early stopping, all compiled: training stops once the validation loss has not
  improved by a relative ``min_delta`` (1%) for ``patience`` epochs (MBPO's rule, Janner et al. 2019),
  or after ``max_epochs``; the parameters of the best validation epoch are returned.
  With per-sample ``weights`` it fits the members' means by a weighted squared error instead of the
  NLL (``weighted_squared_error``: e.g. VaGraM's value-gradient weights, Voelcker et al. 2022), and
  scores the held-out slots by the same weighted error.
* ``rollout``: particles propagated through the model with trajectory sampling, TS1 (each particle
  re-draws its member every step) or TS∞ (each particle keeps one member for the whole horizon),
  Chua et al. 2018, Sec. 4.2. Particles are assigned to members in balanced groups, as in the
  paper's code: a random permutation of the particles split into E equal groups (re-drawn every
  step for TS1, once for TS∞), so each member runs on P/E particles and nothing is computed E times.

Data layout. A transition is a ``ModelData(obs, action, reward, next_obs)`` whose leaves have a
leading ``capacity`` axis (``jaxrl.replay.ReplayBuffer.data`` works as is); ``size`` is the number of
filled slots (slots ``0 .. size-1``, the buffer fills from slot 0). The split is fixed per slot: a
slot is held out when its ``holdout_u`` (one uniform number per slot, drawn once) is below
``holdout_ratio``, so a transition stays on the same side of the split for its whole life.
"""
from __future__ import annotations

import dataclasses
from typing import Callable, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from jaxrl.config import require

LOG_2PI = float(jnp.log(2.0 * jnp.pi))
MIN_STD = 1e-6  # a dimension with (near) zero spread is left unscaled (std 1)


# ----------------------------------------------------------------------------------------------
# Data and normalization
# ----------------------------------------------------------------------------------------------
class ModelData(NamedTuple):
    obs: jax.Array        # (capacity, obs_dim)
    action: jax.Array     # (capacity, action_dim)
    reward: jax.Array     # (capacity,)
    next_obs: jax.Array   # (capacity, obs_dim)


def model_inputs(obs, action):
    """The model's input: (s, a) concatenated."""
    return jnp.concatenate([obs, action], axis=-1)


def model_targets(obs, reward, next_obs):
    """The model's target: (Δs = s' − s, r) concatenated."""
    return jnp.concatenate([next_obs - obs, reward[..., None]], axis=-1)


class Normalizer(NamedTuple):
    in_mean: jax.Array
    in_std: jax.Array
    out_mean: jax.Array
    out_std: jax.Array


def masked_moments(x, mask):
    """Mean and std of the rows of ``x`` where ``mask`` is true (std < MIN_STD becomes 1)."""
    m = mask[:, None]
    count = jnp.maximum(mask.sum(), 1).astype(x.dtype)
    mean = jnp.where(m, x, 0.0).sum(0) / count  # `where`, not a product: unfilled slots may hold anything
    std = jnp.sqrt(jnp.where(m, (x - mean) ** 2, 0.0).sum(0) / count)
    return mean, jnp.where(std < MIN_STD, 1.0, std)


def fit_normalizer(data: ModelData, mask) -> Normalizer:
    """Input and target statistics over the slots where ``mask`` is true (the unfilled slots never count)."""
    in_mean, in_std = masked_moments(model_inputs(data.obs, data.action), mask)
    out_mean, out_std = masked_moments(model_targets(data.obs, data.reward, data.next_obs), mask)
    return Normalizer(in_mean, in_std, out_mean, out_std)


def identity_normalizer(in_dim: int, out_dim: int) -> Normalizer:
    return Normalizer(jnp.zeros(in_dim), jnp.ones(in_dim), jnp.zeros(out_dim), jnp.ones(out_dim))


def filled_mask(capacity: int, size) -> jax.Array:
    """True on the slots ``0 .. size-1`` that hold data."""
    return jnp.arange(capacity) < size


def split_masks(capacity: int, size, holdout_u, holdout_ratio):
    """(train, validation) masks over the filled slots; a slot is held out when ``holdout_u < holdout_ratio``.

    With no held-out slot yet (few data, or ``holdout_ratio`` 0) validation falls back to the
    training slots, so the early-stopping score stays defined.
    """
    filled = filled_mask(capacity, size)
    held = holdout_u < holdout_ratio
    train, val = filled & ~held, filled & held
    train = jnp.where(train.any(), train, filled)
    val = jnp.where(val.any(), val, train)
    return train, val


# ----------------------------------------------------------------------------------------------
# The ensemble
# ----------------------------------------------------------------------------------------------
class GaussianMLP(nn.Module):
    """One member: normalized (s, a) -> (mean, unbounded log-variance) of the normalized (Δs, r)."""

    out_dim: int
    hidden_size: int = 200
    num_layers: int = 3

    @nn.compact
    def __call__(self, x):
        for _ in range(self.num_layers):
            x = nn.swish(nn.Dense(self.hidden_size)(x))
        out = nn.Dense(2 * self.out_dim)(x)
        return out[..., :self.out_dim], out[..., self.out_dim:]


class ModelParams(NamedTuple):
    members: dict          # flax params of GaussianMLP, every leaf with a leading axis E
    max_logvar: jax.Array  # (out_dim,), learned soft upper bound of the log-variance
    min_logvar: jax.Array  # (out_dim,), learned soft lower bound


def bound_logvar(raw, max_logvar, min_logvar):
    """Soft bounds of Chua et al. (2018, appendix; the handful-of-trials code):
    v ← max − softplus(max − v), then v ← min + softplus(v − min)."""
    logvar = max_logvar - jax.nn.softplus(max_logvar - raw)
    return min_logvar + jax.nn.softplus(logvar - min_logvar)


@dataclasses.dataclass(frozen=True)
class Ensemble:
    """Sizes of a probabilistic ensemble over (Δs, r); its functions take ``ModelParams``."""

    obs_dim: int
    action_dim: int
    num_members: int = 5
    hidden_size: int = 200
    num_layers: int = 3
    init_max_logvar: float = 0.5    # PETS' initial bounds (handful-of-trials BNN): 0.5 and −10
    init_min_logvar: float = -10.0

    def __post_init__(self):
        for name in ("obs_dim", "action_dim", "num_members", "hidden_size", "num_layers"):
            value = getattr(self, name)
            require(isinstance(value, int) and value >= 1, f"Ensemble {name} must be an integer >= 1, got {value!r}")
        require(self.init_min_logvar < self.init_max_logvar,
                f"Ensemble init_min_logvar={self.init_min_logvar} must be below init_max_logvar={self.init_max_logvar}")

    @property
    def in_dim(self) -> int:
        return self.obs_dim + self.action_dim

    @property
    def out_dim(self) -> int:
        return self.obs_dim + 1

    @property
    def network(self) -> GaussianMLP:
        return GaussianMLP(self.out_dim, self.hidden_size, self.num_layers)

    def init(self, key) -> ModelParams:
        keys = jax.random.split(key, self.num_members)
        members = jax.vmap(self.network.init, in_axes=(0, None))(keys, jnp.zeros((1, self.in_dim)))
        return ModelParams(members, jnp.full(self.out_dim, self.init_max_logvar, jnp.float32),
                           jnp.full(self.out_dim, self.init_min_logvar, jnp.float32))

    def apply_member(self, params: ModelParams, member_params, x_norm):
        """One member on normalized inputs: (mean, bounded log-variance), both normalized."""
        mean, raw = self.network.apply(member_params, x_norm)
        return mean, bound_logvar(raw, params.max_logvar, params.min_logvar)

    def apply_all(self, params: ModelParams, x_norm):
        """Every member on its own batch: ``x_norm`` (E, ..., in_dim) -> means, log-variances (E, ..., out_dim)."""
        return jax.vmap(lambda m, x: self.apply_member(params, m, x))(params.members, x_norm)

    def predict(self, params: ModelParams, norm: Normalizer, obs, action):
        """Every member on the same (s, a) batch, in env units: mean and variance of (Δs, r),
        shape (E, ..., out_dim)."""
        x = (model_inputs(obs, action) - norm.in_mean) / norm.in_std
        mean, logvar = jax.vmap(lambda m: self.apply_member(params, m, x))(params.members)
        return norm.out_mean + norm.out_std * mean, norm.out_std ** 2 * jnp.exp(logvar)


# ----------------------------------------------------------------------------------------------
# Loss
# ----------------------------------------------------------------------------------------------
def gaussian_nll(mean, logvar, target):
    """−log N(target; mean, diag(exp(logvar))), summed over the last axis (Chua et al. 2018, Sec. 4.1:
    loss_Gauss = Σ_n [μ − s']ᵀ Σ⁻¹ [μ − s'] + log det Σ, here with the ½ and the ½·log 2π per
    dimension of the exact density)."""
    return 0.5 * jnp.sum((target - mean) ** 2 * jnp.exp(-logvar) + logvar + LOG_2PI, axis=-1)


def ensemble_loss(ensemble: Ensemble, params: ModelParams, x_norm, y_norm, logvar_penalty=0.01):
    """Mean NLL over members and samples (``x_norm``/``y_norm``: (E, B, ·), one minibatch per member)
    plus ``logvar_penalty`` · (Σ max_logvar − Σ min_logvar) (Chua et al. 2018, appendix; their code)."""
    mean, logvar = ensemble.apply_all(params, x_norm)
    nll = gaussian_nll(mean, logvar, y_norm).mean()
    return nll + logvar_penalty * (params.max_logvar.sum() - params.min_logvar.sum()), nll


def validation_mse(ensemble: Ensemble, params: ModelParams, x_norm, y_norm, mask):
    """Mean squared error of the members' means on the masked rows (normalized units), averaged over
    members: the early-stopping score (mbrl-lib and MBPO score models by MSE, not NLL)."""
    mean, _ = jax.vmap(lambda m: ensemble.apply_member(params, m, x_norm))(params.members)
    err = jnp.where(mask[None], ((mean - y_norm[None]) ** 2).mean(-1), 0.0)   # (E, capacity)
    return err.sum(-1).mean() / jnp.maximum(mask.sum(), 1).astype(err.dtype)


def weighted_squared_error(ensemble: Ensemble, params: ModelParams, x_norm, y_norm, w_norm):
    """Mean over members and samples of Σ_j w_j (μ_j − y_j)², μ the members' means (normalized units;
    ``w_norm`` (E, B, out_dim) or broadcastable). Only the means are fitted: the log-variance heads and
    bounds get no gradient (a deterministic model, as VaGraM's, Voelcker et al. 2022, Sec. 4)."""
    mean, _ = ensemble.apply_all(params, x_norm)
    err = (w_norm * (mean - y_norm) ** 2).sum(-1).mean()
    return err, err


def weighted_validation_error(ensemble: Ensemble, params: ModelParams, x_norm, y_norm, w_norm, mask):
    """``weighted_squared_error`` of every member on the masked rows, averaged over members: the
    early-stopping score when ``train_ensemble`` is given weights."""
    mean, _ = jax.vmap(lambda m: ensemble.apply_member(params, m, x_norm))(params.members)
    err = jnp.where(mask[None], (w_norm[None] * (mean - y_norm[None]) ** 2).sum(-1), 0.0)   # (E, capacity)
    return err.sum(-1).mean() / jnp.maximum(mask.sum(), 1).astype(err.dtype)


# ----------------------------------------------------------------------------------------------
# Training with early stopping, inside the compiled program
# ----------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class TrainSettings:
    """How ``train_ensemble`` trains; float fields may be traced (swept)."""

    batch_size: int = 32
    """Minibatch per member and gradient step (PETS' code trains its ensemble with batches of 32)."""
    max_epochs: int = 50
    """Most epochs per call; an epoch is ⌈n_train / batch_size⌉ gradient steps."""
    patience: int = 5
    """Stop after this many epochs without a relative ``min_delta`` improvement of the validation score."""
    min_delta: float = 0.01
    """Relative improvement that counts (MBPO: 1%)."""
    holdout_ratio: float = 0.2
    """Fraction of the slots held out for validation."""
    logvar_penalty: float = 0.01
    """Weight of Σ max_logvar − Σ min_logvar in the loss."""

    def __post_init__(self):
        for name in ("batch_size", "max_epochs", "patience"):
            value = getattr(self, name)
            require(isinstance(value, int) and value >= 1, f"TrainSettings {name} must be an integer >= 1, got {value!r}")
        require((0 <= self.holdout_ratio) & (self.holdout_ratio < 1),
                f"TrainSettings holdout_ratio must be in [0, 1), got {self.holdout_ratio}")
        require(self.min_delta >= 0, f"TrainSettings min_delta must be >= 0, got {self.min_delta}")
        require(self.logvar_penalty >= 0, f"TrainSettings logvar_penalty must be >= 0, got {self.logvar_penalty}")


def make_optimizer(learning_rate, weight_decay) -> optax.GradientTransformation:
    """Adam with decoupled weight decay on the members' weights only, not on the log-variance bounds
    (PETS decays its layers' weights)."""
    def decay_mask(params: ModelParams):
        return ModelParams(jax.tree.map(lambda x: x.ndim > 1, params.members), False, False)

    return optax.adamw(learning_rate, weight_decay=weight_decay, mask=decay_mask)


class TrainInfo(NamedTuple):
    epochs: jax.Array       # epochs run in this call (int32)
    train_loss: jax.Array   # mean loss of the last epoch
    val_score: jax.Array    # best validation MSE (normalized units), or weighted error when weights are given


def sample_masked(key, mask, shape):
    """Indices drawn uniformly with replacement among the true slots of ``mask`` (inverse CDF)."""
    cdf = jnp.cumsum(mask.astype(jnp.int32))
    u = jax.random.randint(key, shape, 0, jnp.maximum(cdf[-1], 1))
    return jnp.searchsorted(cdf, u, side="right")


def train_ensemble(ensemble: Ensemble, optimizer: optax.GradientTransformation, params: ModelParams, opt_state,
                   data: ModelData, size, holdout_u, key, settings: TrainSettings = TrainSettings(), weights=None):
    """Fit the ensemble to the filled part of ``data``; returns ``(params, opt_state, normalizer, TrainInfo)``.

    Each member draws its own minibatches (independently, with replacement, from the training
    slots: the online counterpart of PETS' per-member bootstrap). The normalizer is refit on the
    training slots first. Epochs run in a ``lax.while_loop`` until early stopping (module docstring).

    ``weights`` (optional, shape (capacity, out_dim), in env units of the target (Δs, r)): when given,
    the loss is ``weighted_squared_error`` of the means with the weights w · out_std² (so that
    Σ_j w_j (μ_j − y_j)² is measured in env units) and the validation score is the same weighted error;
    ``settings.logvar_penalty`` is then unused. ``None`` (the default) trains by the Gaussian NLL.
    """
    capacity = data.reward.shape[0]
    train_mask, val_mask = split_masks(capacity, size, holdout_u, settings.holdout_ratio)
    norm = fit_normalizer(data, train_mask)
    x = (model_inputs(data.obs, data.action) - norm.in_mean) / norm.in_std
    y = (model_targets(data.obs, data.reward, data.next_obs) - norm.out_mean) / norm.out_std
    w = None if weights is None else weights * norm.out_std ** 2
    steps_per_epoch = (train_mask.sum() + settings.batch_size - 1) // settings.batch_size
    E = ensemble.num_members

    def validation_score(p):
        if w is None:
            return validation_mse(ensemble, p, x, y, val_mask)
        return weighted_validation_error(ensemble, p, x, y, w, val_mask)

    def grad_step(carry, step_key):
        params, opt_state = carry
        idx = sample_masked(step_key, train_mask, (E, settings.batch_size))
        if w is None:
            (loss, _), grads = jax.value_and_grad(ensemble_loss, argnums=1, has_aux=True)(
                ensemble, params, x[idx], y[idx], settings.logvar_penalty)
        else:
            (loss, _), grads = jax.value_and_grad(weighted_squared_error, argnums=1, has_aux=True)(
                ensemble, params, x[idx], y[idx], w[idx])
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state), loss

    def epoch(carry):
        params, opt_state, best, best_score, since, n, _, key = carry
        key, epoch_key = jax.random.split(key)

        def body(i, c):
            (p, o), total = c
            (p, o), loss = grad_step((p, o), jax.random.fold_in(epoch_key, i))
            return (p, o), total + loss

        (params, opt_state), total = jax.lax.fori_loop(0, steps_per_epoch, body, ((params, opt_state), 0.0))
        score = validation_score(params)
        improved = (best_score - score) / jnp.maximum(jnp.abs(best_score), 1e-12) > settings.min_delta
        best = jax.tree.map(lambda new, old: jnp.where(improved, new, old), params, best)
        best_score = jnp.where(improved, score, best_score)
        since = jnp.where(improved, 0, since + 1)
        return params, opt_state, best, best_score, since, n + 1, total / jnp.maximum(steps_per_epoch, 1), key

    def running(carry):
        since, n = carry[4], carry[5]
        return (n < settings.max_epochs) & (since < settings.patience)

    score0 = validation_score(params)
    carry = (params, opt_state, params, score0, jnp.int32(0), jnp.int32(0), jnp.float32(jnp.nan), key)
    _, opt_state, best, best_score, _, n, train_loss, _ = jax.lax.while_loop(running, epoch, carry)
    return best, opt_state, norm, TrainInfo(n, train_loss, best_score)


# ----------------------------------------------------------------------------------------------
# Rollouts with trajectory sampling
# ----------------------------------------------------------------------------------------------
class Rollout(NamedTuple):
    states: jax.Array    # (horizon + 1, ..., P, obs_dim), the start states first
    actions: jax.Array   # (horizon, ..., P, action_dim)
    rewards: jax.Array   # (horizon, ..., P)
    members: jax.Array   # (horizon, P): the member that predicted each particle's step


def member_assignment(key, num_particles: int, num_members: int):
    """A balanced random assignment: (permutation of the particles, member of each particle).

    The first P/E particles of the permutation go to member 0, the next P/E to member 1, ...
    """
    perm = jax.random.permutation(key, num_particles)
    group = jnp.arange(num_particles) // (num_particles // num_members)
    members = jnp.zeros(num_particles, jnp.int32).at[perm].set(group)
    return perm, members


def rollout(ensemble: Ensemble, params: ModelParams, norm: Normalizer,
            policy_fn: Callable[[jax.Array, jax.Array, jax.Array], jax.Array],
            start_states, horizon: int, key, mode: str = "tsinf") -> Rollout:
    """Propagate particles through the model for ``horizon`` steps with trajectory sampling.

    ``start_states``: (..., P, obs_dim) — P particles, with any leading batch axes (e.g. CEM's
    candidates; the member assignment is shared across the batch, so each candidate's P particles
    are spread evenly over the members). P must be a multiple of the ensemble size.
    ``policy_fn(t, states, key) -> actions`` of shape (..., P, action_dim).
    Each step samples s' = s + Δs and r from the chosen member's Gaussian.
    ``mode``: ``"ts1"`` re-draws the member assignment every step, ``"tsinf"`` draws it once.
    """
    if mode not in ("ts1", "tsinf"):
        raise ValueError(f"rollout mode must be 'ts1' or 'tsinf', got {mode!r}")
    E = ensemble.num_members
    P = start_states.shape[-2]
    if P % E:
        raise ValueError(f"the number of particles ({P}) must be a multiple of the ensemble size ({E})")
    batch_shape = start_states.shape[:-2]
    assign_key, key = jax.random.split(key)
    fixed = member_assignment(assign_key, P, E)

    def step(states, inputs):
        t, step_key = inputs
        policy_key, assign_key, noise_key = jax.random.split(step_key, 3)
        perm, members = member_assignment(assign_key, P, E) if mode == "ts1" else fixed
        actions = policy_fn(t, states, policy_key)
        x = (model_inputs(states, actions) - norm.in_mean) / norm.in_std
        # group the particles by member: (..., P, d) -> (E, ..., P/E, d)
        grouped = jnp.moveaxis(x[..., perm, :].reshape(batch_shape + (E, P // E, -1)), -3, 0)
        mean, logvar = ensemble.apply_all(params, grouped)
        sample = mean + jnp.exp(0.5 * logvar) * jax.random.normal(noise_key, mean.shape)
        sample = norm.out_mean + norm.out_std * sample
        # back to particle order
        flat = jnp.moveaxis(sample, 0, -3).reshape(batch_shape + (P, -1))
        out = jnp.zeros_like(flat).at[..., perm, :].set(flat)
        next_states = states + out[..., :-1]
        return next_states, (next_states, actions, out[..., -1], members)

    keys = jax.random.split(key, horizon)
    _, (states, actions, rewards, members) = jax.lax.scan(step, start_states, (jnp.arange(horizon), keys))
    states = jnp.concatenate([start_states[None], states], axis=0)
    return Rollout(states, actions, rewards, members)
