"""Constraint handlers for constrained RL: the Lagrange multiplier λ as a pure function of state.

Every handler has one functional shape, so an agent swaps them by name:

* ``handler.init() -> state``
* ``handler.update(state, episode_costs, completed, limit) -> (new_state, penalty)``

``episode_costs`` holds episode costs, ``completed`` (same shape, bool) marks the entries that are
costs of episodes which really ended (terminated or truncated). The handler averages the completed
entries only, J_c = mean{cost_i : completed_i}, and moves λ by the constraint violation
J_c − limit. When no episode completed, the state is returned unchanged: an unfinished episode's
running cost is never mistaken for an episode cost (a known bug elsewhere averages per-step costs
over all steps, zeros of unfinished episodes included). ``penalty`` (≥ 0, a scalar) is the
coefficient the agent puts on its cost advantage for the next policy update;
``penalty_of(state)`` reads it without updating.

Handlers:

* ``lagrangian``: gradient ascent on λ with Adam on the loss −λ (J_c − limit), projected on λ ≥ 0
  (Ray et al. 2019, "Benchmarking Safe Exploration in Deep RL", PPO-Lagrangian; defaults from
  OmniSafe ``PPOLag.yaml``: λ0 = 0.001, lr = 0.035, Adam).
* ``pid_lagrangian``: the PID controller on λ of Stooke, Achiam & Abbeel 2020, "Responsive Safety
  in RL by PID Lagrangian Methods", Algorithm 2, with OmniSafe's ``CPPOPID.yaml`` defaults and its
  exponential moving averages (Kp 0.1, Ki 0.01, Kd 0.01, derivative delay 10, EMA α 0.95 for the
  proportional and derivative terms, λ0 = 0.001, penalty_max 100 applied only without sum/diff norm).
* ``augmented_lagrangian``: the method of multipliers for an inequality constraint (Hestenes 1969,
  Powell 1969; Rockafellar 1973; Nocedal & Wright 2006, eq. 17.65 and §17.4). The penalty is the
  derivative of the augmented term ψ(g; λ, μ) w.r.t. the violation g = J_c − limit,
  max(0, λ + μ g), which is also the next multiplier; μ grows by ``growth`` per update up to
  ``mu_max``. (OmniSafe has no augmented Lagrangian; μ0 = 0.05 is this project's choice, not a
  published default.) With growth 1 it coincides with projected dual ascent of step μ.

Hyperparameters are plain floats, traced or not: the handlers use them only arithmetically, so an
agent's swept ``Config`` fields may feed them. Integer/boolean structure (``d_delay``, the norm flags)
must be Python values.
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax

__all__ = [
    "ConstraintHandler", "completed_mean", "lagrangian", "pid_lagrangian", "augmented_lagrangian",
    "make_handler", "penalty_of", "HANDLERS",
]


class ConstraintHandler(NamedTuple):
    """``init() -> state``; ``update(state, episode_costs, completed, limit) -> (state, penalty)``."""

    init: Callable[[], Any]
    update: Callable[[Any, jax.Array, jax.Array, jax.Array], tuple[Any, jax.Array]]


def completed_mean(episode_costs, completed):
    """(mean cost over the completed entries, whether any entry is completed). NaN-free: 0 if none."""
    costs = jnp.asarray(episode_costs, jnp.float32)
    mask = jnp.broadcast_to(jnp.asarray(completed, jnp.bool_), costs.shape)
    count = mask.sum()
    mean = jnp.where(mask, costs, 0.0).sum() / jnp.maximum(count, 1)
    return mean, count > 0


def _keep_if_no_episode(any_done, new_state, old_state):
    return jax.tree.map(lambda new, old: jnp.where(any_done, new, old), new_state, old_state)


def penalty_of(state) -> jax.Array:
    """The current penalty coefficient λ ≥ 0 of any handler's state."""
    return state.penalty


