"""Safe envs: registration, the cost definition on hand-set states, and rollouts against exact values."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from gymnax.environments.classic_control.cartpole import CartPole, EnvState

from envs.safe.safe_cartpole import SafeCartPole, cost_of
from envs.safe.tabular_cmdp import generate
from jaxrl import cmdp, envs
from jaxrl.wrappers import EpisodeStatistics


@pytest.mark.parametrize("env_id", ["TabularCMDP-v0", "TabularCMDP-Geometric-v0", "SafeCartPole-v0", "SafeCartPole-v1"])
def test_registered_with_cost_in_info(env_id):
    env, params = envs.make(env_id)
    obs, state = env.reset(jax.random.PRNGKey(0), params)
    assert obs.shape == env.observation_space(params).shape
    obs, state, reward, terminated, truncated, info = env.step(jax.random.PRNGKey(1), state, 0, params)
    assert reward.shape == () and info["cost"].shape == () and info["cost"].dtype == jnp.float32


def test_safe_cartpole_episode_lengths_and_overrides():
    assert envs.make("SafeCartPole-v0")[1].max_steps_in_episode == 200
    assert envs.make("SafeCartPole-v1")[1].max_steps_in_episode == 500
    params = envs.make("SafeCartPole-v0", cost_x_limit=1.0)[1]
    assert params.cost_x_limit == 1.0 and params.cost_speed_limit == 1.0


# ----------------------------------------------------------------------------------------------
# SafeCartPole: cost on hand-set states
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("x, x_dot, cost", [
    (0.0, 0.0, 0.0), (0.49, -0.99, 0.0), (-0.5, 1.0, 0.0),        # inside / on the boundary: safe
    (0.51, 0.0, 1.0), (-0.8, 0.0, 1.0),                            # outside the band
    (0.0, 1.01, 1.0), (0.2, -1.5, 1.0), (0.7, 1.2, 1.0),           # too fast / both
])
def test_cost_definition(x, x_dot, cost):
    assert float(cost_of(jnp.float32(x), jnp.float32(x_dot), SafeCartPole().default_params)) == cost


@pytest.mark.parametrize("action, cost", [(1, 1.0), (0, 0.0)])
def test_cost_is_of_the_state_after_the_step(action, cost):
    """x = 0.4, x_dot = 0.9, pole upright: one step moves x to 0.4 + 0.02·0.9 = 0.418 (inside the
    band). With the pole upright the cart accelerates by ±(F/M + m l θ̈/M) = ±9.756 (θ̈ = ∓14.634), so
    pushing right speeds it to 0.9 + 0.02·9.756 = 1.0951 > 1 (cost 1) and pushing left slows it to
    0.7049 (cost 0). Reward and termination are CartPole's."""
    env, params = SafeCartPole(200), SafeCartPole(200).default_params
    state = EnvState(x=jnp.float32(0.4), x_dot=jnp.float32(0.9), theta=jnp.float32(0.0),
                     theta_dot=jnp.float32(0.0), time=0)
    obs, _, reward, terminated, truncated, info = env.step(jax.random.PRNGKey(0), state, action, params)
    final = np.asarray(info["final_observation"])
    np.testing.assert_allclose(final[0], 0.418, atol=1e-6)
    np.testing.assert_allclose(final[1], 1.0951 if action else 0.7049, atol=2e-4)
    assert float(info["cost"]) == cost
    ref = CartPole().step(jax.random.PRNGKey(0), state, action, CartPole().default_params)
    np.testing.assert_array_equal(np.asarray(ref[0]), np.asarray(obs))
    assert float(ref[2]) == float(reward) and bool(ref[3]) == bool(terminated)


def test_episode_cost_is_the_sum_of_step_costs_and_random_play_is_cheap():
    env = EpisodeStatistics(SafeCartPole(200))
    params = SafeCartPole(200).default_params

    def rollout(key):
        obs, state = env.reset(key, params)

        def body(carry, k):
            state, running = carry
            k_a, k_s = jax.random.split(k)
            action = jax.random.bernoulli(k_a).astype(jnp.int32)
            _, state, _, _, _, info = env.step(k_s, state, action, params)
            running = running + info["cost"]
            out = (info["episode_done"], running, info["episode_cost"])
            return (state, jnp.where(info["episode_done"], 0.0, running)), out

        return jax.lax.scan(body, (state, 0.0), jax.random.split(key, 200))[1]

    done, running, episode_cost = map(np.asarray, jax.jit(jax.vmap(rollout))(jax.random.split(jax.random.PRNGKey(0), 32)))
    assert done.sum() > 100
    np.testing.assert_array_equal(running[done], episode_cost[done])
    assert episode_cost[done].mean() < 5.0         # ~2.4: random play ends near the centre, at little cost


