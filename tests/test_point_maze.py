"""Point maze: wall grids, collisions (never inside a wall), resets, success, rewards, time limits,
evaluation tasks (a scripted BFS controller solves all five of every layout), vectorization, errors."""
from collections import deque

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from gymnax.environments import spaces

from envs.goal_conditioned import point_maze as pm
from envs.goal_conditioned.point_maze import PointMaze, PointMazeState, compute_reward
from jaxrl import envs

KEY = jax.random.PRNGKey(0)
R = pm.AGENT_RADIUS


def state_at(pos, goal, time=0):
    return PointMazeState(pos=jnp.array(pos, jnp.float32), goal=jnp.array(goal, jnp.float32), time=time)


def step_to(env, params, state, action):
    """One step with a fixed action; returns (position reached, reward, terminated, truncated, info)."""
    obs, new_state, reward, terminated, truncated, info = env.step(KEY, state, jnp.array(action, jnp.float32), params)
    return np.asarray(info["final_observation"]["observation"]), float(reward), bool(terminated), bool(truncated), info


# ----------------------------------------------------------------------------------------------
# Layouts
# ----------------------------------------------------------------------------------------------
def test_walls_are_the_d4rl_and_ogbench_grids():
    umaze = np.array([[1, 1, 1, 1, 1], [1, 0, 0, 0, 1], [1, 1, 1, 0, 1], [1, 0, 0, 0, 1], [1, 1, 1, 1, 1]], bool)
    np.testing.assert_array_equal(pm.walls("umaze"), umaze)
    # OGBench's maze_map for "medium", as its 0/1 matrix
    medium = np.array([[1, 1, 1, 1, 1, 1, 1, 1], [1, 0, 0, 1, 1, 0, 0, 1], [1, 0, 0, 1, 0, 0, 0, 1],
                       [1, 1, 0, 0, 0, 1, 1, 1], [1, 0, 0, 1, 0, 0, 0, 1], [1, 0, 1, 0, 0, 1, 0, 1],
                       [1, 0, 0, 0, 1, 0, 0, 1], [1, 1, 1, 1, 1, 1, 1, 1]], bool)
    np.testing.assert_array_equal(pm.walls("medium"), medium)
    shapes = {"open": (5, 7), "umaze": (5, 5), "medium": (8, 8), "large": (9, 12), "giant": (12, 16)}
    free = {"open": 15, "umaze": 7, "medium": 26, "large": 46, "giant": 86}
    for layout in pm.LAYOUTS:
        grid = pm.walls(layout)
        assert grid.shape == shapes[layout] and (~grid).sum() == free[layout], layout
        assert grid[0].all() and grid[-1].all() and grid[:, 0].all() and grid[:, -1].all()   # closed border
        np.testing.assert_array_equal(PointMaze(layout).walls, grid)
        for start, goal in pm.TASKS[layout]:
            assert not grid[start] and not grid[goal] and start != goal, (layout, start, goal)


def test_unknown_layout_error_lists_the_valid_ones():
    with pytest.raises(ValueError, match="unknown maze layout 'huge'; valid layouts: open, umaze, medium, large, giant"):
        PointMaze("huge")
    with pytest.raises(ValueError, match="valid layouts: open, umaze, medium, large, giant"):
        envs.make("PointMaze-Open-v0", layout="huge")
    with pytest.raises(ValueError, match="agent_radius"):
        PointMaze("open", agent_radius=0.5)


def test_registered_ids_and_layout_override():
    for layout, env_id in pm.ENV_IDS.items():
        env, params = envs.make(env_id)
        assert env.layout == layout and env.name == env_id
        assert params.max_steps_in_episode == pm.MAX_STEPS[layout]
    env, params = envs.make("PointMaze-Open-v0", layout="large", max_steps_in_episode=7)
    assert env.layout == "large" and params.max_steps_in_episode == 7
    assert isinstance(env.action_space(params), spaces.Box) and env.action_space(params).shape == (2,)
    assert set(env.observation_space(params).spaces) == {"observation", "achieved_goal", "desired_goal"}


def test_ogbench_coordinates():
    # OGBench: x = 4 j - 4, y = 4 i - 4 for cell (i, j); our cell (i, j) is at (x, y) = (j, i)
    np.testing.assert_allclose(pm.to_ogbench_xy(pm.cell_center((6, 6))), [20.0, 20.0])
    np.testing.assert_allclose(pm.to_ogbench_xy(pm.cell_center((1, 10))), [36.0, 0.0])


