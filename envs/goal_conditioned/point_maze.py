"""Point maze: a 2D point mass under velocity control reaching goals in a maze of wall cells.

Layouts (``LAYOUTS``; ``#`` a wall cell, ``.`` a free cell):

* ``open``, ``umaze``, ``medium``, ``large``: the cell grids of D4RL's maze2d (Fu et al. 2020,
  ``d4rl/pointmaze/maze_model.py``: ``OPEN``, ``U_MAZE``, ``MEDIUM_MAZE``, ``LARGE_MAZE``);
  OGBench's pointmaze ``medium`` and ``large`` (Park et al. 2024, ``ogbench/locomaze/maze.py``) are
  the same grids;
* ``giant``: OGBench's ``giant`` maze (12 x 16 cells), for long horizons.

Coordinates are in cells: cell (row i, column j) is the unit square centred on (x, y) = (j, i), so
x runs along the columns and y along the rows, and a wall cell occupies [j − ½, j + ½] × [i − ½, i + ½].
OGBench uses a maze unit of 4 with an offset of 4 (its (x, y) = 4 (j, i) − 4); ``to_ogbench_xy``
converts. Every distance below is in cells (OGBench's values divided by 4).

Dynamics (velocity control, as OGBench's point: its action is added to the position, ``qpos += 0.2
action`` in units of 4): the action a ∈ [−1, 1]² (clipped) moves the point by ``max_speed · a``
cells, ``max_speed = 0.05`` by default (OGBench's 0.2 / 4; D4RL's force-controlled point is capped
at the same 0.05 cells per step: |v| ≤ 5 at dt = 0.01). The agent is an axis-aligned square of
half-width ``agent_radius`` (0.1 cells, D4RL's particle radius). Collisions are resolved per axis:
the x displacement first, then the y displacement from the new x; a move whose leading edge would
enter a wall cell stops flush against that cell's face (no bounce, the other axis still slides).
Since a step moves less than one cell (``max_speed`` is capped at ``MAX_SPEED = 0.5``) and the square
is narrower than a cell, the leading edge can enter at most one new row or column per axis, so this
check is exact: the agent can never enter a wall, also not through a corner on a diagonal move.

Reset: with ``EnvParams.task_id = 0`` (training) the start and the goal are the centres of two
different free cells drawn uniformly, each moved by uniform noise in [−``reset_noise``, ``reset_noise``]²
(0.25 cells: OGBench's ±1 in units of 4). ``task_id`` 1..5 selects one of five fixed evaluation
tasks (start cell, goal cell), with the same noise: OGBench's ``task1``..``task5`` for ``medium``,
``large`` and ``giant`` (its ``set_tasks``), and our own far-apart pairs for ``open`` and ``umaze``
(D4RL has no task sets; see ``TASKS``). ``task_id`` is a leaf of ``EnvParams``, so a vmap over it
runs all five tasks in one program.

Goal interface (as the other goal-conditioned envs): the observation is the dict
``{"observation": (x, y), "achieved_goal": (x, y), "desired_goal": goal}`` of float32; success is
``‖achieved − desired‖ ≤ goal_radius`` (0.25 cells: OGBench's point ``goal_tol`` of 1.0 in units of
4; D4RL's sparse maze2d reward uses 0.5); the reward is ``compute_reward(achieved, desired) =
−[not success]`` (the HER convention: 0 at the goal, −1 elsewhere) and ``info["success"]`` marks
it. The episode terminates on success by default (``terminate_on_success=True``, OGBench's
``terminate_at_goal``) and is truncated at the time limit otherwise: 150 steps for ``open`` and 300
for ``umaze`` (D4RL's maze2d registrations), 1000 for ``medium``, ``large`` and ``giant``
(OGBench's pointmaze registrations).

Oracle (a scripted goal-reaching expert, for datasets and tests): ``cell_distances(layout)`` are the
shortest-path lengths in cells between all pairs of free cells (breadth-first search over the four
neighbours, numpy, at env construction), ``next_cells(layout)`` the first cell on a shortest path,
and ``PointMaze.oracle_action(pos, goal, params)`` steers straight at the centre of the next cell on
the path, or at the goal itself once in the goal cell, at full speed (an action of norm 1, as
OGBench's pointmaze data collection, whose point policy is the unit subgoal direction,
``data_gen_scripts/generate_locomaze.py``), slowing down only to stop on the goal; clipped to the
action box. It is pure JAX (jit-, vmap-able). ``vertex_cells(layout)`` are the free cells that are not
straight corridor cells (OGBench's goal cells for its ``navigate`` datasets).

``draw_maze(ax, layout)`` draws a layout with matplotlib (imported only when called), in the same
coordinates, for plotting rollouts on top.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
from gymnax.environments import environment, spaces

LAYOUTS = {
    "open": (           # D4RL OPEN
        "#######",
        "#.....#",
        "#.....#",
        "#.....#",
        "#######",
    ),
    "umaze": (          # D4RL U_MAZE
        "#####",
        "#...#",
        "###.#",
        "#...#",
        "#####",
    ),
    "medium": (         # D4RL MEDIUM_MAZE = OGBench medium
        "########",
        "#..##..#",
        "#..#...#",
        "##...###",
        "#..#...#",
        "#.#..#.#",
        "#...#..#",
        "########",
    ),
    "large": (          # D4RL LARGE_MAZE = OGBench large
        "############",
        "#....#.....#",
        "#.##.#.#.#.#",
        "#......#...#",
        "#.####.###.#",
        "#..#.#.....#",
        "##.#.#.#.###",
        "#..#...#...#",
        "############",
    ),
    "giant": (          # OGBench giant
        "################",
        "#.#......##....#",
        "#.#.##.#.#..##.#",
        "#...#..#...#...#",
        "#.###.######.#.#",
        "#...#...#....#.#",
        "###.#.#..#.#.###",
        "#...#..#...#...#",
        "#.#.#.######.#.#",
        "#.###...#...##.#",
        "#.....#...#....#",
        "################",
    ),
}

# Five evaluation tasks per layout: ((start row, start col), (goal row, goal col)).
TASKS = {
    # ours: opposite corners both ways, the anti-diagonal, across the middle row, across a column
    "open": (((1, 1), (3, 5)), ((3, 5), (1, 1)), ((3, 1), (1, 5)), ((2, 1), (2, 5)), ((1, 3), (3, 3))),
    # ours: the D4RL goal cell (1, 1) from the far end of the U, and the other ways round the bend
    "umaze": (((3, 1), (1, 1)), ((1, 1), (3, 1)), ((3, 2), (1, 2)), ((1, 3), (3, 1)), ((3, 3), (1, 1))),
    # OGBench set_tasks
    "medium": (((1, 1), (6, 6)), ((6, 1), (1, 6)), ((5, 3), (4, 2)), ((6, 5), (6, 1)), ((2, 6), (1, 1))),
    "large": (((1, 1), (7, 10)), ((5, 4), (7, 1)), ((7, 4), (1, 10)), ((3, 8), (5, 4)), ((1, 1), (5, 4))),
    "giant": (((1, 1), (10, 14)), ((1, 14), (10, 1)), ((8, 14), (1, 1)), ((8, 3), (5, 12)), ((5, 9), (3, 8))),
}
NUM_TASKS = 5

# Time limits: D4RL maze2d (open 150, umaze 300); OGBench pointmaze (1000).
MAX_STEPS = {"open": 150, "umaze": 300, "medium": 1000, "large": 1000, "giant": 1000}
ENV_IDS = {"open": "PointMaze-Open-v0", "umaze": "PointMaze-UMaze-v0", "medium": "PointMaze-Medium-v0",
           "large": "PointMaze-Large-v0", "giant": "PointMaze-Giant-v0"}

GOAL_RADIUS = 0.25     # cells (OGBench point goal_tol 1.0 / maze unit 4)
AGENT_RADIUS = 0.1     # cells (half-width of the agent's square; D4RL's particle radius)
MAX_SPEED = 0.5        # cells per step: the collision check needs steps shorter than one cell
EPS = 1e-4             # tolerance of the cell lookups (float32 rounding at coordinates up to ~16)


def check_layout(layout: str) -> str:
    """``layout`` itself, or a ValueError naming the valid layouts."""
    if layout not in LAYOUTS:
        raise ValueError(f"unknown maze layout {layout!r}; valid layouts: {', '.join(LAYOUTS)}")
    return layout


def walls(layout: str) -> np.ndarray:
    """Boolean wall grid ``[rows, columns]`` of ``layout`` (True = wall)."""
    return np.array([[c == "#" for c in row] for row in LAYOUTS[check_layout(layout)]])


def free_cells(layout: str) -> np.ndarray:
    """(row, column) of every free cell of ``layout``, row-major, shape (num_free, 2)."""
    return np.argwhere(~walls(layout))


def cell_distances(layout: str) -> np.ndarray:
    """Shortest-path length in cells (four-neighbour moves through free cells) between every pair of
    cells, shape (rows, cols, rows, cols), int32; −1 where either cell is a wall or unreachable."""
    grid = walls(layout)
    rows, cols = grid.shape
    dist = np.full((rows, cols, rows, cols), -1, np.int32)
    for si, sj in free_cells(layout):
        d = dist[si, sj]
        d[si, sj] = 0
        queue = [(si, sj)]
        for i, j in queue:          # breadth-first: the list grows while we walk it
            for di, dj in ((-1, 0), (0, -1), (1, 0), (0, 1)):
                ni, nj = i + di, j + dj
                if 0 <= ni < rows and 0 <= nj < cols and not grid[ni, nj] and d[ni, nj] < 0:
                    d[ni, nj] = d[i, j] + 1
                    queue.append((ni, nj))
    return dist


def next_cells(layout: str, distances: np.ndarray | None = None) -> np.ndarray:
    """First cell (row, col) on a shortest path from cell (i, j) to goal cell (k, l), shape
    (rows, cols, rows, cols, 2), int32: the neighbour one step closer to the goal (the first of up, left,
    down, right on ties); the cell itself when it is the goal or when no path exists."""
    dist = cell_distances(layout) if distances is None else distances
    rows, cols = dist.shape[:2]
    out = np.zeros((rows, cols, rows, cols, 2), np.int32)
    out[..., 0] = np.arange(rows)[:, None, None, None]
    out[..., 1] = np.arange(cols)[None, :, None, None]
    for i, j in free_cells(layout):
        for di, dj in ((-1, 0), (0, -1), (1, 0), (0, 1)):
            ni, nj = i + di, j + dj
            closer = (dist[ni, nj] >= 0) & (dist[ni, nj] == dist[i, j] - 1)
            todo = closer & np.all(out[i, j] == (i, j), axis=-1)
            out[i, j][todo] = (ni, nj)
    return out


def vertex_cells(layout: str) -> np.ndarray:
    """Free cells (row, col) that are not straight corridor cells (free above and below with walls left
    and right, or the other way round): OGBench's goal cells for its ``navigate`` datasets."""
    grid = walls(layout)
    keep = []
    for i, j in free_cells(layout):
        vertical = not grid[i - 1, j] and not grid[i + 1, j] and grid[i, j - 1] and grid[i, j + 1]
        horizontal = not grid[i, j - 1] and not grid[i, j + 1] and grid[i - 1, j] and grid[i + 1, j]
        if not (vertical or horizontal):
            keep.append((i, j))
    return np.asarray(keep, np.int64).reshape(-1, 2)


