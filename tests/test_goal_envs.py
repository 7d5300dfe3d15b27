"""Goal-conditioned envs: bit flipping (HER paper) against hand-computed steps, rewards and limits."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from gymnax.environments import spaces

from envs.goal_conditioned.bit_flipping import BitFlipping, BitFlippingState, compute_reward, flat_observation
from jaxrl import envs
from jaxrl.wrappers import EpisodeStatistics

KEY = jax.random.PRNGKey(0)


def bits(*values):
    return jnp.array(values, jnp.float32)


def hand_state(state, goal, time=0):
    return BitFlippingState(bits=bits(*state), goal=bits(*goal), time=time)


def run_actions(env, params, state, actions):
    """Step ``actions`` from ``state``; return the per-step outputs as numpy."""
    out = []
    for a in actions:
        obs, state, reward, terminated, truncated, info = env.step(KEY, state, jnp.int32(a), params)
        out.append((jax.tree.map(np.asarray, obs), float(reward), bool(terminated), bool(truncated),
                    bool(info["success"]), np.asarray(info["final_observation"]["observation"])))
    return out


# ----------------------------------------------------------------------------------------------
# Reward, success and the goal interface
# ----------------------------------------------------------------------------------------------
def test_compute_reward_is_minus_indicator_and_broadcasts():
    achieved = jnp.array([[0, 1, 1], [1, 1, 1], [0, 0, 0]], jnp.float32)
    desired = jnp.array([[0, 1, 1], [1, 0, 1], [1, 1, 1]], jnp.float32)
    np.testing.assert_array_equal(compute_reward(achieved, desired), [0.0, -1.0, -1.0])
    # one goal against a batch of achieved goals, and nested leading axes
    np.testing.assert_array_equal(compute_reward(achieved, bits(0, 0, 0)), [-1.0, -1.0, 0.0])
    assert compute_reward(jnp.zeros((2, 5, 3)), jnp.zeros((2, 5, 3))).shape == (2, 5)
    assert compute_reward(achieved, desired).dtype == jnp.float32
    env = BitFlipping(3)
    np.testing.assert_array_equal(env.compute_reward(achieved, desired), [0.0, -1.0, -1.0])


def test_observation_dict_spaces_and_flat_view():
    env, params = envs.make("BitFlipping-v0", n=4)
    obs, state = env.reset(KEY, params)
    assert set(obs) == {"observation", "achieved_goal", "desired_goal"}
    for value in obs.values():
        assert value.shape == (4,) and value.dtype == jnp.float32
    np.testing.assert_array_equal(obs["observation"], state.bits)
    np.testing.assert_array_equal(obs["achieved_goal"], state.bits)
    np.testing.assert_array_equal(obs["desired_goal"], state.goal)
    space = env.observation_space(params)
    assert isinstance(space, spaces.Dict) and set(space.spaces) == set(obs)
    assert env.action_space(params).n == 4
    flat = flat_observation(obs)
    np.testing.assert_array_equal(flat, np.concatenate([state.bits, state.goal]))
    batched = jax.tree.map(lambda x: jnp.stack([x, 1 - x]), obs)
    assert flat_observation(batched).shape == (2, 8)


def test_action_flips_one_bit_and_reward_on_reaching_the_goal():
    env = BitFlipping(3)
    params = env.default_params
    steps = run_actions(env, params, hand_state((0, 0, 0), (1, 0, 1)), [0, 2, 1])
    observed = [s[5].tolist() for s in steps]      # the state each step reached (pre-reset at the end)
    assert observed == [[1, 0, 0], [1, 0, 1], [1, 1, 1]]
    assert [s[1] for s in steps] == [-1.0, 0.0, -1.0]         # 0 exactly when s' == g
    assert [s[4] for s in steps] == [False, True, False]       # success of the step's new state
    assert not any(s[2] for s in steps)                        # reaching the goal does not terminate
    assert [s[3] for s in steps] == [False, False, True]       # truncated after n = 3 steps
    for s in steps[:2]:
        np.testing.assert_array_equal(s[0]["desired_goal"], [1, 0, 1])


def test_time_limit_truncates_after_n_steps_with_the_pre_reset_observation():
    env, params = envs.make("BitFlipping-5-v0")
    assert params.max_steps_in_episode == 5 and not params.terminate_on_success
    state = hand_state((0,) * 5, (1,) * 5)
    steps = run_actions(env, params, state, [0, 0, 0, 0, 1])
    assert [s[3] for s in steps] == [False] * 4 + [True]
    assert not any(s[2] for s in steps)
    np.testing.assert_array_equal(steps[-1][5], [0, 1, 0, 0, 0])   # final_observation: before the reset
    # the returned observation is a fresh episode's (time back to 0)
    obs, new_state, *_ = env.step(KEY, hand_state((0, 0, 0, 0, 0), (1,) * 5, time=4), jnp.int32(1), params)
    assert int(new_state.time) == 0


def test_terminate_on_success_variant():
    env, params = envs.make("BitFlipping-v0", n=3, terminate_on_success=True)
    steps = run_actions(env, params, hand_state((0, 0, 0), (1, 0, 0)), [0])
    _, reward, terminated, truncated, success, final = steps[0]
    assert (reward, terminated, truncated, success) == (0.0, True, False, True)
    np.testing.assert_array_equal(final, [1, 0, 0])
    np.testing.assert_array_equal(env.compute_terminated(bits(1, 0, 0), bits(1, 0, 0), params), True)
    np.testing.assert_array_equal(env.compute_terminated(bits(1, 0, 0), bits(1, 0, 0), env.default_params), False)


def test_episode_success_if_the_goal_is_reached_at_any_step():
    """EpisodeStatistics ORs info["success"]: reaching the goal then leaving it is still a success."""
    env = BitFlipping(3)
    params = env.default_params
    wrapped = EpisodeStatistics(env)
    _, state = wrapped.reset(KEY, params)
    state = state.replace(env_state=hand_state((0, 0, 0), (1, 0, 0)))
    for a in (0, 0, 1):           # reach the goal at step 1, leave it at step 2, end at step 3
        _, state, reward, terminated, truncated, info = wrapped.step(KEY, state, jnp.int32(a), params)
    assert bool(truncated) and bool(info["episode_done"])
    assert bool(info["episode_success"])
    assert float(info["episode_return"]) == -2.0


# ----------------------------------------------------------------------------------------------
# Sampling and n as a parameter
# ----------------------------------------------------------------------------------------------
def test_initial_state_and_goal_are_uniform_and_independent():
    env, params = envs.make("BitFlipping-v0", n=2)
    obs, _ = jax.vmap(env.reset, in_axes=(0, None))(jax.random.split(KEY, 16_000), params)
    s, g = np.asarray(obs["observation"]), np.asarray(obs["desired_goal"])
    # the 16 (state, goal) pairs of 2 bits: each should get 1/16 of the resets
    cell = (s @ [1, 2]) * 4 + (g @ [1, 2])
    counts = np.bincount(cell.astype(int), minlength=16)
    expected = 16_000 / 16
    chi2 = ((counts - expected) ** 2 / expected).sum()
    assert chi2 < 40.0, counts          # 15 degrees of freedom: P(chi2 > 40) ≈ 5e-4
    # a wider env: every bit is a fair coin
    env, params = envs.make("BitFlipping-v0", n=30)
    obs, _ = jax.vmap(env.reset, in_axes=(0, None))(jax.random.split(KEY, 4_000), params)
    np.testing.assert_allclose(np.asarray(obs["observation"]).mean(0), 0.5, atol=0.04)
    np.testing.assert_allclose(np.asarray(obs["desired_goal"]).mean(0), 0.5, atol=0.04)


@pytest.mark.parametrize("n", [1, 7, 50])
def test_n_sets_shapes_actions_and_episode_length(n):
    env, params = envs.make("BitFlipping-v0", n=n)
    assert params.max_steps_in_episode == n and env.num_actions == n and env.name == f"BitFlipping-{n}-v0"
    obs, state = env.reset(KEY, params)
    assert obs["observation"].shape == (n,)
    obs, state, *_ = env.step(KEY, state, jnp.int32(n - 1), params)
    assert obs["observation"].shape == (n,)


def test_registered_ids_and_bad_n():
    for n in (5, 8, 10, 15, 20, 30, 40, 50):
        env, params = envs.make(f"BitFlipping-{n}-v0")
        assert env.n == n and params.max_steps_in_episode == n
    assert envs.make("BitFlipping-v0")[0].n == 10
    for bad in (0, -3, 2.5, True):
        with pytest.raises(ValueError, match="n .the number of bits. must be an integer >= 1"):
            BitFlipping(bad)


def test_jit_and_vmap_over_keys():
    env, params = envs.make("BitFlipping-v0", n=6)
    reset = jax.jit(jax.vmap(env.reset, in_axes=(0, None)))
    obs, state = reset(jax.random.split(KEY, 4), params)
    step = jax.jit(jax.vmap(env.step, in_axes=(0, 0, 0, None)))
    obs, state, reward, terminated, truncated, info = step(jax.random.split(KEY, 4), state, jnp.arange(4), params)
    assert reward.shape == (4,) and info["success"].shape == (4,) and obs["desired_goal"].shape == (4, 6)


# ----------------------------------------------------------------------------------------------
# Four rooms with goal cells
# ----------------------------------------------------------------------------------------------
from envs.goal_conditioned.four_rooms_goal import (FREE_CELLS, MOVES, WALLS, FourRoomsGoalState,  # noqa: E402
                                                   shortest_path_lengths)


def rooms_state(cell, goal, time=0):
    return FourRoomsGoalState(cell=jnp.array(cell, jnp.int32), goal=jnp.array(goal, jnp.int32), time=time)


def test_four_rooms_walls_block_and_goal_terminates():
    env, params = envs.make("FourRoomsGoal-v0")
    assert params.terminate_on_success and params.max_steps_in_episode == 50 and len(FREE_CELLS) == 104
    # (1, 1) is the top-left corner: up and left hit walls
    for action in (0, 3):
        obs, state, reward, terminated, truncated, info = env.step(KEY, rooms_state((1, 1), (5, 5)), jnp.int32(action), params)
        np.testing.assert_array_equal(state.cell, [1, 1])
        assert float(reward) == -1.0 and not bool(terminated) and not bool(info["success"])
    obs, state, reward, terminated, truncated, info = env.step(KEY, rooms_state((5, 4), (5, 5)), jnp.int32(1), params)
    assert (float(reward), bool(terminated), bool(truncated), bool(info["success"])) == (0.0, True, False, True)
    np.testing.assert_array_equal(info["final_observation"]["achieved_goal"], [5, 5])
    np.testing.assert_array_equal(env.compute_reward(jnp.array([[5.0, 5.0], [5.0, 4.0]]), jnp.array([5.0, 5.0])), [0.0, -1.0])
    _, params_no_term = envs.make("FourRoomsGoal-v0", terminate_on_success=False)
    *_, terminated, truncated, info = env.step(KEY, rooms_state((5, 4), (5, 5)), jnp.int32(1), params_no_term)
    assert not bool(terminated) and bool(info["success"])
    *_, truncated, _ = env.step(KEY, rooms_state((1, 1), (5, 5), time=49), jnp.int32(0), params)
    assert bool(truncated)


def test_four_rooms_shortest_paths_are_walkable():
    """Following the breadth-first-search distances reaches the goal in exactly that many steps."""
    env, params = envs.make("FourRoomsGoal-v0")
    dist = shortest_path_lengths()
    assert dist.max() == 20 and (dist >= 0).all()
    index = {tuple(c): i for i, c in enumerate(FREE_CELLS)}
    rng = np.random.default_rng(0)
    step = jax.jit(env.step)
    for start, goal in rng.integers(0, len(FREE_CELLS), size=(6, 2)):
        if start == goal:
            continue
        state = rooms_state(FREE_CELLS[start], FREE_CELLS[goal])
        cell, g = FREE_CELLS[start], index[tuple(FREE_CELLS[goal])]
        for k in range(dist[start, g]):
            here = index[tuple(cell)]
            action = next(a for a, m in enumerate(MOVES)
                          if tuple(cell + m) in index and dist[index[tuple(cell + m)], g] == dist[here, g] - 1)
            _, state, reward, terminated, _, info = step(KEY, state, jnp.int32(action), params)
            cell = np.asarray(info["final_observation"]["achieved_goal"]).astype(int)
        assert bool(terminated) and float(reward) == 0.0 and tuple(cell) == tuple(FREE_CELLS[goal])


def test_four_rooms_reset_is_uniform_over_free_cells_with_a_different_goal():
    env, params = envs.make("FourRoomsGoal-v0")
    obs, _ = jax.vmap(env.reset, in_axes=(0, None))(jax.random.split(KEY, 20_800), params)
    cell, goal = np.asarray(obs["observation"]).astype(int), np.asarray(obs["desired_goal"]).astype(int)
    assert not WALLS[cell[:, 0], cell[:, 1]].any() and not WALLS[goal[:, 0], goal[:, 1]].any()
    assert (cell != goal).any(axis=1).all()
    counts = np.bincount(cell[:, 0] * 13 + cell[:, 1], minlength=169)[~WALLS.ravel()]
    chi2 = ((counts - 200) ** 2 / 200).sum()
    assert chi2 < 170, chi2         # 103 degrees of freedom: P(chi2 > 170) ≈ 4e-5
