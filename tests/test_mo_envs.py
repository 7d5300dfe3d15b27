"""Multi-objective envs: step-for-step equality with MO-Gymnasium 1.3.2, exact Pareto fronts, and the
LinearScalarization wrapper (vmapped over weights, composed with EpisodeStatistics, under DQN)."""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import envs as project_envs
from envs.multi_objective import MO_GYMNASIUM_IDS
from envs.multi_objective.deep_sea_treasure import CONVEX_MAP, DeepSeaTreasure
from envs.multi_objective.fruit_tree import FruitTree
from jaxrl import envs, mo_metrics
from jaxrl.mo_wrappers import LinearScalarization
from jaxrl.wrappers import EpisodeStatistics

# MO-Gymnasium's DST reward space casts float64 bounds to float32 and says so at every make()
pytestmark = pytest.mark.filterwarnings("ignore:.*precision lowered by casting to float32")


# ----------------------------------------------------------------------------------------------
# Helpers: the same action sequence through our env (one compiled scan) and MO-Gymnasium's
# ----------------------------------------------------------------------------------------------
def rollout_ours(env, params, actions):
    """(obs before auto-reset, reward, terminated, truncated) at every step, auto-resetting."""

    def body(carry, action):
        state, key = carry
        key, step_key = jax.random.split(key)
        _, state, reward, terminated, truncated, info = env.step(step_key, state, action, params)
        return (state, key), (info["final_observation"], reward, terminated, truncated)

    @jax.jit
    def run(actions):
        _, state = env.reset(jax.random.PRNGKey(0), params)
        return jax.lax.scan(body, (state, jax.random.PRNGKey(1)), actions)[1]

    return jax.tree.map(np.asarray, run(jnp.asarray(actions)))


def rollout_mo_gymnasium(gym_env, actions):
    obs_l, rew_l, term_l, trunc_l = [], [], [], []
    gym_env.reset(seed=0)
    for action in actions:
        obs, reward, terminated, truncated, _ = gym_env.step(int(action))
        obs_l.append(obs), rew_l.append(reward), term_l.append(terminated), trunc_l.append(truncated)
        if terminated or truncated:
            gym_env.reset()
    return np.array(obs_l), np.array(rew_l), np.array(term_l), np.array(trunc_l)


def assert_same_trajectory(ours, theirs):
    for name, a, b in zip(("observation", "reward", "terminated", "truncated"), ours, theirs):
        assert a.shape == b.shape, f"{name}: shapes {a.shape} vs {b.shape}"
        mismatch = np.flatnonzero(np.any((a != b).reshape(len(a), -1), axis=1))
        assert mismatch.size == 0, f"{name} differs first at step {mismatch[:1]}: ours {a[mismatch[:1]]}, theirs {b[mismatch[:1]]}"
        assert a.dtype == b.dtype or name in ("terminated", "truncated"), f"{name}: dtype {a.dtype} vs {b.dtype}"


def mo_gym_make(our_id, **kwargs):
    mo_gym = pytest.importorskip("mo_gymnasium")
    gym_id, gym_kwargs = MO_GYMNASIUM_IDS[our_id]
    return mo_gym.make(gym_id, **{**gym_kwargs, **kwargs})


# ----------------------------------------------------------------------------------------------
# Deep Sea Treasure
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("env_id", ["DeepSeaTreasure-v0", "DeepSeaTreasureConcave-v0"])
@pytest.mark.parametrize("float_state", [False, True])
def test_dst_matches_mo_gymnasium_step_for_step(env_id, float_state):
    gym_env = mo_gym_make(env_id, float_state=float_state)
    env, params = envs.make(env_id, float_state=float_state)
    rng = np.random.default_rng(0)
    # random actions (long episodes, many truncated at 100 steps), then actions biased down/right
    # so that many episodes reach deep treasures
    actions = np.concatenate([rng.integers(0, 4, 1500), rng.choice(4, 1500, p=[0.1, 0.45, 0.05, 0.4])])
    ours, theirs = rollout_ours(env, params, actions), rollout_mo_gymnasium(gym_env, actions)
    assert_same_trajectory(ours, theirs)
    terminated, truncated = ours[2], ours[3]
    assert terminated.sum() >= 20 and truncated.sum() >= 3          # both endings were exercised
    assert len(np.unique(ours[1][terminated, 0])) >= 4                # several different treasures


