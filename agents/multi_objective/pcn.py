"""Pareto Conditioned Networks (Reymond, Bargiacchi & Nowé 2022, "Pareto Conditioned Networks", AAMAS).

One policy ``π(a | s, R̂, ĥ)`` conditioned on a *command*: the return ``R̂`` (a vector, one entry per
objective) it should still collect and the horizon ``ĥ`` (steps) it has left. It is trained by plain
supervised learning (paper, Sec. 4: the cross-entropy of the action taken) on the episodes of a
small buffer: every stored step ``(s_t, a_t)`` is labelled with its own episode's return-to-go
``R_t = Σ_{k≥t} γ^{k−t} r_k`` and leftover horizon ``h_t = L − t``. The buffer keeps only the best
episodes (paper, Sec. 4.4): each is scored by the distance of its return to the nearest
non-dominated return in the buffer (0 for the non-dominated ones), duplicates of a non-dominated
return lose 1e-5, and episodes in a crowded part of the front (crowding distance ≤ 0.2, Deb et al.
2002) have their score doubled; a full buffer replaces its lowest-scored episode. New episodes
score +1 until the next scoring, so they stay at least one round.

Exploration (paper, Sec. 4): a command is drawn from the non-dominated returns among the
``num_er_episodes`` best episodes: a random one of them, its horizon minus 2, and one random
objective raised by ``U(0, σ_o)`` (σ: the spread of those returns). During an episode the command is
updated after every step: ``R̂ ← min(R̂ − r, max_return)``, ``ĥ ← max(ĥ − 1, 1)``; actions are sampled
from π while training, greedy when evaluating.

Everything is one compiled program: ``train(key)`` is a ``lax.scan`` over rounds; a round takes
``num_model_updates`` gradient steps on batches from the buffer, scores the buffer and builds the
command set, then steps ``num_envs`` vectorized envs for ``num_steps`` steps each. Each env keeps
the trajectory of its episode in progress; when the episode ends (terminated or truncated) it is
written into the buffer and the env draws a fresh command. (morl-baselines runs ``num_step_episodes``
whole episodes per round under one shared command; here episodes run in parallel across round
boundaries and each draws its own command, so a round is a fixed number of env steps.) The first
``num_er_episodes`` episodes act uniformly at random and no gradient step is taken before they are in.

Defaults: morl-baselines' ``PCN`` (Felten et al. 2023, "A Toolkit for Reliable Benchmarking and
Research in Multi-Objective Reinforcement Learning", NeurIPS; ``multi_policy/pcn/pcn.py``, a refactor
of the authors' code github.com/mathieu-reymond/pareto-conditioned-networks) and its Deep Sea Treasure
example (``examples/pcn_dst.py``): Adam lr 1e-3, batch 256, 64 hidden units (state and command
embeddings ``sigmoid(Dense)``, multiplied, then ``Dense-ReLU-Dense`` to action log-probabilities),
γ 1, 20 random episodes first, 50 gradient steps and 10 episodes per round, a crowding threshold
of 0.2, command scaling ``(1, ..., 1, 0.1)`` (returns, horizon), ``max_return`` 100 per objective
(the DST example: ``100,0``). The buffer holds 100 episodes (the ``train`` default; the DST example: 50).

The front (``evaluate_front``): the greedy policy conditioned on each non-dominated return in the
buffer (with that episode's horizon) is rolled out in the env; its discounted (``front_gamma``) and
undiscounted returns are the approximate front that ``front_metrics`` scores. ``act(state, obs, key)``
and the CLI's evaluation condition on one target, the non-dominated return with the highest utility
``Config.preference · R`` (equal weights by default); ``act`` is the first step of that episode (it
cannot count the command down), ``Trainer.evaluate`` runs whole episodes and updates the command.

Run:  python agents/multi_objective/pcn.py --env DeepSeaTreasure-v0 --num-seeds 4 --max-return 100,0
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxrl import envs
from jaxrl.config import ConfigError, require, require_positive, require_unit_interval
from jaxrl.mo_evaluation import front_metrics, num_objectives_of, parse_preference
from jaxrl.trainer import Trainer
from jaxrl.wrappers import EpisodeStatistics, VectorEnv


@dataclasses.dataclass(frozen=True)
class Config:
    env: str = "DeepSeaTreasure-v0"
    """Environment id of a multi-objective env (vector reward, ``num_objectives``); discrete actions only."""
    total_timesteps: int = 100_000
    """Env steps per run (over all parallel envs); rounds = total_timesteps // (num_envs * num_steps)."""
    lr: float = 1e-3
    """Adam learning rate."""
    batch_size: int = 256
    """(step, command) pairs per gradient step, drawn from uniformly chosen buffer episodes."""
    hidden_dim: int = 64
    """Width of the state and command embeddings and of the hidden layer of the policy head."""
    gamma: float = 1.0
    """Discount of the returns-to-go the policy is conditioned on (the paper's γ = 1)."""
    num_envs: int = 10
    """Parallel envs, each running its own episodes (morl-baselines' num_step_episodes per round)."""
    num_steps: int = 10
    """Env steps per env per round (a round collects num_envs * num_steps env steps)."""
    num_model_updates: int = 50
    """Gradient steps per round."""
    num_er_episodes: int = 20
    """Random episodes collected before learning starts; also how many best buffer episodes the
    exploration commands are drawn from."""
    buffer_size: int = 100
    """Episodes the buffer holds (the best ones by the crowding-distance score)."""
    crowding_threshold: float = 0.2
    """Episodes whose crowding distance is at most this have their (negative) score doubled."""
    horizon_offset: int = 2
    """Exploration commands ask for the chosen episode's horizon minus this (at least 1)."""
    scaling_factor: str = ""
    """Comma-separated scale of each command entry (num_objectives returns, then the horizon);
    empty: 1 for every return and 0.1 for the horizon."""
    max_return: str = ""
    """Comma-separated upper bound of the desired return in each objective (the command is clipped
    to it as rewards come in); empty: 100 for every objective."""
    preference: str = ""
    """Preference ω of act() and of the CLI's evaluation, comma-separated, e.g. "0.3,0.7": they
    condition on the non-dominated buffer return of highest ω · R; empty: equal weights."""
    front_gamma: float = 0.99
    """Discount of the evaluated front that ``front_metrics`` scores against ``pareto_front(front_gamma)``."""
    front_episodes: int = 1
    """Episodes per target when evaluating the front (1 is exact for deterministic envs)."""

    @property
    def num_updates(self) -> int:
        return self.total_timesteps // (self.num_envs * self.num_steps)


