"""Hindsight relabeling (jaxrl.relabel) on hand-built episodes whose achieved goals name their state.

Every achieved goal is a 1-vector holding ``100 * episode + state index``, so each relabeled goal
tells exactly which stored state it came from. The original desired goal of episode e is ``-1 - e``.
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrl import relabel

T = 4
LENGTHS = (4, 2, 3)          # three stored episodes in a buffer of capacity 5 (two slots empty)
CAPACITY = 5
KEY = jax.random.PRNGKey(0)


def compute_reward(achieved, desired):
    return -(jnp.any(achieved != desired, axis=-1)).astype(jnp.float32)


def hand_buffer(lengths=LENGTHS, capacity=CAPACITY):
    m = len(lengths)
    index = jnp.arange(T + 1, dtype=jnp.float32)
    episode = jnp.arange(m, dtype=jnp.float32)[:, None]
    states = {
        "observation": jnp.full((m, T + 1, 1), 7.0),
        "achieved_goal": (100 * episode + index)[..., None],                        # [m, T+1, 1]
        "desired_goal": jnp.broadcast_to(-1.0 - episode, (m, T + 1))[..., None],
    }
    action = jnp.broadcast_to(jnp.arange(T, dtype=jnp.int32), (m, T))
    reward = -jnp.ones((m, T))
    terminated = jnp.zeros((m, T))
    buffer = relabel.init(capacity, T, jax.tree.map(lambda x: x[0, 0], states))
    return relabel.add(buffer, states, action, reward, terminated, jnp.array(lengths, jnp.int32))


def decode(goal):
    """(episode, state index) of an achieved goal value 100 e + j."""
    value = np.asarray(goal)[..., 0].astype(int)
    return value // 100, value % 100


def draw(strategy, relabel_prob=1.0, n=4000, buffer=None, key=KEY, **kw):
    buffer = hand_buffer() if buffer is None else buffer
    fn = jax.jit(lambda k: relabel.sample(k, buffer, n, strategy, relabel_prob, compute_reward, **kw))
    return buffer, jax.tree.map(np.asarray, fn(key))


def episode_and_t(batch):
    """(episode, t) of sampled transitions, read back from the obs's achieved goal."""
    return decode(batch.obs["achieved_goal"])


# ----------------------------------------------------------------------------------------------
# The buffer and uniform transition sampling
# ----------------------------------------------------------------------------------------------
def test_add_wraps_around_the_episode_capacity():
    buffer = hand_buffer()
    assert int(buffer.size) == 3 and int(buffer.position) == 3
    np.testing.assert_array_equal(buffer.length, [4, 2, 3, 0, 0])
    more = hand_buffer(lengths=(1, 1, 1), capacity=3)         # a batch of 3 into capacity 3: full
    assert int(more.size) == 3 and int(more.position) == 0
    wrapped = relabel.add(buffer, jax.tree.map(lambda x: x[:3], hand_buffer().states), buffer.action[:3],
                          buffer.reward[:3], buffer.terminated[:3], jnp.array([1, 2, 3], jnp.int32))
    np.testing.assert_array_equal(wrapped.length, [3, 2, 3, 1, 2])   # slots 3, 4, then 0 again
    assert int(wrapped.size) == 5 and int(wrapped.position) == 1


def test_transitions_are_uniform_over_stored_transitions():
    buffer = hand_buffer()
    episode, t = jax.jit(lambda k: relabel.sample_transitions(k, buffer.length, buffer.size, 90_000))(KEY)
    episode, t = np.asarray(episode), np.asarray(t)
    assert episode.max() < 3                                   # never an empty slot
    assert (t < np.asarray(LENGTHS)[episode]).all() and (t >= 0).all()   # never past an episode's end
    pairs = episode * T + t
    counts = np.bincount(pairs, minlength=3 * T).reshape(3, T)
    expected = 90_000 / sum(LENGTHS)                           # 9 transitions, 1/9 each
    valid = np.arange(T)[None, :] < np.asarray(LENGTHS)[:, None]
    np.testing.assert_allclose(counts[valid], expected, rtol=0.05)
    assert counts[~valid].sum() == 0


# ----------------------------------------------------------------------------------------------
# Strategies
# ----------------------------------------------------------------------------------------------
def test_final_is_the_episodes_last_achieved_goal():
    _, batch = draw("final")
    e, t = episode_and_t(batch)
    goal_e, goal_j = decode(batch.obs["desired_goal"])
    np.testing.assert_array_equal(goal_e, e)
    np.testing.assert_array_equal(goal_j, np.asarray(LENGTHS)[e])      # s_L of the same episode
    np.testing.assert_array_equal(batch.next_obs["desired_goal"], batch.obs["desired_goal"])
    # reward 0 exactly for the episode's last transition (its next state is the goal)
    np.testing.assert_array_equal(batch.reward, np.where(t == np.asarray(LENGTHS)[e] - 1, 0.0, -1.0))


