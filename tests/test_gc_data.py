"""Offline goal-conditioned data: the point-maze oracle (reaches every layout's five evaluation tasks),
the navigate/stitch datasets of scripts/make_dataset.py, and jaxrl/gc_data.py's OGBench-style goal
sampling on hand-built trajectories (exact answers, and sampling frequencies on many draws)."""
from __future__ import annotations

import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from envs.goal_conditioned import point_maze
from jaxrl import data as data_lib
from jaxrl import envs, gc_data
from jaxrl.config import ConfigError

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
import make_dataset  # noqa: E402

# ---------------------------------------------------------------------------------------------
# The oracle
# ---------------------------------------------------------------------------------------------
def test_cell_distances_and_next_cells_on_the_umaze():
    # U maze: (1,1) (1,2) (1,3) / (2,3) / (3,1) (3,2) (3,3): the path from (1,1) to (3,1) goes round the U
    dist = point_maze.cell_distances("umaze")
    assert dist[1, 1, 3, 1] == 6 and dist[1, 1, 1, 3] == 2 and dist[2, 3, 2, 3] == 0
    assert dist[0, 0, 1, 1] == -1                                       # a wall
    nxt = point_maze.next_cells("umaze", dist)
    assert tuple(nxt[1, 1, 3, 1]) == (1, 2) and tuple(nxt[1, 3, 3, 1]) == (2, 3) and tuple(nxt[3, 3, 3, 1]) == (3, 2)
    assert tuple(nxt[2, 3, 2, 3]) == (2, 3)                             # at the goal: stay
    # corridor cells are no vertex cells: (2, 3) is free above and below with walls left and right
    assert (2, 3) not in {tuple(c) for c in point_maze.vertex_cells("umaze")}
    assert len(point_maze.vertex_cells("open")) == len(point_maze.free_cells("open"))


def test_oracle_action_is_a_unit_step_towards_the_next_cell_and_stops_on_the_goal():
    env, params = envs.make("PointMaze-UMaze-v0")
    a = env.oracle_action(jnp.array([1.0, 1.0]), jnp.array([1.0, 3.0]), params)  # cell (1,1) -> next (1,2) at x=2
    np.testing.assert_allclose(np.asarray(a), [1.0, 0.0], atol=1e-6)
    close = env.oracle_action(jnp.array([1.0, 1.0]), jnp.array([1.02, 1.01]), params)  # within one step of the goal
    np.testing.assert_allclose(np.asarray(close), [0.02 / 0.05, 0.01 / 0.05], rtol=1e-4)


@pytest.mark.parametrize("env_id", list(point_maze.ENV_IDS.values()))
def test_oracle_reaches_every_evaluation_task_within_the_time_limit(env_id):
    env, params = envs.make(env_id)

    def episode(key, task_id):
        p = params.replace(task_id=task_id)
        _, state = env.reset(key, p)

        def step(carry, k):
            state, reached = carry
            _, state, _, _, info = env.step_env(k, state, env.oracle_action(state.pos, state.goal, p), p)
            return (state, reached | info["success"]), None

        (_, reached), _ = jax.lax.scan(step, (state, False), jax.random.split(key, p.max_steps_in_episode))
        return reached

    keys = jax.random.split(jax.random.PRNGKey(0), 4)
    reached = jax.jit(jax.vmap(jax.vmap(episode, (0, None)), (None, 0)))(keys, jnp.arange(1, 6))
    assert np.asarray(reached).all(), np.asarray(reached)


# ---------------------------------------------------------------------------------------------
# Datasets (scripts/make_dataset.py, point-maze kinds)
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def maze_datasets(tmp_path_factory):
    folder = tmp_path_factory.mktemp("maze_data")
    nav, _ = make_dataset.build("PointMaze-UMaze-v0", "navigate", 2_000, 0, folder / "nav.npz", quiet=True)
    stitch, _ = make_dataset.build("PointMaze-UMaze-v0", "stitch", 2_000, 0, folder / "stitch.npz", quiet=True)
    again, _ = make_dataset.build("PointMaze-UMaze-v0", "stitch", 2_000, 0, folder / "again.npz", quiet=True)
    return nav, stitch, again


def test_maze_datasets_are_deterministic_and_documented(maze_datasets):
    nav, stitch, again = maze_datasets
    assert stitch.info.checksum == again.info.checksum and stitch.info.checksum != nav.info.checksum
    assert nav.size == 2_000 and stitch.size == 2_000
    assert nav.info.kind == "navigate" and "oracle" in nav.info.policy and "0.2" in nav.info.policy
    assert nav.observations.shape == (2_000, 2) and nav.extras["goals"].shape == (2_000, 2)
    np.testing.assert_array_equal(np.asarray(nav.terminations), 0.0)
    # trajectory boundaries: 2 navigate episodes of 1000 steps, 10 stitch episodes of 200
    assert np.flatnonzero(np.asarray(nav.truncations)).tolist() == [999, 1999]
    assert np.flatnonzero(np.asarray(stitch.truncations)).tolist() == list(range(199, 2_000, 200))
    np.testing.assert_array_equal(np.asarray(stitch.extras["final_index"]),
                                  gc_data.final_indices(stitch.terminations, stitch.truncations))
    # consecutive transitions chain within a trajectory
    ends = np.asarray(stitch.truncations) > 0
    np.testing.assert_array_equal(np.asarray(stitch.next_observations)[:-1][~ends[:-1]],
                                  np.asarray(stitch.observations)[1:][~ends[:-1]])
    # rewards are the env's goal reward against the collecting goal
    np.testing.assert_array_equal(np.asarray(nav.rewards),
                                  np.asarray(point_maze.compute_reward(nav.next_observations, nav.extras["goals"])))