# ----------------------------------------------------------------------------------------------
# Parsing helpers
# ----------------------------------------------------------------------------------------------
def parse_vector(text: str, size: int, name: str, default) -> np.ndarray:
    """``"1,1,0.1"`` -> array of ``size`` finite floats; ``""`` -> ``default``. ConfigError otherwise."""
    if not text.strip():
        return np.asarray(default, np.float32)
    try:
        values = np.array([float(s) for s in text.replace(" ", "").split(",") if s], np.float32)
    except ValueError:
        raise ConfigError(f"{name} must be comma-separated numbers, got {text!r}") from None
    if values.shape != (size,) or not np.all(np.isfinite(values)):
        raise ConfigError(f"{name} must have {size} finite values, got {text!r}")
    return values


def parse_scaling_factor(text: str, num_objectives: int) -> np.ndarray:
    """Scale of the command ``(num_objectives + 1,)``: returns, then horizon (default 1, ..., 1, 0.1)."""
    default = np.append(np.ones(num_objectives), 0.1)
    return parse_vector(text, num_objectives + 1, "scaling_factor (one value per objective, then the horizon)",
                        default)


def parse_max_return(text: str, num_objectives: int) -> np.ndarray:
    return parse_vector(text, num_objectives, "max_return (one value per objective)", np.full(num_objectives, 100.0))


# ----------------------------------------------------------------------------------------------
# Network
# ----------------------------------------------------------------------------------------------
class PCNNetwork(nn.Module):
    """Action log-probabilities ``(batch, num_actions)`` of observations under commands
    ``(desired_return (batch, m), desired_horizon (batch,))`` (paper, Sec. 4): the state embedding
    ``sigmoid(Dense(s))`` times the command embedding ``sigmoid(Dense(c · scale))``, then
    ``Dense-ReLU-Dense`` and a log-softmax (morl-baselines' ``DiscreteActionsDefaultModel``)."""

    num_actions: int
    scaling_factor: tuple[float, ...]
    hidden_dim: int = 64

    @nn.compact
    def __call__(self, obs, desired_return, desired_horizon):
        s = obs.astype(jnp.float32).reshape((obs.shape[0], -1))
        c = jnp.concatenate([desired_return, desired_horizon[:, None]], axis=-1).astype(jnp.float32)
        c = c * jnp.asarray(self.scaling_factor, jnp.float32)
        x = nn.sigmoid(nn.Dense(self.hidden_dim)(s)) * nn.sigmoid(nn.Dense(self.hidden_dim)(c))
        x = nn.relu(nn.Dense(self.hidden_dim)(x))
        return jax.nn.log_softmax(nn.Dense(self.num_actions)(x))