def cell_of(xy: jax.Array) -> jax.Array:
    """(row, col) int32 of the cell containing the point (x, y) (broadcasts over leading axes)."""
    return jnp.floor(jnp.asarray(xy)[..., ::-1] + 0.5).astype(jnp.int32)


def cell_center(cell) -> jax.Array:
    """(x, y) = (column, row) of a (row, column) cell (broadcasts over leading axes)."""
    cell = jnp.asarray(cell, jnp.float32)
    return cell[..., ::-1]


def to_ogbench_xy(xy):
    """Our cell coordinates -> OGBench's (maze unit 4, offset 4): 4 (x, y) − 4."""
    return 4.0 * jnp.asarray(xy) - 4.0


def is_success(achieved_goal: jax.Array, desired_goal: jax.Array, radius: float = GOAL_RADIUS) -> jax.Array:
    """[‖achieved − desired‖ ≤ radius] over the last axis (broadcasts over leading axes)."""
    return jnp.linalg.norm(achieved_goal - desired_goal, axis=-1) <= radius


def compute_reward(achieved_goal: jax.Array, desired_goal: jax.Array, radius: float = GOAL_RADIUS) -> jax.Array:
    """r = −[‖achieved − desired‖ > radius] (HER's sparse reward), float32, broadcast over leading axes."""
    return is_success(achieved_goal, desired_goal, radius).astype(jnp.float32) - 1.0


