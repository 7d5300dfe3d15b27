"""Resource Gathering, MO Mountain Car (discrete and continuous) and Four Room against MO-Gymnasium 1.3.2,
step for step, and Resource Gathering's exact Pareto front.

Float tolerance: MO Mountain Car in MO-Gymnasium computes in float64 (and its continuous version in
float32 with a float64 cosine); ours computes in float32. Each step is compared from the *same*
state (theirs is set to ours before every step, after every reset too), so the difference is one
step's rounding: ``atol = 1e-6`` on observations (positions ~1, velocities <= 0.07; float32 spacing at
1 is 1.2e-7) and 15x that on the speed objective ``15 |v|``, exact on everything else (terminations, time and move
penalties, the fuel cost ``-a**2``, which float32 rounds the same way as float64-then-float32).
Trajectories left to run freely from the same start stay within ``1e-5`` (measured 2.2e-6; one step from
the same state: 1.2e-7, one float32 spacing).
The grid worlds are compared exactly.
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from envs.multi_objective import MO_GYMNASIUM_IDS
from envs.multi_objective.four_room import FourRoom
from envs.multi_objective.mo_mountain_car import MOMountainCar
from envs.multi_objective.mo_mountain_car_continuous import MOMountainCarContinuous
from envs.multi_objective.resource_gathering import ENEMY, GRID, ResourceGathering
from jaxrl import envs

pytestmark = pytest.mark.filterwarnings("ignore:.*precision lowered by casting to float32",
                                        "ignore:.*is not within the observation space",
                                        "ignore:.*obs returned by the `step\\(\\)` method")
OBS_ATOL = 1e-6


def mo_gym_make(our_id):
    mo_gym = pytest.importorskip("mo_gymnasium")
    gym_id, gym_kwargs = MO_GYMNASIUM_IDS[our_id]
    return mo_gym.make(gym_id, **gym_kwargs)


def rollout_traced(env, params, actions, key):
    """(obs before auto-reset, reward, terminated, truncated) at every step of ``actions`` (traceable)."""

    def body(carry, action):
        state, key = carry
        key, step_key = jax.random.split(key)
        _, state, reward, terminated, truncated, info = env.step(step_key, state, action, params)
        return (state, key), (info["final_observation"], reward, terminated, truncated)

    reset_key, key = jax.random.split(key)
    _, state = env.reset(reset_key, params)
    return jax.lax.scan(body, (state, key), jnp.asarray(actions))[1]


def rollout_ours(env, params, actions, seed=1):
    """``rollout_traced`` as one compiled program, as numpy arrays."""
    run = jax.jit(lambda actions: rollout_traced(env, params, actions, jax.random.PRNGKey(seed)))
    return jax.tree.map(np.asarray, run(jnp.asarray(actions)))


def rollout_mo_gymnasium(gym_env, actions, seed=0):
    """The same records from MO-Gymnasium, resetting after every end; ``seed=None`` keeps the env
    as it is (already reset, its ``np_random`` possibly replaced)."""
    out = [], [], [], []
    if seed is not None:
        gym_env.reset(seed=seed)
    for action in actions:
        obs, reward, terminated, truncated, _ = gym_env.step(int(action))
        for seq, x in zip(out, (obs, reward, terminated, truncated)):
            seq.append(x)
        if terminated or truncated:
            gym_env.reset()
    return tuple(np.array(seq) for seq in out)


def assert_same_trajectory(ours, theirs):
    for name, a, b in zip(("observation", "reward", "terminated", "truncated"), ours, theirs):
        assert a.shape == b.shape, f"{name}: shapes {a.shape} vs {b.shape}"
        bad = np.flatnonzero(np.any((a != b).reshape(len(a), -1), axis=1))
        assert bad.size == 0, f"{name} differs first at step {bad[:1]}: ours {a[bad[:1]]}, theirs {b[bad[:1]]}"
        assert a.dtype == b.dtype or name in ("terminated", "truncated"), f"{name}: dtype {a.dtype} vs {b.dtype}"


class ScriptedRandom:
    """Stands in for MO-Gymnasium's ``np_random``: ``random()`` returns the given draws in order."""

    def __init__(self, draws):
        self.draws = list(draws)

    def random(self):
        return self.draws.pop(0)


