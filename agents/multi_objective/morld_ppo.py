"""MORL/D with PPO (Felten, Talbi & Danoy 2024, "Multi-Objective Reinforcement Learning Based on
Decomposition: A Taxonomy and Framework", JAIR 79): a population of PPO policies, one per weight
vector, each trained on its own linearly scalarized reward w · r, with weight adaptation.

MORL/D decomposes the multi-objective problem into ``num_weights`` single-objective problems
(the paper's MORL/D framework): member k maximizes the weighted sum ``w_k · r`` (the paper's
"ws" scalarization) with its own, separate policy and value networks (no sharing between members,
morl-baselines' default ``sharing_mechanism=[]``). Here the whole population is one batch of
parameters: every update collects a rollout and runs PPO for all members at once (``jax.vmap``
over the population inside ``train(key)``; under the CLI that is seeds x weights in one program).
The weights live in the env params of ``jaxrl.mo_wrappers.LinearScalarization``, so one compiled
env serves every member.

Weight adaptation (the paper's "PSA" option for adapting the weight vectors; Czyżak & Jaszkiewicz 1998,
"Pareto simulated annealing - a metaheuristic technique for multiple-objective combinatorial
optimization", JMCDA 7(1)), as morl-baselines' ``MORLD`` implements it: every ``adapt_every``
updates each member's greedy policy is evaluated (discounted vector return), and each member moves
its weight away from the nearest other non-dominated evaluation ``v_c`` (squared distance above
``psa_min_distance``): ``w_i <- w_i (1 + δ)`` in the objectives where ``v_k,i >= v_c,i`` and
``w_i <- w_i / (1 + δ)`` in the others, then ``w <- w / ||w||_1``. Members thereby spread towards
the sparse parts of the front. See ``psa_adapt``: pure jnp, run inside the scan under a
``lax.cond`` on the update index. The archive the nearest neighbour is taken from is the current
population's non-dominated evaluations (morl-baselines keeps every policy ever evaluated in a
Pareto archive; a fixed-size in-graph archive of the current round is our simplification).

Defaults. MORL/D level: morl-baselines' ``MORLD`` (Felten et al. 2023, "A Toolkit for Reliable
Benchmarking and Research in Multi-Objective Reinforcement Learning", NeurIPS;
``multi_policy/morld/morld.py``): ``pop_size`` 6, ws scalarization, uniform initial weights
(here the exact simplex lattice, ``jaxrl.mo_metrics.equally_spaced_weights``), PSA with δ = 0.1 and
a minimum squared distance of 0.01, 5 evaluation episodes per member, an exchange every 40,000
env steps per member (``adapt_every`` = 80 updates of 512 steps). morl-baselines' default is no
adaptation; adaptation is on here because the issue asks for it (``weight_adaptation="none"``
turns it off). Policy level: PPO as in ``agents/online/ppo.py`` (PureJaxRL's CartPole settings,
Schulman et al. 2017): lr 2.5e-4 annealed, 4 envs x 128 steps, 4 epochs x 4 minibatches,
γ 0.99, λ 0.95, clip 0.2, entropy 0.01, value 0.5, grad-norm 0.5, tanh 64x64. (morl-baselines
uses MOSAC as the inner learner, γ 0.995, and normalizes each reward component; here the rewards
are used as they are and γ = 0.99, the γ of the front reported, as in ``envelope_q.py``.)

Not a single policy: ``act(state, obs, key)`` acts with the member whose current weight is nearest
to ``Config.preference`` (equal weights by default); ``act_member`` takes any member;
``evaluate_population`` rolls out every member's greedy policy (the approximate front) and
``front_metrics`` scores it (hypervolume, expected utility, cardinality, IGD and maximum utility
loss against an env's exact front). ``make_report(config)`` bundles them for ``summary.json``.

Run:  python agents/multi_objective/morld_ppo.py --env DeepSeaTreasure-v0 --num-seeds 4
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
from jaxrl.mo_evaluation import front_metrics, num_objectives_of, parse_preference, rollout_returns
from jaxrl.mo_wrappers import LinearScalarization
from jaxrl.trainer import Trainer
from jaxrl.wrappers import EpisodeStatistics, FlattenObservation, VectorEnv

WEIGHT_INITS = ("uniform", "random")
WEIGHT_ADAPTATIONS = ("psa", "none")


@dataclasses.dataclass(frozen=True)
class Config:
    env: str = "DeepSeaTreasure-v0"
    """Environment id of a multi-objective env (vector reward, ``num_objectives``); discrete actions only."""
    total_timesteps: int = 2_000_000
    """Env steps per run, summed over the whole population (each member gets 1/num_weights of them)."""
    num_weights: int = 6
    """Population size: one PPO policy per weight vector (morl-baselines' pop_size)."""
    weight_init: str = "uniform"
    """Initial weights: "uniform" (the simplex lattice with num_weights points; for 2 objectives any
    num_weights >= 2) or "random" (uniform on the simplex, drawn from the run's key)."""
    weight_adaptation: str = "psa"
    """"psa": Pareto-simulated-annealing weight adaptation every adapt_every updates; "none": fixed weights."""
    adapt_every: int = 80
    """Updates between weight adaptations (80 x 512 steps ≈ morl-baselines' exchange_every=40,000 per member)."""
    psa_delta: float = 0.1
    """PSA step δ: a weight component is multiplied or divided by (1 + δ) at each adaptation."""
    psa_min_distance: float = 0.01
    """Squared distance below which another evaluation is the member's own point, not a neighbour."""
    adapt_eval_episodes: int = 5
    """Greedy episodes per member in each adaptation's evaluation (morl-baselines: 5)."""
    lr: float = 2.5e-4
    """Adam learning rate (start value when annealed)."""
    anneal_lr: bool = True
    """Decay the learning rate linearly to 0 over training."""
    num_envs: int = 4
    """Parallel envs per population member."""
    num_steps: int = 128
    """Steps per env per rollout."""
    update_epochs: int = 4
    """Passes over each rollout."""
    num_minibatches: int = 4
    """Minibatches per epoch; num_envs * num_steps must divide by it."""
    gamma: float = 0.99
    """Discount factor (also the γ of the discounted front that the report evaluates)."""
    gae_lambda: float = 0.95
    """GAE λ."""
    clip_eps: float = 0.2
    """Clipping range of the probability ratio (and of the value update)."""
    ent_coef: float = 0.01
    """Entropy bonus coefficient."""
    vf_coef: float = 0.5
    """Value loss coefficient."""
    max_grad_norm: float = 0.5
    """Global gradient-norm clip."""
    hidden_size: int = 64
    """Width of the two hidden layers of actor and critic."""
    activation: str = "tanh"
    """Hidden activation: tanh or relu."""
    normalize_advantages: bool = True
    """Standardize advantages per minibatch."""
    preference: str = ""
    """Preference ω of act() and of the CLI's scalar evaluation, comma-separated, e.g. "0.3,0.7"
    (non-negative, summing to 1): act() uses the member whose weight is nearest; empty: equal weights."""
    front_episodes: int = 1
    """Episodes per member when the report evaluates the front (1 is exact for deterministic envs)."""

    @property
    def batch_size(self) -> int:
        """Env steps of one rollout of one member."""
        return self.num_envs * self.num_steps

    @property
    def steps_per_update(self) -> int:
        """Env steps of one update of the whole population."""
        return self.num_weights * self.batch_size

    @property
    def num_updates(self) -> int:
        return self.total_timesteps // self.steps_per_update


# ----------------------------------------------------------------------------------------------
# Weights
# ----------------------------------------------------------------------------------------------
def lattice_sizes(num_objectives: int, limit: int = 6) -> list[int]:
    """The first ``limit`` population sizes the simplex lattice has for ``num_objectives`` objectives."""
    return [math.comb(n + num_objectives - 1, num_objectives - 1) for n in range(1, limit + 1)]


def uniform_weights(num_objectives: int, num_weights: int) -> np.ndarray:
    """The simplex lattice (``equally_spaced_weights``) with exactly ``num_weights`` points.

    ConfigError when no lattice has that many points (for 3+ objectives only some sizes exist)."""
    n = 1
    while math.comb(n + num_objectives - 1, num_objectives - 1) < num_weights:
        n += 1
    if math.comb(n + num_objectives - 1, num_objectives - 1) != num_weights:
        raise ConfigError(
            f"weight_init='uniform' needs num_weights to be the size of a simplex lattice for "
            f"{num_objectives} objectives ({', '.join(map(str, lattice_sizes(num_objectives)))}, ...), "
            f"got {num_weights}; use one of these or weight_init='random'")
    return mo_metrics.equally_spaced_weights(num_objectives, n).astype(np.float32)


def sample_weights(key, n: int, num_objectives: int):
    """``n`` weights uniform on the simplex (Dirichlet(1, ..., 1): normalized exponentials)."""
    e = jax.random.exponential(key, (n, num_objectives))
    return e / e.sum(axis=-1, keepdims=True)


def non_dominated(points):
    """Mask ``(P,)`` of the points ``(P, m)`` that no other point dominates (maximization)."""
    geq = jnp.all(points[:, None, :] >= points[None, :, :], axis=-1)   # geq[i, j]: i >= j everywhere
    gt = jnp.any(points[:, None, :] > points[None, :, :], axis=-1)
    return ~jnp.any(geq & gt, axis=0)


def psa_adapt(weights, evaluations, delta, min_distance):
    """One Pareto-simulated-annealing weight adaptation of the whole population.

    The weight update of Pareto simulated annealing (Czyżak & Jaszkiewicz 1998), as MORL/D uses it
    (Felten et al. 2024; morl-baselines ``MORLD.__adapt_weights``). For member k with evaluation
    ``v_k`` let ``v_c`` be the non-dominated evaluation nearest to it with squared distance
    ``> min_distance``; then ``w_k,i * (1 + δ)`` where ``v_k,i >= v_c,i``, ``w_k,i / (1 + δ)``
    elsewhere, renormalized to sum 1. A member with no such neighbour keeps its weight.

    ``weights`` and ``evaluations``: ``(P, m)``. Returns the new weights ``(P, m)``.
    """
    candidate = non_dominated(evaluations)
    d2 = jnp.sum((evaluations[:, None, :] - evaluations[None, :, :]) ** 2, axis=-1)   # (k, c)
    valid = candidate[None, :] & (d2 > min_distance)
    nearest = jnp.argmin(jnp.where(valid, d2, jnp.inf), axis=1)
    has_neighbour = valid.any(axis=1)
    better = evaluations >= evaluations[nearest]
    moved = jnp.where(better, weights * (1.0 + delta), weights / (1.0 + delta))
    moved = moved / moved.sum(axis=-1, keepdims=True)
    return jnp.where(has_neighbour[:, None], moved, weights)


def nearest_member(weights, preference):
    """Index of the weight ``(P, m)`` nearest (Euclidean) to ``preference (m,)``; the first on ties."""
    return jnp.argmin(jnp.sum((weights - preference) ** 2, axis=-1))


# ----------------------------------------------------------------------------------------------
# Networks (one member's; the population is a batch of their parameters)
# ----------------------------------------------------------------------------------------------
class ActorCritic(nn.Module):
    """Separate actor and critic MLPs on the flattened observation: (logits, value)."""

    num_actions: int
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

        return mlp(x, self.num_actions, 0.01), mlp(x, 1, 1.0)[..., 0]


def log_prob_and_entropy(logits, action):
    """Log-probability of ``action`` under the categorical ``logits``, and the policy entropy."""
    logp_all = jax.nn.log_softmax(logits)
    logp = jnp.take_along_axis(logp_all, action[..., None].astype(jnp.int32), axis=-1)[..., 0]
    entropy = -(jnp.exp(logp_all) * logp_all).sum(-1)
    return logp, entropy


# ----------------------------------------------------------------------------------------------
# PPO: advantages and loss
# ----------------------------------------------------------------------------------------------
class Transition(NamedTuple):
    obs: jax.Array
    action: jax.Array
    log_prob: jax.Array
    value: jax.Array
    reward: jax.Array          # scalarized w · r of the member that collected it
    terminated: jax.Array
    done: jax.Array            # terminated or truncated: the episode ends after this step
    next_value: jax.Array      # V(s_{t+1}) of the pre-reset next state (info["final_observation"])


def gae_advantages(traj: Transition, gamma, gae_lambda):
    """GAE(λ) (Schulman et al. 2016, eq. 16) over a (time, env) trajectory, bootstrapping through
    truncation but not termination: δ_t = r_t + γ (1 − terminated_t) V(s'_t) − V(s_t) with s'_t the
    true next state, A_t = δ_t + γλ (1 − done_t) A_{t+1}. Returns (advantages, value targets)."""

    def backward(next_adv, t):
        delta = t.reward + gamma * (1.0 - t.terminated) * t.next_value - t.value
        adv = delta + gamma * gae_lambda * (1.0 - t.done) * next_adv
        return adv, adv

    _, advantages = jax.lax.scan(backward, jnp.zeros_like(traj.value[0]), traj, reverse=True)
    return advantages, advantages + traj.value


def ppo_loss(logits, value, batch: Transition, advantages, targets, clip_eps, vf_coef, ent_coef,
             normalize_advantages: bool):
    """PPO's clipped surrogate (Schulman et al. 2017, eq. 7) with the value loss and entropy bonus of
    eq. 9, the value update clipped as in PPO2/PureJaxRL. Returns (total loss, diagnostics)."""
    log_prob, entropy = log_prob_and_entropy(logits, batch.action)
    value_clipped = batch.value + jnp.clip(value - batch.value, -clip_eps, clip_eps)
    value_loss = 0.5 * jnp.maximum((value - targets) ** 2, (value_clipped - targets) ** 2).mean()
    if normalize_advantages:
        advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
    ratio = jnp.exp(log_prob - batch.log_prob)
    surrogate = jnp.minimum(ratio * advantages, jnp.clip(ratio, 1 - clip_eps, 1 + clip_eps) * advantages)
    policy_loss = -surrogate.mean()
    entropy = entropy.mean()
    total = policy_loss + vf_coef * value_loss - ent_coef * entropy
    approx_kl = ((ratio - 1) - (log_prob - batch.log_prob)).mean()
    return total, {"policy_loss": policy_loss, "value_loss": value_loss, "entropy": entropy, "approx_kl": approx_kl}


# ----------------------------------------------------------------------------------------------
# Evaluation of greedy policies (pure, jittable)
# ----------------------------------------------------------------------------------------------
class TrainState(NamedTuple):
    params: dict               # every leaf has the population axis (P, ...) first
    opt_state: optax.OptState  # (P, ...)
    env_state: object          # (P, num_envs, ...)
    obs: jax.Array             # (P, num_envs, ...)
    weights: jax.Array         # (P, m): the current weight of each member
    evaluations: jax.Array     # (P, m): discounted returns at the latest adaptation (NaN before)
    preference: jax.Array      # (m,): act() uses the member whose weight is nearest
    key: jax.Array


def validate(config: Config) -> None:
    """Raise ConfigError for settings that cannot work (before anything compiles)."""
    require_positive(config, "lr", "total_timesteps", "num_weights", "adapt_every", "adapt_eval_episodes",
                     "num_envs", "num_steps", "update_epochs", "num_minibatches", "hidden_size", "max_grad_norm",
                     "front_episodes", "clip_eps")
    require_unit_interval(config, "gamma", "gae_lambda")
    require(config.ent_coef >= 0, f"ent_coef must be >= 0, got {config.ent_coef}")
    require(config.vf_coef >= 0, f"vf_coef must be >= 0, got {config.vf_coef}")
    require(config.psa_delta >= 0, f"psa_delta must be >= 0, got {config.psa_delta}")
    require(config.psa_min_distance >= 0, f"psa_min_distance must be >= 0, got {config.psa_min_distance}")
    require(config.activation in ("tanh", "relu"), f"activation must be 'tanh' or 'relu', got {config.activation!r}")
    require(config.weight_init in WEIGHT_INITS,
            f"weight_init must be one of {WEIGHT_INITS}, got {config.weight_init!r}")
    require(config.weight_adaptation in WEIGHT_ADAPTATIONS,
            f"weight_adaptation must be one of {WEIGHT_ADAPTATIONS}, got {config.weight_adaptation!r}")
    require(config.num_weights >= 2, f"num_weights must be >= 2 (a population), got {config.num_weights}")
    require_divides("num_envs * num_steps", config.batch_size, "num_minibatches", config.num_minibatches)
    require(config.num_updates >= 1,
            f"total_timesteps={config.total_timesteps} is less than one update of the population "
            f"(num_weights * num_envs * num_steps = {config.steps_per_update})")
    env, env_params = envs.make(config.env)
    envs.require_action_space(config.env, env, env_params, "discrete", "MORL/D (PPO)")
    m = num_objectives_of(config.env, env, "MORL/D")
    parse_preference(config.preference, m)
    if config.weight_init == "uniform":
        uniform_weights(m, config.num_weights)


def make_env(config: Config):
    """(raw env, its params, the scalarized env to train in, its params with placeholder weights)."""
    env, env_params = envs.make(config.env)
    m = num_objectives_of(config.env, env, "MORL/D")
    scalarized = LinearScalarization(env, np.full(m, 1.0 / m, np.float32), env_params)
    inner = FlattenObservation(scalarized) if len(env.observation_space(env_params).shape) > 1 else scalarized
    return env, env_params, EpisodeStatistics(inner), scalarized.default_params


def make_train(config: Config) -> Trainer:
    validate(config)
    env, env_params, wrapped, scalar_params = make_env(config)
    m = num_objectives_of(config.env, env, "MORL/D")
    network = make_network(config, env, env_params)
    obs_size = int(np.prod(env.observation_space(env_params).shape))
    pop = config.num_weights
    minibatch_size = config.batch_size // config.num_minibatches
    preference = jnp.asarray(parse_preference(config.preference, m))
    initial_weights = uniform_weights(m, pop) if config.weight_init == "uniform" else None
    adapt = config.weight_adaptation == "psa"

    def lr_schedule(count):
        frac = 1.0 - (count // (config.num_minibatches * config.update_epochs)) / config.num_updates
        return config.lr * frac if config.anneal_lr else config.lr

    tx = optax.chain(optax.clip_by_global_norm(config.max_grad_norm), optax.adam(lr_schedule, eps=1e-5))
    vec_env = VectorEnv(wrapped, config.num_envs)

    def init_member(key, w):
        net_key, env_key = jax.random.split(key)
        params = network.init(net_key, jnp.zeros((obs_size,)))
        obs, env_state = vec_env.reset(env_key, scalar_params.replace(weights=w))
        return params, tx.init(params), env_state, obs

    def init(key) -> TrainState:
        key, w_key, member_key = jax.random.split(key, 3)
        weights = jnp.asarray(initial_weights) if initial_weights is not None else sample_weights(w_key, pop, m)
        params, opt_state, env_state, obs = jax.vmap(init_member)(jax.random.split(member_key, pop), weights)
        return TrainState(params, opt_state, env_state, obs, weights, jnp.full((pop, m), jnp.nan, jnp.float32),
                          preference, key)

    def member_update(params, opt_state, env_state, obs, w, key):
        """One PPO iteration of one member on the reward w · r (collect, GAE, epochs of minibatches)."""
        member_params = scalar_params.replace(weights=w)

        def env_step(carry, _):
            env_state, obs, key = carry
            key, act_key, step_key = jax.random.split(key, 3)
            logits, value = network.apply(params, obs)
            action = jax.random.categorical(act_key, logits)
            log_prob, _ = log_prob_and_entropy(logits, action)
            next_obs, env_state, reward, terminated, truncated, info = vec_env.step(step_key, env_state, action,
                                                                                    member_params)
            done = jnp.logical_or(terminated, truncated)
            transition = (obs, action, log_prob, value, reward, terminated.astype(jnp.float32),
                          done.astype(jnp.float32), info["final_observation"])
            return (env_state, next_obs, key), (transition, info)

        (env_state, obs, key), (traj, info) = jax.lax.scan(env_step, (env_state, obs, key), None, config.num_steps)
        next_value = network.apply(params, traj[-1])[1]
        traj = Transition(*traj[:-1], next_value=next_value)
        advantages, targets = gae_advantages(traj, config.gamma, config.gae_lambda)

        def loss_fn(p, batch, adv, tgt):
            logits, value = network.apply(p, batch.obs)
            return ppo_loss(logits, value, batch, adv, tgt, config.clip_eps, config.vf_coef, config.ent_coef,
                            config.normalize_advantages)

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
                return (optax.apply_updates(params, updates), opt_state), aux

            (params, opt_state), aux = jax.lax.scan(update_minibatch, (params, opt_state), shuffled)
            return (params, opt_state, key), aux

        (params, opt_state, key), aux = jax.lax.scan(update_epoch, (params, opt_state, key), None,
                                                     config.update_epochs)
        metrics = {k: v.mean() for k, v in aux.items()}
        metrics.update(member_episode_metrics(jax.tree.map(lambda x: x[-1], info)))
        return params, opt_state, env_state, obs, metrics

    def evaluate_members(params, key, episodes: int):
        """Discounted and undiscounted vector returns ``(P, m)`` of every member's greedy policy."""

        def one(member_params, k):
            return rollout_returns(env, env_params, lambda obs, _: greedy(network, member_params, obs), k, episodes,
                                   config.gamma)

        return jax.vmap(one)(params, jax.random.split(key, pop))

    def adapt_weights(state: TrainState, key):
        discounted, _ = evaluate_members(state.params, key, config.adapt_eval_episodes)
        weights = psa_adapt(state.weights, discounted, config.psa_delta, config.psa_min_distance)
        return weights, discounted

    def update(state: TrainState, i):
        key, eval_key, *member_keys = jax.random.split(state.key, pop + 2)
        params, opt_state, env_state, obs, metrics = jax.vmap(member_update)(
            state.params, state.opt_state, state.env_state, state.obs, state.weights, jnp.stack(member_keys))
        state = state._replace(params=params, opt_state=opt_state, env_state=env_state, obs=obs, key=key)
        if adapt:
            # ``i`` is the unbatched iteration index: under vmap over seeds this stays a real branch.
            weights, evaluations = jax.lax.cond(
                (i + 1) % config.adapt_every == 0,
                lambda: adapt_weights(state, eval_key),
                lambda: (state.weights, state.evaluations),
            )
            state = state._replace(weights=weights, evaluations=evaluations)
        out = {k: jnp.nanmean(v) if k.startswith("episode_") else v.mean() for k, v in metrics.items()}
        # Range of the first weight component over the population (1.0 while the corners are members).
        out["weight_spread"] = jnp.max(state.weights[:, 0]) - jnp.min(state.weights[:, 0])
        return state, out

    def act(state: TrainState, obs, key):
        """Greedy actions of the member whose weight is nearest to ``state.preference``."""
        return act_member(network, state.params, nearest_member(state.weights, state.preference), obs)

    trainer = Trainer(init=init, update=update, act=act, num_updates=config.num_updates,
                      env_steps_per_update=config.steps_per_update, env=env, env_params=env_params)
    report = make_report(config)
    return dataclasses.replace(trainer, report=lambda state, key: report(trainer, state, key))


def greedy(network: ActorCritic, params, obs):
    """argmax of one member's logits for a batch of raw observations."""
    return jnp.argmax(network.apply(params, obs.reshape((obs.shape[0], -1)))[0], axis=-1)


def act_member(network: ActorCritic, population_params, member, obs):
    """Greedy actions of population member ``member`` (an index) for a batch of raw observations."""
    return greedy(network, jax.tree.map(lambda x: x[member], population_params), obs)


def member_episode_metrics(info) -> dict[str, jax.Array]:
    """Means over one member's envs of its last completed episode (NaN before any ended): the
    scalarized ``episode_return`` and the return in each objective ``episode_return_i``."""
    valid = info["episodes_completed"] > 0
    n_valid = jnp.maximum(valid.sum(), 1)

    def masked_mean(x):
        x = x.astype(jnp.float32)
        v = valid.reshape(valid.shape + (1,) * (x.ndim - 1))
        return jnp.where(valid.any(), jnp.where(v, x, 0.0).sum(axis=0) / n_valid, jnp.nan)

    vector = masked_mean(info["vector_episode_return"])
    out = {"episode_return": masked_mean(info["episode_return"]), "episode_length": masked_mean(info["episode_length"])}
    out.update({f"episode_return_{i}": vector[i] for i in range(vector.shape[-1])})
    return out


# ----------------------------------------------------------------------------------------------
# The front: evaluation (pure, jittable) and metrics (host side)
# ----------------------------------------------------------------------------------------------
def make_network(config: Config, env, env_params) -> ActorCritic:
    """The network of one member for ``env`` (the population is a batch of its parameters)."""
    return ActorCritic(int(env.action_space(env_params).n), config.hidden_size, config.activation)


def evaluate_population(config: Config, trainer: Trainer, state: TrainState, key, episodes: int) -> dict:
    """Discounted (``config.gamma``) and undiscounted vector returns of every member's greedy policy,
    with its current weight: the population's approximate front. Pure and jittable.

    Returns ``{"weights": (P, m), "discounted": (P, m), "undiscounted": (P, m)}``.
    """
    network = make_network(config, trainer.env, trainer.env_params)
    pop = state.weights.shape[0]

    def member_returns(member, k):
        act = lambda obs, _: act_member(network, state.params, member, obs)   # noqa: E731
        return rollout_returns(trainer.env, trainer.env_params, act, k, episodes, config.gamma)

    discounted, undiscounted = jax.vmap(member_returns)(jnp.arange(pop), jax.random.split(key, pop))
    return {"weights": state.weights, "discounted": discounted, "undiscounted": undiscounted}


def make_report(config: Config) -> Callable[[Trainer, Any, jax.Array], dict]:
    """``report(trainer, state, key) -> dict`` for one run's state: every member's weight and
    evaluated returns (``evaluate_population``, one jitted program reused across calls for the same
    trainer) and their ``front_metrics``; JSON-ready (lists and floats)."""
    compiled: dict = {}

    def report(trainer: Trainer, state, key) -> dict:
        if id(trainer) not in compiled:
            compiled.clear()
            compiled[id(trainer)] = jax.jit(
                lambda st, k: evaluate_population(config, trainer, st, k, config.front_episodes))
        result = jax.device_get(compiled[id(trainer)](state, key))
        metrics = front_metrics(result["discounted"], trainer.env, config.gamma)
        return {"front_weights": np.asarray(result["weights"]).tolist(),
                "front_returns": np.asarray(result["discounted"]).tolist(),
                "front_returns_undiscounted": np.asarray(result["undiscounted"]).tolist(),
                "front_gamma": config.gamma, **metrics}

    return report


if __name__ == "__main__":
    from jaxrl.cli import main

    main(Config, make_train, algorithm="morld_ppo")