# ----------------------------------------------------------------------------------------------
# Collisions
# ----------------------------------------------------------------------------------------------
def test_collisions_stop_flush_against_walls_hand_cases():
    env = PointMaze("umaze")
    fast = env.default_params.replace(max_speed=0.5)
    goal = (3.0, 3.0)
    # from the centre of cell (1, 1) = (x 1, y 1): left, up and diagonally into the corner
    assert np.allclose(step_to(env, fast, state_at((1.0, 1.0), goal), (-1, 0))[0], [0.5 + R, 1.0])
    assert np.allclose(step_to(env, fast, state_at((1.0, 1.0), goal), (0, -1))[0], [1.0, 0.5 + R])
    assert np.allclose(step_to(env, fast, state_at((1.0, 1.0), goal), (-1, -1))[0], [0.5 + R, 0.5 + R])
    # down from (x 2, y 1): cell (2, 2) is a wall; from (x 3, y 1) cell (2, 3) is free
    assert np.allclose(step_to(env, fast, state_at((2.0, 1.0), goal), (0, 1))[0], [2.0, 1.5 - R])
    assert np.allclose(step_to(env, fast, state_at((3.0, 1.0), goal), (0, 1))[0], [3.0, 1.5])
    # sliding along a wall: x moves freely, y stays flush; the square straddling columns 2 and 3
    # cannot cut the corner of wall cell (2, 2) into the corridor below (2, 3)
    assert np.allclose(step_to(env, fast, state_at((2.0, 1.5 - R), goal), (1, 1))[0], [2.5, 1.5 - R])
    # the default speed moves 0.05 cells per unit action; actions are clipped to [-1, 1]
    assert np.allclose(step_to(env, env.default_params, state_at((1.0, 1.0), goal), (3.0, -0.5))[0], [1.05, 0.975])
    # speeds above MAX_SPEED are capped (a step never crosses a whole cell)
    too_fast = env.default_params.replace(max_speed=5.0)
    assert np.allclose(step_to(env, too_fast, state_at((1.0, 1.0), goal), (1, 0))[0], [1.5, 1.0])


def _inside_walls(grid, pos, margin):
    """Whether the agent's square (shrunk by ``margin``) overlaps a wall cell, per position."""
    corners = np.array([[-1, -1], [-1, 1], [1, -1], [1, 1]]) * (R - margin)
    pts = pos[..., None, :] + corners                               # [..., 4, (x, y)]
    cols, rows = np.floor(pts[..., 0] + 0.5).astype(int), np.floor(pts[..., 1] + 0.5).astype(int)
    outside = (rows < 0) | (rows >= grid.shape[0]) | (cols < 0) | (cols >= grid.shape[1])
    return outside.any(-1) | grid[np.clip(rows, 0, grid.shape[0] - 1), np.clip(cols, 0, grid.shape[1] - 1)].any(-1)


