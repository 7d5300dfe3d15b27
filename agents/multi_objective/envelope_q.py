"""Envelope Q-learning (Yang, Sun & Narasimhan 2019, "A Generalized Algorithm for Multi-Objective
Reinforcement Learning and Policy Adaptation", NeurIPS).

One preference-conditioned network ``Q(s, ω) -> (num_actions, num_objectives)`` learns the vector
action values of the optimal linear-utility policy for every preference ``ω`` on the simplex at
once. Its target is the *envelope* of the current value estimates over a set ``W`` of sampled
preferences (paper, Sec. 3: the optimality filter H of the envelope operator, and Algorithm 1):

    y(s, a, ω) = r + γ · Q_target(s', a*, ω*),   (a*, ω*) = argmax_{a ∈ A, ω' ∈ W}  ω · Q(s', a, ω')

so a preference can bootstrap from the value another preference has already found. The actions
and preferences of the envelope are chosen with the online network and valued with the target
network (as morl-baselines' ``Envelope.envelope_target`` does). Two losses are mixed by homotopy
(paper, Sec. 3.3): ``L = (1 − λ) L^A + λ L^B`` with ``L^A`` the squared error of the vector
``Q`` and ``L^B`` the error of the utility ``ω · Q`` (the paper writes an absolute error for
``L^B``; both reference codes use the square, as here). λ grows from
``homotopy_initial`` to 1 on the authors' exponential schedule (see ``homotopy_lambda``).

Each env keeps the preference it acts under for a whole episode and draws a new one, uniformly
on the simplex (a Dirichlet(1, ..., 1)), when the episode ends. Each gradient step pairs every
sampled transition with each of ``num_sample_w`` fresh preferences (the set ``W`` of the envelope).
Exploration is ε-greedy on ``ω · Q(s, ·, ω)``. Everything lives on device as in
``agents/online/dqn.py``: circular replay buffer in the train state, the same env-step schedule
of gradient steps and target updates (``count_multiples``), bootstrapping through truncation.

Defaults: morl-baselines' ``Envelope`` (Felten et al. 2023, "A Toolkit for Reliable Benchmarking
and Research in Multi-Objective Reinforcement Learning", NeurIPS; ``multi_policy/envelope/envelope.py``)
for the learner: Adam lr 3e-4, batch 256 transitions x 4 sampled preferences, γ 0.99, target
copied every 1,000 env steps, learning from step 100, one gradient step per env step, a 256x256
ReLU MLP on [obs, ω]. The schedules are the paper authors' (code release github.com/RunzheYang/MORL,
``synthetic/crl/envelope/meta.py``): ε 0.5 -> 0.05 linearly over training, λ from 0 to 1 on the
exponential homotopy schedule with base 1000, every gradient entry clamped to [-1, 1]. (The
authors' own optimizer settings for Deep Sea Treasure, lr 1e-3 with a target copy every 100
steps, made the vector Q-values diverge in our runs with small batches.) 100,000 env steps is
about the authors' 2,000 DST episodes; the buffer holds all of them (morl-baselines: 1e6).
Replay is uniform: both references prioritize by default (morl-baselines' ``per=False`` is ours).

Not a single policy: ``act(state, obs, key)`` acts under ``state.preference`` (``Config.preference``,
equal weights by default); ``act_with_preference`` takes any ω; ``evaluate_front`` rolls out the
greedy policy for many ω (vmapped) and ``front_metrics`` scores the resulting front (hypervolume,
expected utility, cardinality, and IGD / maximum utility loss against an env's exact front).
``make_report(config)`` bundles the two for ``summary.json``.

Run:  python agents/multi_objective/envelope_q.py --env DeepSeaTreasure-v0 --num-seeds 4
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

from jaxrl import envs, mo_metrics, replay
from jaxrl.mo_evaluation import front_metrics, num_objectives_of, parse_preference, rollout_returns
from jaxrl.config import ConfigError, require, require_positive, require_unit_interval
from jaxrl.trainer import Trainer
from jaxrl.wrappers import EpisodeStatistics, VectorEnv


@dataclasses.dataclass(frozen=True)
class Config:
    env: str = "DeepSeaTreasure-v0"
    """Environment id of a multi-objective env (vector reward, ``num_objectives``); discrete actions only."""
    total_timesteps: int = 100_000
    """Env steps per run (over all parallel envs)."""
    lr: float = 3e-4
    """Adam learning rate."""
    num_envs: int = 1
    """Parallel envs stepped together each iteration (each with its own episode preference)."""
    buffer_size: int = 100_000
    """Capacity of the replay buffer (transitions); the oldest are overwritten when it is full."""
    gamma: float = 0.99
    """Discount factor (also the γ of the discounted front that evaluate_front reports)."""
    tau: float = 1.0
    """Target update rate: 1.0 copies the online network (hard update), < 1 is Polyak averaging."""
    target_update_interval: int = 1_000
    """Env steps between target-network updates."""
    batch_size: int = 256
    """Transitions per gradient step, sampled uniformly from the filled part of the buffer."""
    num_sample_w: int = 4
    """Preferences paired with every sampled transition (the set W the envelope maximizes over)."""
    start_e: float = 0.5
    """ε of the ε-greedy policy at the start of training."""
    end_e: float = 0.05
    """ε at the end of the linear decay (and after it)."""
    exploration_fraction: float = 1.0
    """Fraction of total_timesteps over which ε decays linearly from start_e to end_e."""
    learning_starts: int = 100
    """Env steps collected before the first gradient step (and target update)."""
    train_frequency: int = 1
    """One gradient step every this many env steps (counted over all parallel envs)."""
    grad_clip: float = 1.0
    """Every gradient entry is clipped to [-grad_clip, grad_clip] before Adam (the authors' clamp)."""
    homotopy: bool = True
    """Mix the losses as (1 − λ) L^A + λ L^B with λ rising to 1; False trains on L^A only."""
    homotopy_initial: float = 0.0
    """λ at the start of training (the authors' beta)."""
    homotopy_base: float = 1000.0
    """Steepness of the exponential λ schedule (the authors' tau = 1000; larger: λ stays low longer)."""
    hidden_sizes: str = "256,256"
    """Comma-separated widths of the ReLU hidden layers of Q(s, ω)."""
    preference: str = ""
    """Preference ω of act() and of the CLI's scalar evaluation, comma-separated, e.g. "0.3,0.7"
    (non-negative, summing to 1); empty: equal weights."""
    front_divisions: int = 100
    """evaluate_front uses the simplex lattice with this many divisions per objective (101 weights
    for two objectives), fewer when that lattice would exceed 1,000 weights."""
    front_episodes: int = 1
    """Episodes per preference when evaluating the front (1 is exact for deterministic envs)."""

    @property
    def num_updates(self) -> int:
        return self.total_timesteps // self.num_envs


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


def front_weights(num_objectives: int, divisions: int, max_weights: int = 1_000) -> np.ndarray:
    """The simplex lattice ``equally_spaced_weights(m, n)`` with the largest ``n <= divisions``
    whose lattice has at most ``max_weights`` points (C(n + m − 1, m − 1) of them)."""
    n = int(divisions)
    while n > 1 and math.comb(n + num_objectives - 1, num_objectives - 1) > max_weights:
        n -= 1
    return mo_metrics.equally_spaced_weights(num_objectives, n).astype(np.float32)


# ----------------------------------------------------------------------------------------------
# Network and policy
# ----------------------------------------------------------------------------------------------
class QNetwork(nn.Module):
    """Vector Q-values ``(batch, num_actions, num_objectives)`` of observations ``(batch, ...)``
    under preferences ``(batch, num_objectives)``: an MLP on [flattened obs, ω]."""

    num_actions: int
    num_objectives: int
    hidden_sizes: tuple[int, ...] = (256, 256)

    @nn.compact
    def __call__(self, obs, w):
        x = obs.astype(jnp.float32).reshape((obs.shape[0], -1))
        x = jnp.concatenate([x, w.astype(jnp.float32)], axis=-1)
        for width in self.hidden_sizes:
            x = nn.relu(nn.Dense(width)(x))
        q = nn.Dense(self.num_actions * self.num_objectives)(x)
        return q.reshape((obs.shape[0], self.num_actions, self.num_objectives))


def make_network(config: Config, num_actions: int, num_objectives: int) -> QNetwork:
    return QNetwork(num_actions, num_objectives, parse_hidden_sizes(config.hidden_sizes))


def scalarized_q(network: QNetwork, params, obs, w):
    """ω · Q(s, a, ω) for every action: ``(batch, num_actions)``; ``w`` is ``(m,)`` or ``(batch, m)``."""
    w = jnp.broadcast_to(w, (obs.shape[0], network.num_objectives))
    return jnp.einsum("bm,bam->ba", w, network.apply(params, obs, w))


def act_with_preference(network: QNetwork, params, obs, w):
    """Greedy actions argmax_a ω · Q(s, a, ω) for a batch of raw observations under preference ``w``
    (one ``(m,)`` vector for the batch, or one per observation)."""
    return jnp.argmax(scalarized_q(network, params, obs, w), axis=-1)


def sample_preferences(key, n: int, num_objectives: int):
    """``n`` preferences uniform on the simplex (Dirichlet(1, ..., 1): normalized exponentials)."""
    e = jax.random.exponential(key, (n, num_objectives))
    return e / e.sum(axis=-1, keepdims=True)


# ----------------------------------------------------------------------------------------------
# Envelope target, losses, schedules
# ----------------------------------------------------------------------------------------------
def envelope_target(reward, terminated, next_q_select, next_q_eval, w, gamma):
    """y = r + γ (1 − terminated) Q_eval(s', a*, ω*), (a*, ω*) = argmax_{a, ω' ∈ W} ω · Q_select(s', a, ω').

    Yang et al. (2019), Sec. 3 and Algorithm 1 (the envelope over the sampled preferences W).
    ``reward (B, m)``, ``terminated (B,)``, ``next_q_select`` and ``next_q_eval`` ``(B, K, A, m)``: the
    vector Q-values of s' under each of the K preferences of W (online and target network),
    ``w (B, m)``: the preference of each pair. Returns ``(B, m)``.
    """
    batch, k, a, m = next_q_select.shape
    scores = jnp.einsum("bm,bkam->bka", w, next_q_select).reshape(batch, k * a)
    best = jnp.argmax(scores, axis=-1)
    next_value = jnp.take_along_axis(next_q_eval.reshape(batch, k * a, m), best[:, None, None], axis=1)[:, 0]
    return reward + gamma * (1.0 - terminated)[:, None] * next_value


def envelope_losses(q, target, w):
    """(L^A, L^B) of Yang et al. (2019), Sec. 3.3: the mean squared error of the vector Q-values, and
    the squared error of the utilities ω · Q (the reference codes' square for the paper's absolute value).
    ``q``, ``target``, ``w``: ``(..., m)``."""
    loss_a = jnp.mean((target - q) ** 2)
    loss_b = jnp.mean((jnp.sum(w * target, -1) - jnp.sum(w * q, -1)) ** 2)
    return loss_a, loss_b


def homotopy_lambda(fraction, initial, base):
    """λ after ``fraction`` of training: λ0 + (base (1 − λ0))^fraction / base, at most 1.

    The authors' schedule (RunzheYang/MORL ``crl/envelope/meta.py``: per episode k of N,
    λ_k − λ0 = (base (1 − λ0))^(k/N) / base), here per env step: ≈ λ0 at the start, 1 at the end.
    """
    fraction = jnp.clip(fraction, 0.0, 1.0)
    return jnp.minimum(initial + jnp.power(base * (1.0 - initial), fraction) / base, 1.0)


def linear_epsilon(step, start_e, end_e, duration):
    """ε at env step ``step``: linear from start_e to end_e over ``duration`` steps, then end_e."""
    frac = jnp.clip(step / duration, 0.0, 1.0)
    return start_e + frac * (end_e - start_e)


def count_multiples(first, last, period):
    """How many multiples of ``period`` lie in the integer range [first, last] (0 if empty)."""
    return jnp.maximum(last // period - (first - 1) // period, 0)


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
    w: jax.Array               # (num_envs, m): the preference each env acts under this episode
    last_utility: jax.Array    # (num_envs,): ω · return of each env's last completed episode
    preference: jax.Array      # (m,): the preference of act() (Config.preference)
    key: jax.Array
    loss: jax.Array            # of the latest gradient step (NaN before the first)


def make_env(config: Config):
    env, env_params = envs.make(config.env)
    return env, env_params, EpisodeStatistics(env)


def validate(config: Config) -> None:
    """Raise ConfigError for settings that cannot work (before anything compiles)."""
    require_positive(config, "lr", "total_timesteps", "num_envs", "buffer_size", "batch_size", "num_sample_w",
                     "target_update_interval", "train_frequency", "exploration_fraction", "grad_clip",
                     "front_divisions", "front_episodes")
    require_unit_interval(config, "gamma", "start_e", "end_e", "exploration_fraction", "homotopy_initial")
    require((0 < config.tau) & (config.tau <= 1), f"tau must be in (0, 1], got {config.tau!r}")
    require(config.homotopy_base > 1, f"homotopy_base must be > 1, got {config.homotopy_base!r}")
    require(config.learning_starts >= 0, f"learning_starts must be >= 0, got {config.learning_starts}")
    require(config.learning_starts < config.total_timesteps,
            f"learning_starts={config.learning_starts} must be below total_timesteps={config.total_timesteps} "
            "(otherwise no gradient step is ever taken)")
    require(config.total_timesteps >= config.num_envs,
            f"total_timesteps={config.total_timesteps} is less than one step of num_envs={config.num_envs} envs")
    require(config.buffer_size >= config.num_envs,
            f"buffer_size={config.buffer_size} must hold at least one step of num_envs={config.num_envs} envs")
    parse_hidden_sizes(config.hidden_sizes)
    env, env_params = envs.make(config.env)
    envs.require_action_space(config.env, env, env_params, "discrete", "Envelope Q-learning")
    parse_preference(config.preference, num_objectives_of(config.env, env, "Envelope Q-learning"))


def make_train(config: Config) -> Trainer:
    validate(config)
    env, env_params, wrapped = make_env(config)
    num_actions = int(env.action_space(env_params).n)
    m = num_objectives_of(config.env, env, "Envelope Q-learning")
    network = make_network(config, num_actions, m)
    tx = optax.chain(optax.clip(config.grad_clip), optax.adam(config.lr))
    num_envs, period, n_w = config.num_envs, config.train_frequency, config.num_sample_w
    exploration_steps = config.exploration_fraction * config.total_timesteps
    preference = jnp.asarray(parse_preference(config.preference, m))
    vec_env = VectorEnv(wrapped, num_envs)

    def init(key) -> TrainState:
        key, net_key, env_key, w_key = jax.random.split(key, 4)
        obs, env_state = vec_env.reset(env_key, env_params)
        params = network.init(net_key, obs[:1], preference[None])
        example = Transition(obs[0], jnp.int32(0), jnp.zeros(m, jnp.float32), obs[0], jnp.float32(0))
        nan = jnp.float32(jnp.nan)
        return TrainState(params, params, tx.init(params), replay.init(config.buffer_size, example), env_state, obs,
                          sample_preferences(w_key, num_envs, m), jnp.full(num_envs, jnp.nan, jnp.float32),
                          preference, key, nan)

    def q_under_each(params, obs, ws):
        """Q(obs, ·, ω) for each ω of ``ws (K, m)``: ``(B, K, A, m)``."""
        q = jax.vmap(lambda w: network.apply(params, obs, jnp.broadcast_to(w, (obs.shape[0], m))))(ws)
        return jnp.moveaxis(q, 0, 1)

    def loss_fn(params, target_params, batch: Transition, ws, lam):
        # Every transition is paired with every sampled preference: arrays (B, K, ...), pair (b, j) has ω_j.
        b = batch.reward.shape[0]
        next_select = q_under_each(params, batch.next_obs, ws)
        next_eval = q_under_each(target_params, batch.next_obs, ws)
        pair_w = jnp.broadcast_to(ws[None], (b, n_w, m))

        def target_for(w_col):  # w_col (B, m): one preference for every transition
            return envelope_target(batch.reward, batch.terminated, next_select, next_eval, w_col, config.gamma)

        target = jax.lax.stop_gradient(jax.vmap(target_for, in_axes=1, out_axes=1)(pair_w))     # (B, K, m)
        q_all = q_under_each(params, batch.obs, ws)                                              # (B, K, A, m)
        q = jnp.take_along_axis(q_all, batch.action[:, None, None, None], axis=2)[:, :, 0]      # (B, K, m)
        loss_a, loss_b = envelope_losses(q, target, pair_w)
        return (1.0 - lam) * loss_a + lam * loss_b, (loss_a, loss_b)

    def update(state: TrainState, i):
        # The env steps of this iteration have (0-based) indices [first, last], as in dqn.py.
        first = i * num_envs
        last = first + num_envs - 1

        # COLLECT EXPERIENCE (ε-greedy on ω · Q under each env's episode preference)
        key, explore_key, random_key, step_key, pref_key = jax.random.split(state.key, 5)
        epsilon = linear_epsilon(first, config.start_e, config.end_e, exploration_steps)
        greedy = act_with_preference(network, state.params, state.obs, state.w)
        random_action = jax.random.randint(random_key, (num_envs,), 0, num_actions)
        explore = jax.random.uniform(explore_key, (num_envs,)) < epsilon
        action = jnp.where(explore, random_action, greedy)
        next_obs, env_state, reward, terminated, truncated, info = vec_env.step(step_key, state.env_state, action, env_params)
        # Bootstrap through truncation: the next state is the pre-reset observation; mask only termination.
        transition = Transition(state.obs, action.astype(jnp.int32), reward.astype(jnp.float32),
                                info["final_observation"], terminated.astype(jnp.float32))
        buffer = replay.add(state.buffer, transition)
        done = info["episode_done"]
        utility = jnp.sum(state.w * info["episode_return"], axis=-1)
        last_utility = jnp.where(done, utility, state.last_utility)
        w = jnp.where(done[:, None], sample_preferences(pref_key, num_envs, m), state.w)   # new episode, new ω

        # UPDATE NETWORK: one gradient step per env-step index t > learning_starts with t % train_frequency == 0.
        lam = homotopy_lambda(first / config.total_timesteps, config.homotopy_initial, config.homotopy_base)
        lam = lam if config.homotopy else jnp.float32(0.0)
        start = jnp.maximum(first, config.learning_starts + 1)
        num_grad_steps = count_multiples(start, last, period)

        def gradient_step(_, carry):
            params, opt_state, key, _ = carry
            key, sample_key, w_key = jax.random.split(key, 3)
            batch = replay.sample(buffer, sample_key, config.batch_size)
            ws = sample_preferences(w_key, n_w, m)
            (loss, _), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, state.target_params, batch, ws, lam)
            updates, opt_state = tx.update(grads, opt_state, params)
            return optax.apply_updates(params, updates), opt_state, key, loss

        params, opt_state, key, loss = jax.lax.fori_loop(
            0, num_grad_steps, gradient_step, (state.params, state.opt_state, key, state.loss))

        # UPDATE TARGET NETWORK: once if an index t > learning_starts with t % target_update_interval == 0 was passed.
        do_target = count_multiples(start, last, config.target_update_interval) > 0
        target_params = jax.lax.cond(
            do_target,
            lambda: optax.incremental_update(params, state.target_params, config.tau),
            lambda: state.target_params,
        )

        metrics = {"loss": loss, "epsilon": jnp.asarray(epsilon, jnp.float32),
                   "homotopy_lambda": jnp.asarray(lam, jnp.float32), "buffer_size": buffer.size}
        metrics.update(episode_metrics(info, last_utility))
        new_state = TrainState(params, target_params, opt_state, buffer, env_state, next_obs, w, last_utility,
                               state.preference, key, loss)
        return new_state, metrics

    def act(state: TrainState, obs, key):
        """Greedy action under ``state.preference`` for a batch of raw env observations."""
        return act_with_preference(network, state.params, obs, state.preference)

    trainer = Trainer(init=init, update=update, act=act, num_updates=config.num_updates,
                      env_steps_per_update=num_envs, env=env, env_params=env_params)
    if "report" in {f.name for f in dataclasses.fields(Trainer)}:  # the proposed Trainer.report hook
        report = make_report(config)
        trainer = dataclasses.replace(trainer, report=lambda state, key: report(trainer, state, key))
    return trainer


def episode_metrics(info, last_utility) -> dict[str, jax.Array]:
    """Means over envs of the last completed episode (NaN before any ends): ``episode_return`` is its
    utility ω · R under the preference it was run with, ``episode_return_i`` its return in objective i."""
    valid = info["episodes_completed"] > 0
    n_valid = jnp.maximum(valid.sum(), 1)

    def masked_mean(x):
        x = x.astype(jnp.float32)
        v = valid.reshape(valid.shape + (1,) * (x.ndim - 1))
        return jnp.where(valid.any(), jnp.where(v, x, 0.0).sum(axis=0) / n_valid, jnp.nan)

    vector = masked_mean(info["episode_return"])
    out = {"episode_return": masked_mean(jnp.nan_to_num(last_utility)),
           "episode_length": masked_mean(info["episode_length"])}
    out.update({f"episode_return_{i}": vector[i] for i in range(vector.shape[-1])})
    return out


# ----------------------------------------------------------------------------------------------
# The front: evaluation (pure, jittable) and metrics (host side)
# ----------------------------------------------------------------------------------------------
def evaluate_front(trainer: Trainer, state: TrainState, key, weights, episodes: int, gamma=0.99) -> dict:
    """Discounted (``gamma``, the γ of the env's front) and undiscounted vector returns of the greedy
    policy under each preference of ``weights (W, m)``, vmapped over the weights. Pure and jittable.

    Returns ``{"weights": (W, m), "discounted": (W, m), "undiscounted": (W, m)}``.
    """
    weights = jnp.asarray(weights, jnp.float32)

    def one(w, k):
        st = state._replace(preference=w)
        return rollout_returns(trainer.env, trainer.env_params, lambda obs, kk: trainer.act(st, obs, kk), k,
                               episodes, gamma)

    discounted, undiscounted = jax.vmap(one)(weights, jax.random.split(key, weights.shape[0]))
    return {"weights": weights, "discounted": discounted, "undiscounted": undiscounted}


def make_report(config: Config) -> Callable[[Trainer, Any, jax.Array], dict]:
    """``report(trainer, state, key) -> dict`` for one run's state: the evaluated front
    (``evaluate_front`` over ``front_weights(m, config.front_divisions)``, one jitted program, reused
    across calls for the same trainer) and ``front_metrics``; JSON-ready (lists and floats)."""
    compiled: dict = {}

    def report(trainer: Trainer, state, key) -> dict:
        m = int(np.shape(state.preference)[-1])
        weights = front_weights(m, config.front_divisions)
        if id(trainer) not in compiled:
            compiled.clear()
            compiled[id(trainer)] = jax.jit(
                lambda st, k: evaluate_front(trainer, st, k, weights, config.front_episodes, config.gamma))
        result = jax.device_get(compiled[id(trainer)](state, key))
        metrics = front_metrics(result["discounted"], trainer.env, config.gamma)
        return {"front_weights": weights.tolist(), "front_returns": np.asarray(result["discounted"]).tolist(),
                "front_returns_undiscounted": np.asarray(result["undiscounted"]).tolist(),
                "front_gamma": config.gamma, **metrics}

    return report


if __name__ == "__main__":
    from jaxrl.cli import main

    main(Config, make_train, algorithm="envelope_q")
