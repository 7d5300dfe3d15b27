"""GPI Linear Support (Alegre, Bazzan, Roijers, Nowé & da Silva 2023, "Sample-Efficient Multi-Objective
Learning via Generalized Policy Improvement Prioritization", AAMAS), for two objectives.

One weight-conditioned network ``Q(s, w) -> (num_actions, num_objectives)`` (a USFA-style vector
value: the successor features of the policy for ``w`` when the features are the rewards) learns the
vector action values of the optimal linear-utility policy of every weight ``w`` it is trained on.
It acts by *generalized policy improvement* (GPI; Barreto et al. 2017) over a support set ``M`` of
weights: under weight ``w`` the action is ``argmax_a max_{w' ∈ M} w · Q(s, a, w')`` (paper, Sec. 2).

Training runs in iterations (paper, Sec. 4, the GPI-LS algorithm). Each iteration:

1. *Weight selection by linear support.* The partial CCS (convex coverage set) approximation holds
   the value vectors found so far, each with the weight it was found for. Its *corner weights*
   are the weights where the upper surface ``max_{v ∈ CCS} w · v`` bends, plus the extremes of the
   simplex. Each corner ``w_c`` gets the priority ``w_c · v_GPI(w_c) − max_{v ∈ CCS} w_c · v``
   (paper, Sec. 4: how much the GPI policy over the CCS's weights improves on the CCS at ``w_c``),
   and the corner of highest priority is the next weight ``w`` (ties broken at random). Before
   any value is known the corners are the extremes (1, 0) and (0, 1).
2. *Learning.* ``M`` = the CCS's weights, the 4 best other corners and ``w``. Every episode acts
   under a weight drawn uniformly from ``M`` (ε-greedy on the GPI action). Each gradient step takes
   a batch twice, once with ``w`` and once with weights drawn from ``M`` (as morl-baselines), and
   regresses ``Q(s, a, w)`` on ``r + γ (1 − terminated) Q_target(s', a*, w)`` with
   ``a* = argmax_a w · Q_target(s', a, w)``
   (``gpi_ls_loss``: the Huber loss with κ = 0.01 of morl-baselines, mean over objectives).
3. *CCS update.* The GPI policy over ``M`` is evaluated at every weight of ``M`` and each value is
   added to the CCS as in Optimistic Linear Support (Roijers 2016, Sec. 3.3): a value no better
   than the CCS at any weight visited so far is discarded, and values that are no longer the best
   at any visited weight are removed.

Everything, including the linear-support step and the rollouts it needs (``jaxrl.mo_evaluation.rollout_returns``),
is pure jnp in one compiled program: ``Trainer.update`` is one iteration (``steps_per_iteration``
env steps). The corner weights are exact for two objectives (``corner_weights``: the breakpoints of
the upper envelope of the lines ``x ↦ (x, 1 − x) · v``); more objectives need the vertices of a
polytope (an LP / vertex enumeration, morl-baselines uses pycddlib), which is not implemented here:
``make_train`` raises a ConfigError for them. The CCS, the visited weights and ``M`` live in
fixed-size arrays with masks (``max_ccs`` values; a new value that finds the CCS full is dropped and
counted in the ``ccs_dropped`` metric).

Defaults: morl-baselines' ``GPILS`` (= ``GPIPD`` with ``dyna=False, gpi_pd=False``; Felten et al. 2023,
"A Toolkit for Reliable Benchmarking and Research in Multi-Objective Reinforcement Learning", NeurIPS;
``multi_policy/gpi_pd/gpi_pd.py`` and ``multi_policy/linear_support/linear_support.py``): Adam lr
3e-4, batch 128 (x2: the current weight and support weights), γ 0.99, 20 gradient steps per env
step from step 100 on, target copied every 1,000 steps, Huber κ = min_priority = 0.01, network
256-256-256-256 (``ReLU(Dense(s)) * ReLU(Dense(w))`` then Dense-LayerNorm-ReLU layers), 10,000 env
steps per iteration, top-4 corners in ``M``, 5 evaluation episodes per weight. Exploration follows
morl-baselines' examples (ε from 1 to 0.05 linearly; here over the first half of training; the class
default is a fixed 0.01).

Left out (morl-baselines has them): prioritized replay (by TD error, its ``per=True``) and GPI
prioritization of the replay (GPI-PD's ``gpi_pd=True``) — replay here is uniform; the ensemble of
two Q networks whose minimum forms the target (``num_nets=2``; here one network); dropout (0.01) in
the hidden layers; the model-based Dyna part of GPI-PD. Episodes are not reset at iteration
boundaries; every env switches to the new ``w`` when an iteration starts.

Not a single policy: ``act(state, obs, key)`` is the GPI action under ``state.preference``
(``Config.preference``, equal weights by default) over the final ``M``; ``gpi_action`` takes any ω;
``evaluate_front`` rolls out the GPI policy for many ω (vmapped) and ``front_metrics`` scores the
resulting front. ``make_report(config)`` bundles them (and the CCS) for ``summary.json``.

Run:  python agents/multi_objective/gpi_ls.py --env DeepSeaTreasure-v0 --num-seeds 4
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxrl import envs, mo_metrics, replay
from jaxrl.config import ConfigError, require, require_positive, require_unit_interval
from jaxrl.mo_evaluation import front_metrics, num_objectives_of, parse_preference, rollout_returns
from jaxrl.trainer import Trainer
from jaxrl.wrappers import EpisodeStatistics, VectorEnv

TOP_CORNERS = 4
"""Corner weights (besides the chosen one) added to the support set M each iteration (morl-baselines)."""


@dataclasses.dataclass(frozen=True)
class Config:
    env: str = "DeepSeaTreasure-v0"
    """Environment id of a two-objective env (vector reward, ``num_objectives == 2``); discrete actions only."""
    total_timesteps: int = 100_000
    """Env steps per run (over all parallel envs); iterations = total_timesteps // steps_per_iteration."""
    steps_per_iteration: int = 10_000
    """Env steps of one linear-support iteration (one weight selection, one CCS update)."""
    lr: float = 3e-4
    """Adam learning rate."""
    num_envs: int = 1
    """Parallel envs stepped together (each with its own episode weight)."""
    buffer_size: int = 100_000
    """Capacity of the replay buffer (transitions); the oldest are overwritten when it is full."""
    gamma: float = 0.99
    """Discount factor (also the γ of the values in the CCS and of the reported front)."""
    tau: float = 1.0
    """Target update rate: 1.0 copies the online network (hard update), < 1 is Polyak averaging."""
    target_update_interval: int = 1_000
    """Env steps between target-network updates."""
    batch_size: int = 128
    """Transitions per gradient step (each used twice: with the iteration's weight and a support weight)."""
    gradient_updates: int = 20
    """Gradient steps per env step (per iteration of the parallel envs) once learning has started."""
    learning_starts: int = 100
    """Env steps collected before the first gradient step."""
    start_e: float = 1.0
    """ε of the ε-greedy policy at the start of training."""
    end_e: float = 0.05
    """ε at the end of the linear decay (and after it)."""
    exploration_fraction: float = 0.5
    """Fraction of total_timesteps over which ε decays linearly from start_e to end_e."""
    huber_kappa: float = 0.01
    """κ of the Huber loss (quadratic below κ, linear above; morl-baselines' min_priority)."""
    hidden_sizes: str = "256,256,256,256"
    """Comma-separated widths: the first is the state and weight embeddings, the rest hidden layers."""
    layer_norm: bool = True
    """LayerNorm after each hidden Dense layer (before the ReLU)."""
    max_ccs: int = 16
    """Capacity of the CCS approximation (value vectors); bounds the corner weights and M too."""
    ls_episodes: int = 5
    """Episodes per weight when the linear-support step evaluates a GPI policy (1 is exact for
    deterministic envs)."""
    preference: str = ""
    """Preference ω of act() and of the CLI's scalar evaluation, comma-separated, e.g. "0.3,0.7"
    (non-negative, summing to 1); empty: equal weights."""
    front_divisions: int = 100
    """evaluate_front uses the weights (x, 1 − x) for x in 0, 1/n, ..., 1 with n = front_divisions."""
    front_episodes: int = 1
    """Episodes per weight when evaluating the front (1 is exact for deterministic envs)."""

    @property
    def num_updates(self) -> int:
        return self.total_timesteps // self.steps_per_iteration

    @property
    def steps_per_update(self) -> int:
        """Vectorized env steps (of num_envs envs each) per iteration."""
        return self.steps_per_iteration // self.num_envs