def test_future_goals_are_at_or_after_the_next_state_of_the_same_episode():
    _, batch = draw("future", n=20_000)
    e, t = episode_and_t(batch)
    goal_e, goal_j = decode(batch.obs["desired_goal"])
    np.testing.assert_array_equal(goal_e, e)
    assert (goal_j >= t + 1).all() and (goal_j <= np.asarray(LENGTHS)[e]).all()
    # uniform over the L - t reachable future states: check episode 0 (L = 4) at t = 1 -> j in {2, 3, 4}
    pick = (e == 0) & (t == 1)
    counts = np.bincount(goal_j[pick], minlength=T + 1)[2:]
    np.testing.assert_allclose(counts / pick.sum(), 1 / 3, atol=0.05)
    # the last transition of an episode can only be relabeled with its own next state: reward 0
    last = t == np.asarray(LENGTHS)[e] - 1
    np.testing.assert_array_equal(goal_j[last], t[last] + 1)
    np.testing.assert_array_equal(batch.reward[last], 0.0)
    np.testing.assert_array_equal(batch.reward, np.where(goal_j == t + 1, 0.0, -1.0))


def test_episode_goals_are_any_reached_state_of_the_same_episode():
    _, batch = draw("episode", n=20_000)
    e, t = episode_and_t(batch)
    goal_e, goal_j = decode(batch.obs["desired_goal"])
    np.testing.assert_array_equal(goal_e, e)
    assert (goal_j >= 1).all() and (goal_j <= np.asarray(LENGTHS)[e]).all()
    assert ((goal_j <= t) & (e == 0)).any()                    # past states too, unlike future
    counts = np.bincount(goal_j[e == 0], minlength=T + 1)[1:]
    np.testing.assert_allclose(counts / (e == 0).sum(), 1 / 4, atol=0.03)


def test_random_goals_come_from_any_stored_episode():
    _, batch = draw("random", n=20_000)
    e, _ = episode_and_t(batch)
    goal_e, goal_j = decode(batch.obs["desired_goal"])
    assert goal_e.max() < 3 and (goal_j >= 1).all() and (goal_j <= np.asarray(LENGTHS)[goal_e]).all()
    # reached states of all episodes, uniformly: 9 of them, 1/9 each, independent of the replayed one
    np.testing.assert_allclose(np.bincount(goal_e, minlength=3) / goal_e.size, np.asarray(LENGTHS) / 9, atol=0.02)
    assert (goal_e != e).mean() > 0.5


@pytest.mark.parametrize("strategy", relabel.STRATEGIES)
def test_no_relabeling_keeps_the_original_goal_and_reward(strategy):
    buffer, batch = draw(strategy, relabel_prob=0.0, n=500)
    e, t = episode_and_t(batch)
    assert not batch.relabeled.any()
    np.testing.assert_array_equal(batch.obs["desired_goal"][:, 0], -1.0 - e)
    np.testing.assert_array_equal(batch.reward, -1.0)          # no original goal is ever reached here
    np.testing.assert_array_equal(batch.action, t)             # actions were stored as t
    np.testing.assert_array_equal(decode(batch.next_obs["achieved_goal"])[1], t + 1)


def test_relabel_frequency_is_k_over_k_plus_one():
    assert relabel.relabel_probability(4) == 0.8
    assert relabel.relabel_probability(0) == 0.0 and relabel.relabel_probability(1) == 0.5
    n = 40_000
    _, batch = draw("future", relabel_prob=relabel.relabel_probability(4), n=n)
    frac = batch.relabeled.mean()
    assert abs(frac - 0.8) < 4 * np.sqrt(0.8 * 0.2 / n), frac
    # exactly the relabeled transitions carry an achieved (non-negative) goal
    np.testing.assert_array_equal(batch.relabeled, batch.obs["desired_goal"][:, 0] >= 0)


def test_termination_is_recomputed_when_the_env_terminates_on_success():
    def compute_terminated(achieved, desired):
        return jnp.all(achieved == desired, axis=-1)

    _, batch = draw("final", compute_terminated=compute_terminated)
    e, t = episode_and_t(batch)
    np.testing.assert_array_equal(batch.terminated, (t == np.asarray(LENGTHS)[e] - 1).astype(np.float32))
    _, plain = draw("final")                                    # without it: the stored flags (0)
    np.testing.assert_array_equal(plain.terminated, 0.0)


def test_bad_arguments():
    with pytest.raises(ValueError, match="unknown HER strategy 'best'; allowed: future, final, episode, random"):
        draw("best")
    with pytest.raises(ValueError, match="replay k must be an integer >= 0"):
        relabel.relabel_probability(-1)
    with pytest.raises(ValueError, match="capacity and max_length must be >= 1"):
        relabel.init(0, 4, {"achieved_goal": jnp.zeros(1)})


def test_same_key_same_batch_and_vmap_over_buffers():
    buffer = hand_buffer()
    _, a = draw("future", relabel_prob=0.8, n=64, buffer=buffer)
    _, b = draw("future", relabel_prob=0.8, n=64, buffer=buffer)
    jax.tree.map(np.testing.assert_array_equal, a, b)
    buffers = jax.tree.map(lambda x: jnp.stack([x, x]), buffer)
    keys = jnp.stack([KEY, jax.random.PRNGKey(1)])
    out = jax.jit(jax.vmap(lambda bf, k: relabel.sample(k, bf, 64, "future", 0.8, compute_reward)))(buffers, keys)
    jax.tree.map(lambda x, y: np.testing.assert_array_equal(x[0], y), out, jax.tree.map(jnp.asarray, a))


def test_init_stores_continuous_actions_with_their_shape():
    obs = {"observation": jnp.zeros(2), "achieved_goal": jnp.zeros(2), "desired_goal": jnp.zeros(2)}
    assert relabel.init(3, 5, obs).action.shape == (3, 5)
    buffer = relabel.init(3, 5, obs, jnp.float32, (2,))
    assert buffer.action.shape == (3, 5, 2) and buffer.action.dtype == jnp.float32