def make_network(config: Config, num_actions: int, num_objectives: int) -> PCNNetwork:
    scale = tuple(float(v) for v in parse_scaling_factor(config.scaling_factor, num_objectives))
    return PCNNetwork(num_actions, scale, config.hidden_dim)


def pcn_loss(log_probs, actions):
    """``L = −mean_t log π(a_t | s_t, R_t, h_t)``: the cross-entropy of the actions taken, conditioned on
    the buffer's own returns-to-go ``R_t`` and horizons ``h_t`` (Reymond et al. 2022, Sec. 4, the
    supervised loss of PCN; ``log_probs (B, A)``, ``actions (B,)``)."""
    return -jnp.mean(jnp.take_along_axis(log_probs, actions[:, None], axis=-1))


# ----------------------------------------------------------------------------------------------
# Returns, dominance, crowding distance, buffer scores, commands (pure jnp)
# ----------------------------------------------------------------------------------------------
def returns_to_go(rewards, length, gamma):
    """``R_t = Σ_{t≤k<L} γ^{k−t} r_k`` for ``rewards (T, m)`` of an episode of ``length`` L (steps
    from L on are ignored); 0 from L on. Returns ``(T, m)``.

    The recursion ``R_t = r_t + γ R_{t+1}`` as a reverse associative scan (O(T log T), no T x T matrix).
    """
    horizon = rewards.shape[0]
    r = jnp.where((jnp.arange(horizon) < length)[:, None], rewards, 0.0)
    decay = jnp.full_like(r, gamma)

    def combine(later, earlier):     # reverse scan: (a, b) with R = b + a · R_later
        a_later, b_later = later
        a_earlier, b_earlier = earlier
        return a_earlier * a_later, b_earlier + a_earlier * b_later

    return jax.lax.associative_scan(combine, (decay, r), reverse=True)[1]


def dominated(points, valid):
    """``dominated[i]``: some valid ``j`` has ``points[j] >= points[i]`` everywhere and ``>`` somewhere.
    Invalid points count as dominated. ``points (n, m)``, ``valid (n,)``."""
    geq = jnp.all(points[:, None, :] >= points[None, :, :], axis=-1)   # geq[j, i]: j >= i
    gt = jnp.any(points[:, None, :] > points[None, :, :], axis=-1)
    return jnp.any(geq & gt & valid[:, None], axis=0) | ~valid


def crowding_distance(points, valid):
    """Crowding distance (Deb et al. 2002, NSGA-II) of each valid point among the valid points.

    Each objective is min-max normalized over the valid points; along each objective the points are
    sorted (ties by index), the two extremes get 1 and the others the gap between their two
    neighbours; the distances are summed over objectives. Invalid points get 0.
    """
    n = points.shape[0]
    lo = jnp.min(jnp.where(valid[:, None], points, jnp.inf), axis=0)
    hi = jnp.max(jnp.where(valid[:, None], points, -jnp.inf), axis=0)
    norm = (points - lo) / (hi - lo + 1e-8)
    norm = jnp.where(valid[:, None], norm, jnp.inf)                   # invalid points sort last
    count = valid.sum()

    def one_objective(x):
        order = jnp.argsort(x, stable=True)
        xs = x[order]
        pos = jnp.arange(n)
        gap = jnp.abs(jnp.roll(xs, -1) - jnp.roll(xs, 1))
        dist = jnp.where((pos == 0) | (pos == count - 1), 1.0, gap)
        dist = jnp.where(pos < count, dist, 0.0)
        return jnp.zeros(n).at[order].set(dist)

    return jnp.where(valid, jax.vmap(one_objective, in_axes=1, out_axes=1)(norm).sum(axis=1), 0.0)