# ----------------------------------------------------------------------------------------------
# Resource Gathering
# ----------------------------------------------------------------------------------------------
GEM_ROUTE = [3, 0, 0, 0, 3, 1, 1, 1, 2, 2]                       # 10 steps, no enemy
SAFE_GOLD_ROUTE = [2, 0, 0, 0, 0, 3, 2, 1, 1, 1, 1, 3]           # 12 steps, no enemy
GOLD_THROUGH_E1 = [0, 0, 0, 0, 1, 1, 1, 1]                       # 8 steps, E1 at steps 3 and 5
SAFE_BOTH_ROUTE = [0, 0, 2, 0, 0, 3, 2, 1, 1, 3, 3, 0, 3, 1, 1, 1, 2, 2]   # 18 steps, no enemy


def resource_gathering_actions(rng):
    routes = [GEM_ROUTE, SAFE_GOLD_ROUTE, GOLD_THROUGH_E1, SAFE_BOTH_ROUTE]
    noisy = np.concatenate([routes[i] for i in rng.integers(0, 4, 150)])
    noisy = np.where(rng.random(len(noisy)) < 0.1, rng.integers(0, 4, len(noisy)), noisy)
    # uniform actions, then up/left only: the agent sits in the top-left corner until truncated
    return np.concatenate([rng.integers(0, 4, 500), noisy, rng.choice([0, 2], 400)]).astype(np.int32)


def test_resource_gathering_matches_mo_gymnasium_step_for_step():
    """Our enemies strike with our key; MO-Gymnasium is given the same strikes through a scripted
    ``np_random`` (a draw of 0.0 strikes, 0.5 spares), so every step can be compared exactly."""
    gym_env = mo_gym_make("ResourceGathering-v0")
    env, params = envs.make("ResourceGathering-v0")
    actions = resource_gathering_actions(np.random.default_rng(0))
    ours = rollout_ours(env, params, actions)
    obs, reward = ours[0], ours[1]
    on_enemy = GRID[obs[:, 0], obs[:, 1]] == ENEMY
    draws = np.where(reward[on_enemy, 0] == -1.0, 0.0, 0.5)
    gym_env.reset(seed=0)
    gym_env.unwrapped.np_random = ScriptedRandom(draws)
    theirs = rollout_mo_gymnasium(gym_env, actions, seed=None)
    assert_same_trajectory(ours, theirs)
    assert not gym_env.unwrapped.np_random.draws                        # as many enemy encounters
    terminated, truncated = ours[2], ours[3]
    kills, gold, gem = (reward[:, 0] == -1).sum(), (reward[:, 1] == 1).sum(), (reward[:, 2] == 1).sum()
    assert kills >= 10 and gold >= 20 and gem >= 20 and ((reward[:, 1] == 1) & (reward[:, 2] == 1)).sum() >= 5
    assert truncated.sum() >= 3 and terminated.sum() >= 100 and on_enemy.sum() >= 100


def test_resource_gathering_attack_frequency_matches():
    """Each entry into an enemy cell kills with probability 0.1, in ours and in MO-Gymnasium's
    (its own RNG): both within 4 standard errors of 0.1."""
    env, params = envs.make("ResourceGathering-v0")
    actions = np.tile(np.array(GOLD_THROUGH_E1, np.int32), 40)       # E1 entered twice a trip
    keys = jax.random.split(jax.random.PRNGKey(3), 64)
    obs, reward, _, _ = jax.jit(jax.vmap(lambda k: rollout_traced(env, params, actions, k)))(keys)
    obs, reward = np.asarray(obs).reshape(-1, 4), np.asarray(reward).reshape(-1, 3)
    on_enemy = GRID[obs[:, 0], obs[:, 1]] == ENEMY
    ours_rate = (reward[on_enemy, 0] == -1).mean()

    gym_env = mo_gym_make("ResourceGathering-v0")
    gym_env.reset(seed=7)
    their_obs, their_reward, _, _ = rollout_mo_gymnasium(gym_env, np.tile(actions, 16), seed=None)
    their_on_enemy = GRID[their_obs[:, 0], their_obs[:, 1]] == ENEMY
    their_rate = (their_reward[their_on_enemy, 0] == -1).mean()
    for rate, n in ((ours_rate, on_enemy.sum()), (their_rate, their_on_enemy.sum())):
        assert n >= 1000 and abs(rate - 0.1) < 4 * np.sqrt(0.1 * 0.9 / n), (rate, n)


