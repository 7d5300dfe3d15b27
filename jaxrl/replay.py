"""A fixed-capacity, on-device, circular replay buffer over any pytree of transitions.

It lives inside an agent's train state (so it is vmapped over seeds, checkpointed and resumed like
everything else) and never leaves the device. Sampling is uniform with replacement over the filled
slots only.
"""
from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp


class ReplayBuffer(NamedTuple):
    data: Any                  # pytree; every leaf has leading axis ``capacity``
    position: jax.Array        # next slot to write (int32 scalar)
    size: jax.Array            # number of filled slots, <= capacity (int32 scalar)

    @property
    def capacity(self) -> int:
        return jax.tree.leaves(self.data)[0].shape[0]


def init(capacity: int, example: Any) -> ReplayBuffer:
    """An empty buffer whose slots have the shapes and dtypes of one ``example`` transition."""
    data = jax.tree.map(lambda x: jnp.zeros((capacity,) + jnp.shape(x), jnp.asarray(x).dtype), example)
    return ReplayBuffer(data, jnp.int32(0), jnp.int32(0))


def add(buffer: ReplayBuffer, batch: Any) -> ReplayBuffer:
    """Write a batch of ``n`` transitions (leading axis n <= capacity) at the write position, wrapping."""
    capacity = buffer.capacity
    n = jax.tree.leaves(batch)[0].shape[0]
    idx = (buffer.position + jnp.arange(n)) % capacity
    data = jax.tree.map(lambda store, x: store.at[idx].set(x.astype(store.dtype)), buffer.data, batch)
    return ReplayBuffer(data, (buffer.position + n) % capacity, jnp.minimum(buffer.size + n, capacity))


def sample(buffer: ReplayBuffer, key: jax.Array, batch_size: int) -> Any:
    """``batch_size`` transitions drawn uniformly (with replacement) from the filled slots."""
    idx = jax.random.randint(key, (batch_size,), 0, jnp.maximum(buffer.size, 1))
    return jax.tree.map(lambda store: store[idx], buffer.data)
