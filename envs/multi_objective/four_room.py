"""Four Room (Barreto et al. 2017), step for step as MO-Gymnasium 1.3.2's ``four-room-v0``.

A 13x13 grid split into four rooms by walls (``X``) with passages. Twelve shapes lie on it, four of
each type: ``1`` (blue square), ``2`` (green triangle), ``3`` (red circle). The agent starts at the
bottom-left cell (``_``, row 12 column 0) and the episode terminates on reaching the goal ``G``
(row 0, column 12). Entering a shape's cell for the first time collects it: reward 1 in that
type's objective. Entering the goal gives ``[1, 1, 1]``. Moves off the grid or into a wall leave
the agent in place (reward 0).

As in MO-Gymnasium: actions 0 left, 1 up, 2 right, 3 down (note: not DST's order); observation
``[row, column, collected_0, ..., collected_11]`` (int32), the shapes numbered column by column
(column-major order of the map: MO-Gymnasium's ``shape_ids``); reward ``[blue, green, red]``
(float32); truncation after 200 steps (``max_steps_in_episode``, MO-Gymnasium's
``max_episode_steps``). With several ``_`` cells the start is drawn uniformly (from the reset key;
MO-Gymnasium draws it from Python's ``random``); the default map has one.

Barreto, A. et al. (2017). "Successor Features for Transfer in Reinforcement Learning". NeurIPS.

No ``pareto_front``: MO-Gymnasium gives none, and the exact one is a vector-valued travelling
salesman problem over the orders in which the twelve shapes are first entered (a label-setting
dynamic program over ``(collected set, last shape)`` keeps hundreds of thousands of non-dominated
labels at ``gamma = 0.99``), too slow to serve ``jaxrl.mo_evaluation``.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
from gymnax.environments import environment, spaces

MAZE = (
    "1    2X     G",
    "      X      ",
    "      1      ",
    "             ",
    "      X      ",
    "2    3X      ",
    "XX3 XXXXX 1XX",
    "      X2    3",
    "      X      ",
    "             ",
    "      2      ",
    "      X      ",
    "_     X3    1",
)
SHAPE_TYPES = "123"      # shape character -> objective 0, 1, 2

# action -> (d_row, d_col): 0 left, 1 up, 2 right, 3 down (MO-Gymnasium's FourRoom.LEFT, UP, RIGHT, DOWN)
MOVES = np.array([[0, -1], [-1, 0], [0, 1], [1, 0]], dtype=np.int32)


def parse_maze(maze) -> dict:
    """Walls, goal, starts and shapes (column-major numbering) of a map given as rows of characters."""
    grid = np.array([list(row) for row in maze])
    if grid.ndim != 2:
        raise ValueError("maze must be a rectangle: rows of equal length")
    cells = [(r, c) for c in range(grid.shape[1]) for r in range(grid.shape[0])]     # column-major
    goals = [cell for cell in cells if grid[cell] == "G"]
    starts = [cell for cell in cells if grid[cell] == "_"]
    shapes = [cell for cell in cells if grid[cell].isdigit()]
    unknown = sorted({grid[cell] for cell in shapes} - set(SHAPE_TYPES))
    if len(goals) != 1 or not starts or unknown:
        raise ValueError(f"maze needs exactly one 'G' (found {len(goals)}), at least one '_' (found "
                         f"{len(starts)}) and shapes only of types {list(SHAPE_TYPES)} (found {unknown})")
    shape_index = np.full(grid.shape, -1, np.int32)
    for i, cell in enumerate(shapes):
        shape_index[cell] = i
    return {
        "wall": grid == "X",
        "goal": np.array(goals[0], np.int32),
        "starts": np.array(starts, np.int32),
        "shape_index": shape_index,
        "shape_type": np.array([SHAPE_TYPES.index(grid[cell]) for cell in shapes], np.int32),
    }


@struct.dataclass
class FourRoomState(environment.EnvState):
    pos: jax.Array          # [row, column], int32
    collected: jax.Array    # (num_shapes,) int32 0/1


@struct.dataclass
class FourRoomParams(environment.EnvParams):
    max_steps_in_episode: int = 200


class FourRoom(environment.Environment[FourRoomState, FourRoomParams]):
    """Four Room with a vector reward ``[blue, green, red]`` (see the module docstring)."""

    num_objectives = 3

    def __init__(self, maze=MAZE):
        super().__init__()
        self.maze = tuple("".join(row) for row in maze)
        self.layout = parse_maze(self.maze)
        self.num_shapes = len(self.layout["shape_type"])

    @property
    def name(self) -> str:
        return "FourRoom-v0"

    @property
    def default_params(self) -> FourRoomParams:
        return FourRoomParams()

    @property
    def num_actions(self) -> int:
        return 4

    def action_space(self, params: FourRoomParams | None = None):
        return spaces.Discrete(4)

    def observation_space(self, params: FourRoomParams | None = None):
        return spaces.Box(0, len(self.maze), (2 + self.num_shapes,), jnp.int32)

    @staticmethod
    def _obs(state: FourRoomState):
        return jnp.concatenate([state.pos, state.collected]).astype(jnp.int32)

    def reset_env(self, key, params):
        starts = jnp.asarray(self.layout["starts"])
        pos = starts[jax.random.randint(key, (), 0, starts.shape[0])]
        state = FourRoomState(time=0, pos=pos, collected=jnp.zeros(self.num_shapes, jnp.int32))
        return self._obs(state), state

    def step_env(self, key, state: FourRoomState, action, params):
        wall, shape_index = jnp.asarray(self.layout["wall"]), jnp.asarray(self.layout["shape_index"])
        rows, cols = wall.shape
        target = state.pos + jnp.asarray(MOVES)[jnp.reshape(action, ()).astype(jnp.int32)]
        inside = (target[0] >= 0) & (target[0] < rows) & (target[1] >= 0) & (target[1] < cols)
        clipped = jnp.clip(target, 0, jnp.array([rows - 1, cols - 1]))
        pos = jnp.where(inside & ~wall[clipped[0], clipped[1]], target, state.pos)
        moved = jnp.any(pos != state.pos)
        at_goal = moved & jnp.all(pos == jnp.asarray(self.layout["goal"]))
        shape = shape_index[pos[0], pos[1]]
        new_shape = moved & (shape >= 0) & (state.collected[jnp.maximum(shape, 0)] == 0)
        shape_type = jnp.asarray(self.layout["shape_type"])[jnp.maximum(shape, 0)]
        reward = jnp.where(at_goal, 1.0, jnp.where(new_shape & (jnp.arange(3) == shape_type), 1.0, 0.0))
        collected = jnp.where(new_shape & (jnp.arange(self.num_shapes) == shape), 1, state.collected)
        next_state = FourRoomState(time=state.time + 1, pos=pos, collected=collected.astype(jnp.int32))
        return self._obs(next_state), next_state, reward.astype(jnp.float32), at_goal, {}

    def is_terminated(self, state: FourRoomState, params: FourRoomParams):
        return jnp.all(state.pos == jnp.asarray(self.layout["goal"]))