@pytest.mark.parametrize("route, final_reward", [(GEM_ROUTE, [0, 0, 1]), (SAFE_GOLD_ROUTE, [0, 1, 0]),
                                                 (SAFE_BOTH_ROUTE, [0, 1, 1])])
def test_resource_gathering_hand_checked_safe_routes(route, final_reward):
    obs, reward, terminated, _ = rollout_ours(*envs.make("ResourceGathering-v0"), route)
    assert not (GRID[obs[:, 0], obs[:, 1]] == ENEMY).any()             # no enemy on the way: deterministic
    assert terminated.tolist() == [False] * (len(route) - 1) + [True] and obs[-1, :2].tolist() == [4, 2]
    np.testing.assert_array_equal(reward[-1], final_reward)
    assert not reward[:-1].any()


def test_resource_gathering_front_at_gamma_1_is_both_resources_safely():
    # at gamma = 1 the route that fetches both resources and meets no enemy (18 steps) dominates
    # every other policy: [0, 1, 1] is the whole front. MO-Gymnasium's list lacks it.
    np.testing.assert_allclose(ResourceGathering().pareto_front(1.0), [[0.0, 1.0, 1.0]])
    theirs = np.array(mo_gym_make("ResourceGathering-v0").unwrapped.pareto_front(1.0))
    assert not np.all(theirs >= [0.0, 1.0, 1.0], axis=1).any()


def test_resource_gathering_front_hand_checked_points_and_mo_gymnasium():
    gamma = 0.9
    front = ResourceGathering().pareto_front(gamma)
    hand = {
        "gem only (10 steps)": [0.0, 0.0, gamma**9],
        "gold only, no enemy (12 steps)": [0.0, gamma**11, 0.0],
        "both, no enemy (18 steps)": [0.0, gamma**17, gamma**17],
        # E1 at steps 3 and 5: dies at step 3 w.p. 0.1, at step 5 w.p. 0.09, home at step 8 w.p. 0.81
        "gold through E1 both ways (8 steps)": [-0.1 * gamma**2 - 0.09 * gamma**4, 0.81 * gamma**7, 0.0],
    }
    for name, point in hand.items():
        assert np.isclose(front, point, rtol=0, atol=1e-12).all(axis=1).any(), f"{name} {point} not on the front"
    assert len(front) == 9
    geq = np.all(front[:, None] >= front[None], -1) & np.any(front[:, None] > front[None], -1)
    assert not geq.any()                                                # mutually non-dominated
    # MO-Gymnasium's six routes, discounted one power of gamma too many: divided by gamma, all six
    # are on our front at gamma = 0.9; ours has three more (the safe route to both resources among them)
    theirs = np.array(mo_gym_make("ResourceGathering-v0").unwrapped.pareto_front(gamma)) / gamma
    assert len(theirs) == 6
    for point in theirs:
        assert np.isclose(front, point, rtol=0, atol=1e-12).all(axis=1).any(), point
    for g in (0.5, 0.95, 0.99):     # at other gammas, every one of theirs is weakly dominated by ours
        ours = ResourceGathering().pareto_front(g)
        theirs = np.array(mo_gym_make("ResourceGathering-v0").unwrapped.pareto_front(g)) / g
        assert all(np.all(ours >= p - 1e-12, axis=1).any() for p in theirs), g


def test_resource_gathering_front_point_matches_monte_carlo():
    """The front's 'gold through E1 both ways' point is the mean discounted return of that route
    in 4096 sampled episodes of our env (within 4 standard errors)."""
    gamma = 0.9
    env, params = envs.make("ResourceGathering-v0")
    keys = jax.random.split(jax.random.PRNGKey(11), 4096)
    _, reward, terminated, _ = jax.jit(jax.vmap(lambda k: rollout_traced(env, params, GOLD_THROUGH_E1, k)))(keys)
    reward, terminated = np.asarray(reward, np.float64), np.asarray(terminated)
    alive = np.concatenate([np.ones((len(keys), 1), bool), np.cumsum(terminated, 1)[:, :-1] == 0], 1)
    returns = (reward * (alive * gamma ** np.arange(8))[..., None]).sum(1)
    expected = [-0.1 * gamma**2 - 0.09 * gamma**4, 0.81 * gamma**7, 0.0]
    stderr = returns.std(0) / np.sqrt(len(keys))
    assert np.all(np.abs(returns.mean(0) - expected) <= 4 * stderr + 1e-12), (returns.mean(0), expected)
    assert terminated.any(axis=1).all()                                 # every episode ended by step 8