# ----------------------------------------------------------------------------------------------
# Parsing helpers
# ----------------------------------------------------------------------------------------------
def parse_hidden_sizes(hidden_sizes) -> tuple[int, ...]:
    """ "64,128" (or a sequence of ints) -> (64, 128); raises ConfigError on anything else."""
    try:
        if isinstance(hidden_sizes, str):
            sizes = tuple(int(s) for s in hidden_sizes.replace(" ", "").split(",") if s)
        else:
            sizes = tuple(int(s) for s in hidden_sizes)
    except (TypeError, ValueError):
        raise ConfigError(f"hidden_sizes must be comma-separated positive integers like '64,128', "
                          f"got {hidden_sizes!r}") from None
    if not sizes or min(sizes) <= 0:
        raise ConfigError(f"hidden_sizes must be one or more positive integers like '64,128', got {hidden_sizes!r}")
    return sizes


# ----------------------------------------------------------------------------------------------
# Network, GPI, loss
# ----------------------------------------------------------------------------------------------
class QNetwork(nn.Module):
    """Vector Q-values ``(batch, num_actions, num_objectives)`` of observations under weights
    ``(batch, num_objectives)``: ``ReLU(Dense(s)) * ReLU(Dense(w))``, then Dense(-LayerNorm)-ReLU
    layers and a linear output (morl-baselines' ``QNet`` without dropout)."""

    num_actions: int
    num_objectives: int
    hidden_sizes: tuple[int, ...] = (256, 256, 256, 256)
    layer_norm: bool = True

    @nn.compact
    def __call__(self, obs, w):
        s = obs.astype(jnp.float32).reshape((obs.shape[0], -1))
        x = nn.relu(nn.Dense(self.hidden_sizes[0])(s)) * nn.relu(nn.Dense(self.hidden_sizes[0])(w.astype(jnp.float32)))
        for width in self.hidden_sizes[1:]:
            x = nn.Dense(width)(x)
            x = nn.relu(nn.LayerNorm()(x) if self.layer_norm else x)
        q = nn.Dense(self.num_actions * self.num_objectives)(x)
        return q.reshape((obs.shape[0], self.num_actions, self.num_objectives))


