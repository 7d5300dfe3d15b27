"""The object every ``make_train`` returns: a pure ``train(key)`` that the CLI can also run in chunks.

``Trainer`` is what the architecture calls ``train``: ``trainer(key) -> (state, metrics)`` is jit- and
vmap-able. It is built from two pure pieces, so the shared CLI can checkpoint, resume and show
progress without knowing the algorithm:

* ``init(key) -> state``: the whole train state (params, optimizer, env states, buffers, key).
* ``update(state, i) -> (state, metrics)``: one iteration (collect + learn); ``metrics`` is a dict
  of scalars. ``i`` is the iteration index (an unbatched scan input).

and, for evaluation and checkpoints, ``act(state, obs, key) -> action``: the deterministic (greedy or
mean) action for a batch of raw env observations, and ``env``/``env_params``: the env it acts in.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable

import jax
import jax.numpy as jnp


@dataclasses.dataclass(frozen=True)
class Trainer:
    init: Callable[[jax.Array], Any]
    update: Callable[[Any, jax.Array], tuple[Any, dict]]
    act: Callable[[Any, jax.Array, jax.Array], jax.Array]
    num_updates: int
    env_steps_per_update: int
    env: Any
    env_params: Any

    def run(self, state, start: int | jax.Array, num_updates: int):
        """Run ``num_updates`` iterations from iteration ``start``; metrics are stacked over them."""
        return jax.lax.scan(self.update, state, start + jnp.arange(num_updates))

    def __call__(self, key: jax.Array):
        return self.run(self.init(key), 0, self.num_updates)

    @property
    def total_env_steps(self) -> int:
        return self.num_updates * self.env_steps_per_update