# ----------------------------------------------------------------------------------------------
# MO Mountain Car (discrete actions) and its continuous version
# ----------------------------------------------------------------------------------------------
def pumping_action(velocity, rng, continuous):
    """Push along the velocity (reaches the goal in ~100-150 steps), with noise."""
    if continuous:
        return np.array([np.sign(velocity + 1e-9) * rng.uniform(0.3, 1.0) + rng.normal(0, 0.5)], np.float32)
    return int(2 if velocity >= 0 else 0) if rng.random() < 0.8 else int(rng.integers(0, 3))


def random_action(rng, continuous):
    return np.array([rng.normal(0, 1.2)], np.float32) if continuous else int(rng.integers(0, 3))


def compare_mountain_car(our_id, num_steps, resync, seed=0):
    """Steps ours and MO-Gymnasium's side by side under a seeded policy (pumping in even
    episodes, random in odd ones). MO-Gymnasium starts every episode from our reset state and,
    with ``resync``, from our state before every step. Returns the per-step records of both."""
    env, params = envs.make(our_id)
    continuous = not envs.is_discrete(env, params)
    gym_env = mo_gym_make(our_id)
    step = jax.jit(env.step)
    state_type = np.float32 if continuous else np.float64

    def sync(state):
        gym_env.unwrapped.state = np.array([float(state.position), float(state.velocity)], state_type)

    rng, key = np.random.default_rng(seed), jax.random.PRNGKey(seed)
    _, state = env.reset(key, params)
    gym_env.reset(seed=seed)
    sync(state)
    episode, ours, theirs = 0, [], []
    for _ in range(num_steps):
        if resync:
            sync(state)
        velocity = float(state.velocity)
        action = pumping_action(velocity, rng, continuous) if episode % 2 == 0 else random_action(rng, continuous)
        key, step_key = jax.random.split(key)
        _, state, reward, terminated, truncated, info = step(step_key, state, jnp.asarray(action), params)
        ours.append((np.asarray(info["final_observation"]), np.asarray(reward), bool(terminated), bool(truncated)))
        obs, vec_reward, gym_terminated, gym_truncated, _ = gym_env.step(action)
        theirs.append((obs, vec_reward, gym_terminated, gym_truncated))
        if gym_terminated or gym_truncated or terminated or truncated:
            gym_env.reset()
            sync(state)
            episode += 1
    return [np.array(x) for x in zip(*ours)], [np.array(x) for x in zip(*theirs)], env


def assert_mountain_car_close(ours, theirs, env, atol):
    (obs, reward, term, trunc), (gym_obs, gym_reward, gym_term, gym_trunc) = ours, theirs
    assert obs.dtype == gym_obs.dtype == np.float32 and reward.dtype == gym_reward.dtype == np.float32
    np.testing.assert_array_equal(term, gym_term)
    np.testing.assert_array_equal(trunc, gym_trunc)
    np.testing.assert_allclose(obs, gym_obs, rtol=0, atol=atol)
    names = getattr(env, "objectives", ("time", "fuel"))
    for i, name in enumerate(names):
        if name == "speed":
            np.testing.assert_allclose(reward[:, i], gym_reward[:, i], rtol=0, atol=15 * atol)
        else:
            np.testing.assert_array_equal(reward[:, i], gym_reward[:, i], err_msg=name)


@pytest.mark.parametrize("our_id", ["MOMountainCar-v0", "MOMountainCar-3d-v0", "MOMountainCar-timemove-v0",
                                    "MOMountainCar-timespeed-v0", "MOMountainCarContinuous-v0"])
def test_mountain_car_matches_mo_gymnasium_step_for_step(our_id):
    ours, theirs, env = compare_mountain_car(our_id, 1200 if "Continuous" not in our_id else 2500, resync=True)
    assert_mountain_car_close(ours, theirs, env, OBS_ATOL)
    terminated, truncated = ours[2], ours[3]
    assert terminated.sum() >= 3 and truncated.sum() >= 1            # goal reached, time limit hit
    assert (ours[0][:, 0] == np.float32(-1.2)).any()                # the left wall was hit