def make_network(config: Config, num_actions: int, num_objectives: int) -> QNetwork:
    return QNetwork(num_actions, num_objectives, parse_hidden_sizes(config.hidden_sizes), config.layer_norm)


def gpi_action(network: QNetwork, params, obs, w, support, support_mask):
    """GPI (Barreto et al. 2017; Alegre et al. 2023, Sec. 2): ``argmax_a max_{w' ∈ M} w · Q(s, a, w')``
    for a batch of observations under weight ``w`` (``(m,)`` or ``(batch, m)``); ``support (K, m)``
    with ``support_mask (K,)`` is M. Returns ``(actions (batch,), policy index (batch,))``."""
    b = obs.shape[0]
    w = jnp.broadcast_to(w, (b, network.num_objectives))
    q = jax.vmap(lambda wk: network.apply(params, obs, jnp.broadcast_to(wk, (b, network.num_objectives))))(support)
    scalar = jnp.einsum("bm,kbam->bka", w, q)                               # (batch, K, A)
    scalar = jnp.where(support_mask[None, :, None], scalar, -jnp.inf)
    best_policy = jnp.argmax(jnp.max(scalar, axis=-1), axis=-1)             # (batch,)
    actions = jnp.argmax(jnp.take_along_axis(scalar, best_policy[:, None, None], axis=1)[:, 0], axis=-1)
    return actions, best_policy


def huber(x, kappa):
    """morl-baselines' ``huber``: ``0.5 x²`` where ``|x| < κ``, else ``κ |x|``, averaged (the Huber
    loss of Fujimoto et al. 2020 up to a constant; its gradient is the Huber gradient)."""
    a = jnp.abs(x)
    return jnp.mean(jnp.where(a < kappa, 0.5 * a**2, kappa * a))


def td_target(reward, terminated, next_q_target, w, gamma):
    """``r + γ (1 − terminated) Q_target(s', a*, w)``, ``a* = argmax_a w · Q_target(s', a, w)``
    (Alegre et al. 2023, Sec. 4: the Q-learning target of a weight-conditioned vector Q-function).
    ``reward (B, m)``, ``terminated (B,)``, ``next_q_target (B, A, m)``, ``w (B, m)``."""
    best = jnp.argmax(jnp.einsum("bm,bam->ba", w, next_q_target), axis=-1)
    next_value = jnp.take_along_axis(next_q_target, best[:, None, None], axis=1)[:, 0]
    return reward + gamma * (1.0 - terminated)[:, None] * next_value