@pytest.mark.parametrize("layout", list(pm.LAYOUTS))
def test_random_full_speed_actions_never_enter_a_wall(layout):
    """256 envs from random resets, 300 steps of random full-speed actions (axis-aligned and diagonal,
    re-drawn every 5 steps so that the agent pushes into walls and corners), at the fastest allowed
    speed and at the default one: no position ever has the agent's square inside a wall cell."""
    env = PointMaze(layout)
    grid = pm.walls(layout)
    directions = jnp.array([[1, 0], [-1, 0], [0, 1], [0, -1], [1, 1], [1, -1], [-1, 1], [-1, -1]], jnp.float32)

    def rollout(key, max_speed):
        params = env.default_params.replace(max_speed=max_speed, max_steps_in_episode=10_000)
        reset_key, pick_key, uniform_key = jax.random.split(key, 3)
        _, state = env.reset(reset_key, params)
        picks = jax.random.randint(pick_key, (60,), 0, 8).repeat(5)        # held for 5 steps
        uniform = jax.random.uniform(uniform_key, (300, 2), minval=-1.0, maxval=1.0)
        full_speed = (jnp.arange(300) // 50) % 2 == 0                      # alternate 50-step phases

        def body(state, inputs):
            pick, random_action, full = inputs
            action = jnp.where(full, directions[pick], random_action)
            _, state, _, _, _ = env.step_env(KEY, state, action, params)     # no auto-reset: keep pushing
            return state, state.pos

        return jax.lax.scan(body, state, (picks, uniform, full_speed))[1]

    keys = jax.random.split(KEY, 256)
    for speed in (pm.MAX_SPEED, 0.05):
        positions = np.asarray(jax.jit(jax.vmap(rollout, in_axes=(0, None)))(keys, speed))
        assert not _inside_walls(grid, positions, 1e-3).any(), (layout, speed)
        if speed == pm.MAX_SPEED:   # the walls were really hit: some squares end flush against one
            gap = np.abs(positions - np.round(positions + 0.5) + 0.5) - R
            assert (np.abs(gap) < 1e-4).any()


# ----------------------------------------------------------------------------------------------
# Resets, evaluation tasks, success, reward, time limit
# ----------------------------------------------------------------------------------------------
def test_resets_sample_distinct_free_cells_with_bounded_noise():
    env, params = envs.make("PointMaze-UMaze-v0")
    obs, state = jax.jit(jax.vmap(env.reset, in_axes=(0, None)))(jax.random.split(KEY, 2000), params)
    pos, goal = np.asarray(state.pos), np.asarray(state.goal)
    np.testing.assert_array_equal(obs["observation"], pos)
    np.testing.assert_array_equal(obs["achieved_goal"], pos)
    np.testing.assert_array_equal(obs["desired_goal"], goal)
    grid = pm.walls("umaze")
    for xy in (pos, goal):
        cell = np.round(xy).astype(int)[:, ::-1]                    # (row, col)
        assert not grid[cell[:, 0], cell[:, 1]].any()
        assert np.abs(xy - np.round(xy)).max() <= 0.25 + 1e-6       # OGBench's noise: ±1 in units of 4
        assert np.abs(xy - np.round(xy)).max() > 0.2                # and it is used
        assert len({tuple(c) for c in cell}) == 7                   # every free cell is drawn
    assert (np.round(pos) != np.round(goal)).any(axis=1).all()     # start and goal cells differ


def test_task_ids_select_the_evaluation_tasks_vmapped():
    env, params = envs.make("PointMaze-Medium-v0")

    def reset_task(task_id, key):
        return env.reset(key, params.replace(task_id=task_id))[1]

    state = jax.jit(jax.vmap(reset_task))(jnp.arange(1, 6), jax.random.split(KEY, 5))
    tasks = np.array(pm.TASKS["medium"])                            # OGBench task1..task5
    np.testing.assert_allclose(state.pos, tasks[:, 0, ::-1], atol=0.25 + 1e-6)
    np.testing.assert_allclose(state.goal, tasks[:, 1, ::-1], atol=0.25 + 1e-6)
    exact = jax.vmap(lambda t: env.reset(KEY, params.replace(task_id=t, reset_noise=0.0))[1])(jnp.arange(1, 6))
    np.testing.assert_array_equal(exact.pos, tasks[:, 0, ::-1])
    np.testing.assert_array_equal(exact.goal, tasks[:, 1, ::-1])


def test_compute_reward_hand_cases_and_broadcasting():
    achieved = jnp.array([[1.0, 1.0], [1.0, 1.0], [2.0, 3.0], [5.0, 5.0]])
    desired = jnp.array([[1.0, 1.24], [1.2, 1.2], [2.0, 3.26], [1.0, 1.0]])
    # distances 0.24, 0.28, 0.26, 5.66 against the radius 0.25
    np.testing.assert_array_equal(compute_reward(achieved, desired), [0.0, -1.0, -1.0, -1.0])
    np.testing.assert_array_equal(pm.is_success(achieved, desired), [True, False, False, False])
    assert compute_reward(jnp.zeros((3, 4, 2)), jnp.zeros((3, 4, 2))).shape == (3, 4)
    np.testing.assert_array_equal(compute_reward(achieved, jnp.array([1.0, 1.0])), [0.0, 0.0, -1.0, -1.0])
    env = PointMaze("open", goal_radius=0.5)
    np.testing.assert_array_equal(env.compute_reward(achieved, desired), [0.0, 0.0, 0.0, -1.0])
    assert compute_reward(achieved, desired).dtype == jnp.float32


def test_success_within_the_radius_terminates_with_reward_zero():
    env = PointMaze("open")
    params = env.default_params
    # goal 0.24 cells right of where the step lands: success, reward 0, terminated
    pos, reward, terminated, truncated, info = step_to(env, params, state_at((2.0, 2.0), (2.29, 2.0)), (1, 0))
    np.testing.assert_allclose(pos, [2.05, 2.0])
    assert (reward, terminated, truncated, bool(info["success"])) == (0.0, True, False, True)
    # 0.26 cells away: nothing
    _, reward, terminated, _, info = step_to(env, params, state_at((2.0, 2.0), (2.31, 2.0)), (1, 0))
    assert (reward, terminated, bool(info["success"])) == (-1.0, False, False)
    # without termination on success the episode goes on, success is still reported
    _, reward, terminated, _, info = step_to(env, params.replace(terminate_on_success=False),
                                             state_at((2.0, 2.0), (2.29, 2.0)), (1, 0))
    assert (reward, terminated, bool(info["success"])) == (0.0, False, True)
    assert bool(env.compute_terminated(jnp.array([2.05, 2.0]), jnp.array([2.29, 2.0]), params))


def test_time_limit_truncates_with_the_pre_reset_observation():
    env, params = envs.make("PointMaze-Open-v0", max_steps_in_episode=3)
    state = state_at((1.0, 1.0), (5.0, 3.0))
    flags = []
    for t in range(3):
        obs, state_next, reward, terminated, truncated, info = env.step(KEY, state, jnp.array([1.0, 0.0]), params)
        flags.append((bool(terminated), bool(truncated)))
        final = np.asarray(info["final_observation"]["observation"])
        np.testing.assert_allclose(final, [1.0 + 0.05 * (t + 1), 1.0], atol=1e-6)
        state = state_next
    assert flags == [(False, False), (False, False), (False, True)]
    assert int(state.time) == 0                                     # auto-reset after truncation
    assert not np.allclose(obs["observation"], final)


def test_jit_vmap_64_envs():
    env, params = envs.make("PointMaze-Large-v0")
    reset = jax.jit(jax.vmap(env.reset, in_axes=(0, None)))
    step = jax.jit(jax.vmap(env.step, in_axes=(0, 0, 0, None)))
    obs, state = reset(jax.random.split(KEY, 64), params)
    actions = jax.random.uniform(KEY, (64, 2), minval=-1, maxval=1)
    obs, state, reward, terminated, truncated, info = step(jax.random.split(KEY, 64), state, actions, params)
    for value in obs.values():
        assert value.shape == (64, 2) and value.dtype == jnp.float32
    assert reward.shape == terminated.shape == truncated.shape == info["success"].shape == (64,)


def _bfs_distances(grid, goal):
    dist = np.full(grid.shape, 10_000, np.int32)
    dist[goal] = 0
    queue = deque([goal])
    while queue:
        i, j = queue.popleft()
        for di, dj in ((1, 0), (-1, 0), (0, 1), (0, -1)):
            a, b = i + di, j + dj
            if not grid[a, b] and dist[a, b] == 10_000:
                dist[a, b] = dist[i, j] + 1
                queue.append((a, b))
    return dist


@pytest.mark.parametrize("layout", list(pm.LAYOUTS))
def test_a_scripted_controller_solves_every_evaluation_task_within_the_time_limit(layout):
    """Steering to the centre of the next cell on a shortest cell path (then to the goal) reaches the
    goal of all five tasks, from 4 noisy resets each, before the layout's time limit."""
    env, params = envs.make(pm.ENV_IDS[layout])
    grid = pm.walls(layout)
    dist = jnp.asarray(np.stack([_bfs_distances(grid, goal) for _, goal in pm.TASKS[layout]]))
    moves = jnp.array([[1, 0], [-1, 0], [0, 1], [0, -1]])

    def controller(task_dist, pos, goal):
        cell = jnp.round(pos[::-1]).astype(jnp.int32)
        neighbours = cell + moves
        best = neighbours[jnp.argmin(task_dist[neighbours[:, 0], neighbours[:, 1]])]
        target = jnp.where(task_dist[cell[0], cell[1]] == 0, goal, best[::-1].astype(jnp.float32))
        return jnp.clip((target - pos) / params.max_speed, -1.0, 1.0)

    def episode(task_id, key):
        task_params = params.replace(task_id=task_id)
        _, state = env.reset(key, task_params)

        def body(carry, _):
            state, done, steps = carry
            action = controller(dist[task_id - 1], state.pos, state.goal)
            _, next_state, _, _, info = env.step_env(KEY, state, action, task_params)
            return (next_state, done | info["success"], steps + (~done)), None

        (_, done, steps), _ = jax.lax.scan(body, (state, False, 0), None, params.max_steps_in_episode)
        return done, steps

    task_ids = jnp.repeat(jnp.arange(1, 6), 4)
    done, steps = jax.jit(jax.vmap(episode))(task_ids, jax.random.split(KEY, 20))
    assert np.asarray(done).all(), (layout, np.asarray(steps))
    assert np.asarray(steps).max() < params.max_steps_in_episode


def test_draw_maze_draws_every_wall_cell():
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    pm.draw_maze(ax, "medium", tasks=True)
    assert len(ax.patches) == pm.walls("medium").sum()
    assert ax.get_xlim() == (-0.5, 7.5) and ax.get_ylim() == (7.5, -0.5)
    plt.close(fig)
    with pytest.raises(ValueError, match="valid layouts"):
        pm.draw_maze(None, "nope")