def episode_scores(returns, valid, crowding_threshold):
    """Reymond et al. (2022), Sec. 4.4: the score each buffer episode keeps its place by.

    ``−(distance of its return to the nearest non-dominated return)``; every episode but the first
    of each distinct non-dominated return loses 1e-5 more; an episode whose crowding distance is at
    most ``crowding_threshold`` has its score doubled. Invalid slots score −inf.
    """
    n = returns.shape[0]
    nd = ~dominated(returns, valid)
    dist = jnp.linalg.norm(returns[:, None, :] - returns[None, :, :], axis=-1)
    score = -jnp.min(jnp.where(nd[None, :], dist, jnp.inf), axis=1)
    same = jnp.all(returns[:, None, :] == returns[None, :, :], axis=-1)
    earlier_twin = jnp.any(same & nd[None, :] & (jnp.arange(n)[None, :] < jnp.arange(n)[:, None]), axis=1)
    first_of_front = nd & ~earlier_twin
    score = jnp.where(first_of_front, score, score - 1e-5)
    crowded = crowding_distance(returns, valid) <= crowding_threshold
    score = jnp.where(crowded, 2.0 * score, score)
    return jnp.where(valid, score, -jnp.inf)


class Commands(NamedTuple):
    """The exploration command set of a round: candidate returns and horizons with a mask, and the
    per-objective spread σ of the candidates."""
    returns: jax.Array       # (n, m)
    horizons: jax.Array      # (n,)
    valid: jax.Array         # (n,) bool: a non-dominated return among the n best episodes
    spread: jax.Array        # (m,)


def command_set(returns, lengths, scores, n: int) -> Commands:
    """The non-dominated returns among the ``n`` best-scored episodes, with their horizons and the
    standard deviation (over them) of each objective (Reymond et al. 2022, Sec. 4)."""
    best_scores, best = jax.lax.top_k(scores, n)
    r, h = returns[best], lengths[best].astype(jnp.float32)
    valid = ~dominated(r, best_scores > -jnp.inf)
    count = jnp.maximum(valid.sum(), 1)
    mean = jnp.sum(jnp.where(valid[:, None], r, 0.0), axis=0) / count
    var = jnp.sum(jnp.where(valid[:, None], (r - mean) ** 2, 0.0), axis=0) / count
    return Commands(r, h, valid, jnp.sqrt(var))


def sample_command(key, commands: Commands, horizon_offset):
    """One exploration command: a random candidate, its horizon − ``horizon_offset`` (at least 1),
    and one random objective raised by ``U(0, σ_o)``. Returns ``(desired_return (m,), horizon ())``."""
    pick_key, obj_key, noise_key = jax.random.split(key, 3)
    i = jax.random.categorical(pick_key, jnp.where(commands.valid, 0.0, -jnp.inf))
    m = commands.returns.shape[-1]
    o = jax.random.randint(obj_key, (), 0, m)
    raise_by = jax.random.uniform(noise_key) * commands.spread[o]
    desired = commands.returns[i].at[o].add(raise_by)
    return desired, jnp.maximum(commands.horizons[i] - horizon_offset, 1.0)


def next_command(desired_return, desired_horizon, reward, max_return):
    """The command after a step with ``reward``: ``R̂ ← min(R̂ − r, max_return)``, ``ĥ ← max(ĥ − 1, 1)``."""
    return jnp.minimum(desired_return - reward, max_return), jnp.maximum(desired_horizon - 1.0, 1.0)


# ----------------------------------------------------------------------------------------------
# Training
# ----------------------------------------------------------------------------------------------
class EpisodeBuffer(NamedTuple):
    obs: jax.Array           # (C, T, obs_dim)
    action: jax.Array        # (C, T) int32
    rtg: jax.Array           # (C, T, m) returns-to-go (γ = Config.gamma)
    length: jax.Array        # (C,) int32
    score: jax.Array         # (C,) −inf for an empty slot


class Trajectories(NamedTuple):
    """Each env's episode in progress."""
    obs: jax.Array           # (N, T, obs_dim)
    action: jax.Array        # (N, T)
    reward: jax.Array        # (N, T, m)
    t: jax.Array             # (N,) steps taken so far


class TrainState(NamedTuple):
    params: dict
    opt_state: optax.OptState
    buffer: EpisodeBuffer
    traj: Trajectories
    env_state: object
    obs: jax.Array
    desired_return: jax.Array    # (N, m): each env's current command
    desired_horizon: jax.Array   # (N,)
    episodes: jax.Array          # episodes completed so far
    preference: jax.Array        # (m,): the preference of act() and evaluation
    key: jax.Array