def gpi_ls_loss(q, target, kappa):
    """The vector TD loss of GPI-LS: ``L = mean_{batch, objectives} huber_κ(Q(s, a, w) − y)`` with ``y``
    from ``td_target`` (Alegre et al. 2023, Sec. 4; morl-baselines' ``huber`` of the TD error of
    every objective, averaged, κ = min_priority as in Fujimoto et al. 2020)."""
    return huber(q - target, kappa)


# ----------------------------------------------------------------------------------------------
# Linear support for two objectives (pure jnp, fixed-size arrays with masks)
# ----------------------------------------------------------------------------------------------
def max_scalarized(values, valid, weights):
    """``max_{v ∈ CCS} w · v`` for each row of ``weights (W, m)``; −inf when the CCS is empty."""
    scal = weights @ values.T                                               # (W, K)
    return jnp.max(jnp.where(valid[None, :], scal, -jnp.inf), axis=1)


def corner_weights(values, valid):
    """The corner weights of the CCS ``values (K, 2)`` (mask ``valid``), exactly: weights ``(x, 1 − x)``
    where the upper envelope of the lines ``x ↦ x v_0 + (1 − x) v_1`` bends, plus ``x = 0`` and ``x = 1``
    (Roijers 2016, Definition 19, for two objectives). Sorted by ``x``; returns ``(weights (K + 1, 2),
    mask (K + 1,))``. With an empty CCS: (0, 1) and (1, 0)."""
    k = values.shape[0]
    intercept, slope = values[:, 1], values[:, 0] - values[:, 1]
    denom = slope[:, None] - slope[None, :]
    x = (intercept[None, :] - intercept[:, None]) / jnp.where(denom == 0, 1.0, denom)   # line i meets line j
    pair = valid[:, None] & valid[None, :] & (denom != 0) & (x > 0) & (x < 1)
    xs = x.reshape(-1)
    on_line = (intercept[:, None] + xs[None, :] * slope[:, None])          # every line at every crossing
    envelope = jnp.max(jnp.where(valid[:, None], on_line, -jnp.inf), axis=0)
    crossing_value = jnp.repeat(intercept, k) + xs * jnp.repeat(slope, k)  # line i at x_ij
    on_top = crossing_value >= envelope - 1e-6 * (1.0 + jnp.abs(envelope))
    candidates = jnp.where(pair.reshape(-1) & on_top, xs, jnp.inf)
    candidates = jnp.concatenate([jnp.array([0.0, 1.0]), candidates])
    candidates = jnp.sort(candidates)
    duplicate = jnp.concatenate([jnp.array([False]), jnp.abs(jnp.diff(candidates)) < 1e-6])
    candidates = jnp.sort(jnp.where(duplicate, jnp.inf, candidates))[: k + 1]
    mask = jnp.isfinite(candidates)
    xc = jnp.where(mask, candidates, 0.0)
    return jnp.stack([xc, 1.0 - xc], axis=-1), mask


class LinearSupport(NamedTuple):
    """The partial CCS with its weight support, and every weight a value was computed for."""
    values: jax.Array          # (K, m)
    weights: jax.Array         # (K, m): the weight each CCS value was found for
    valid: jax.Array           # (K,)
    visited: jax.Array         # (V, m)
    visited_valid: jax.Array   # (V,)
    dropped: jax.Array         # values that found the CCS full


def init_linear_support(max_ccs: int, max_visited: int, m: int) -> LinearSupport:
    return LinearSupport(jnp.zeros((max_ccs, m)), jnp.zeros((max_ccs, m)), jnp.zeros(max_ccs, bool),
                         jnp.zeros((max_visited, m)), jnp.zeros(max_visited, bool), jnp.int32(0))


