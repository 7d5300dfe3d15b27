"""C-MORL (Liu, Pan, Xu, Song, Bian, You & Chen 2025, "Efficient Discovery of Pareto Front for
Multi-Objective Reinforcement Learning", ICLR; arXiv:2410.02236): Pareto initialization by a population
of PPO policies on linearly scalarized rewards, then Pareto extension by constrained policy
optimization (IPO, a log barrier) that maximizes one objective while keeping the others above a
fraction of their current values.

Stage 1, Pareto initialization (the paper's Algorithm 1, first stage): ``num_init_policies`` policies,
one per initial preference ``w`` (the simplex lattice, or ``init_weights``), each trained with PPO on
``w · r`` with its own actor and a vector critic ``V(s) ∈ R^m`` (advantages are computed per
objective and scalarized, as the authors' PGMORL-based code does). All members are one batch of
parameters (``jax.vmap``), so stage 1 is one program.

Stage 2, Pareto extension, for ``extension_rounds`` rounds: the current population's non-dominated
evaluated returns are ranked by crowding distance (NSGA-II's, Deb et al. 2002: extremes first, then
the sparsest regions; ``crowding_distance``, ``select_policies``) and the top ``num_select`` policies
are extended. For each selected policy ``π_r`` and each objective ``i`` one copy of ``π_r`` solves the
paper's constrained extension problem

    max_π  J_i(π)   s.t.  J_j(π) >= b_j = β-relaxed J_j(π_r),  j ≠ i,

for ``updates_per_round`` updates with IPO (Liu, Ding & Liu 2020, "IPO: Interior-point Policy
Optimization under Constraints", AAAI, arXiv:1910.09615; its objective ``L^CLIP(θ) + Σ_i φ(Ĵ_Ci(θ))``
with ``φ(x) = log(−x) / t`` for a constraint ``Ĵ_Ci <= 0``): PPO's clipped surrogate of objective ``i``
plus the log barrier ``Σ_j log(Ĵ_j(θ) − b_j) / t`` (``ipo_objective``). The extended policies join the
population and the front is the non-dominated set of all evaluated policies.

Static shapes. The population is a fixed-size buffer of ``num_init_policies + extension_rounds *
num_select * m`` policies (parameters, evaluated returns, the round each came from) with a validity
mask; the policies being trained are a fixed-size working set of ``max(num_init_policies,
num_select * m)`` members (members with no task in a stage train but are never written to the
buffer: ``active``). Everything runs inside the compiled ``train(key)``: the stage is a function of
the (unbatched) update index ``i``, and at the start of each round a ``lax.cond`` writes the working
set's evaluated policies into the buffer, selects by top-k crowding distance and starts the round.
There is no host-side loop: the CLI's chunked ``trainer.run`` and ``jax.vmap`` over seeds work as for
any agent.

Details and choices (where the paper or code is not specific, or we differ):

* ``Ĵ_j(θ)`` in the barrier is a first-order estimate, ``J_j(π_k) + E[(ρ_θ − 1) A_j]`` (ρ the
  probability ratio to the rollout policy, ``A_j`` the raw GAE advantage of objective ``j``; the
  surrogate of Kakade & Langford 2002 without its 1/(1 − γ) factor), with ``J_j(π_k)`` the greedy
  policy's discounted return evaluated at the start of each update (exact for deterministic envs). The
  barrier is continued linearly below ``barrier_eps`` (a C¹ "extended" log barrier), so an infeasible
  policy gets a finite gradient back into the feasible set instead of a NaN.
* The paper writes the constraint as ``J_j >= β J_j(π_r)``, which assumes non-negative returns. Here
  ``b_j = J_j(π_r) − (1 − β) |J_j(π_r)|``, equal to the paper's for ``J_j >= 0`` and a relaxation by the
  same fraction for negative returns (Deep Sea Treasure's time penalty).
* Each extension round starts from fresh Adam moments and freshly reset envs; the learning rate
  anneals linearly within stage 1 and within each round (``anneal_lr``).
* Selection: when the non-dominated set has fewer than ``num_select`` policies, the ranked ones are
  reused in turn (several copies of the same policy extend it again, from different keys).
* Only the policy at the end of each round joins the population. The authors' code evaluates the
  extended policy after every constrained update and offers each of these intermediate policies to
  its Pareto archive (of up to 200 policies); a fixed-size buffer of intermediate policies would be
  the way to do the same here.

Defaults. Stage level, from the authors' code (github.com/RuohLiuq/C-MORL, ``scripts/ftn.py``, their
discrete Fruit Tree setting): 500,000 env steps of which 100,000 for initialization, 6 initial policies
(``--num-tasks 6``, a lattice of preferences), evaluation at γ = 0.99. The constraint relaxation
β = 0.9 and the IPO barrier parameter t = 20 are our reading of the paper and the IPO paper, not
values we could check in the authors' code; ``num_select`` = 3 (the authors select 5-6 policies in
their scripts) so that with two objectives the extension set (3 x 2) is exactly as large as the
initial population and no working member idles; ``extension_rounds`` = 4 is our choice. Policy level:
PPO as in ``agents/online/ppo.py`` (PureJaxRL's small-env settings, Schulman et al. 2017): lr 2.5e-4,
4 envs x 128 steps, 4 epochs x 4 minibatches, γ 0.99, λ 0.95, clip 0.2, entropy 0.01, value 0.5,
grad-norm 0.5, tanh 64x64 (the authors' PPO uses 4 x 2048 steps, 10 epochs, 32 minibatches, lr 3e-4,
no entropy bonus, γ 0.995, for MuJoCo).

Discrete actions only (a Box env raises a ConfigError naming the alternatives).

Not a single policy: ``act(state, obs, key)`` acts with the population policy whose evaluated return
is best for ``Config.preference`` (the paper's policy assignment; equal weights by default);
``act_member`` takes any buffer slot; ``evaluate_population`` rolls out every valid policy (the
approximate front) and ``make_report`` writes it with ``front_metrics`` and the initial population's
hypervolume to ``summary.json``.

Run:  python agents/multi_objective/cmorl.py --env DeepSeaTreasure-v0 --num-seeds 4
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax.linen.initializers import constant

from jaxrl import envs, mo_metrics
from jaxrl.config import ConfigError, require, require_divides, require_positive, require_unit_interval
from jaxrl.initializers import orthogonal
from jaxrl.mo_evaluation import front_metrics, hypervolume_or_none, num_objectives_of, parse_preference, \
    rollout_returns
from jaxrl.trainer import Trainer
from jaxrl.wrappers import EpisodeStatistics, FlattenObservation, VectorEnv


@dataclasses.dataclass(frozen=True)
class Config:
    env: str = "DeepSeaTreasure-v0"
    """Environment id of a multi-objective env (vector reward, ``num_objectives``); discrete actions only."""
    total_timesteps: int = 500_000
    """Env steps of the whole run, both stages, summed over the working set (authors' Fruit Tree: 5e5)."""
    init_timesteps: int = 100_000
    """Env steps of stage 1 (Pareto initialization), summed over the working set (authors' Fruit Tree: 1e5)."""
    num_init_policies: int = 6
    """Policies of stage 1, one per initial preference (authors: --num-tasks 6)."""
    init_weights: str = ""
    """Initial preferences, one vector per policy separated by ';', e.g. "1,0;0.5,0.5;0,1" (each non-negative,
    summing to 1); empty: the simplex lattice with num_init_policies points."""
    extension_rounds: int = 4
    """Rounds of Pareto extension; 0 stops after stage 1."""
    num_select: int = 3
    """Policies selected by crowding distance per round; each is extended once per objective."""
    beta: float = 0.9
    """Constraint relaxation β: extend under J_j >= J_j(π_r) − (1 − β)|J_j(π_r)| for j ≠ i."""
    barrier_t: float = 20.0
    """IPO's t: the barrier is log(slack) / t (larger t: a sharper barrier, a weaker push inside)."""
    barrier_eps: float = 0.01
    """Slack below which the log barrier continues linearly (finite gradient when infeasible)."""
    lr: float = 2.5e-4
    """Adam learning rate (start value of each stage and round when annealed)."""
    anneal_lr: bool = True
    """Decay the learning rate linearly to 0 within stage 1 and within each extension round."""
    num_envs: int = 4
    """Parallel envs per working member."""
    num_steps: int = 128
    """Steps per env per rollout."""
    update_epochs: int = 4
    """Passes over each rollout."""
    num_minibatches: int = 4
    """Minibatches per epoch; num_envs * num_steps must divide by it."""
    gamma: float = 0.99
    """Discount factor (also the γ of the evaluated returns: constraints, selection and the reported front)."""
    gae_lambda: float = 0.95
    """GAE λ."""
    clip_eps: float = 0.2
    """Clipping range of the probability ratio (and of the value update)."""
    ent_coef: float = 0.01
    """Entropy bonus coefficient."""
    vf_coef: float = 0.5
    """Value loss coefficient (the vector critic's squared errors summed over objectives)."""
    max_grad_norm: float = 0.5
    """Global gradient-norm clip."""
    hidden_size: int = 64
    """Width of the two hidden layers of actor and critic."""
    activation: str = "tanh"
    """Hidden activation: tanh or relu."""
    normalize_advantages: bool = True
    """Standardize the maximized (scalarized or single-objective) advantage per minibatch."""
    preference: str = ""
    """Preference ω of act() and the CLI's scalar evaluation, comma-separated, e.g. "0.3,0.7": act() uses the
    population policy with the best ω · J; empty: equal weights."""
    front_episodes: int = 1
    """Greedy episodes per policy for every evaluation (buffer entries, barrier estimates, the report);
    1 is exact for deterministic envs."""

    @property
    def batch_size(self) -> int:
        """Env steps of one rollout of one member."""
        return self.num_envs * self.num_steps

    def working_size(self, num_objectives: int) -> int:
        """Members trained at once: enough for stage 1 and for one extension round."""
        return max(self.num_init_policies, self.num_select * num_objectives)

    def buffer_size(self, num_objectives: int) -> int:
        """Population buffer slots: the initial policies and every round's extended ones."""
        return self.num_init_policies + self.extension_rounds * self.num_select * num_objectives

    def steps_per_update(self, num_objectives: int) -> int:
        return self.working_size(num_objectives) * self.batch_size

    def init_updates(self, num_objectives: int) -> int:
        return self.init_timesteps // self.steps_per_update(num_objectives)

    def updates_per_round(self, num_objectives: int) -> int:
        if self.extension_rounds == 0:
            return 0
        rest = (self.total_timesteps - self.init_timesteps) // self.steps_per_update(num_objectives)
        return rest // self.extension_rounds

    def num_updates(self, num_objectives: int) -> int:
        return self.init_updates(num_objectives) + self.extension_rounds * self.updates_per_round(num_objectives)


# ----------------------------------------------------------------------------------------------
# Preferences
# ----------------------------------------------------------------------------------------------
def lattice_sizes(num_objectives: int, limit: int = 6) -> list[int]:
    """The first ``limit`` sizes the simplex lattice has for ``num_objectives`` objectives."""
    return [math.comb(n + num_objectives - 1, num_objectives - 1) for n in range(1, limit + 1)]


def initial_weights(config: Config, num_objectives: int) -> np.ndarray:
    """The ``(num_init_policies, m)`` initial preferences: ``init_weights`` parsed, or the simplex lattice.

    ConfigError for a malformed vector (wrong length, negative, zero sum), a count other than
    ``num_init_policies``, or a lattice size that does not exist for ``m`` objectives."""
    n_pol = config.num_init_policies
    if config.init_weights.strip():
        rows = [r for r in config.init_weights.replace(" ", "").split(";") if r]
        if len(rows) != n_pol:
            raise ConfigError(f"init_weights has {len(rows)} vectors but num_init_policies={n_pol}; give one "
                              f"vector per initial policy, separated by ';'")
        out = []
        for row in rows:
            try:
                out.append(parse_preference(row, num_objectives))
            except ConfigError as err:
                raise ConfigError(f"init_weights: bad vector {row!r}: {err}") from None
        return np.stack(out).astype(np.float32)
    n = 1
    while math.comb(n + num_objectives - 1, num_objectives - 1) < n_pol:
        n += 1
    if math.comb(n + num_objectives - 1, num_objectives - 1) != n_pol:
        raise ConfigError(
            f"num_init_policies={n_pol} is not the size of a simplex lattice for {num_objectives} objectives "
            f"({', '.join(map(str, lattice_sizes(num_objectives)))}, ...); use one of these or give init_weights")
    return mo_metrics.equally_spaced_weights(num_objectives, n).astype(np.float32)


# ----------------------------------------------------------------------------------------------
# Selection by crowding distance (pure jnp, fixed shapes)
# ----------------------------------------------------------------------------------------------
def non_dominated(points, valid):
    """Mask ``(P,)`` of the valid points ``(P, m)`` that no other valid point dominates (maximization)."""
    geq = jnp.all(points[:, None, :] >= points[None, :, :], axis=-1)   # geq[a, b]: a >= b everywhere
    gt = jnp.any(points[:, None, :] > points[None, :, :], axis=-1)
    dominated = jnp.any(geq & gt & valid[:, None], axis=0)
    return valid & ~dominated


def crowding_distance(points, mask):
    """NSGA-II crowding distance (Deb et al. 2002, "A fast and elitist multiobjective genetic algorithm:
    NSGA-II", IEEE TEC 6(2), Sec. III-B) of the points ``(P, m)`` selected by ``mask`` ``(P,)``.

    Per objective the masked points are sorted; the two extremes get ``inf``, every other point the
    gap between its two neighbours divided by the objective's range (0 when the range is 0); the
    distances are summed over objectives. Unmasked points get 0."""
    num = points.shape[0]
    n = mask.sum()
    rank = jnp.arange(num)

    def one_objective(values):
        order = jnp.argsort(jnp.where(mask, values, jnp.inf))          # masked points first, ascending
        v = values[order]
        lo, hi = v[0], v[jnp.maximum(n - 1, 0)]
        span = hi - lo
        gap = v[jnp.minimum(rank + 1, num - 1)] - v[jnp.maximum(rank - 1, 0)]
        inner = jnp.where(span > 0, gap / jnp.where(span > 0, span, 1.0), 0.0)
        d_sorted = jnp.where((rank == 0) | (rank == n - 1), jnp.inf, inner)
        d_sorted = jnp.where(rank < n, d_sorted, 0.0)
        return jnp.zeros(num).at[order].set(d_sorted)

    return jnp.where(mask, jax.vmap(one_objective, in_axes=1)(points).sum(axis=0), 0.0)


def select_policies(points, valid, num_select: int):
    """Indices ``(num_select,)`` of the non-dominated valid points with the largest crowding distance
    (C-MORL's selection for extension; ties by index). With fewer candidates than ``num_select`` the
    ranking is repeated from its start. Without any valid point, index 0."""
    candidates = non_dominated(points, valid)
    score = jnp.where(candidates, crowding_distance(points, candidates), -jnp.inf)
    order = jnp.argsort(-score, stable=True)
    count = jnp.maximum(candidates.sum(), 1)
    return order[jnp.arange(num_select) % count]


# ----------------------------------------------------------------------------------------------
# The IPO log barrier
# ----------------------------------------------------------------------------------------------
def constraint_thresholds(returns, beta):
    """``b_j = J_j − (1 − β)|J_j|`` for the evaluated returns ``J`` of the policy being extended (the
    paper's ``β J_j`` for non-negative returns; see the module docstring)."""
    return returns - (1.0 - beta) * jnp.abs(returns)


def log_barrier(slack, t, eps):
    """IPO's barrier φ = log(−Ĵ_C) / t (Liu, Ding & Liu 2020, the IPO objective), written in the slack
    x = −Ĵ_C > 0 of the constraint: log(x) / t, continued linearly below ``eps`` as
    ``(log ε + (x − ε) / ε) / t`` (value and slope match at ε)."""
    inside = slack > eps
    safe = jnp.where(inside, slack, eps)            # no log of a non-positive slack, even in the unused branch
    return jnp.where(inside, jnp.log(safe), jnp.log(eps) + (slack - eps) / eps) / t


def barrier_terms(ratio, advantages, current_returns, thresholds, constrained, t, eps):
    """Σ_j c_j φ(Ĵ_j(θ) − b_j) with the first-order estimate Ĵ_j(θ) = J_j(π_k) + mean((ρ − 1) A_j).

    ``ratio (B,)``, ``advantages (B, m)`` (raw, per objective), ``current_returns``, ``thresholds``,
    ``constrained`` (0/1): ``(m,)``. Returns (the barrier sum, the slacks ``(m,)``)."""
    estimate = current_returns + jnp.mean((ratio - 1.0)[:, None] * advantages, axis=0)
    slack = estimate - thresholds
    return jnp.sum(constrained * log_barrier(slack, t, eps)), slack


# ----------------------------------------------------------------------------------------------
# Network
# ----------------------------------------------------------------------------------------------
class ActorCritic(nn.Module):
    """Separate actor and critic MLPs: (logits, vector value ``(m,)``)."""

    num_actions: int
    num_objectives: int
    hidden_size: int = 64
    activation: str = "tanh"

    @nn.compact
    def __call__(self, obs):
        act = nn.tanh if self.activation == "tanh" else nn.relu
        x = obs.astype(jnp.float32)

        def mlp(h, out_dim, out_scale):
            for _ in range(2):
                h = act(nn.Dense(self.hidden_size, kernel_init=orthogonal(np.sqrt(2)), bias_init=constant(0.0))(h))
            return nn.Dense(out_dim, kernel_init=orthogonal(out_scale), bias_init=constant(0.0))(h)

        return mlp(x, self.num_actions, 0.01), mlp(x, self.num_objectives, 1.0)


def log_prob_and_entropy(logits, action):
    """Log-probability of ``action`` under the categorical ``logits``, and the policy entropy."""
    logp_all = jax.nn.log_softmax(logits)
    logp = jnp.take_along_axis(logp_all, action[..., None].astype(jnp.int32), axis=-1)[..., 0]
    entropy = -(jnp.exp(logp_all) * logp_all).sum(-1)
    return logp, entropy


# ----------------------------------------------------------------------------------------------
# Advantages and the loss
# ----------------------------------------------------------------------------------------------
class Transition(NamedTuple):
    obs: jax.Array
    action: jax.Array
    log_prob: jax.Array
    value: jax.Array           # (m,) vector value
    reward: jax.Array          # (m,) vector reward
    terminated: jax.Array
    done: jax.Array            # terminated or truncated: the episode ends after this step
    next_value: jax.Array      # (m,) V(s_{t+1}) of the pre-reset next state (info["final_observation"])


def gae_advantages(traj: Transition, gamma, gae_lambda):
    """Per-objective GAE(λ) (Schulman et al. 2016, eq. 16) over a (time, env, m) trajectory,
    bootstrapping through truncation but not termination: δ_t = r_t + γ (1 − terminated_t) V(s'_t) −
    V(s_t) with s'_t the true next state, A_t = δ_t + γλ (1 − done_t) A_{t+1}. Returns (advantages,
    value targets), both (time, env, m)."""

    def backward(next_adv, t):
        delta = t.reward + gamma * (1.0 - t.terminated[..., None]) * t.next_value - t.value
        adv = delta + gamma * gae_lambda * (1.0 - t.done[..., None]) * next_adv
        return adv, adv

    _, advantages = jax.lax.scan(backward, jnp.zeros_like(traj.value[0]), traj, reverse=True)
    return advantages, advantages + traj.value


class Task(NamedTuple):
    """What one working member optimizes: maximize ``weights · J`` subject to ``J_j >= thresholds_j``
    where ``constrained_j`` (stage 1: a preference, no constraints; stage 2: one-hot, m − 1 constraints)."""
    weights: jax.Array          # (m,)
    constrained: jax.Array      # (m,) 0/1
    thresholds: jax.Array       # (m,)


def ipo_objective(logits, value, batch: Transition, advantages, targets, task: Task, current_returns, config):
    """The loss (to minimize) of one minibatch: −[PPO's clipped surrogate of the maximized objective
    (Schulman et al. 2017, eq. 7) + the IPO log barrier on the constrained ones (Liu, Ding & Liu 2020:
    L^CLIP + Σ φ(Ĵ_C); C-MORL's extension step, Liu et al. 2025)] + the clipped vector value loss − the
    entropy bonus.

    ``advantages``/``targets``: ``(B, m)``; ``task`` and ``current_returns`` (``(m,)``, the greedy
    policy's evaluated returns J(π_k)) select stage 1 (no constraint) or 2. Returns (loss, diagnostics)."""
    log_prob, entropy = log_prob_and_entropy(logits, batch.action)
    value_clipped = batch.value + jnp.clip(value - batch.value, -config.clip_eps, config.clip_eps)
    value_loss = 0.5 * jnp.maximum((value - targets) ** 2, (value_clipped - targets) ** 2).mean(0).sum()
    adv = advantages @ task.weights
    if config.normalize_advantages:
        adv = (adv - adv.mean()) / (adv.std() + 1e-8)
    ratio = jnp.exp(log_prob - batch.log_prob)
    surrogate = jnp.minimum(ratio * adv, jnp.clip(ratio, 1 - config.clip_eps, 1 + config.clip_eps) * adv).mean()
    barrier, slack = barrier_terms(ratio, advantages, current_returns, task.thresholds, task.constrained,
                                   config.barrier_t, config.barrier_eps)
    entropy = entropy.mean()
    total = -(surrogate + barrier) + config.vf_coef * value_loss - config.ent_coef * entropy
    approx_kl = ((ratio - 1) - (log_prob - batch.log_prob)).mean()
    min_slack = jnp.min(jnp.where(task.constrained > 0, slack, jnp.inf))
    return total, {"policy_loss": -surrogate, "barrier": barrier, "value_loss": value_loss, "entropy": entropy,
                   "approx_kl": approx_kl, "min_slack": jnp.where(task.constrained.any(), min_slack, jnp.nan)}


# ----------------------------------------------------------------------------------------------
# State
# ----------------------------------------------------------------------------------------------
class TrainState(NamedTuple):
    params: dict               # working set: every leaf (W, ...)
    opt_state: optax.OptState  # (W, ...)
    env_state: object          # (W, num_envs, ...)
    obs: jax.Array             # (W, num_envs, ...)
    task: Task                 # (W, m) each
    slot: jax.Array            # (W,) buffer slot the member is written to (buffer size: never written)
    pop_params: dict           # population buffer: every leaf (B, ...)
    pop_returns: jax.Array     # (B, m) evaluated discounted returns (0 where invalid)
    pop_valid: jax.Array       # (B,) bool
    pop_round: jax.Array       # (B,) int: 0 = initialization, r = extension round r (-1 where invalid)
    pop_parent: jax.Array      # (B,) int: slot of the policy it was extended from (-1: none)
    parent: jax.Array          # (W,) int: the working members' parents
    returns: jax.Array         # (W, m) the working members' evaluated returns J(π_k) (after the last update)
    preference: jax.Array      # (m,)
    key: jax.Array


def validate(config: Config) -> None:
    """Raise ConfigError for settings that cannot work (before anything compiles)."""
    require_positive(config, "lr", "total_timesteps", "init_timesteps", "num_init_policies", "num_select",
                     "num_envs", "num_steps", "update_epochs", "num_minibatches", "hidden_size", "max_grad_norm",
                     "front_episodes", "clip_eps", "barrier_t", "barrier_eps")
    require_unit_interval(config, "gamma", "gae_lambda", "beta")
    require(config.extension_rounds >= 0, f"extension_rounds must be >= 0, got {config.extension_rounds}")
    require(config.ent_coef >= 0, f"ent_coef must be >= 0, got {config.ent_coef}")
    require(config.vf_coef >= 0, f"vf_coef must be >= 0, got {config.vf_coef}")
    require(config.activation in ("tanh", "relu"), f"activation must be 'tanh' or 'relu', got {config.activation!r}")
    require_divides("num_envs * num_steps", config.batch_size, "num_minibatches", config.num_minibatches)
    env, env_params = envs.make(config.env)
    m = num_objectives_of(config.env, env, "C-MORL")
    envs.require_action_space(config.env, env, env_params, "discrete", "C-MORL")
    parse_preference(config.preference, m)
    initial_weights(config, m)
    per_update = config.steps_per_update(m)
    require(config.init_timesteps <= config.total_timesteps,
            f"init_timesteps={config.init_timesteps} must be <= total_timesteps={config.total_timesteps}")
    require(config.init_updates(m) >= 1,
            f"init_timesteps={config.init_timesteps} is less than one update of the working set "
            f"({config.working_size(m)} members x num_envs * num_steps = {per_update} env steps)")
    require(config.extension_rounds == 0 or config.updates_per_round(m) >= 1,
            f"total_timesteps - init_timesteps = {config.total_timesteps - config.init_timesteps} env steps are "
            f"less than extension_rounds={config.extension_rounds} updates of {per_update} env steps")


def make_env(config: Config):
    """(raw env, its params, the env the members train in: episode statistics over a flat observation)."""
    env, env_params = envs.make(config.env)
    inner = FlattenObservation(env) if len(env.observation_space(env_params).shape) > 1 else env
    return env, env_params, EpisodeStatistics(inner)


def make_network(config: Config, env, env_params) -> ActorCritic:
    """The network of one policy for ``env`` (the working set and the buffer are batches of its parameters)."""
    return ActorCritic(int(env.action_space(env_params).n), int(env.num_objectives), config.hidden_size,
                       config.activation)


def greedy(network: ActorCritic, params, obs):
    """argmax of one policy's logits for a batch of raw observations."""
    return jnp.argmax(network.apply(params, obs.reshape((obs.shape[0], -1)))[0], axis=-1)


def act_member(network: ActorCritic, population_params, member, obs):
    """Greedy actions of the policy in slot ``member`` of a batch of parameters, for raw observations."""
    return greedy(network, jax.tree.map(lambda x: x[member], population_params), obs)


def assigned_policy(state: TrainState):
    """The buffer slot whose evaluated return is best for ``state.preference`` (policy assignment)."""
    utility = jnp.where(state.pop_valid, state.pop_returns @ state.preference, -jnp.inf)
    return jnp.argmax(utility)


# ----------------------------------------------------------------------------------------------
# Training
# ----------------------------------------------------------------------------------------------
def make_train(config: Config) -> Trainer:
    validate(config)
    env, env_params, wrapped = make_env(config)
    m = int(env.num_objectives)
    network = make_network(config, env, env_params)
    obs_size = int(np.prod(env.observation_space(env_params).shape))
    work, buf = config.working_size(m), config.buffer_size(m)
    n_init, n_ext = config.num_init_policies, config.num_select * m
    init_updates, per_round = config.init_updates(m), config.updates_per_round(m)
    num_updates = config.num_updates(m)
    minibatch_size = config.batch_size // config.num_minibatches
    preference = jnp.asarray(parse_preference(config.preference, m))
    init_w = np.zeros((work, m), np.float32)
    init_w[:n_init] = initial_weights(config, m)
    init_w[n_init:] = 1.0 / m
    tx = optax.chain(optax.clip_by_global_norm(config.max_grad_norm), optax.scale_by_adam(eps=1e-5))
    vec_env = VectorEnv(wrapped, config.num_envs)
    members = jnp.arange(work)

    def evaluate(params, key):
        """Greedy discounted returns ``(W, m)`` of a batch of ``W`` policies."""

        def one(p, k):
            return rollout_returns(env, env_params, lambda obs, _: greedy(network, p, obs), k,
                                   config.front_episodes, config.gamma)[0]

        return jax.vmap(one)(params, jax.random.split(key, jax.tree.leaves(params)[0].shape[0]))

    def fresh_members(params, key):
        """Adam state and freshly reset envs for a batch of ``W`` policies."""
        env_state_obs = jax.vmap(lambda k: vec_env.reset(k, env_params))(jax.random.split(key, work))
        return jax.vmap(tx.init)(params), env_state_obs[1], env_state_obs[0]

    def init(key) -> TrainState:
        key, net_key, env_key = jax.random.split(key, 3)
        params = jax.vmap(lambda k: network.init(k, jnp.zeros((obs_size,))))(jax.random.split(net_key, work))
        opt_state, env_state, obs = fresh_members(params, env_key)
        task = Task(jnp.asarray(init_w), jnp.zeros((work, m)), jnp.zeros((work, m)))
        slot = jnp.where(members < n_init, members, buf)
        pop_params = jax.tree.map(lambda x: jnp.zeros((buf,) + x.shape[1:], x.dtype), params)
        return TrainState(params, opt_state, env_state, obs, task, slot, pop_params,
                          jnp.zeros((buf, m), jnp.float32), jnp.zeros(buf, bool), jnp.full(buf, -1, jnp.int32),
                          jnp.full(buf, -1, jnp.int32), jnp.full(work, -1, jnp.int32), jnp.zeros((work, m)),
                          preference, key)

    def commit(state: TrainState, round_index) -> TrainState:
        """Write the working set's active members and their evaluated returns into their buffer slots."""
        returns = state.returns

        def put(buffer, values):
            return buffer.at[state.slot].set(values, mode="drop")

        return state._replace(
            pop_params=jax.tree.map(put, state.pop_params, state.params),
            pop_returns=put(state.pop_returns, returns),
            pop_valid=put(state.pop_valid, jnp.ones(work, bool)),
            pop_round=put(state.pop_round, jnp.full(work, round_index, jnp.int32)),
            pop_parent=put(state.pop_parent, state.parent))

    def start_round(state: TrainState, round_index) -> TrainState:
        """Commit the finished stage, select by crowding distance and set up round ``round_index`` (1-based)."""
        key, env_key = jax.random.split(state.key)
        state = commit(state, round_index - 1)
        chosen = select_policies(state.pop_returns, state.pop_valid, config.num_select)
        parent = chosen[jnp.minimum(members // m, config.num_select - 1)]
        objective = members % m
        params = jax.tree.map(lambda x: x[parent], state.pop_params)
        onehot = jax.nn.one_hot(objective, m)
        task = Task(onehot, 1.0 - onehot, constraint_thresholds(state.pop_returns[parent], config.beta))
        active = members < n_ext
        slot = jnp.where(active, n_init + (round_index - 1) * n_ext + members, buf)
        opt_state, env_state, obs = fresh_members(params, env_key)
        return state._replace(params=params, opt_state=opt_state, env_state=env_state, obs=obs, task=task,
                              slot=slot, parent=jnp.where(active, parent, -1), returns=state.pop_returns[parent],
                              key=key)

    def member_update(params, opt_state, env_state, obs, task: Task, current_returns, lr, key):
        """One PPO/IPO iteration of one member (collect, per-objective GAE, epochs of minibatches)."""

        def env_step(carry, _):
            env_state, obs, key = carry
            key, act_key, step_key = jax.random.split(key, 3)
            logits, value = network.apply(params, obs)
            action = jax.random.categorical(act_key, logits)
            log_prob, _ = log_prob_and_entropy(logits, action)
            next_obs, env_state, reward, terminated, truncated, info = vec_env.step(step_key, env_state, action,
                                                                                    env_params)
            done = jnp.logical_or(terminated, truncated)
            transition = (obs, action, log_prob, value, reward.astype(jnp.float32), terminated.astype(jnp.float32),
                          done.astype(jnp.float32), info["final_observation"])
            return (env_state, next_obs, key), (transition, info)

        (env_state, obs, key), (traj, info) = jax.lax.scan(env_step, (env_state, obs, key), None, config.num_steps)
        next_value = network.apply(params, traj[-1].reshape(traj[-1].shape[:2] + (-1,)))[1]
        traj = Transition(*traj[:-1], next_value=next_value)
        advantages, targets = gae_advantages(traj, config.gamma, config.gae_lambda)

        def loss_fn(p, batch, adv, tgt):
            logits, value = network.apply(p, batch.obs)
            return ipo_objective(logits, value, batch, adv, tgt, task, current_returns, config)

        def update_epoch(carry, _):
            params, opt_state, key = carry
            key, perm_key = jax.random.split(key)
            perm = jax.random.permutation(perm_key, config.batch_size)
            flat = jax.tree.map(lambda x: x.reshape((config.batch_size,) + x.shape[2:]), (traj, advantages, targets))
            shuffled = jax.tree.map(lambda x: x[perm].reshape((config.num_minibatches, minibatch_size) + x.shape[1:]),
                                    flat)

            def update_minibatch(carry, minibatch):
                params, opt_state = carry
                grads, aux = jax.grad(loss_fn, has_aux=True)(params, *minibatch)
                updates, opt_state = tx.update(grads, opt_state, params)
                updates = jax.tree.map(lambda u: -lr * u, updates)
                return (optax.apply_updates(params, updates), opt_state), aux

            (params, opt_state), aux = jax.lax.scan(update_minibatch, (params, opt_state), shuffled)
            return (params, opt_state, key), aux

        (params, opt_state, key), aux = jax.lax.scan(update_epoch, (params, opt_state, key), None,
                                                     config.update_epochs)
        metrics = {k: v.mean() for k, v in aux.items()}
        metrics["min_slack"] = aux["min_slack"][-1, -1]
        metrics.update(member_episode_metrics(jax.tree.map(lambda x: x[-1], info)))
        return params, opt_state, env_state, obs, metrics

    def update(state: TrainState, i):
        # ``i`` is the unbatched iteration index: under vmap over seeds these conds stay real branches.
        extending = i >= init_updates
        round_index = jnp.where(extending, (i - init_updates) // jnp.maximum(per_round, 1) + 1, 0)
        if config.extension_rounds > 0:
            starts = extending & ((i - init_updates) % max(per_round, 1) == 0)
            state = jax.lax.cond(starts, lambda s: start_round(s, round_index), lambda s: s, state)
        key, eval_key, *member_keys = jax.random.split(state.key, work + 2)
        stage_length = jnp.where(extending, per_round, init_updates)
        stage_step = jnp.where(extending, (i - init_updates) % max(per_round, 1), i)
        lr = config.lr * (1.0 - stage_step / stage_length) if config.anneal_lr else config.lr
        params, opt_state, env_state, obs, metrics = jax.vmap(member_update, in_axes=(0, 0, 0, 0, 0, 0, None, 0))(
            state.params, state.opt_state, state.env_state, state.obs, state.task, state.returns, lr,
            jnp.stack(member_keys))
        # J(π_k) of the updated policies: the next update's barrier estimate and what a commit writes.
        # Not needed before the last update of stage 1. One evaluation in the program, reused.
        needed = i + 1 >= init_updates
        returns = jax.lax.cond(needed, lambda: evaluate(params, eval_key), lambda: state.returns)
        state = state._replace(params=params, opt_state=opt_state, env_state=env_state, obs=obs, returns=returns,
                               key=key)
        state = jax.lax.cond(i == num_updates - 1, lambda s: commit(s, round_index), lambda s: s, state)
        active = state.slot < buf
        out = {k: masked_mean(v, active) for k, v in metrics.items() if k != "min_slack"}
        # Smallest slack of any constraint in the working set (NaN in stage 1: no constraints).
        out["min_slack"] = jnp.nanmin(jnp.where(active, metrics["min_slack"], jnp.nan))
        out["stage"] = round_index.astype(jnp.float32)
        out["population_size"] = state.pop_valid.sum().astype(jnp.float32)
        return state, out

    def act(state: TrainState, obs, key):
        """Greedy actions of the population policy best for ``state.preference``."""
        return act_member(network, state.pop_params, assigned_policy(state), obs)

    trainer = Trainer(init=init, update=update, act=act, num_updates=num_updates,
                      env_steps_per_update=config.steps_per_update(m), env=env, env_params=env_params)
    report = make_report(config)
    return dataclasses.replace(trainer, report=lambda state, key: report(trainer, state, key))


def masked_mean(x, mask):
    """Mean of ``x (W,)`` over the members in ``mask``, ignoring NaN (episode metrics before any episode)."""
    use = mask & ~jnp.isnan(x)
    return jnp.where(use.any(), jnp.where(use, x, 0.0).sum() / jnp.maximum(use.sum(), 1), jnp.nan)


def member_episode_metrics(info) -> dict[str, jax.Array]:
    """Means over one member's envs of its last completed episode (NaN before any ended): the return in
    each objective ``episode_return_i`` and the ``episode_length``."""
    valid = info["episodes_completed"] > 0
    n_valid = jnp.maximum(valid.sum(), 1)

    def mean(x):
        x = x.astype(jnp.float32)
        v = valid.reshape(valid.shape + (1,) * (x.ndim - 1))
        return jnp.where(valid.any(), jnp.where(v, x, 0.0).sum(axis=0) / n_valid, jnp.nan)

    vector = mean(info["episode_return"])
    out = {"episode_length": mean(info["episode_length"])}
    out.update({f"episode_return_{i}": vector[i] for i in range(vector.shape[-1])})
    return out


# ----------------------------------------------------------------------------------------------
# The front: evaluation (pure, jittable) and metrics (host side)
# ----------------------------------------------------------------------------------------------
def evaluate_population(config: Config, trainer: Trainer, state: TrainState, key, episodes: int) -> dict:
    """Discounted (``config.gamma``) and undiscounted vector returns of every buffer policy's greedy
    policy, with the validity mask and the round each came from. Pure and jittable.

    Returns ``{"discounted": (B, m), "undiscounted": (B, m), "valid": (B,), "round": (B,)}``."""
    network = make_network(config, trainer.env, trainer.env_params)
    size = state.pop_valid.shape[0]

    def one(member, k):
        act = lambda obs, _: act_member(network, state.pop_params, member, obs)   # noqa: E731
        return rollout_returns(trainer.env, trainer.env_params, act, k, episodes, config.gamma)

    discounted, undiscounted = jax.vmap(one)(jnp.arange(size), jax.random.split(key, size))
    return {"discounted": discounted, "undiscounted": undiscounted, "valid": state.pop_valid,
            "round": state.pop_round}


def points_beyond(points, initial) -> int:
    """How many distinct non-dominated ``points`` no point of ``initial`` weakly dominates (new front
    points that the extension found)."""
    front = mo_metrics.pareto_filter(points)
    init = np.asarray(initial, np.float64).reshape(-1, front.shape[1])
    covered = np.all(init[None, :, :] >= front[:, None, :], axis=-1).any(axis=1)
    return int((~covered).sum())


def make_report(config: Config) -> Callable[[Trainer, Any, jax.Array], dict]:
    """``report(trainer, state, key) -> dict`` for one run's state: every valid buffer policy's evaluated
    returns and round, their ``front_metrics``, and the hypervolume of the initial population alone
    with the number of front points the extension added; JSON-ready."""
    compiled: dict = {}

    def report(trainer: Trainer, state, key) -> dict:
        if id(trainer) not in compiled:
            compiled.clear()
            compiled[id(trainer)] = jax.jit(
                lambda st, k: evaluate_population(config, trainer, st, k, config.front_episodes))
        result = jax.device_get(compiled[id(trainer)](state, key))
        valid = np.asarray(result["valid"], bool)
        returns = np.asarray(result["discounted"], np.float64)[valid]
        rounds = np.asarray(result["round"])[valid]
        metrics = front_metrics(returns, trainer.env, config.gamma)
        initial = returns[rounds == 0]
        ref = np.asarray(metrics["reference_point"])
        init_front = mo_metrics.pareto_filter(initial)
        return {"front_returns": returns.tolist(),
                "front_returns_undiscounted": np.asarray(result["undiscounted"])[valid].tolist(),
                "front_rounds": rounds.tolist(), "front_gamma": config.gamma,
                "initial_front": init_front.tolist(),
                "initial_hypervolume": hypervolume_or_none(init_front, ref),
                "points_beyond_initial": points_beyond(returns, initial) if len(returns) else 0,
                **metrics}

    return report


__all__ = ["Config", "make_train", "crowding_distance", "select_policies", "log_barrier", "barrier_terms",
           "constraint_thresholds", "ipo_objective", "non_dominated", "evaluate_population", "make_report"]


if __name__ == "__main__":
    from jaxrl.cli import main

    main(Config, make_train, algorithm="cmorl")