def test_dst_terminated_and_truncated_on_the_same_step():
    gym_env = mo_gym_make("DeepSeaTreasure-v0")
    env, params = envs.make("DeepSeaTreasure-v0")
    actions = np.array([0] * 99 + [1] + [3, 1])      # bump the surface 99 times, then down onto 0.7
    ours, theirs = rollout_ours(env, params, actions), rollout_mo_gymnasium(gym_env, actions)
    assert_same_trajectory(ours, theirs)
    assert ours[2][99] and ours[3][99] and ours[1][99].tolist() == [np.float32(0.7), -1.0]
    np.testing.assert_array_equal(ours[0][100], [0, 1])              # the next episode started at (0, 0)


def test_dst_front_at_gamma_1_is_every_treasure_at_its_manhattan_distance():
    env = DeepSeaTreasure("convex")
    rows, cols = np.nonzero(CONVEX_MAP > 0)
    expected = np.stack([CONVEX_MAP[rows, cols], -(rows + cols)], axis=1).astype(np.float64)
    np.testing.assert_allclose(env.pareto_front(1.0), expected[np.argsort(-expected[:, 1])])


@pytest.mark.parametrize("env_id", ["DeepSeaTreasure-v0", "DeepSeaTreasureConcave-v0"])
@pytest.mark.parametrize("gamma", [1.0, 0.99, 0.95, 0.9, 0.8])
def test_dst_front_equals_the_non_dominated_part_of_mo_gymnasiums(env_id, gamma):
    gym_env = mo_gym_make(env_id)
    env, _ = envs.make(env_id)
    theirs = np.array(gym_env.unwrapped.pareto_front(gamma))    # all ten treasures, discounted
    ours = env.pareto_front(gamma)
    filtered = mo_metrics.pareto_filter(theirs)
    np.testing.assert_allclose(ours, filtered[np.argsort(-filtered[:, 1])], rtol=1e-6)
    np.testing.assert_allclose(mo_metrics.pareto_filter(ours), ours)
    if gamma >= 0.99:   # there MO-Gymnasium's list is itself a front: all ten treasures
        assert len(ours) == len(theirs) == 10
    # convex map: from gamma = 0.97 on (down), some of MO-Gymnasium's ten points are dominated
    if env_id == "DeepSeaTreasure-v0" and gamma <= 0.95:
        assert len(ours) < 10


def test_dst_front_for_small_gamma_drops_points_mo_gymnasium_keeps():
    gym_env = mo_gym_make("DeepSeaTreasure-v0")
    env = DeepSeaTreasure("convex")
    ours = env.pareto_front(0.5)
    # hand-computed: 0.7 after 1 step; 8.2 * 0.5**2 = 2.05 after 3 steps (time 1 + .5 + .25);
    # 11.5 * 0.5**4 = 0.72 with time -1.94 is dominated by (2.05, -1.75), and so on
    np.testing.assert_allclose(ours, [[0.7, -1.0], [2.05, -1.75]], rtol=1e-6)
    theirs = np.array(gym_env.unwrapped.pareto_front(0.5))
    assert len(theirs) == 10 and len(mo_metrics.pareto_filter(theirs)) == 2   # 8 dominated points
    np.testing.assert_allclose(mo_metrics.pareto_filter(theirs), ours, rtol=1e-6)


def test_dst_vector_episode_return_through_episode_statistics():
    env, params = envs.make("DeepSeaTreasure-v0")
    stats = EpisodeStatistics(env)
    obs, state = stats.reset(jax.random.PRNGKey(0), params)
    for action in [3, 3, 1, 1, 1]:       # right, right, down x3: reaches 11.5 at (3, 2) after 5 steps
        obs, state, reward, terminated, truncated, info = stats.step(jax.random.PRNGKey(1), state, action, params)
    assert bool(terminated) and info["episode_return"].shape == (2,)
    np.testing.assert_allclose(info["episode_return"], [11.5, -5.0])


def test_registry_ids_and_spaces():
    for env_id, kwargs, m, n_actions in [("DeepSeaTreasure-v0", {}, 2, 4), ("DeepSeaTreasureConcave-v0", {}, 2, 4),
                                         ("FruitTree-v0", {"depth": 7}, 6, 2)]:
        env, params = envs.make(env_id, **kwargs)
        assert env.num_objectives == m and envs.is_discrete(env, params) and env.action_space(params).n == n_actions
        obs, state = env.reset(jax.random.PRNGKey(0), params)
        assert obs.shape == env.observation_space(params).shape == (2,) and obs.dtype == jnp.int32
        assert env.step(jax.random.PRNGKey(0), state, 0, params)[2].shape == (m,)
    assert envs.make("FruitTree-v0", depth=5)[0].depth == 5
    assert envs.make("DeepSeaTreasure-v0", max_steps_in_episode=20)[1].max_steps_in_episode == 20