# ----------------------------------------------------------------------------------------------
# Lagrangian: gradient ascent on λ with Adam
# ----------------------------------------------------------------------------------------------
class LagrangianState(NamedTuple):
    multiplier: jax.Array      # the parameter Adam moves (projected on [0, upper_bound])
    opt_state: Any
    penalty: jax.Array


def lagrangian(init: float = 0.001, lr: float = 0.035, upper_bound: float | None = None) -> ConstraintHandler:
    """Lagrange multiplier by gradient ascent (Ray et al. 2019; OmniSafe ``Lagrange``).

    Dual step on L(λ) = −λ (J_c − limit): ∂L/∂λ = −(J_c − limit), one Adam step (β 0.9/0.999,
    ε 1e-8, as torch's default), then λ ← clip(λ, 0, upper_bound). λ grows while the mean cost of
    completed episodes exceeds the limit and shrinks (to 0 at most) while it stays below.
    """
    tx = optax.adam(lr, b1=0.9, b2=0.999, eps=1e-8)

    def init_fn():
        lam = jnp.maximum(jnp.asarray(init, jnp.float32), 0.0)
        return LagrangianState(lam, tx.init(lam), lam)

    def update(state: LagrangianState, episode_costs, completed, limit):
        mean_cost, any_done = completed_mean(episode_costs, completed)
        grad = -(mean_cost - limit)
        step, opt_state = tx.update(jnp.asarray(grad, jnp.float32), state.opt_state, state.multiplier)
        lam = jnp.maximum(state.multiplier + step, 0.0)
        if upper_bound is not None:
            lam = jnp.minimum(lam, upper_bound)
        new = _keep_if_no_episode(any_done, LagrangianState(lam, opt_state, lam), state)
        return new, new.penalty

    return ConstraintHandler(init_fn, update)


# ----------------------------------------------------------------------------------------------
# PID Lagrangian (Stooke et al. 2020, Algorithm 2)
# ----------------------------------------------------------------------------------------------
class PIDState(NamedTuple):
    integral: jax.Array        # I: accumulated Ki·(J_c − limit), kept ≥ 0
    delta_p: jax.Array         # EMA of the error J_c − limit (proportional term)
    cost_d: jax.Array          # EMA of J_c (derivative term)
    history: jax.Array         # ring buffer of past cost_d values, length d_delay
    count: jax.Array           # number of updates so far
    penalty: jax.Array


def pid_lagrangian(kp: float = 0.1, ki: float = 0.01, kd: float = 0.01, d_delay: int = 10,
                   delta_p_ema_alpha: float = 0.95, delta_d_ema_alpha: float = 0.95,
                   sum_norm: bool = True, diff_norm: bool = False, penalty_max: float = 100.0,
                   init: float = 0.001) -> ConstraintHandler:
    """PID-controlled multiplier (Stooke et al. 2020, Algorithm 2; OmniSafe ``PIDLagrangian``).

    With e = J_c − limit:  I ← max(0, I + Ki e);  P ← α_p P + (1 − α_p) e;
    C ← α_d C + (1 − α_d) J_c;  D = max(0, C − C_{k−delay});  λ = max(0, Kp P + I + Kd D).
    C_{k−delay} is the oldest of the last ``d_delay`` values of C (0 before enough updates), as
    OmniSafe's deque. ``diff_norm`` clips I and λ to [0, 1]; without ``sum_norm`` or ``diff_norm``
    λ is capped at ``penalty_max`` (sum_norm instead divides the policy objective by 1 + λ).
    """
    if int(d_delay) < 1:
        raise ValueError(f"d_delay must be an integer >= 1, got {d_delay!r}")
    d_delay = int(d_delay)

    def init_fn():
        zero = jnp.float32(0.0)
        return PIDState(jnp.asarray(init, jnp.float32), zero, zero, jnp.zeros(d_delay, jnp.float32),
                        jnp.int32(0), zero)

    def update(state: PIDState, episode_costs, completed, limit):
        mean_cost, any_done = completed_mean(episode_costs, completed)
        error = mean_cost - limit
        integral = jnp.maximum(0.0, state.integral + error * ki)
        if diff_norm:
            integral = jnp.clip(integral, 0.0, 1.0)
        delta_p = delta_p_ema_alpha * state.delta_p + (1.0 - delta_p_ema_alpha) * error
        cost_d = delta_d_ema_alpha * state.cost_d + (1.0 - delta_d_ema_alpha) * mean_cost
        # The history holds the sequence 0, C_1, C_2, ...: value k sits at slot k % d_delay.
        oldest = state.history[jnp.maximum(0, state.count + 1 - d_delay) % d_delay]
        derivative = jnp.maximum(0.0, cost_d - oldest)
        penalty = jnp.maximum(0.0, kp * delta_p + integral + kd * derivative)
        if diff_norm:
            penalty = jnp.minimum(penalty, 1.0)
        if not (diff_norm or sum_norm):
            penalty = jnp.minimum(penalty, penalty_max)
        count = state.count + 1
        history = state.history.at[count % d_delay].set(cost_d)
        new = _keep_if_no_episode(any_done, PIDState(integral, delta_p, cost_d, history, count, penalty), state)
        return new, new.penalty

    return ConstraintHandler(init_fn, update)