def add_episodes(buffer: EpisodeBuffer, traj: Trajectories, done, gamma) -> EpisodeBuffer:
    """Write the finished episodes (``done (N,)``, length ``traj.t``) into the lowest-scored slots
    (empty ones first), each with score +1 (kept until the next scoring)."""
    capacity = buffer.score.shape[0]
    order = jnp.argsort(buffer.score, stable=True)
    rank = jnp.cumsum(done) - 1
    slots = jnp.where(done, order[jnp.clip(rank, 0, capacity - 1)], capacity)   # capacity: dropped
    rtg = jax.vmap(returns_to_go, in_axes=(0, 0, None))(traj.reward, traj.t, gamma)
    return EpisodeBuffer(
        obs=buffer.obs.at[slots].set(traj.obs.astype(buffer.obs.dtype), mode="drop"),
        action=buffer.action.at[slots].set(traj.action, mode="drop"),
        rtg=buffer.rtg.at[slots].set(rtg, mode="drop"),
        length=buffer.length.at[slots].set(traj.t, mode="drop"),
        score=buffer.score.at[slots].set(1.0, mode="drop"),
    )


def make_env(config: Config):
    env, env_params = envs.make(config.env)
    return env, env_params, EpisodeStatistics(env)


def validate(config: Config) -> None:
    """Raise ConfigError for settings that cannot work (before anything compiles)."""
    require_positive(config, "lr", "total_timesteps", "batch_size", "hidden_dim", "num_envs", "num_steps",
                     "num_model_updates", "num_er_episodes", "buffer_size", "front_episodes")
    require_unit_interval(config, "gamma", "front_gamma")
    require((0 < config.front_gamma), f"front_gamma must be in (0, 1], got {config.front_gamma!r}")
    require(config.crowding_threshold >= 0, f"crowding_threshold must be >= 0, got {config.crowding_threshold!r}")
    require(config.horizon_offset >= 0, f"horizon_offset must be >= 0, got {config.horizon_offset}")
    require(config.buffer_size >= config.num_envs,
            f"buffer_size={config.buffer_size} episodes must be at least num_envs={config.num_envs} "
            "(one step can end an episode in every env)")
    require(config.num_er_episodes <= config.buffer_size,
            f"num_er_episodes={config.num_er_episodes} must be at most buffer_size={config.buffer_size}")
    require(config.num_updates >= 1,
            f"total_timesteps={config.total_timesteps} is less than one round of num_envs * num_steps = "
            f"{config.num_envs * config.num_steps} env steps")
    env, env_params = envs.make(config.env)
    envs.require_action_space(config.env, env, env_params, "discrete", "PCN")
    m = num_objectives_of(config.env, env, "PCN")
    parse_scaling_factor(config.scaling_factor, m)
    parse_max_return(config.max_return, m)
    parse_preference(config.preference, m)


