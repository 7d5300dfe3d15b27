"""Deep Sea Treasure (Vamplew et al. 2011), step for step as MO-Gymnasium 1.3.2's ``deep-sea-treasure-v0``.

A submarine starts at the top-left cell of an 11x11 grid and moves up/down/left/right; the sea floor
(cells marked -10) cannot be entered and a move off the grid or into the floor leaves it in place.
Reaching a treasure ends the episode. Reward ``[treasure, time]``: the treasure value on the step
that reaches it (0 otherwise) and -1 every step. Two maps:

* ``map_name="convex"``: the treasure values of Yang et al. (2019, "A Generalized Algorithm for
  Multi-Objective RL and Policy Adaptation"), MO-Gymnasium's default map: every treasure is on
  the convex hull of the front.
* ``map_name="concave"``: the original values of Vamplew et al. (2011, "Empirical evaluation
  methods for multiobjective reinforcement learning algorithms"): a concave front.

As in MO-Gymnasium: observation ``[row, column]`` (int32; ``float_state=True`` gives
``0.1 * [row, column]`` in float32), actions 0 up (row - 1), 1 down, 2 left, 3 right, start
``[0, 0]``, termination on a treasure, truncation after 100 steps (``max_steps_in_episode``).

``pareto_front(gamma)`` is computed from the env's own transitions: a breadth-first search over
``step_env`` gives the shortest path to every treasure (a longer path to the same treasure is
dominated: less discounted treasure, more time penalty), whose discounted returns are
Pareto-filtered. MO-Gymnasium hard-codes the γ=1 front and discounts it; the two agree for γ
near 1, but for small γ some of its points are dominated (see ``tests/test_mo_envs.py``).
"""
from __future__ import annotations

from collections import deque

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
from gymnax.environments import environment, spaces

ROCK = -10.0