def move_axis(wall_grid: jax.Array, pos: jax.Array, delta: jax.Array, axis: int, radius: float) -> jax.Array:
    """``pos`` moved by ``delta`` along ``axis`` (0: x, 1: y), stopped flush against a wall cell.

    The agent is the square ``pos ± radius``. Only the cell rows (for an x move) or columns (for a y
    move) that the square overlaps can block it; of those, only the row/column its leading edge
    reaches can be new (|delta| < 1). If a wall is there, the square stops at that cell's face.
    """
    other = pos[1 - axis]
    lo = jnp.floor(other - radius + 0.5 + EPS).astype(jnp.int32)     # cells overlapped across the motion
    hi = jnp.floor(other + radius + 0.5 - EPS).astype(jnp.int32)
    new = pos[axis] + delta
    forward = delta > 0
    edge = jnp.where(forward, new + radius, new - radius)
    cell = jnp.floor(edge + 0.5 + jnp.where(forward, -EPS, EPS)).astype(jnp.int32)
    n_along, n_across = wall_grid.shape[1 - axis], wall_grid.shape[axis]
    cell = jnp.clip(cell, 0, n_along - 1)
    lo, hi = jnp.clip(lo, 0, n_across - 1), jnp.clip(hi, 0, n_across - 1)
    if axis == 0:
        blocked = wall_grid[lo, cell] | wall_grid[hi, cell]
    else:
        blocked = wall_grid[cell, lo] | wall_grid[cell, hi]
    stop = jnp.where(forward, cell - 0.5 - radius, cell + 0.5 + radius)
    moved = jnp.where(blocked & (delta != 0), stop, new)
    return pos.at[axis].set(moved)