def make_train(config: Config) -> Trainer:
    validate(config)
    env, env_params, wrapped = make_env(config)
    num_actions = int(env.action_space(env_params).n)
    m = num_objectives_of(config.env, env, "PCN")
    network = make_network(config, num_actions, m)
    tx = optax.adam(config.lr)
    n_envs, capacity, horizon = config.num_envs, config.buffer_size, int(env_params.max_steps_in_episode)
    max_return = jnp.asarray(parse_max_return(config.max_return, m))
    preference = jnp.asarray(parse_preference(config.preference, m))
    vec_env = VectorEnv(wrapped, n_envs)

    def init(key) -> TrainState:
        key, net_key, env_key = jax.random.split(key, 3)
        obs, env_state = vec_env.reset(env_key, env_params)
        flat = obs.reshape((n_envs, -1)).astype(jnp.float32)
        params = network.init(net_key, flat[:1], jnp.zeros((1, m)), jnp.ones(1))
        d = flat.shape[-1]
        buffer = EpisodeBuffer(jnp.zeros((capacity, horizon, d)), jnp.zeros((capacity, horizon), jnp.int32),
                               jnp.zeros((capacity, horizon, m)), jnp.zeros(capacity, jnp.int32),
                               jnp.full(capacity, -jnp.inf))
        traj = Trajectories(jnp.zeros((n_envs, horizon, d)), jnp.zeros((n_envs, horizon), jnp.int32),
                            jnp.zeros((n_envs, horizon, m)), jnp.zeros(n_envs, jnp.int32))
        return TrainState(params, tx.init(params), buffer, traj, env_state, obs, jnp.zeros((n_envs, m)),
                          jnp.ones(n_envs), jnp.int32(0), preference, key)

    def loss_fn(params, obs, actions, desired_return, desired_horizon):
        log_probs = network.apply(params, obs, desired_return, desired_horizon)
        entropy = -jnp.mean(jnp.sum(jnp.exp(log_probs) * log_probs, axis=-1))
        return pcn_loss(log_probs, actions), entropy

    def sample_batch(buffer: EpisodeBuffer, key):
        ep_key, t_key = jax.random.split(key)
        e = jax.random.categorical(ep_key, jnp.where(buffer.score > -jnp.inf, 0.0, -jnp.inf),
                                   shape=(config.batch_size,))
        length = buffer.length[e]
        t = jnp.minimum((jax.random.uniform(t_key, (config.batch_size,)) * length).astype(jnp.int32), length - 1)
        return buffer.obs[e, t], buffer.action[e, t], buffer.rtg[e, t], (length - t).astype(jnp.float32)

    def learn(state: TrainState):
        def gradient_step(carry, _):
            params, opt_state, key = carry
            key, batch_key = jax.random.split(key)
            batch = sample_batch(state.buffer, batch_key)
            (loss, entropy), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, *batch)
            updates, opt_state = tx.update(grads, opt_state, params)
            return (optax.apply_updates(params, updates), opt_state, key), (loss, entropy)

        key, learn_key = jax.random.split(state.key)
        (params, opt_state, _), (loss, entropy) = jax.lax.scan(
            gradient_step, (state.params, state.opt_state, learn_key), None, config.num_model_updates)
        started = state.episodes >= config.num_er_episodes
        keep = lambda new, old: jax.tree.map(lambda a, b: jnp.where(started, a, b), new, old)
        nan = jnp.float32(jnp.nan)
        return (keep(params, state.params), keep(opt_state, state.opt_state), key,
                jnp.where(started, loss.mean(), nan), jnp.where(started, entropy.mean(), nan))

    def update(state: TrainState, i):
        # UPDATE NETWORK: supervised steps on the buffer (none before num_er_episodes episodes are in)
        params, opt_state, key, loss, entropy = learn(state)

        # SCORE THE BUFFER AND BUILD THE COMMAND SET
        buffer = state.buffer
        valid = buffer.score > -jnp.inf
        scores = episode_scores(buffer.rtg[:, 0], valid, config.crowding_threshold)
        buffer = buffer._replace(score=scores)
        commands = command_set(buffer.rtg[:, 0], buffer.length, scores, config.num_er_episodes)

        # COLLECT EXPERIENCE: num_steps steps of every env; finished episodes enter the buffer
        def env_step(carry, _):
            st, buffer, key, done_count, return_sum = carry
            key, act_key, random_key, step_key, cmd_key = jax.random.split(key, 5)
            flat = st.obs.reshape((n_envs, -1)).astype(jnp.float32)
            log_probs = network.apply(params, flat, st.desired_return, st.desired_horizon)
            sampled = jax.random.categorical(act_key, log_probs)
            random_action = jax.random.randint(random_key, (n_envs,), 0, num_actions)
            action = jnp.where(st.episodes < config.num_er_episodes, random_action, sampled).astype(jnp.int32)
            next_obs, env_state, reward, terminated, truncated, info = vec_env.step(
                step_key, st.env_state, action, env_params)
            reward = reward.astype(jnp.float32)
            rows = jnp.arange(n_envs)
            t = st.traj.t
            traj = Trajectories(st.traj.obs.at[rows, t].set(flat), st.traj.action.at[rows, t].set(action),
                                st.traj.reward.at[rows, t].set(reward), t + 1)
            done = info["episode_done"]
            buffer = add_episodes(buffer, traj, done, config.gamma)
            desired_return, desired_horizon = next_command(st.desired_return, st.desired_horizon, reward, max_return)
            new_return, new_horizon = jax.vmap(lambda k: sample_command(k, commands, config.horizon_offset))(
                jax.random.split(cmd_key, n_envs))
            desired_return = jnp.where(done[:, None], new_return, desired_return)
            desired_horizon = jnp.where(done, new_horizon, desired_horizon)
            traj = traj._replace(t=jnp.where(done, 0, traj.t),
                                 reward=jnp.where(done[:, None, None], 0.0, traj.reward))
            episode_return = info["episode_return"].astype(jnp.float32)
            st = st._replace(traj=traj, env_state=env_state, obs=next_obs, desired_return=desired_return,
                             desired_horizon=desired_horizon, episodes=st.episodes + done.sum().astype(jnp.int32))
            return_sum = return_sum + jnp.sum(jnp.where(done[:, None], episode_return, 0.0), axis=0)
            return (st, buffer, key, done_count + done.sum(), return_sum), None

        key, collect_key = jax.random.split(key)
        carry = (state, buffer, collect_key, jnp.int32(0), jnp.zeros(m))
        (st, buffer, _, done_count, return_sum), _ = jax.lax.scan(env_step, carry, None, config.num_steps)

        mean_return = jnp.where(done_count > 0, return_sum / jnp.maximum(done_count, 1), jnp.nan)
        front_size = jnp.sum(buffer_front(buffer)[2])
        metrics = {"loss": loss, "entropy": entropy, "episodes": st.episodes, "front_size": front_size,
                   "episode_return": jnp.dot(preference, mean_return)}
        metrics.update({f"episode_return_{o}": mean_return[o] for o in range(m)})
        new_state = st._replace(params=params, opt_state=opt_state, buffer=buffer, key=key)
        return new_state, metrics

    def act(state: TrainState, obs, key):
        """Greedy first-step actions under the preferred target (``preferred_target``)."""
        desired_return, desired_horizon = preferred_target(state)
        b = obs.shape[0]
        log_probs = network.apply(state.params, obs.reshape((b, -1)).astype(jnp.float32),
                                  jnp.broadcast_to(desired_return, (b, m)), jnp.full(b, desired_horizon))
        return jnp.argmax(log_probs, axis=-1)

    def evaluate(state: TrainState, key, num_episodes: int) -> dict:
        """The CLI's evaluation: ``num_episodes`` greedy episodes under the preferred target."""
        desired_return, desired_horizon = preferred_target(state)
        out = conditioned_rollout(network, env, env_params, state.params, desired_return, desired_horizon,
                                  max_return, key, num_episodes, config.front_gamma)
        return {"return": out["undiscounted"], "length": out["length"],
                "cost": jnp.zeros(num_episodes, jnp.float32), "success": jnp.zeros(num_episodes, bool)}

    trainer = Trainer(init=init, update=update, act=act, num_updates=config.num_updates,
                      env_steps_per_update=n_envs * config.num_steps, env=env, env_params=env_params,
                      evaluate=evaluate)
    report = make_report(config, network, max_return)
    return dataclasses.replace(trainer, report=lambda state, key: report(trainer, state, key))