# Yang et al. (2019) treasure values (MO-Gymnasium's DEFAULT_MAP); -10 is sea floor, 0 open sea.
CONVEX_MAP = np.array([
    [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
    [0.7, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
    [-10, 8.2, 0, 0, 0, 0, 0, 0, 0, 0, 0],
    [-10, -10, 11.5, 0, 0, 0, 0, 0, 0, 0, 0],
    [-10, -10, -10, 14.0, 15.1, 16.1, 0, 0, 0, 0, 0],
    [-10, -10, -10, -10, -10, -10, 0, 0, 0, 0, 0],
    [-10, -10, -10, -10, -10, -10, 0, 0, 0, 0, 0],
    [-10, -10, -10, -10, -10, -10, 19.6, 20.3, 0, 0, 0],
    [-10, -10, -10, -10, -10, -10, -10, -10, 0, 0, 0],
    [-10, -10, -10, -10, -10, -10, -10, -10, 22.4, 0, 0],
    [-10, -10, -10, -10, -10, -10, -10, -10, -10, 23.7, 0],
], dtype=np.float32)

# Vamplew et al. (2011) treasure values (MO-Gymnasium's CONCAVE_MAP); same sea floor.
CONCAVE_MAP = np.where(CONVEX_MAP > 0, 0.0, CONVEX_MAP).astype(np.float32)
for (_row, _col), _value in {(1, 0): 1.0, (2, 1): 2.0, (3, 2): 3.0, (4, 3): 5.0, (4, 4): 8.0, (4, 5): 16.0,
                             (7, 6): 24.0, (7, 7): 50.0, (9, 8): 74.0, (10, 9): 124.0}.items():
    CONCAVE_MAP[_row, _col] = _value

MAPS = {"convex": CONVEX_MAP, "concave": CONCAVE_MAP}

# action -> (d_row, d_col): 0 up, 1 down, 2 left, 3 right (MO-Gymnasium's ``dir``)
MOVES = np.array([[-1, 0], [1, 0], [0, -1], [0, 1]], dtype=np.int32)


@struct.dataclass
class DSTState(environment.EnvState):
    pos: jax.Array          # [row, column], int32


@struct.dataclass
class DSTParams(environment.EnvParams):
    max_steps_in_episode: int = 100


class DeepSeaTreasure(environment.Environment[DSTState, DSTParams]):
    """Deep Sea Treasure with a vector reward ``[treasure, time]`` (see the module docstring)."""

    num_objectives = 2

    def __init__(self, map_name: str = "convex", float_state: bool = False):
        super().__init__()
        if map_name not in MAPS:
            raise ValueError(f"unknown Deep Sea Treasure map {map_name!r}; allowed: {sorted(MAPS)}")
        self.map_name = map_name
        self.float_state = bool(float_state)
        self.sea_map = MAPS[map_name]

    @property
    def name(self) -> str:
        return "DeepSeaTreasure-v0" if self.map_name == "convex" else "DeepSeaTreasureConcave-v0"

    @property
    def default_params(self) -> DSTParams:
        return DSTParams()

    @property
    def num_actions(self) -> int:
        return 4

    def action_space(self, params: DSTParams | None = None):
        return spaces.Discrete(4)

    def observation_space(self, params: DSTParams | None = None):
        if self.float_state:
            return spaces.Box(0.0, 1.0, (2,), jnp.float32)
        return spaces.Box(0, self.sea_map.shape[1], (2,), jnp.int32)

    def _obs(self, pos):
        return pos.astype(jnp.float32) * 0.1 if self.float_state else pos.astype(jnp.int32)

    def _value(self, pos):
        return jnp.asarray(self.sea_map)[pos[0], pos[1]]

    def reset_env(self, key, params):
        pos = jnp.zeros(2, jnp.int32)
        return self._obs(pos), DSTState(time=0, pos=pos)

    def step_env(self, key, state: DSTState, action, params):
        rows, cols = self.sea_map.shape
        target = state.pos + jnp.asarray(MOVES)[jnp.reshape(action, ()).astype(jnp.int32)]
        inside = (target[0] >= 0) & (target[0] < rows) & (target[1] >= 0) & (target[1] < cols)
        clipped = jnp.clip(target, 0, jnp.array([rows - 1, cols - 1]))
        valid = inside & (self._value(clipped) != ROCK)
        pos = jnp.where(valid, target, state.pos)
        value = self._value(pos)
        terminated = value > 0
        reward = jnp.stack([jnp.where(terminated, value, 0.0), jnp.float32(-1.0)]).astype(jnp.float32)
        new_state = DSTState(time=state.time + 1, pos=pos)
        return self._obs(pos), new_state, reward, terminated, {}

    def is_terminated(self, state: DSTState, params: DSTParams):
        return self._value(state.pos) > 0

    # ------------------------------------------------------------------------------------------
    # The exact Pareto front, from the env's own transitions
    # ------------------------------------------------------------------------------------------
    def transition_table(self):
        """Next position, reward and termination of every (cell, action), from ``step_env``.

        Returns numpy arrays ``next_pos (R, C, 4, 2)``, ``reward (R, C, 4, 2)``, ``terminated (R, C, 4)``.
        """
        rows, cols = self.sea_map.shape
        grid = jnp.stack(jnp.meshgrid(jnp.arange(rows), jnp.arange(cols), indexing="ij"), -1).astype(jnp.int32)
        params, key = self.default_params, jax.random.PRNGKey(0)

        def one(pos, action):
            _, state, reward, terminated, _ = self.step_env(key, DSTState(time=0, pos=pos), action, params)
            return state.pos, reward, terminated

        per_action = jax.vmap(one, in_axes=(None, 0))
        table = jax.jit(jax.vmap(jax.vmap(per_action, in_axes=(0, None)), in_axes=(0, None)))(grid, jnp.arange(4))
        return tuple(np.asarray(x) for x in table)

    def pareto_front(self, gamma: float, max_steps: int | None = None) -> np.ndarray:
        """Exact discounted Pareto front ``(k, 2)`` for ``gamma``, sorted by the time objective.

        Breadth-first search from the start over ``transition_table`` (treasures are absorbing):
        the discounted return of the shortest path to each treasure reached within ``max_steps``
        (default: the time limit), then a Pareto filter. Episodes that reach no treasure only
        collect time penalties and are dominated by any treasure.
        """
        if not 0.0 < gamma <= 1.0:
            raise ValueError(f"gamma must be in (0, 1], got {gamma!r}")
        max_steps = self.default_params.max_steps_in_episode if max_steps is None else int(max_steps)
        next_pos, reward, terminated = self.transition_table()
        start = (0, 0)
        # BFS: depth and discounted return along a shortest path (all shortest paths to a cell
        # collect the same per-step rewards, [0, -1], until the final one).
        depth, ret = {start: 0}, {start: np.zeros(2)}
        queue, returns = deque([start]), []
        while queue:
            cell = queue.popleft()
            if depth[cell] >= max_steps:
                continue
            for a in range(4):
                nxt = tuple(int(v) for v in next_pos[cell][a])
                value = ret[cell] + gamma ** depth[cell] * reward[cell][a].astype(np.float64)
                if terminated[cell][a]:
                    if nxt not in depth:
                        depth[nxt] = depth[cell] + 1
                        returns.append(value)
                elif nxt not in depth:
                    depth[nxt], ret[nxt] = depth[cell] + 1, value
                    queue.append(nxt)
        front = _pareto_filter(np.array(returns))
        return front[np.argsort(-front[:, 1])]


def _pareto_filter(points: np.ndarray) -> np.ndarray:
    """Non-dominated rows (maximization), each once. (envs/ may not import jaxrl.mo_metrics.)"""
    points = np.unique(points, axis=0)
    geq = np.all(points[:, None] >= points[None], -1)
    gt = np.any(points[:, None] > points[None], -1)
    return points[~np.any(geq & gt, axis=0)]