def move(wall_grid: jax.Array, pos: jax.Array, displacement: jax.Array, radius: float) -> jax.Array:
    """Per-axis collision resolution: the x displacement first, then y from the new x."""
    pos = move_axis(wall_grid, pos, displacement[0], 0, radius)
    return move_axis(wall_grid, pos, displacement[1], 1, radius)


def draw_maze(ax, layout: str, color: str = "0.35", tasks: bool = False):
    """Draw ``layout``'s wall cells on the matplotlib axes ``ax`` in env coordinates (rows downwards,
    like the text map); ``tasks=True`` also marks the five evaluation tasks (start o, goal *)."""
    from matplotlib.patches import Rectangle

    grid = walls(layout)
    for i, j in np.argwhere(grid):
        ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1.0, 1.0, facecolor=color, edgecolor="none"))
    if tasks:
        for k, (start, goal) in enumerate(TASKS[layout]):
            ax.plot(start[1], start[0], "o", color=f"C{k}", ms=6)
            ax.plot(goal[1], goal[0], "*", color=f"C{k}", ms=10)
    ax.set_xlim(-0.5, grid.shape[1] - 0.5)
    ax.set_ylim(grid.shape[0] - 0.5, -0.5)
    ax.set_aspect("equal")
    return ax


@struct.dataclass
class PointMazeState(environment.EnvState):
    pos: jax.Array          # (2,) float32 (x, y) of the agent
    goal: jax.Array         # (2,) float32 (x, y) of the goal


@struct.dataclass
class PointMazeParams(environment.EnvParams):
    max_steps_in_episode: int = 1000
    max_speed: float = 0.05            # cells moved per step at |a_i| = 1 (capped at MAX_SPEED)
    reset_noise: float = 0.25          # uniform noise on start and goal positions, cells
    task_id: int = 0                   # 0: random start and goal; 1..5: evaluation task
    terminate_on_success: bool = True