def buffer_front(buffer: EpisodeBuffer):
    """``(returns (C, m), horizons (C,), mask (C,))``: each slot's return and length, and which
    slots hold a non-dominated return of the buffer (each distinct return once)."""
    returns = buffer.rtg[:, 0]
    valid = buffer.score > -jnp.inf
    nd = ~dominated(returns, valid)
    n = returns.shape[0]
    same = jnp.all(returns[:, None, :] == returns[None, :, :], axis=-1)
    earlier_twin = jnp.any(same & nd[None, :] & (jnp.arange(n)[None, :] < jnp.arange(n)[:, None]), axis=1)
    return returns, buffer.length.astype(jnp.float32), nd & ~earlier_twin


def preferred_target(state: TrainState):
    """The non-dominated buffer return of highest utility ``state.preference · R`` and its horizon."""
    returns, horizons, mask = buffer_front(state.buffer)
    i = jnp.argmax(jnp.where(mask, returns @ state.preference, -jnp.inf))
    return returns[i], jnp.maximum(horizons[i], 1.0)


# ----------------------------------------------------------------------------------------------
# The front: evaluation (pure, jittable) and metrics (host side)
# ----------------------------------------------------------------------------------------------
def conditioned_rollout(network: PCNNetwork, env, env_params, params, desired_return, desired_horizon,
                        max_return, key, num_episodes: int, gamma) -> dict:
    """``num_episodes`` greedy episodes conditioned on ``(desired_return (m,), desired_horizon ())``,
    the command counted down after every step (``next_command``). Episodes run in parallel from reset
    to their first termination or truncation. Returns per-episode ``discounted`` (``gamma``) and
    ``undiscounted`` vector returns ``(E, m)`` and ``length (E,)``."""
    reset_key, run_key = jax.random.split(key)
    obs, env_state = jax.vmap(env.reset, in_axes=(0, None))(jax.random.split(reset_key, num_episodes), env_params)
    m = desired_return.shape[-1]
    zeros = jnp.zeros((num_episodes, m), jnp.float32)

    def cond(carry):
        t, _, _, alive, *_ = carry
        return alive.any() & (t < env_params.max_steps_in_episode)

    def body(carry):
        t, obs, env_state, alive, discount, ret_d, ret_u, length, dr, dh, key = carry
        key, env_key = jax.random.split(key)
        log_probs = network.apply(params, obs.reshape((num_episodes, -1)).astype(jnp.float32), dr, dh)
        action = jnp.argmax(log_probs, axis=-1)
        obs, env_state, reward, terminated, truncated, _ = jax.vmap(env.step, in_axes=(0, 0, 0, None))(
            jax.random.split(env_key, num_episodes), env_state, action, env_params)
        reward = reward.astype(jnp.float32)
        r = jnp.where(alive[:, None], reward, 0.0)
        dr, dh = next_command(dr, dh, reward, max_return)
        ret_d, ret_u = ret_d + discount[:, None] * r, ret_u + r
        length = length + alive.astype(jnp.int32)
        alive = alive & ~(terminated | truncated)
        return t + 1, obs, env_state, alive, discount * gamma, ret_d, ret_u, length, dr, dh, key

    init = (jnp.int32(0), obs, env_state, jnp.ones(num_episodes, bool), jnp.ones(num_episodes, jnp.float32),
            zeros, zeros, jnp.zeros(num_episodes, jnp.int32), jnp.broadcast_to(desired_return, (num_episodes, m)),
            jnp.full(num_episodes, desired_horizon, jnp.float32), run_key)
    out = jax.lax.while_loop(cond, body, init)
    return {"discounted": out[5], "undiscounted": out[6], "length": out[7]}