def test_bad_env_arguments_are_clear_errors():
    with pytest.raises(ValueError, match="unknown Deep Sea Treasure map 'mirrored'"):
        DeepSeaTreasure("mirrored")
    with pytest.raises(ValueError, match=r"depth must be one of \(5, 6, 7\), got 4"):
        FruitTree(depth=4)
    with pytest.raises(ValueError, match="gamma"):
        DeepSeaTreasure().pareto_front(0.0)


# ----------------------------------------------------------------------------------------------
# Fruit Tree
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("depth", [5, 6, 7])
def test_fruit_tree_matches_mo_gymnasium_step_for_step(depth):
    gym_env = mo_gym_make("FruitTree-v0", depth=depth)
    env, params = envs.make("FruitTree-v0", depth=depth)
    actions = np.random.default_rng(depth).integers(0, 2, 200 * depth)
    ours, theirs = rollout_ours(env, params, actions), rollout_mo_gymnasium(gym_env, actions)
    assert_same_trajectory(ours, theirs)
    assert ours[2].sum() == 200 and not ours[3].any()               # every episode ends at a leaf
    assert env.num_objectives == 6 and ours[1].shape[1] == 6


@pytest.mark.parametrize("depth", [5, 6, 7])
def test_fruit_tree_front_every_fruit_is_pareto_optimal(depth):
    gym_env = mo_gym_make("FruitTree-v0", depth=depth)
    env = FruitTree(depth)
    for gamma in (1.0, 0.99, 0.5):
        ours = env.pareto_front(gamma)
        theirs = np.array(gym_env.unwrapped.pareto_front(gamma))
        assert ours.shape == (2**depth, 6)                          # no fruit is dominated
        sort = lambda x: x[np.lexsort(x.T[::-1])]
        np.testing.assert_allclose(sort(ours), sort(theirs), rtol=1e-6)
        np.testing.assert_allclose(sort(ours), sort(env.fruits.astype(np.float64) * gamma ** (depth - 1)), rtol=1e-12)


def test_fruit_tree_hand_checked_path():
    env, params = envs.make("FruitTree-v0", depth=5)
    _, state = env.reset(jax.random.PRNGKey(0), params)
    for action in [1, 0, 1, 1, 0]:       # leaf 0b10110 = 22
        obs, state, reward, terminated, truncated, _ = env.step(jax.random.PRNGKey(0), state, action, params)
    assert bool(terminated) and not bool(truncated)
    np.testing.assert_array_equal(env.step_env(jax.random.PRNGKey(0), state.replace(pos=jnp.array([4, 11])), 0, params)[0], [5, 22])
    np.testing.assert_array_equal(reward, env.fruits[22])


# ----------------------------------------------------------------------------------------------
# LinearScalarization
# ----------------------------------------------------------------------------------------------
def test_linear_scalarization_reward_and_vector_return():
    env = LinearScalarization(DeepSeaTreasure(), [0.9, 0.1])
    stats = EpisodeStatistics(env)
    params = env.default_params
    _, state = stats.reset(jax.random.PRNGKey(0), params)
    rewards = []
    for action in [1]:                   # down onto 0.7: reward 0.9 * 0.7 + 0.1 * -1
        _, state, reward, terminated, _, info = stats.step(jax.random.PRNGKey(1), state, action, params)
        rewards.append(float(reward))
    assert rewards == pytest.approx([0.9 * 0.7 - 0.1])
    np.testing.assert_allclose(info["vector_reward"], [0.7, -1.0])
    np.testing.assert_allclose(info["vector_episode_return"], [0.7, -1.0])
    assert info["episode_return"].shape == () and float(info["episode_return"]) == pytest.approx(0.53)


def test_linear_scalarization_is_vmappable_over_weights():
    env = LinearScalarization(DeepSeaTreasure(), [1.0, 0.0])
    weights = jnp.array([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]])
    actions = jnp.array([3, 3, 1, 1, 1])   # reaches 11.5 after 5 steps

    @jax.jit
    @jax.vmap
    def episode(w):
        params = env.default_params.replace(weights=w)
        _, state = env.reset(jax.random.PRNGKey(0), params)

        def body(state, action):
            _, state, reward, _, _, info = env.step(jax.random.PRNGKey(0), state, action, params)
            return state, (reward, info["vector_episode_return"])

        return jax.lax.scan(body, state, actions)[1]

    rewards, vector_returns = episode(weights)
    np.testing.assert_allclose(rewards.sum(axis=1), [11.5, -5.0, 3.25])
    np.testing.assert_allclose(vector_returns[:, -1], [[11.5, -5.0]] * 3)


