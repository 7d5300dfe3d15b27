"""The object every ``make_train`` returns: a pure ``train(key)`` that the CLI can also run in chunks.

``Trainer`` is what the architecture calls ``train``: ``trainer(key) -> (state, metrics)`` is jit- and
vmap-able. It is built from two pure pieces, so the shared CLI can checkpoint, resume and show
progress without knowing the algorithm:

* ``init(key) -> state``: the whole train state (params, optimizer, env states, buffers, key).
* ``update(state, i) -> (state, metrics)``: one iteration (collect + learn); ``metrics`` is a dict
  of scalars. ``i`` is the iteration index (an unbatched scan input).

and, for evaluation and checkpoints, ``act(state, obs, key) -> action``: the deterministic (greedy or
mean) action for a batch of raw env observations, and ``env``/``env_params``: the env it acts in.

An agent whose policy needs more than the current observation (a sequence model) sets
``evaluate``, its own rollout with the same output as ``jaxrl.evaluation.evaluate``.

Offline agents also carry ``data`` (a ``jaxrl.data.Dataset``) and their update reads it as a third
argument, ``update(state, i, data)``. The dataset is passed into the compiled program as an
argument, never closed over: a closed-over array would be baked into the program as a constant
(slow to compile, duplicated per program, and part of every cache key). For offline trainers
``env_steps_per_update`` is 0 and progress is counted in updates.
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
    data: Any = dataclasses.field(default=None, compare=False, hash=False)  # arrays are not hashable
    evaluate: Callable[[Any, jax.Array, int], dict] | None = None
    """Optional ``(state, key, num_episodes) -> {"return", "length", "cost", "success"}`` for
    policies that ``act`` cannot express step by step (e.g. a Decision Transformer's context)."""
    report: Callable[[Any, jax.Array], dict] | None = None
    """Optional host-side ``(state, key) -> dict`` of JSON-ready results for one run beyond the
    scalar evaluation (e.g. a multi-objective agent's evaluated front and its metrics); the CLI
    calls it after the final evaluation and stores it per run in ``summary.json`` under "report"."""

    @property
    def offline(self) -> bool:
        return self.data is not None

    def step_fn(self, data: Any = None) -> Callable[[Any, jax.Array], tuple[Any, dict]]:
        """``(state, i) -> (state, metrics)``: ``update`` with the dataset bound for offline agents."""
        if not self.offline:
            return self.update
        return lambda state, i: self.update(state, i, data)

    def run(self, state, start: int | jax.Array, num_updates: int, data: Any = None):
        """Run ``num_updates`` iterations from iteration ``start``; metrics are stacked over them.

        Offline trainers need ``data`` (pass ``trainer.data`` as a jit argument, see the module doc).
        """
        if self.offline and data is None:
            raise ValueError("an offline trainer needs its dataset: trainer.run(state, start, n, data)")
        return jax.lax.scan(self.step_fn(data), state, start + jnp.arange(num_updates))

    def __call__(self, key: jax.Array, data: Any = None):
        """Train from ``key``. Offline: ``jax.jit(jax.vmap(trainer, in_axes=(0, None)))(keys, trainer.data)``."""
        return self.run(self.init(key), 0, self.num_updates, data)

    @property
    def total_env_steps(self) -> int:
        return self.num_updates * self.env_steps_per_update
