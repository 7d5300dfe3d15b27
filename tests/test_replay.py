"""The shared on-device replay buffer (jaxrl.replay) used by DQN and SAC."""
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxrl import replay


class Transition(NamedTuple):
    obs: jax.Array
    action: jax.Array
    reward: jax.Array
    next_obs: jax.Array
    terminated: jax.Array


def _batch(values):
    values = jnp.asarray(values, jnp.float32)
    return Transition(obs=values[:, None], action=values.astype(jnp.int32), reward=values,
                          next_obs=values[:, None] + 0.5, terminated=jnp.zeros_like(values))


def test_buffer_wraps_around_and_samples_only_filled_slots():
    example = Transition(jnp.zeros(1), jnp.int32(0), jnp.float32(0), jnp.zeros(1), jnp.float32(0))
    buffer = replay.init(5, example)
    assert int(buffer.size) == 0 and int(buffer.position) == 0
    add = jax.jit(replay.add)
    sample = jax.jit(replay.sample, static_argnums=2)

    buffer = add(buffer, _batch([1, 2, 3]))
    assert (int(buffer.size), int(buffer.position)) == (3, 3)
    drawn = sample(buffer, jax.random.PRNGKey(0), 2_000)
    # Only the three written transitions, each about equally often; rows stay aligned.
    assert set(np.unique(np.asarray(drawn.reward))) == {1.0, 2.0, 3.0}
    counts = np.bincount(np.asarray(drawn.reward).astype(int), minlength=4)[1:]
    assert counts.min() > 2_000 / 3 * 0.8, counts
    np.testing.assert_array_equal(np.asarray(drawn.obs[:, 0]), np.asarray(drawn.reward))
    np.testing.assert_array_equal(np.asarray(drawn.next_obs[:, 0]), np.asarray(drawn.reward) + 0.5)
    np.testing.assert_array_equal(np.asarray(drawn.action), np.asarray(drawn.reward).astype(int))

    buffer = add(buffer, _batch([4, 5, 6]))       # 6 overwrites slot 0 (the oldest)
    assert (int(buffer.size), int(buffer.position)) == (5, 1)
    np.testing.assert_array_equal(np.asarray(buffer.data.reward), [6, 2, 3, 4, 5])
    buffer = add(buffer, _batch([7, 8, 9]))
    assert (int(buffer.size), int(buffer.position)) == (5, 4)
    np.testing.assert_array_equal(np.asarray(buffer.data.reward), [6, 7, 8, 9, 5])
    drawn = sample(buffer, jax.random.PRNGKey(1), 2_000)
    assert set(np.unique(np.asarray(drawn.reward))) == {5.0, 6.0, 7.0, 8.0, 9.0}


