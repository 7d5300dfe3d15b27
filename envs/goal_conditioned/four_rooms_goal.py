"""Four rooms with goal cells: a discrete goal-conditioned gridworld.

The 13 x 13 four-rooms map of Sutton, Precup & Singh (1999, "Between MDPs and semi-MDPs", Fig. 2):
104 free cells in four rooms joined by four one-cell doorways. Every reset samples the agent's cell
and a different goal cell uniformly among the free cells. Actions 0..3 move up, right, down, left;
a move into a wall leaves the agent where it is (moves are deterministic).

Goal interface (as ``bit_flipping``): the observation is a dict ``{"observation": cell,
"achieved_goal": cell, "desired_goal": goal}`` of float32 (row, column) pairs; the reward is
``compute_reward(achieved, desired) = -[achieved ≠ desired]``; ``info["success"]`` marks reaching the
goal. By default (``EnvParams.terminate_on_success=True``) the episode terminates on success (no
bootstrap); it is truncated after ``max_steps_in_episode`` = 50 steps otherwise (the longest
shortest path between two free cells is 20 moves; see ``shortest_path_lengths``).
"""
import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
from gymnax.environments import environment, spaces

MAP = (
    "#############",
    "#     #     #",
    "#     #     #",
    "#           #",
    "#     #     #",
    "#     #     #",
    "## ####     #",
    "#     ### ###",
    "#     #     #",
    "#     #     #",
    "#           #",
    "#     #     #",
    "#############",
)
WALLS = np.array([[c == "#" for c in row] for row in MAP])
FREE_CELLS = np.argwhere(~WALLS)                     # (104, 2) row, column
MOVES = np.array([[-1, 0], [0, 1], [1, 0], [0, -1]])  # up, right, down, left


@struct.dataclass
class FourRoomsGoalState(environment.EnvState):
    cell: jax.Array        # (2,) int32 row, column of the agent
    goal: jax.Array        # (2,) int32 row, column of the goal


@struct.dataclass
class FourRoomsGoalParams(environment.EnvParams):
    max_steps_in_episode: int = 50
    terminate_on_success: bool = True


def is_success(achieved_goal: jax.Array, desired_goal: jax.Array) -> jax.Array:
    """[achieved == desired] over the last axis (broadcasts over leading axes)."""
    return jnp.all(achieved_goal == desired_goal, axis=-1)


def compute_reward(achieved_goal: jax.Array, desired_goal: jax.Array) -> jax.Array:
    """r = -[achieved ≠ desired], float32, broadcast over leading axes."""
    return is_success(achieved_goal, desired_goal).astype(jnp.float32) - 1.0


def shortest_path_lengths() -> np.ndarray:
    """Moves between every pair of free cells (104 x 104, breadth-first search on the map)."""
    index = {tuple(c): i for i, c in enumerate(FREE_CELLS)}
    dist = np.full((len(FREE_CELLS), len(FREE_CELLS)), -1, dtype=np.int64)
    for start, cell in enumerate(FREE_CELLS):
        dist[start, start] = 0
        frontier = [tuple(cell)]
        while frontier:
            nxt = []
            for r, c in frontier:
                for dr, dc in MOVES:
                    j = index.get((r + dr, c + dc))
                    if j is not None and dist[start, j] < 0:
                        dist[start, j] = dist[start, index[(r, c)]] + 1
                        nxt.append((r + dr, c + dc))
            frontier = nxt
    return dist


class FourRoomsGoal(environment.Environment[FourRoomsGoalState, FourRoomsGoalParams]):
    """Reach a goal cell of the four-rooms map (see the module docstring)."""

    compute_reward = staticmethod(compute_reward)
    is_success = staticmethod(is_success)

    def __init__(self):
        super().__init__()
        self.walls = jnp.asarray(WALLS)
        self.free_cells = jnp.asarray(FREE_CELLS, jnp.int32)

    def compute_terminated(self, achieved_goal, desired_goal, params: FourRoomsGoalParams) -> jax.Array:
        """Termination a relabeled transition would have had: success, if the env terminates on it."""
        return jnp.logical_and(is_success(achieved_goal, desired_goal), params.terminate_on_success)

    @property
    def name(self) -> str:
        return "FourRoomsGoal-v0"

    @property
    def default_params(self) -> FourRoomsGoalParams:
        return FourRoomsGoalParams()

    @property
    def num_actions(self) -> int:
        return 4

    def action_space(self, params: FourRoomsGoalParams | None = None):
        return spaces.Discrete(4)

    def observation_space(self, params: FourRoomsGoalParams | None = None):
        cell = spaces.Box(0.0, float(len(MAP) - 1), (2,), jnp.float32)
        return spaces.Dict({"observation": cell, "achieved_goal": cell, "desired_goal": cell})

    def _obs(self, state: FourRoomsGoalState) -> dict:
        cell, goal = state.cell.astype(jnp.float32), state.goal.astype(jnp.float32)
        return {"observation": cell, "achieved_goal": cell, "desired_goal": goal}

    def reset_env(self, key, params: FourRoomsGoalParams):
        cell_key, goal_key = jax.random.split(key)
        num = self.free_cells.shape[0]
        start = jax.random.randint(cell_key, (), 0, num)
        goal = (start + jax.random.randint(goal_key, (), 1, num)) % num     # uniform over the other cells
        state = FourRoomsGoalState(cell=self.free_cells[start], goal=self.free_cells[goal], time=0)
        return self._obs(state), state

    def step_env(self, key, state: FourRoomsGoalState, action, params: FourRoomsGoalParams):
        move = jnp.asarray(MOVES, jnp.int32)[jnp.reshape(action, ()).astype(jnp.int32)]
        target = state.cell + move
        cell = jnp.where(self.walls[target[0], target[1]], state.cell, target)
        new_state = FourRoomsGoalState(cell=cell, goal=state.goal, time=state.time + 1)
        success = is_success(cell, state.goal)
        terminated = jnp.logical_and(success, params.terminate_on_success)
        return self._obs(new_state), new_state, compute_reward(cell, state.goal), terminated, {"success": success}

    def is_terminated(self, state: FourRoomsGoalState, params: FourRoomsGoalParams) -> jax.Array:
        return jnp.logical_and(is_success(state.cell, state.goal), params.terminate_on_success)