def test_stitch_goals_are_four_cells_away_and_navigate_goals_change_on_success(maze_datasets):
    nav, stitch, _ = maze_datasets
    dist = point_maze.cell_distances("umaze")
    obs, goals = np.asarray(stitch.observations), np.asarray(stitch.extras["goals"])
    far = 0
    for start in range(0, stitch.size, 200):
        s = np.asarray(point_maze.cell_of(obs[start]))
        g = np.asarray(point_maze.cell_of(goals[start]))
        if (dist[s[0], s[1]] == 4).any():
            assert dist[s[0], s[1], g[0], g[1]] == 4
            far += 1
        else:                                                           # the U's middle cell: none that far
            assert tuple(s) == tuple(g) == (2, 3)
        assert np.all(goals[start:start + 200] == goals[start])         # one goal per stitch episode
        assert np.mean(np.asarray(stitch.rewards)[start + 150:start + 200] == 0) > 0.8  # and it stays there
    assert far >= 5
    vertices = {tuple(c) for c in point_maze.vertex_cells("umaze")}
    nav_goals, success = np.asarray(nav.extras["goals"]), np.asarray(nav.rewards) == 0
    changed = np.flatnonzero(np.any(nav_goals[1:] != nav_goals[:-1], axis=1))
    changed = changed[(changed + 1) % 1000 != 0]                        # within an episode
    assert len(changed) >= 5 and success[changed].all()                 # a new goal right after each success
    assert {tuple(np.asarray(point_maze.cell_of(g))) for g in nav_goals} <= vertices


def test_maze_kinds_only_on_point_mazes(tmp_path):
    with pytest.raises(ConfigError, match="navigate, stitch"):
        make_dataset.build("PointMaze-Open-v0", "medium", 2_000, 0, tmp_path / "x.npz", quiet=True)
    with pytest.raises(ConfigError, match="point mazes only"):
        make_dataset.build("CartPole-v1", "stitch", 2_000, 0, tmp_path / "x.npz", quiet=True)
    with pytest.raises(ConfigError, match="at least one navigate episode"):
        make_dataset.build("PointMaze-Open-v0", "navigate", 999, 0, tmp_path / "x.npz", quiet=True)


# ---------------------------------------------------------------------------------------------
# Goal sampling on hand-built trajectories
# ---------------------------------------------------------------------------------------------
def hand_dataset(ends, n):
    """n transitions whose observation is (index, 0); trajectories end at ``ends`` (truncations)."""
    obs = jnp.stack([jnp.arange(n, dtype=jnp.float32), jnp.zeros(n)], axis=1)
    trunc = jnp.zeros(n).at[jnp.asarray(ends)].set(1.0)
    zeros = jnp.zeros(n)
    return data_lib.Dataset(obs, jnp.zeros((n, 2)), zeros, obs + 1.0, zeros, trunc,
                            info=data_lib.DatasetInfo(env_id="PointMaze-Open-v0", size=n))


def test_final_indices_of_hand_built_trajectories():
    term = np.array([0, 0, 1, 0, 0, 0, 0, 0], np.float32)
    trunc = np.array([0, 0, 0, 0, 1, 0, 0, 0], np.float32)   # the last one is unflagged: it still ends
    assert gc_data.final_indices(term, trunc).tolist() == [2, 2, 2, 4, 4, 7, 7, 7]


CUR = gc_data.GoalMixture(1.0, 0.0, 0.0, True)
GEOM = gc_data.GoalMixture(0.0, 1.0, 0.0, True)
UNIFORM = gc_data.GoalMixture(0.0, 1.0, 0.0, False)
RANDOM = gc_data.GoalMixture(0.0, 0.0, 1.0, True)


def draw(mixture, idx, final, size, gamma=0.5, seed=0):
    return np.asarray(jax.jit(lambda k: gc_data.sample_goal_indices(k, idx, final, size, mixture, gamma))(
        jax.random.PRNGKey(seed)))