def evaluate_front(network: PCNNetwork, env, env_params, state: TrainState, key, max_return, episodes: int,
                   gamma) -> dict:
    """Roll out the greedy policy conditioned on every buffer slot's return and horizon (vmapped over
    the slots); ``mask`` marks the non-dominated targets, whose results are the approximate front.
    Pure and jittable. Returns ``{"targets", "horizons", "mask", "discounted", "undiscounted"}``
    (mean over ``episodes``)."""
    returns, horizons, mask = buffer_front(state.buffer)

    def one(target, h, k):
        out = conditioned_rollout(network, env, env_params, state.params, target, jnp.maximum(h, 1.0), max_return,
                                  k, episodes, gamma)
        return out["discounted"].mean(0), out["undiscounted"].mean(0)

    keys = jax.random.split(key, returns.shape[0])
    discounted, undiscounted = jax.vmap(one)(returns, horizons, keys)
    return {"targets": returns, "horizons": horizons, "mask": mask, "discounted": discounted,
            "undiscounted": undiscounted}


def make_report(config: Config, network: PCNNetwork, max_return) -> Callable[[Trainer, Any, jax.Array], dict]:
    """``report(trainer, state, key) -> dict`` for one run's state: the targets, the evaluated front
    (``evaluate_front``, one jitted program reused across calls for the same trainer) and its
    ``front_metrics`` (γ = ``front_gamma``); JSON-ready (lists and floats)."""
    compiled: dict = {}

    def report(trainer: Trainer, state, key) -> dict:
        if id(trainer) not in compiled:
            compiled.clear()
            compiled[id(trainer)] = jax.jit(lambda st, k: evaluate_front(
                network, trainer.env, trainer.env_params, st, k, max_return, config.front_episodes, config.front_gamma))
        result = jax.device_get(compiled[id(trainer)](state, key))
        mask = np.array(result["mask"], bool)
        if not mask.any():   # no episode has finished yet: the policy under slot 0's (empty) command
            mask[0] = True
        discounted = np.asarray(result["discounted"])[mask]
        metrics = front_metrics(discounted, trainer.env, config.front_gamma)
        return {"front_targets": np.asarray(result["targets"])[mask].tolist(),
                "front_horizons": np.asarray(result["horizons"])[mask].tolist(),
                "front_returns": discounted.tolist(),
                "front_returns_undiscounted": np.asarray(result["undiscounted"])[mask].tolist(),
                "front_gamma": config.front_gamma, **metrics}

    return report


if __name__ == "__main__":
    from jaxrl.cli import main

    main(Config, make_train, algorithm="pcn")