class PointMaze(environment.Environment[PointMazeState, PointMazeParams]):
    """Reach a goal position in a maze with a velocity-controlled point (see the module docstring)."""

    def __init__(self, layout: str = "umaze", goal_radius: float = GOAL_RADIUS, agent_radius: float = AGENT_RADIUS):
        super().__init__()
        self.layout = check_layout(layout)
        if not 0.0 < float(goal_radius):
            raise ValueError(f"PointMaze: goal_radius must be > 0 cells, got {goal_radius!r}")
        if not 0.0 < float(agent_radius) < 0.5:
            raise ValueError(f"PointMaze: agent_radius must be in (0, 0.5) cells, got {agent_radius!r}")
        self.goal_radius = float(goal_radius)
        self.agent_radius = float(agent_radius)
        self.walls = jnp.asarray(walls(layout))
        self.free_cells = jnp.asarray(free_cells(layout), jnp.int32)
        self.tasks = jnp.asarray(TASKS[layout], jnp.int32)          # (5, 2, 2)
        distances = cell_distances(layout)
        self.cell_distances = jnp.asarray(distances)                 # (rows, cols, rows, cols)
        self.next_cells = jnp.asarray(next_cells(layout, distances))  # (rows, cols, rows, cols, 2)

    def oracle_action(self, pos: jax.Array, goal: jax.Array, params: PointMazeParams | None = None) -> jax.Array:
        """The scripted expert's action (see the module docstring) for positions ``pos`` and goals
        ``goal`` of shape (..., 2): the unit direction to the next cell centre on a shortest path, or to
        the goal within the goal cell, shortened to land exactly on the goal; clipped to [−1, 1]²."""
        params = self.default_params if params is None else params
        rows, cols = self.walls.shape
        here = cell_of(pos)
        there = cell_of(goal)
        hi, hj = jnp.clip(here[..., 0], 0, rows - 1), jnp.clip(here[..., 1], 0, cols - 1)
        gi, gj = jnp.clip(there[..., 0], 0, rows - 1), jnp.clip(there[..., 1], 0, cols - 1)
        same = (hi == gi) & (hj == gj)
        target = jnp.where(same[..., None], goal, cell_center(self.next_cells[hi, hj, gi, gj]))
        delta = target - pos
        speed = jnp.clip(params.max_speed, 1e-6, MAX_SPEED)
        norm = jnp.linalg.norm(delta, axis=-1, keepdims=True)
        return jnp.clip(delta / jnp.maximum(norm, speed), -1.0, 1.0)

    # The goal-conditioned interface: pure functions of (achieved_goal, desired_goal).
    def compute_reward(self, achieved_goal, desired_goal) -> jax.Array:
        return compute_reward(achieved_goal, desired_goal, self.goal_radius)

    def is_success(self, achieved_goal, desired_goal) -> jax.Array:
        return is_success(achieved_goal, desired_goal, self.goal_radius)

    def compute_terminated(self, achieved_goal, desired_goal, params: PointMazeParams) -> jax.Array:
        """Termination a relabeled transition would have had: success, if the env terminates on it."""
        return jnp.logical_and(self.is_success(achieved_goal, desired_goal), params.terminate_on_success)

    @property
    def name(self) -> str:
        return ENV_IDS[self.layout]

    @property
    def default_params(self) -> PointMazeParams:
        return PointMazeParams(max_steps_in_episode=MAX_STEPS[self.layout])

    def action_space(self, params: PointMazeParams | None = None):
        return spaces.Box(-1.0, 1.0, (2,), jnp.float32)

    def observation_space(self, params: PointMazeParams | None = None):
        xy = spaces.Box(0.0, float(max(self.walls.shape) - 1), (2,), jnp.float32)
        return spaces.Dict({"observation": xy, "achieved_goal": xy, "desired_goal": xy})

    def _obs(self, state: PointMazeState) -> dict:
        return {"observation": state.pos, "achieved_goal": state.pos, "desired_goal": state.goal}

    def _noisy_center(self, key, cell, params: PointMazeParams) -> jax.Array:
        # the noise keeps the agent's square inside its cell
        noise = jnp.minimum(params.reset_noise, 0.5 - self.agent_radius - 2 * EPS)
        return cell_center(cell) + jax.random.uniform(key, (2,), jnp.float32, -1.0, 1.0) * noise

    def reset_env(self, key, params: PointMazeParams):
        start_key, goal_key, start_noise, goal_noise = jax.random.split(key, 4)
        num = self.free_cells.shape[0]
        start = jax.random.randint(start_key, (), 0, num)
        goal = (start + jax.random.randint(goal_key, (), 1, num)) % num     # uniform over the other cells
        task = self.tasks[jnp.clip(params.task_id - 1, 0, NUM_TASKS - 1)]
        use_task = params.task_id > 0
        start_cell = jnp.where(use_task, task[0], self.free_cells[start])
        goal_cell = jnp.where(use_task, task[1], self.free_cells[goal])
        state = PointMazeState(pos=self._noisy_center(start_noise, start_cell, params),
                               goal=self._noisy_center(goal_noise, goal_cell, params), time=0)
        return self._obs(state), state

    def step_env(self, key, state: PointMazeState, action, params: PointMazeParams):
        action = jnp.clip(jnp.reshape(action, (2,)).astype(jnp.float32), -1.0, 1.0)
        speed = jnp.clip(params.max_speed, 0.0, MAX_SPEED)
        pos = move(self.walls, state.pos, speed * action, self.agent_radius)
        new_state = PointMazeState(pos=pos, goal=state.goal, time=state.time + 1)
        success = self.is_success(pos, state.goal)
        terminated = jnp.logical_and(success, params.terminate_on_success)
        return self._obs(new_state), new_state, self.compute_reward(pos, state.goal), terminated, {"success": success}

    def is_terminated(self, state: PointMazeState, params: PointMazeParams) -> jax.Array:
        return jnp.logical_and(self.is_success(state.pos, state.goal), params.terminate_on_success)