def test_goal_sources_never_cross_a_trajectory_boundary():
    final = jnp.asarray(gc_data.final_indices(np.zeros(10), np.eye(10)[[3, 9]].sum(0)))   # trajectories 0-3, 4-9
    idx = jnp.tile(jnp.arange(10), 2_000)
    f = np.asarray(final)[np.asarray(idx)]
    i = np.asarray(idx)
    np.testing.assert_array_equal(draw(CUR, idx, final[idx], 10), i)
    for mixture in (GEOM, UNIFORM):
        g = draw(mixture, idx, final[idx], 10)
        assert np.all(g <= f) and np.all((g > i) | (i == f)) and np.all(g[i == f] == i[i == f])
        assert set(g[i == 4].tolist()) == {5, 6, 7, 8, 9}               # every later state is reachable
    g = draw(RANDOM, idx, final[idx], 10)
    assert set(g.tolist()) == set(range(10))                            # random goals span the dataset


def test_geometric_offsets_have_the_geometric_law():
    # one long trajectory: offsets k = goal - idx ~ Geometric(1 - γ) on {1, 2, ...}: P(k) = γ^(k-1) (1 - γ)
    n, gamma = 100_000, 0.8
    idx = jnp.zeros(n, jnp.int32)
    k = draw(GEOM, idx, jnp.full(n, 10 ** 6, jnp.int32), 10 ** 6, gamma)
    for value in (1, 2, 3):
        assert np.mean(k == value) == pytest.approx(gamma ** (value - 1) * (1 - gamma), abs=0.01)
    assert k.mean() == pytest.approx(1 / (1 - gamma), rel=0.02)


def test_uniform_future_goals_are_uniform_up_to_the_end():
    n = 60_000
    g = draw(UNIFORM, jnp.zeros(n, jnp.int32), jnp.full(n, 4, jnp.int32), 5)
    # OGBench rounds (idx+1) d + final (1-d): 1 and 4 get half the mass of 2 and 3
    freq = np.bincount(g, minlength=5) / n
    np.testing.assert_allclose(freq, [0, 1 / 6, 1 / 3, 1 / 3, 1 / 6], atol=0.01)


def test_mixture_proportions():
    # idx in a 10-state trajectory; the rest of the dataset (10,000 states) is another trajectory, so a
    # random goal lands outside with probability 0.999
    size = 10_010
    final = jnp.full(50_000, 9, jnp.int32)
    idx = jnp.asarray(np.random.default_rng(0).integers(0, 9, 50_000), jnp.int32)
    g = draw(gc_data.GoalMixture(0.2, 0.5, 0.3, True), idx, final, size, gamma=0.9)
    i = np.asarray(idx)
    assert np.mean(g == i) == pytest.approx(0.2, abs=0.01)
    assert np.mean((g > i) & (g <= 9)) == pytest.approx(0.5, abs=0.01)
    assert np.mean(g >= 10) == pytest.approx(0.3 * 0.999, abs=0.01)


def test_goal_reward_and_mask():
    obs = jnp.array([[0.0, 0.0], [0.1, 0.0], [1.0, 0.0]])
    idx, goal = jnp.array([0, 0, 0, 2]), jnp.array([0, 1, 2, 2])
    reward, mask = gc_data.goal_reward(obs, idx, goal)                  # OGBench: only the same index succeeds
    np.testing.assert_array_equal(np.asarray(reward), [0, -1, -1, 0])
    np.testing.assert_array_equal(np.asarray(mask), [0, 1, 1, 0])
    reward, mask = gc_data.goal_reward(obs, idx, goal, 0.25)            # the env's radius: (0.1, 0) is close
    np.testing.assert_array_equal(np.asarray(reward), [0, 0, -1, 0])
    np.testing.assert_array_equal(np.asarray(mask), [0, 0, 1, 0])


def test_sample_batch_is_consistent():
    data = gc_data.prepare(hand_dataset([3, 9], 10))
    batch = jax.jit(lambda k: gc_data.sample_batch(k, data, 512, gc_data.GoalMixture(0.2, 0.5, 0.3, True),
                                                   UNIFORM, 0.9))(jax.random.PRNGKey(3))
    b = {k: np.asarray(v) for k, v in batch.items()}
    assert b["observations"].shape == (512, 2) and b["value_goals"].shape == (512, 2)
    np.testing.assert_array_equal(b["observations"][:, 0], b["idx"])
    np.testing.assert_array_equal(b["value_goals"][:, 0], b["value_goal_idx"])
    np.testing.assert_array_equal(b["actor_goals"][:, 0], b["actor_goal_idx"])
    np.testing.assert_array_equal(b["rewards"], np.where(b["idx"] == b["value_goal_idx"], 0.0, -1.0))
    np.testing.assert_array_equal(b["masks"], -b["rewards"])
    final = np.asarray(data.extras["final_index"])[b["idx"]]
    assert np.all(b["actor_goal_idx"] <= final) and np.all((b["actor_goal_idx"] > b["idx"]) | (b["idx"] == final))


def test_bad_mixture_raises():
    with pytest.raises(ConfigError, match="sum to 1"):
        gc_data.check_mixture("value", gc_data.GoalMixture(0.2, 0.5, 0.5, True))
    with pytest.raises(ConfigError, match="value"):
        gc_data.check_mixture("value", gc_data.GoalMixture(-0.2, 0.7, 0.5, True))