def add_solution(ls: LinearSupport, value, w) -> LinearSupport:
    """Optimistic Linear Support's CCS update (Roijers 2016, Sec. 3.3; morl-baselines' ``add_solution``).

    ``w`` joins the visited weights. ``value`` is discarded if, at every visited weight, it is worse
    than the CCS's best; otherwise every CCS value that is no longer strictly better than ``value``
    at some visited weight where it is the CCS's best is removed, and ``value`` (with ``w``) joins.
    """
    slot = jnp.argmin(ls.visited_valid)                                      # the first free slot
    visited = ls.visited.at[slot].set(w)
    visited_valid = ls.visited_valid.at[slot].set(True)
    scal = visited @ ls.values.T                                            # (V, K): w · v_i
    best = jnp.max(jnp.where(ls.valid[None, :], scal, -jnp.inf), axis=1)    # (V,): the CCS's best
    new = visited @ value                                                   # (V,)
    dominated = ls.valid.any() & ~jnp.any(visited_valid & (new >= best))
    still_best = jnp.any(visited_valid[:, None] & (scal == best[:, None]) & (new[:, None] < scal), axis=0)
    kept = jnp.where(dominated, ls.valid, ls.valid & still_best)
    free = jnp.argmin(kept)
    add = ~dominated & ~kept[free]
    valid = kept.at[free].set(kept[free] | add)
    values = ls.values.at[free].set(jnp.where(add, value, ls.values[free]))
    weights = ls.weights.at[free].set(jnp.where(add, w, ls.weights[free]))
    dropped = ls.dropped + (~dominated & kept[free]).astype(jnp.int32)
    return LinearSupport(values, weights, valid, visited, visited_valid, dropped)


def dedupe_weights(weights, mask, tol: float = 1e-4):
    """Mask out every weight within ``tol`` (max-norm) of an earlier kept one (morl-baselines' ``unique_tol``)."""
    n = weights.shape[0]
    close = jnp.max(jnp.abs(weights[:, None] - weights[None, :]), axis=-1) < tol
    earlier = jnp.arange(n)[None, :] < jnp.arange(n)[:, None]
    return mask & ~jnp.any(close & earlier & mask[None, :], axis=1)


# ----------------------------------------------------------------------------------------------
# Training
# ----------------------------------------------------------------------------------------------
class Transition(NamedTuple):
    obs: jax.Array
    action: jax.Array
    reward: jax.Array          # vector reward (num_objectives,)
    next_obs: jax.Array        # the true next state: info["final_observation"] (pre-reset)
    terminated: jax.Array      # 1.0 where the episode terminated (no bootstrap); truncation is 0.0


class TrainState(NamedTuple):
    params: dict
    target_params: dict
    opt_state: optax.OptState
    buffer: replay.ReplayBuffer
    env_state: object
    obs: jax.Array
    w: jax.Array               # (num_envs, m): the weight each env acts under this episode
    ls: LinearSupport
    support: jax.Array         # (S, m): M, the GPI support set of this iteration
    support_mask: jax.Array    # (S,)
    current_w: jax.Array       # (m,): the weight chosen by linear support this iteration
    preference: jax.Array      # (m,): the preference of act()
    step: jax.Array            # env steps so far
    key: jax.Array


def make_env(config: Config):
    env, env_params = envs.make(config.env)
    return env, env_params, EpisodeStatistics(env)


def validate(config: Config) -> None:
    """Raise ConfigError for settings that cannot work (before anything compiles)."""
    require_positive(config, "lr", "total_timesteps", "steps_per_iteration", "num_envs", "buffer_size",
                     "batch_size", "gradient_updates", "target_update_interval", "exploration_fraction",
                     "huber_kappa", "max_ccs", "ls_episodes", "front_divisions", "front_episodes")
    require_unit_interval(config, "gamma", "start_e", "end_e", "exploration_fraction")
    require((0 < config.tau) & (config.tau <= 1), f"tau must be in (0, 1], got {config.tau!r}")
    require(config.learning_starts >= 0, f"learning_starts must be >= 0, got {config.learning_starts}")
    require(config.steps_per_iteration % config.num_envs == 0,
            f"steps_per_iteration={config.steps_per_iteration} must be divisible by num_envs={config.num_envs}")
    require(config.total_timesteps >= config.steps_per_iteration,
            f"total_timesteps={config.total_timesteps} is less than one iteration of "
            f"steps_per_iteration={config.steps_per_iteration}")
    require(config.learning_starts < config.total_timesteps,
            f"learning_starts={config.learning_starts} must be below total_timesteps={config.total_timesteps}")
    require(config.buffer_size >= config.num_envs,
            f"buffer_size={config.buffer_size} must hold at least one step of num_envs={config.num_envs} envs")
    parse_hidden_sizes(config.hidden_sizes)
    env, env_params = envs.make(config.env)
    envs.require_action_space(config.env, env, env_params, "discrete", "GPI-LS")
    m = num_objectives_of(config.env, env, "GPI-LS")
    if m != 2:
        raise ConfigError(f"GPI-LS here computes corner weights exactly for 2 objectives only; {config.env} has {m}. "
                          "More objectives need the vertices of the CCS polytope (an LP), which is not implemented. "
                          "Try DeepSeaTreasure-v0 or DeepSeaTreasureConcave-v0.")
    parse_preference(config.preference, m)