@pytest.mark.parametrize("our_id", ["MOMountainCar-3d-v0", "MOMountainCarContinuous-v0"])
def test_mountain_car_free_running_trajectories_stay_close(our_id):
    """Without resynchronising, float32 vs float64 rounding accumulates over an episode but stays
    below 1e-5 (measured: 2.2e-6; no termination flips in these runs)."""
    ours, theirs, env = compare_mountain_car(our_id, 1000, resync=False, seed=1)
    assert_mountain_car_close(ours, theirs, env, 1e-5)


def test_mountain_car_reset_distribution_and_fuel_of_unclipped_actions():
    env, params = envs.make("MOMountainCarContinuous-v0")
    obs, state = jax.vmap(env.reset, in_axes=(0, None))(jax.random.split(jax.random.PRNGKey(0), 2000), params)
    assert (obs[:, 0] >= -0.6).all() and (obs[:, 0] < -0.4).all() and (obs[:, 1] == 0).all()
    assert abs(float(obs[:, 0].mean()) + 0.5) < 0.01
    one = jax.tree.map(lambda x: x[0], state)
    _, big, reward_big, *_ = env.step_env(jax.random.PRNGKey(0), one, jnp.array([3.0]), params)
    _, unit, reward_unit, *_ = env.step_env(jax.random.PRNGKey(0), one, jnp.array([1.0]), params)
    assert float(reward_big[1]) == -9.0 and float(reward_unit[1]) == -1.0  # fuel: the raw action squared
    np.testing.assert_array_equal(big.velocity, unit.velocity)             # the force is clipped to 1


# ----------------------------------------------------------------------------------------------
# Four Room
# ----------------------------------------------------------------------------------------------
def test_four_room_matches_mo_gymnasium_step_for_step():
    gym_env = mo_gym_make("FourRoom-v0")
    env, params = envs.make("FourRoom-v0")
    rng = np.random.default_rng(0)
    # uniform actions (episodes truncated at 200 steps), then actions biased up (1) and right (2)
    # so that episodes collect shapes and reach the goal
    actions = np.concatenate([rng.integers(0, 4, 1000), rng.choice(4, 4000, p=[0.15, 0.35, 0.35, 0.15])])
    ours, theirs = rollout_ours(env, params, actions), rollout_mo_gymnasium(gym_env, actions)
    assert_same_trajectory(ours, theirs)
    obs, reward, terminated, truncated = ours
    assert terminated.sum() >= 10 and truncated.sum() >= 3
    assert (reward[terminated] == 1).all() and (reward[~terminated].sum(1) <= 1).all()
    assert (reward[~terminated].sum(0) >= 10).all()                  # every shape type collected, often


def test_four_room_layout_matches_mo_gymnasium():
    gym_env = mo_gym_make("FourRoom-v0").unwrapped
    env = FourRoom()
    assert tuple(env.layout["goal"]) == gym_env.goal
    assert [tuple(s) for s in env.layout["starts"]] == gym_env.initial
    assert {tuple(map(int, c)) for c in np.argwhere(env.layout["wall"])} == gym_env.occupied
    shape_cells = np.argwhere(env.layout["shape_index"] >= 0)
    ids = {tuple(map(int, c)): int(env.layout["shape_index"][tuple(c)]) for c in shape_cells}
    assert ids == gym_env.shape_ids and env.num_shapes == 12
    assert np.bincount(env.layout["shape_type"]).tolist() == [4, 4, 4]


def test_four_room_hand_checked_path():
    env, params = envs.make("FourRoom-v0")
    _, state = env.reset(jax.random.PRNGKey(0), params)

    def step(action):
        nonlocal state
        obs, state, reward, terminated, truncated, _ = env.step(jax.random.PRNGKey(0), state, action, params)
        return obs[:2].tolist(), obs[2:].tolist(), reward.tolist(), bool(terminated)

    LEFT, UP, RIGHT, DOWN = 0, 1, 2, 3
    assert step(LEFT) == ([12, 0], [0] * 12, [0.0] * 3, False)       # off the grid: stays
    for _ in range(5):
        pos, *_ = step(UP)
    assert pos == [7, 0] and step(UP)[0] == [7, 0]                     # (6, 0) is a wall
    step(RIGHT), step(RIGHT)
    # (6, 2) holds a red circle ('3'); column-major it is shape 2 ((0, 0) and (5, 0) come first)
    assert step(UP) == ([6, 2], [0, 0, 1] + [0] * 9, [0.0, 0.0, 1.0], False)
    step(DOWN)
    assert step(UP) == ([6, 2], [0, 0, 1] + [0] * 9, [0.0, 0.0, 0.0], False)   # already collected