# ----------------------------------------------------------------------------------------------
# Augmented Lagrangian (method of multipliers)
# ----------------------------------------------------------------------------------------------
class AugmentedLagrangianState(NamedTuple):
    multiplier: jax.Array
    mu: jax.Array              # quadratic penalty weight
    penalty: jax.Array


def augmented_lagrangian(init: float = 0.001, mu: float = 0.05, growth: float = 1.0,
                         mu_max: float = 10.0) -> ConstraintHandler:
    """Method of multipliers for g = J_c − limit ≤ 0 (Nocedal & Wright 2006, eq. 17.65).

    The augmented term ψ(g; λ, μ) = λ g + μ g²/2 if λ + μ g ≥ 0, else −λ²/(2μ), has
    ∂ψ/∂g = max(0, λ + μ g): that is the penalty on the cost advantage, and the multiplier update
    λ ← max(0, λ + μ g). Then μ ← min(μ · growth, mu_max).
    """

    def init_fn():
        lam = jnp.maximum(jnp.asarray(init, jnp.float32), 0.0)
        return AugmentedLagrangianState(lam, jnp.asarray(mu, jnp.float32), lam)

    def update(state: AugmentedLagrangianState, episode_costs, completed, limit):
        mean_cost, any_done = completed_mean(episode_costs, completed)
        violation = mean_cost - limit
        lam = jnp.maximum(0.0, state.multiplier + state.mu * violation)
        new_mu = jnp.minimum(state.mu * growth, mu_max)
        new = _keep_if_no_episode(any_done, AugmentedLagrangianState(lam, new_mu, lam), state)
        return new, new.penalty

    return ConstraintHandler(init_fn, update)


def augmented_term(violation, multiplier, mu):
    """ψ(g; λ, μ) of the augmented Lagrangian for an inequality constraint (Nocedal & Wright eq. 17.65)."""
    return jnp.where(multiplier + mu * violation >= 0, multiplier * violation + 0.5 * mu * violation**2,
                     -multiplier**2 / (2 * mu))


HANDLERS = {"lagrangian": lagrangian, "pid": pid_lagrangian, "augmented": augmented_lagrangian}


def make_handler(name: str, **kwargs) -> ConstraintHandler:
    """A handler by name (``lagrangian``, ``pid`` or ``augmented``) with keyword hyperparameters."""
    if name not in HANDLERS:
        raise ValueError(f"unknown constraint handler {name!r}; allowed: {', '.join(HANDLERS)}")
    return HANDLERS[name](**kwargs)