def test_linear_scalarization_errors():
    with pytest.raises(ValueError, match=r"weights must have shape \(2,\) for an env with 2 objectives, got shape \(3,\)"):
        LinearScalarization(DeepSeaTreasure(), [0.2, 0.3, 0.5])
    with pytest.raises(ValueError, match="finite"):
        LinearScalarization(DeepSeaTreasure(), [np.nan, 1.0])
    cartpole, _ = envs.make("CartPole-v1")
    with pytest.raises(ValueError, match="num_objectives"):
        LinearScalarization(cartpole, [1.0])


SCALARIZED_DST = "DeepSeaTreasure-LinearScalarization-test"


def dqn_config():
    from agents.online import dqn

    return dqn.Config(env=SCALARIZED_DST, total_timesteps=10_000, learning_starts=1000, buffer_size=10_000,
                      batch_size=64, train_frequency=4, target_update_interval=250, hidden_sizes="64", lr=1e-3)


@pytest.fixture(scope="module")
def scalarized_dst_id():
    """DST scalarized with w = (0, 1) (time only: reach any treasure as fast as possible; the
    optimum is one step down onto 0.7, return -1), registered for this module only."""
    project_envs.REGISTRY[SCALARIZED_DST] = lambda **kw: LinearScalarization(DeepSeaTreasure(**kw), [0.0, 1.0])
    yield SCALARIZED_DST
    del project_envs.REGISTRY[SCALARIZED_DST]


@pytest.fixture(scope="module")
def dqn_on_scalarized_dst(scalarized_dst_id):
    """DQN (agents/online) on scalarized DST: seeds 0-3 in one program, run twice; greedy evaluation."""
    from agents.online import dqn
    from jaxrl.evaluation import evaluate_trainer

    trainer = dqn.make_train(dqn_config())
    train = jax.jit(jax.vmap(trainer))
    keys = jnp.stack([jax.random.PRNGKey(s) for s in range(4)])
    first, second = train(keys), train(keys)
    evaluation = jax.jit(jax.vmap(lambda s, k: evaluate_trainer(trainer, s, k, 4)))(first[0], keys)
    return trainer, first, second, evaluation


def test_dqn_runs_on_scalarized_dst_deterministically(dqn_on_scalarized_dst):
    _, (state, metrics), (state2, _), _ = dqn_on_scalarized_dst
    jax.tree.map(np.testing.assert_array_equal, state.params, state2.params)
    assert np.isfinite(np.asarray(metrics["td_loss"])[:, -1]).all()
    returns = np.asarray(metrics["episode_return"])
    assert np.isfinite(returns[:, -1]).all() and returns.shape == (4, 10_000)


@pytest.mark.learning
def test_dqn_learns_the_fastest_treasure_on_scalarized_dst(dqn_on_scalarized_dst):
    # a uniformly random policy needs tens of steps on average to hit any treasure; the optimum is -1
    *_, evaluation = dqn_on_scalarized_dst
    assert np.asarray(evaluation["return"]).mean() > -1.5


def test_cli_save_load_identical_actions_on_scalarized_dst(tmp_path_factory, scalarized_dst_id, dqn_on_scalarized_dst):
    """train_and_evaluate on the scalarized env, loaded back, acts like seeds 0 and 1 trained directly."""
    from agents.online import dqn
    from jaxrl.cli import RunOptions, load_run, train_and_evaluate

    out = tmp_path_factory.mktemp("mo") / "dqn"
    options = RunOptions(out=str(out), num_seeds=2, eval_episodes=4, log_points=4, quiet=True, plot=False)
    summary = train_and_evaluate(dqn_config(), dqn.make_train, options, algorithm="dqn")
    assert summary["eval_return"]["n"] == 2
    trainer, (state, _), _, _ = dqn_on_scalarized_dst
    loaded = load_run(out, dqn.Config, dqn.make_train, "dqn")
    cells = jnp.stack(jnp.meshgrid(jnp.arange(11), jnp.arange(11), indexing="ij"), -1).reshape(-1, 2).astype(jnp.int32)
    for r in range(2):
        expected = trainer.act(jax.tree.map(lambda x: x[r], state), cells, jax.random.PRNGKey(0))
        np.testing.assert_array_equal(loaded.act(r, cells), expected)
