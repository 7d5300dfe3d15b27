"""Hindsight Experience Replay (Andrychowicz et al. 2017, NeurIPS, Sec. 3.3 and 4.5): goal relabeling
as pure, jittable functions over a fixed-capacity, on-device buffer of whole episodes.

Layout (``EpisodeBuffer``): episodes are stored as rows of arrays ``[capacity, T, ...]`` where T is
the longest possible episode (the env's time limit), with their true ``length`` L <= T:

* ``states``: the goal-env observation dicts ``{"observation", "achieved_goal", "desired_goal"}``
  of the states s_0 .. s_L, shape ``[capacity, T + 1, ...]``. ``states[e, t + 1]`` is the state a
  transition reached (the pre-reset ``info["final_observation"]`` at the episode's last step);
* ``action``, ``reward``, ``terminated``: per transition t = 0 .. L-1, shape ``[capacity, T]``;
* ``length``: L per episode. Slots past L hold garbage and are never sampled.

The buffer is circular over episodes (the oldest episode is overwritten when it is full), like
``jaxrl.replay`` over transitions.

Sampling (``sample``) draws transitions uniformly over every stored transition (an episode with
probability proportional to its length, then t uniform in [0, L)), and then, with probability
``relabel_prob``, replaces the transition's goal by an achieved goal chosen by ``strategy``
(paper, Sec. 4.5). Goals are always the ``achieved_goal`` of a state some transition *reached*
(s_1 .. s_L of an episode):

* ``future``: a state of the same episode reached at or after this transition's outcome: index
  t' + 1 with t' uniform in [t, L-1] (so t' = t gives the reached state itself and reward 0);
* ``final``: the episode's final state s_L;
* ``episode``: any state of the same episode, t' uniform in [0, L-1];
* ``random``: a state of any stored episode (transitions drawn like the replayed ones).

The paper keeps the original goal and adds k relabeled copies of every transition; sampling with
``relabel_prob = k / (k + 1)`` (``relabel_probability(k)``; k = 4 gives 0.8) replays the same
mixture in expectation (OpenAI baselines' sampled form). The reward of every replayed transition is
recomputed with the env's ``compute_reward(achieved_goal of s_{t+1}, goal)``; its termination is
recomputed with ``compute_terminated`` when the env terminates on success (otherwise the stored
flag is kept).
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp

STRATEGIES = ("future", "final", "episode", "random")


class EpisodeBuffer(NamedTuple):
    states: Any                # dict of [capacity, T + 1, ...]: s_0 .. s_L of each episode
    action: jax.Array          # [capacity, T, *action_shape]
    reward: jax.Array          # [capacity, T]
    terminated: jax.Array      # [capacity, T] float 0/1
    length: jax.Array          # [capacity] int32, L of each episode (0 for empty slots)
    position: jax.Array        # next episode slot to write (int32 scalar)
    size: jax.Array            # number of stored episodes, <= capacity (int32 scalar)

    @property
    def capacity(self) -> int:
        return self.length.shape[0]

    @property
    def max_length(self) -> int:
        return self.action.shape[1]


class Transition(NamedTuple):
    obs: Any                   # goal-env observation dict of s_t, with the (relabeled) desired_goal
    action: jax.Array
    reward: jax.Array          # recomputed for the (relabeled) goal
    next_obs: Any              # observation dict of s_{t+1}, with the same desired_goal
    terminated: jax.Array      # float 0/1
    relabeled: jax.Array       # bool: the goal was replaced


def relabel_probability(k: int) -> float:
    """The fraction of replayed transitions with a hindsight goal when k goals are added per
    original one: k / (k + 1) (k = 4 -> 0.8)."""
    if isinstance(k, bool) or not isinstance(k, int) or k < 0:
        raise ValueError(f"replay k must be an integer >= 0, got {k!r}")
    return k / (k + 1)


def check_strategy(strategy: str) -> None:
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown HER strategy {strategy!r}; allowed: {', '.join(STRATEGIES)}")


def init(capacity: int, max_length: int, example_obs: Any, action_dtype=jnp.int32,
         action_shape: tuple[int, ...] = ()) -> EpisodeBuffer:
    """An empty buffer of ``capacity`` episodes of at most ``max_length`` steps, for observation
    dicts shaped like ``example_obs`` (one unbatched observation) and actions of ``action_shape``
    (``()``: a discrete action index; e.g. ``(2,)`` with ``jnp.float32`` for a 2-D continuous action)."""
    if capacity < 1 or max_length < 1:
        raise ValueError(f"capacity and max_length must be >= 1, got {capacity} and {max_length}")
    states = jax.tree.map(
        lambda x: jnp.zeros((capacity, max_length + 1) + jnp.shape(x), jnp.asarray(x).dtype), example_obs)
    zeros = jnp.zeros((capacity, max_length), jnp.float32)
    return EpisodeBuffer(states, jnp.zeros((capacity, max_length) + tuple(action_shape), action_dtype), zeros, zeros,
                         jnp.zeros((capacity,), jnp.int32), jnp.int32(0), jnp.int32(0))


def add(buffer: EpisodeBuffer, states, action, reward, terminated, length) -> EpisodeBuffer:
    """Write a batch of ``m`` episodes (leading axis m <= capacity) at the write position, wrapping.

    ``states`` has shape ``[m, T + 1, ...]``, ``action``/``reward``/``terminated`` ``[m, T]``,
    ``length`` ``[m]``.
    """
    m = length.shape[0]
    idx = (buffer.position + jnp.arange(m)) % buffer.capacity

    def put(store, x):
        return store.at[idx].set(jnp.asarray(x).astype(store.dtype))

    return EpisodeBuffer(
        jax.tree.map(put, buffer.states, states), put(buffer.action, action), put(buffer.reward, reward),
        put(buffer.terminated, terminated), put(buffer.length, length),
        (buffer.position + m) % buffer.capacity, jnp.minimum(buffer.size + m, buffer.capacity))


def sample_transitions(key, length: jax.Array, size: jax.Array, batch_size: int):
    """(episode, t) of ``batch_size`` transitions uniform over every stored transition.

    Only the first ``size`` slots of ``length`` are filled (the buffer fills them in order before it
    wraps). A uniform index into the concatenation of all stored transitions is mapped back to its
    episode through the cumulative lengths (inverse CDF: O(capacity + batch log capacity), so an
    episode is drawn with probability proportional to its length and t is uniform in [0, L)).
    """
    filled = jnp.arange(length.shape[0]) < size
    weights = jnp.where(filled, length, 0).astype(jnp.int32)
    ends = jnp.cumsum(weights)
    index = jax.random.randint(key, (batch_size,), 0, jnp.maximum(ends[-1], 1))
    episode = jnp.searchsorted(ends, index, side="right").astype(jnp.int32)
    episode = jnp.minimum(episode, length.shape[0] - 1)      # only reached when the buffer is empty
    t = index - (ends[episode] - weights[episode])
    return episode, jnp.clip(t, 0, None).astype(jnp.int32)


def _uniform_int(key, low, high):
    """One integer uniform in [low, high) per element (``low``/``high`` arrays of the same shape)."""
    u = jax.random.uniform(key, jnp.shape(high))
    return jnp.minimum(low + jnp.floor(u * (high - low)).astype(jnp.int32), high - 1)


def hindsight_goal_index(key, strategy: str, episode, t, length: jax.Array, size: jax.Array):
    """(goal episode, goal state index) for each sampled transition under ``strategy``.

    The goal is ``states["achieved_goal"][goal_episode, goal_index]`` with goal_index in [1, L]
    (a state reached by a transition); see the module docstring for each strategy.
    """
    check_strategy(strategy)
    ep_length = length[episode]
    if strategy == "future":
        return episode, _uniform_int(key, t, ep_length) + 1
    if strategy == "final":
        return episode, ep_length
    if strategy == "episode":
        return episode, _uniform_int(key, jnp.zeros_like(t), ep_length) + 1
    # random: a reached state of any stored episode, drawn like a replayed transition
    other, t_other = sample_transitions(key, length, size, t.shape[0])
    return other, t_other + 1


def relabel(key, buffer: EpisodeBuffer, episode, t, strategy: str, relabel_prob,
            compute_reward: Callable, compute_terminated: Callable | None = None) -> Transition:
    """The transitions (episode, t) of ``buffer``, each with its goal replaced by a hindsight goal
    with probability ``relabel_prob`` (HER, Andrychowicz et al. 2017, Alg. 1 and Sec. 4.5).

    ``compute_reward(achieved_goal, desired_goal)`` recomputes every reward for the goal replayed;
    ``compute_terminated(achieved_goal, desired_goal)``, when given, recomputes termination (for envs
    that terminate on success), otherwise the stored flag is kept. ``relabel_prob`` may be traced.
    """
    coin_key, goal_key = jax.random.split(key)
    goal_episode, goal_index = hindsight_goal_index(goal_key, strategy, episode, t, buffer.length, buffer.size)
    hindsight_goal = buffer.states["achieved_goal"][goal_episode, goal_index]
    original_goal = buffer.states["desired_goal"][episode, t]
    relabeled = jax.random.uniform(coin_key, t.shape) < relabel_prob
    mask = relabeled.reshape(relabeled.shape + (1,) * (hindsight_goal.ndim - 1))
    goal = jnp.where(mask, hindsight_goal, original_goal)

    obs = jax.tree.map(lambda x: x[episode, t], buffer.states)
    next_obs = jax.tree.map(lambda x: x[episode, t + 1], buffer.states)
    obs = {**obs, "desired_goal": goal}
    next_obs = {**next_obs, "desired_goal": goal}
    reward = compute_reward(next_obs["achieved_goal"], goal).astype(jnp.float32)
    terminated = buffer.terminated[episode, t]
    if compute_terminated is not None:
        terminated = compute_terminated(next_obs["achieved_goal"], goal).astype(jnp.float32)
    return Transition(obs, buffer.action[episode, t], reward, next_obs, terminated, relabeled)


def sample(key, buffer: EpisodeBuffer, batch_size: int, strategy: str, relabel_prob,
           compute_reward: Callable, compute_terminated: Callable | None = None) -> Transition:
    """``batch_size`` transitions uniform over the buffer, relabeled by ``relabel`` (HER replay).

    ``relabel_prob=0`` is plain experience replay of the original goals (with rewards recomputed,
    which for a goal env equal the stored ones).
    """
    transition_key, relabel_key = jax.random.split(key)
    episode, t = sample_transitions(transition_key, buffer.length, buffer.size, batch_size)
    return relabel(relabel_key, buffer, episode, t, strategy, relabel_prob, compute_reward, compute_terminated)