def linear_epsilon(step, start_e, end_e, duration):
    """ε at env step ``step``: linear from start_e to end_e over ``duration`` steps, then end_e."""
    frac = jnp.clip(step / duration, 0.0, 1.0)
    return start_e + frac * (end_e - start_e)


def count_multiples(first, last, period):
    """How many multiples of ``period`` lie in the integer range [first, last] (0 if empty)."""
    return jnp.maximum(last // period - (first - 1) // period, 0)


def make_train(config: Config) -> Trainer:
    validate(config)
    env, env_params, wrapped = make_env(config)
    num_actions = int(env.action_space(env_params).n)
    m = num_objectives_of(config.env, env, "GPI-LS")
    network = make_network(config, num_actions, m)
    tx = optax.adam(config.lr)
    num_envs, k = config.num_envs, config.max_ccs
    support_size = k + TOP_CORNERS + 1
    max_visited = config.num_updates * support_size + 1
    exploration_steps = config.exploration_fraction * config.total_timesteps
    preference = jnp.asarray(parse_preference(config.preference, m))
    vec_env = VectorEnv(wrapped, num_envs)

    def init(key) -> TrainState:
        key, net_key, env_key = jax.random.split(key, 3)
        obs, env_state = vec_env.reset(env_key, env_params)
        params = network.init(net_key, obs[:1], preference[None])
        example = Transition(obs[0], jnp.int32(0), jnp.zeros(m, jnp.float32), obs[0], jnp.float32(0))
        support = jnp.zeros((support_size, m)).at[0].set(preference)
        return TrainState(params, params, tx.init(params), replay.init(config.buffer_size, example), env_state, obs,
                          jnp.broadcast_to(preference, (num_envs, m)), init_linear_support(k, max_visited, m),
                          support, jnp.zeros(support_size, bool).at[0].set(True), preference, preference, jnp.int32(0),
                          key)

    def gpi_values(params, weights, support, support_mask, key, episodes):
        """Discounted vector return of the GPI policy over M under each of ``weights (W, m)``."""
        def one(w, kk):
            act = lambda obs, _: gpi_action(network, params, obs, w, support, support_mask)[0]
            return rollout_returns(env, env_params, act, kk, episodes, config.gamma)[0]

        return jax.vmap(one)(weights, jax.random.split(key, weights.shape[0]))

    def select_weight(state: TrainState, key):
        """Linear-support step: the next weight and the support set M (module docstring, step 1)."""
        ls = state.ls
        corners, corner_mask = corner_weights(ls.values, ls.valid)
        eval_key, tie_key = jax.random.split(key)
        ccs_support = jnp.where(ls.valid[:, None], ls.weights, 0.0)
        gpi = gpi_values(state.params, corners, ccs_support, ls.valid, eval_key, config.ls_episodes)
        improvement = jnp.sum(corners * gpi, axis=-1) - max_scalarized(ls.values, ls.valid, corners)
        priority = jnp.where(ls.valid.any(), improvement, jnp.inf)
        priority = jnp.where(corner_mask, priority, -jnp.inf)
        top = jnp.max(priority)
        chosen = jax.random.categorical(tie_key, jnp.where(priority == top, 0.0, -jnp.inf))
        w = corners[chosen]
        others = jnp.where(jnp.arange(corners.shape[0]) == chosen, -jnp.inf, priority)
        _, top_idx = jax.lax.top_k(others, min(TOP_CORNERS, corners.shape[0]))
        top_mask = others[top_idx] > -jnp.inf
        support = jnp.concatenate([ls.weights, corners[top_idx], w[None]])
        mask = jnp.concatenate([ls.valid, top_mask, jnp.array([True])])
        pad = support_size - support.shape[0]
        support = jnp.concatenate([support, jnp.zeros((pad, m))])
        mask = dedupe_weights(support, jnp.concatenate([mask, jnp.zeros(pad, bool)]))
        return w, support, mask, top

    def loss_fn(params, target_params, batch: Transition, w):
        target = td_target(batch.reward, batch.terminated, network.apply(target_params, batch.next_obs, w), w,
                           config.gamma)
        q_all = network.apply(params, batch.obs, w)
        q = jnp.take_along_axis(q_all, batch.action[:, None, None], axis=1)[:, 0]
        return gpi_ls_loss(q, jax.lax.stop_gradient(target), config.huber_kappa)

    def env_step(carry, _):
        """One vectorized env step, then the gradient steps and the target update it is due."""
        state, stats = carry
        first = state.step
        last = first + num_envs - 1
        key, explore_key, random_key, step_key, w_key = jax.random.split(state.key, 5)
        epsilon = linear_epsilon(first, config.start_e, config.end_e, exploration_steps)
        greedy, _ = gpi_action(network, state.params, state.obs, state.w, state.support, state.support_mask)
        random_action = jax.random.randint(random_key, (num_envs,), 0, num_actions)
        explore = (jax.random.uniform(explore_key, (num_envs,)) < epsilon) | (last < config.learning_starts)
        action = jnp.where(explore, random_action, greedy)
        next_obs, env_state, reward, terminated, truncated, info = vec_env.step(
            step_key, state.env_state, action, env_params)
        transition = Transition(state.obs, action.astype(jnp.int32), reward.astype(jnp.float32),
                                info["final_observation"], terminated.astype(jnp.float32))
        buffer = replay.add(state.buffer, transition)
        done = info["episode_done"]
        # A finished episode's next one acts under a weight drawn uniformly from M.
        idx = jax.random.categorical(w_key, jnp.where(state.support_mask, 0.0, -jnp.inf), shape=(num_envs,))
        w = jnp.where(done[:, None], state.support[idx], state.w)

        # UPDATE NETWORK: gradient_updates steps per vectorized step once learning_starts steps are in.
        n_grad = jnp.where(last >= config.learning_starts, config.gradient_updates, 0)

        def gradient_step(_, carry):
            params, opt_state, key, _ = carry
            key, sample_key, w_key = jax.random.split(key, 3)
            batch = replay.sample(buffer, sample_key, config.batch_size)
            batch = jax.tree.map(lambda x: jnp.concatenate([x, x]), batch)
            support_w = state.support[jax.random.categorical(
                w_key, jnp.where(state.support_mask, 0.0, -jnp.inf), shape=(config.batch_size,))]
            ws = jnp.concatenate([jnp.broadcast_to(state.current_w, (config.batch_size, m)), support_w])
            loss, grads = jax.value_and_grad(loss_fn)(params, state.target_params, batch, ws)
            updates, opt_state = tx.update(grads, opt_state, params)
            return optax.apply_updates(params, updates), opt_state, key, loss

        params, opt_state, key, loss = jax.lax.fori_loop(
            0, n_grad, gradient_step, (state.params, state.opt_state, key, stats["loss"]))
        do_target = count_multiples(jnp.maximum(first, config.learning_starts), last, config.target_update_interval) > 0
        target_params = jax.lax.cond(
            do_target, lambda: optax.incremental_update(params, state.target_params, config.tau),
            lambda: state.target_params)

        ep_return = info["episode_return"].astype(jnp.float32)
        stats = {"loss": loss, "episodes": stats["episodes"] + done.sum(),
                 "return_sum": stats["return_sum"] + jnp.sum(jnp.where(done[:, None], ep_return, 0.0), axis=0),
                 "epsilon": jnp.asarray(epsilon, jnp.float32)}
        state = state._replace(params=params, target_params=target_params, opt_state=opt_state, buffer=buffer,
                               env_state=env_state, obs=next_obs, w=w, step=state.step + num_envs, key=key)
        return (state, stats), None

    def update(state: TrainState, i):
        # LINEAR SUPPORT: the next weight and the GPI support set M
        key, select_key, eval_key = jax.random.split(state.key, 3)
        w, support, support_mask, priority = select_weight(state, select_key)
        state = state._replace(support=support, support_mask=support_mask, current_w=w,
                               w=jnp.broadcast_to(w, (num_envs, m)), key=key)

        # COLLECT EXPERIENCE AND LEARN: steps_per_iteration env steps
        stats = {"loss": jnp.float32(jnp.nan), "episodes": jnp.int32(0), "return_sum": jnp.zeros(m),
                 "epsilon": jnp.float32(0.0)}
        (state, stats), _ = jax.lax.scan(env_step, (state, stats), None, config.steps_per_update)

        # CCS UPDATE: the GPI policy over M evaluated at every weight of M
        values = gpi_values(state.params, support, support, support_mask, eval_key, config.ls_episodes)

        def add_one(j, ls):
            new = add_solution(ls, values[j], support[j])
            return jax.tree.map(lambda a, b: jnp.where(support_mask[j], a, b), new, ls)

        ls = jax.lax.fori_loop(0, support_size, add_one, state.ls)
        state = state._replace(ls=ls)

        mean_return = jnp.where(stats["episodes"] > 0, stats["return_sum"] / jnp.maximum(stats["episodes"], 1), jnp.nan)
        metrics = {"loss": stats["loss"], "epsilon": stats["epsilon"], "episodes": stats["episodes"],
                   "ccs_size": ls.valid.sum(), "ccs_dropped": ls.dropped, "support_size": support_mask.sum(),
                   "corner_priority": jnp.where(jnp.isfinite(priority), priority, jnp.nan),
                   "weight_0": w[0], "episode_return": jnp.dot(preference, mean_return)}
        metrics.update({f"episode_return_{o}": mean_return[o] for o in range(m)})
        return state, metrics

    def act(state: TrainState, obs, key):
        """GPI action under ``state.preference`` over the support set M, for a batch of raw observations."""
        return gpi_action(network, state.params, obs, state.preference, state.support, state.support_mask)[0]

    trainer = Trainer(init=init, update=update, act=act, num_updates=config.num_updates,
                      env_steps_per_update=config.steps_per_update * num_envs, env=env, env_params=env_params)
    report = make_report(config)
    return dataclasses.replace(trainer, report=lambda state, key: report(trainer, state, key))


# ----------------------------------------------------------------------------------------------
# The front: evaluation (pure, jittable) and metrics (host side)
# ----------------------------------------------------------------------------------------------
def front_weights(divisions: int) -> np.ndarray:
    """``(x, 1 − x)`` for ``x`` in 0, 1/n, ..., 1: the two-objective simplex lattice, ``(n + 1, 2)``."""
    return mo_metrics.equally_spaced_weights(2, int(divisions)).astype(np.float32)


def evaluate_front(trainer: Trainer, state: TrainState, key, weights, episodes: int, gamma=0.99) -> dict:
    """Discounted (``gamma``) and undiscounted vector returns of the GPI policy (over ``state``'s
    support set) under each preference of ``weights (W, m)``, vmapped over the weights. Pure and
    jittable. Returns ``{"weights", "discounted", "undiscounted"}``, each ``(W, m)``."""
    weights = jnp.asarray(weights, jnp.float32)

    def one(w, k):
        st = state._replace(preference=w)
        return rollout_returns(trainer.env, trainer.env_params, lambda obs, kk: trainer.act(st, obs, kk), k,
                               episodes, gamma)

    discounted, undiscounted = jax.vmap(one)(weights, jax.random.split(key, weights.shape[0]))
    return {"weights": weights, "discounted": discounted, "undiscounted": undiscounted}


def make_report(config: Config) -> Callable[[Trainer, Any, jax.Array], dict]:
    """``report(trainer, state, key) -> dict`` for one run's state: the evaluated front (``evaluate_front``
    over ``front_weights(config.front_divisions)``, one jitted program reused across calls for the same
    trainer), its ``front_metrics``, the CCS and the support set; JSON-ready (lists and floats)."""
    compiled: dict = {}

    def report(trainer: Trainer, state, key) -> dict:
        weights = front_weights(config.front_divisions)
        if id(trainer) not in compiled:
            compiled.clear()
            compiled[id(trainer)] = jax.jit(
                lambda st, k: evaluate_front(trainer, st, k, weights, config.front_episodes, config.gamma))
        result = jax.device_get(compiled[id(trainer)](state, key))
        metrics = front_metrics(result["discounted"], trainer.env, config.gamma)
        ls = jax.device_get(state.ls)
        valid, support_mask = np.asarray(ls.valid, bool), np.asarray(state.support_mask, bool)
        return {"front_weights": weights.tolist(), "front_returns": np.asarray(result["discounted"]).tolist(),
                "front_returns_undiscounted": np.asarray(result["undiscounted"]).tolist(),
                "front_gamma": config.gamma,
                "ccs": np.asarray(ls.values)[valid].tolist(), "ccs_weights": np.asarray(ls.weights)[valid].tolist(),
                "support": np.asarray(state.support)[support_mask].tolist(), **metrics}

    return report


if __name__ == "__main__":
    from jaxrl.cli import main

    main(Config, make_train, algorithm="gpi_ls")