# ----------------------------------------------------------------------------------------------
# TabularCMDP: the env samples the arrays the solver reads
# ----------------------------------------------------------------------------------------------
H = 40


def _rollouts(env, params, policy, num_episodes, seed=0):
    """Per episode: (Σ γ^t r_t, Σ γ^t c_t, Σ r_t, Σ c_t) over the first episode of each env."""
    gamma = params.gamma
    policy_logits = jnp.log(jnp.asarray(policy, jnp.float32))

    def episode(key):
        k_reset, k_run = jax.random.split(key)
        obs, state = env.reset(k_reset, params)

        def body(carry, k):
            obs, state, t, alive, sums = carry
            k_a, k_s = jax.random.split(k)
            action = jax.random.categorical(k_a, policy_logits[jnp.argmax(obs)])
            obs, state, reward, terminated, truncated, info = env.step(k_s, state, action, params)
            disc = gamma**t * alive
            sums = sums + alive * jnp.array([gamma**t * reward, gamma**t * info["cost"], reward, info["cost"]])
            alive = alive * (1.0 - jnp.logical_or(terminated, truncated))
            return (obs, state, t + 1, alive, sums), None

        init = (obs, state, 0, 1.0, jnp.zeros(4))
        return jax.lax.scan(body, init, jax.random.split(k_run, params.max_steps_in_episode))[0][4]

    return np.asarray(jax.jit(jax.vmap(episode))(jax.random.split(jax.random.PRNGKey(seed), num_episodes)))


@pytest.fixture(scope="module")
def solved():
    env, params = envs.make("TabularCMDP-v0", num_states=4, num_actions=3, seed=1, max_steps_in_episode=H)
    m = cmdp.from_params(params)
    best, _ = cmdp.optimal_policy(m, m.rewards)
    limit = 0.5 * (cmdp.min_cost(m) + cmdp.evaluate(m, best)[1])
    return params, m, cmdp.solve(m, limit)


def test_env_discounted_episode_sums_match_the_lp_policy(solved):
    params, m, sol = solved
    env = envs.make("TabularCMDP-v0", num_states=4, num_actions=3, seed=1)[0]
    sums = _rollouts(env, params, sol.policy, 4096)
    expected = cmdp.evaluate(m, sol.policy, horizon=H)
    stderr = sums[:, :2].std(0) / np.sqrt(len(sums))
    np.testing.assert_array_less(np.abs(sums[:, :2].mean(0) - expected), 4 * stderr + 1e-6)
    # and the H-step values are within γ^H / (1 − γ) of the LP's infinite-horizon ones
    assert abs(expected[0] - sol.value) <= m.gamma**H / (1 - m.gamma) + 1e-9


def test_geometric_env_undiscounted_episode_return_estimates_the_lp_value(solved):
    params, m, sol = solved
    env = envs.make("TabularCMDP-Geometric-v0", num_states=4, num_actions=3, seed=1)[0]
    params = params.replace(max_steps_in_episode=200)       # γ^200 ≈ 7e-10: no truncation bias to speak of
    sums = _rollouts(env, params, sol.policy, 4096, seed=1)
    stderr = sums[:, 2:].std(0) / np.sqrt(len(sums))
    np.testing.assert_array_less(np.abs(sums[:, 2:].mean(0) - [sol.value, sol.cost]), 4 * stderr)


def test_generate_is_seeded_and_vmappable():
    a = generate(jax.random.PRNGKey(0), 5, 2)
    b = generate(jax.random.PRNGKey(0), 5, 2)
    jax.tree.map(np.testing.assert_array_equal, a, b)
    batch = jax.vmap(lambda k: generate(k, 5, 2))(jax.random.split(jax.random.PRNGKey(0), 3))
    assert batch.transitions.shape == (3, 5, 2, 5)
    np.testing.assert_allclose(batch.transitions.sum(-1), 1.0, rtol=1e-5)
    assert (batch.rewards >= 0).all() and (batch.rewards <= 1).all() and (batch.costs <= 1).all()


def test_bad_constructor_arguments():
    with pytest.raises(ValueError, match="concentration must be > 0"):
        envs.make("TabularCMDP-v0", concentration=0.0)
    with pytest.raises(ValueError, match="num_states"):
        envs.make("TabularCMDP-v0", num_states=0)