# ----------------------------------------------------------------------------------------------
# All of them: registry, spaces, jit + vmap over 64 envs, errors
# ----------------------------------------------------------------------------------------------
NEW_IDS = {"ResourceGathering-v0": (3, 4, (4,)), "FourRoom-v0": (3, 4, (14,)), "MOMountainCar-v0": (3, 3, (2,)),
           "MOMountainCar-3d-v0": (3, 3, (2,)), "MOMountainCar-timemove-v0": (2, 3, (2,)),
           "MOMountainCar-timespeed-v0": (2, 3, (2,)), "MOMountainCarContinuous-v0": (2, None, (2,))}


@pytest.mark.parametrize("our_id", ["ResourceGathering-v0", "FourRoom-v0", "MOMountainCar-3d-v0",
                                    "MOMountainCarContinuous-v0"])
def test_64_envs_jit_and_vmap(our_id):
    env, params = envs.make(our_id, max_steps_in_episode=100)          # truncation happens too
    m, _, obs_shape = NEW_IDS[our_id]

    @jax.jit
    def run(key):
        keys = jax.random.split(key, 64)
        _, states = jax.vmap(env.reset, in_axes=(0, None))(keys, params)

        def body(states, key):
            action_keys, step_keys = jax.random.split(key, (2, 64))
            actions = jax.vmap(env.action_space(params).sample)(action_keys)
            obs, states, reward, terminated, truncated, _ = jax.vmap(env.step, in_axes=(0, 0, 0, None))(
                step_keys, states, actions, params)
            return states, (obs, reward, terminated | truncated)

        return jax.lax.scan(body, states, jax.random.split(key, 150))[1]

    obs, reward, done = run(jax.random.PRNGKey(0))
    assert obs.shape == (150, 64) + obs_shape and reward.shape == (150, 64, m) and reward.dtype == jnp.float32
    assert done.shape == (150, 64) and bool(done.any()) and bool(jnp.isfinite(reward).all())
    again = run(jax.random.PRNGKey(0))
    np.testing.assert_array_equal(np.asarray(again[1]), np.asarray(reward))     # deterministic given the key


def test_registry_ids_and_spaces():
    for our_id, (m, n_actions, obs_shape) in NEW_IDS.items():
        env, params = envs.make(our_id)
        assert env.num_objectives == m and our_id in MO_GYMNASIUM_IDS and env.name == our_id
        assert env.observation_space(params).shape == obs_shape
        gym_env = mo_gym_make(our_id)
        assert gym_env.unwrapped.reward_dim == m
        assert gym_env.spec.max_episode_steps == params.max_steps_in_episode
        if n_actions is None:
            assert not envs.is_discrete(env, params) and env.action_space(params).shape == (1,)
        else:
            assert envs.is_discrete(env, params) and env.action_space(params).n == n_actions == gym_env.action_space.n
    assert envs.make("ResourceGathering-v0", attack_prob=0.0)[1].attack_prob == 0.0
    # the continuous id is envs/multi_objective/mo_mountain_car_continuous.py's env, not the discrete one's
    assert isinstance(envs.make("MOMountainCarContinuous-v0")[0], MOMountainCarContinuous)


def test_bad_arguments_are_clear_errors():
    with pytest.raises(ValueError, match=r"unknown MO Mountain Car variant 'fast'; allowed: \['3d', 'default'"):
        MOMountainCar("fast")
    with pytest.raises(ValueError, match="exactly one 'G'"):
        FourRoom(maze=("_  ", "   "))
    with pytest.raises(ValueError, match="gamma must be in"):
        ResourceGathering().pareto_front(1.5)
    with pytest.raises(ValueError, match="attack_prob must be in"):
        ResourceGathering().pareto_front(0.9, ResourceGathering().default_params.replace(attack_prob=2.0))
