"""Tests of agents/offline/dt.py: the episode bookkeeping (returns-to-go, timesteps, episode ends) on a
hand case, causal attention, config and dataset errors, the runner's raw-dataset path, return
conditioning on a probe with an exact answer (discrete and continuous), determinism, save/load
through the CLI, and short learning checks on the scripted expert datasets (4 seeds per program)."""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from agents.offline import dt
from jaxrl import checkpoint, cli, data as data_lib, envs
from jaxrl.config import ConfigError
from jaxrl.evaluation import evaluate_trainer
from offline_data import cartpole_dataset, pendulum_dataset

# Scaled down from the paper's 3 layers x 128 x K=20 so that a test trains in seconds on 2 CPU cores.
TINY = dict(embed_dim=16, num_layers=1, num_heads=1, context_len=4, batch_size=32, warmup_steps=10, lr=1e-3,
            dropout=0.0)
SEEDS = range(4)


def keys_for(seeds):
    return jnp.stack([jax.random.PRNGKey(s) for s in seeds])


def train_seeds(trainer, seeds=SEEDS):
    return jax.jit(jax.vmap(lambda k, d: trainer(k, d), in_axes=(0, None)))(keys_for(seeds), trainer.data)


def eval_returns(trainer, states, num_runs, episodes=16, seed=123):
    keys = jax.random.split(jax.random.PRNGKey(seed), num_runs)
    result = jax.jit(jax.vmap(lambda s, k: evaluate_trainer(trainer, s, k, episodes)))(states, keys)
    return np.asarray(result["return"]).mean(axis=1)


def trees_equal(a, b):
    return all(np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def probe_dataset(continuous: bool, n: int = 2_000):
    """Uniform-random actions on Probe-Action: one-step episodes whose return says how good the action was."""
    def policy(obs, key):
        if continuous:
            return jax.random.uniform(key, (obs.shape[0], 1), minval=-1.0, maxval=1.0)
        return jax.random.randint(key, (obs.shape[0],), 0, 2)

    return data_lib.collect("Probe-Action", policy, n, jax.random.PRNGKey(0), num_envs=8,
                            env_overrides={"continuous": continuous}, kind="random")


@pytest.fixture(scope="module")
def cartpole_expert():
    return cartpole_dataset("expert", n=10_000)


@pytest.fixture(scope="module")
def pendulum_expert():
    return pendulum_dataset("expert", n=20_000)


# ---------------------------------------------------------------------------------------------
# Episode bookkeeping and the network
# ---------------------------------------------------------------------------------------------
def test_episode_arrays_on_a_hand_case():
    # Episodes: [0, 1] terminated, [2, 3] truncated, [4] the cut tail of the stream.
    rewards = np.array([1.0, 2.0, 3.0, 4.0, 5.0], np.float32)
    terminations = np.array([0, 1, 0, 0, 0], np.float32)
    truncations = np.array([0, 0, 0, 1, 0], np.float32)
    host = dt.episode_arrays(rewards, terminations, truncations)
    np.testing.assert_array_equal(host["dt_returns_to_go"], [3.0, 2.0, 7.0, 4.0, 5.0])
    np.testing.assert_array_equal(host["dt_timesteps"], [0, 1, 0, 1, 0])
    np.testing.assert_array_equal(host["dt_episode_end"], [1, 1, 3, 3, 4])
    ds = data_lib.Dataset(jnp.zeros((5, 1)), jnp.zeros((5, 1)), jnp.asarray(rewards), jnp.zeros((5, 1)),
                          jnp.asarray(terminations), jnp.asarray(truncations))
    device = jax.jit(dt.episode_arrays_device)(ds)
    for name, value in host.items():
        np.testing.assert_array_equal(np.asarray(device[name]), value)
    returns, complete = dt.episode_returns(host, terminations, max_steps=2)
    np.testing.assert_array_equal(returns, [3.0, 7.0, 5.0])
    np.testing.assert_array_equal(complete, [True, True, False])  # the one-step tail is not an episode


def test_attention_is_causal_and_actions_depend_on_the_return_to_go():
    net = dt.DecisionTransformer(action_dim=2, discrete=False, max_timestep=10, embed_dim=16, num_layers=2,
                                 num_heads=2, dropout=0.0)
    apply = jax.jit(net.apply)
    k = jax.random.split(jax.random.PRNGKey(0), 3)
    rtg, states = jax.random.normal(k[0], (2, 5)), jax.random.normal(k[1], (2, 5, 3))
    actions, timesteps = jax.random.uniform(k[2], (2, 5, 2), minval=-1, maxval=1), jnp.tile(jnp.arange(5), (2, 1))
    params = jax.jit(net.init)(jax.random.PRNGKey(1), rtg, states, actions, timesteps)
    out = apply(params, rtg, states, actions, timesteps)
    assert out.shape == (2, 5, 2) and bool(jnp.all(jnp.abs(out) <= 1))
    # Changing step 3's tokens (and the action at step 2) leaves the predictions at steps 0..2 unchanged.
    changed = apply(params, rtg.at[:, 3:].set(9.0), states.at[:, 3:].set(9.0), actions.at[:, 2:].set(0.5),
                        timesteps)
    np.testing.assert_allclose(np.asarray(changed[:, :3]), np.asarray(out[:, :3]), atol=1e-6)
    assert not np.allclose(np.asarray(changed[:, 3:]), np.asarray(out[:, 3:]))
    # The prediction at step 0 reads the return-to-go token before it.
    assert not np.allclose(np.asarray(apply(params, rtg + 1.0, states, actions, timesteps)[:, 0]),
                           np.asarray(out[:, 0]))


# ---------------------------------------------------------------------------------------------
# Errors before compiling
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("bad, match", [
    (dict(embed_dim=30, num_heads=4), "divisible by num_heads"),
    (dict(dropout=1.0), "dropout"),
    (dict(activation="tanh"), "activation"),
    (dict(context_len=0), "context_len"),
    (dict(rtg_scale=0.0), "rtg_scale"),
    (dict(target_return=float("nan")), "target_return"),
    (dict(warmup_steps=-1), "warmup_steps"),
])
def test_bad_config_is_rejected(bad, match, cartpole_expert):
    with pytest.raises(ConfigError, match=match):
        dt.make_train(dt.Config(env="CartPole-v1", **bad), cartpole_expert)


def test_dataset_of_another_env_is_rejected(cartpole_expert):
    with pytest.raises(data_lib.DatasetError, match="collected on 'CartPole-v1'.*Pendulum-v1"):
        dt.make_train(dt.Config(env="Pendulum-v1"), cartpole_expert)
    relabeled = cartpole_expert.replace(info=dataclasses.replace(cartpole_expert.info, env_id=""))
    with pytest.raises(data_lib.DatasetError, match="observations have shape"):
        dt.make_train(dt.Config(env="Pendulum-v1"), relabeled)


def test_device_episode_arrays_match_the_host_ones(cartpole_expert):
    # update() recomputes them on device when a runner passes the raw dataset instead of trainer.data.
    trainer = dt.make_train(dt.Config(env="CartPole-v1", **TINY), cartpole_expert)
    assert set(dt.EXTRAS) <= set(trainer.data.extras) and not set(dt.EXTRAS) & set(cartpole_expert.extras)
    device = jax.jit(dt.episode_arrays_device)(cartpole_expert)
    for name in dt.EXTRAS:
        np.testing.assert_allclose(np.asarray(device[name]), np.asarray(trainer.data.extras[name]), rtol=1e-6)
    assert int(trainer.data.extras["dt_timesteps"].max()) == 499  # 500-step expert episodes


# ---------------------------------------------------------------------------------------------
# Probe: return conditioning with an exact answer (discrete and continuous), determinism
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module", params=[False, True], ids=["discrete", "continuous"])
def probe_run(request):
    """4 seeds of DT on uniform-random Probe-Action data: reward 1 for action 1, 0 for action 0
    (continuous: 1 - |a - 0.5|), so the return-to-go of a one-step episode is the reward itself."""
    ds = probe_dataset(request.param)
    config = dt.Config(env="Probe-Action", num_updates=300, rtg_scale=1.0, **TINY)
    env = envs.make("Probe-Action", continuous=request.param)
    trainer = dt.make_train(config, ds, *env)
    run = jax.jit(jax.vmap(lambda k, d: trainer(k, d), in_axes=(0, None)))
    states, metrics = run(keys_for(SEEDS), trainer.data)
    return request.param, config, ds, env, trainer, run, states, metrics


def test_probe_return_conditioning_picks_the_action_with_that_return(probe_run):
    continuous, config, ds, env, trainer, _, states, metrics = probe_run
    assert np.all(np.isfinite(np.asarray(metrics["action_loss"])))
    # Every run x target (high 1, low 0) in one program: the target is a traced float, as in a CLI sweep.
    targets = jnp.array([1.0, 0.0])

    def conditioned(target):
        return dt.make_train(dataclasses.replace(config, target_return=target), ds, *env)

    def act_and_evaluate(state, key, target):
        t = conditioned(target)
        return t.act(state, jnp.zeros((1, 1)), key)[0], evaluate_trainer(t, state, key, 8)["return"].mean()

    def per_run(state, key):
        return jax.vmap(act_and_evaluate, in_axes=(None, None, 0))(state, key, targets)

    keys = jax.random.split(jax.random.PRNGKey(123), len(SEEDS))
    actions, returns = map(np.asarray, jax.jit(jax.vmap(per_run))(states, keys))
    if continuous:  # R = 1 - |a - 0.5|: R=1 at a = 0.5, R=0 at a = -0.5 (the other root, 1.5, is out of bounds)
        np.testing.assert_allclose(actions[..., 0], np.tile([0.5, -0.5], (len(SEEDS), 1)), atol=0.2)
    else:  # R = 1 for action 1, 0 for action 0
        np.testing.assert_array_equal(actions, np.tile([1, 0], (len(SEEDS), 1)))
    # The rollout (context, return-to-go from the target) gets the return it was asked for.
    assert returns[:, 0].min() > 0.8 and returns[:, 1].max() < 0.2, returns


def test_same_key_same_params(probe_run):
    *_, trainer, run, states, _ = probe_run
    again, _ = run(keys_for(SEEDS), trainer.data)
    assert trees_equal(states, again)
    twins, _ = run(keys_for([7, 7, 8, 9]), trainer.data)
    first, second, other = (jax.tree.map(lambda x: x[i], twins) for i in range(3))
    assert trees_equal(first, second) and not trees_equal(first.params, other.params)


# ---------------------------------------------------------------------------------------------
# The CLI: save -> load -> identical actions
# ---------------------------------------------------------------------------------------------
def test_cli_save_load_gives_identical_actions(tmp_path):
    ds = probe_dataset(continuous=False, n=512)
    ds = ds.replace(info=dataclasses.replace(ds.info, random_return=0.5, expert_return=1.0))
    config = dt.Config(env="Probe-Action", num_updates=20, **TINY)
    options = cli.RunOptions(num_seeds=2, out=str(tmp_path / "run"), log_points=2, eval_episodes=2, quiet=True,
                             plot=False)
    summary = cli.train_and_evaluate(config, dt.make_train, options, "dt", dataset=ds)
    assert summary["updates_per_run"] == 20 and np.isfinite(summary["normalized_score"]["mean"])
    loaded = cli.load_run(tmp_path / "run", dt.Config, dt.make_train, "dt", dataset=ds)
    assert loaded.config == config and loaded.update == 20
    obs = ds.observations[:16]
    trainer = dt.make_train(config, ds)
    for run in range(2):
        state = jax.tree.map(lambda x: x[run], loaded.state)
        np.testing.assert_array_equal(np.asarray(loaded.act(run, obs)), np.asarray(trainer.act(state, obs, None)))
    assert not trees_equal(jax.tree.map(lambda x: x[0], loaded.state.params),
                           jax.tree.map(lambda x: x[1], loaded.state.params))
    with pytest.raises(checkpoint.CheckpointError, match="dt"):
        cli.load_run(tmp_path / "run", dt.Config, dt.make_train, "bc", dataset=ds)


# ---------------------------------------------------------------------------------------------
# Learning checks (4 seeds in one program each)
# ---------------------------------------------------------------------------------------------
# Scaled down from the paper (3 layers x 128, K=20, lr 1e-4 after 10k warmup updates, dropout 0.1):
# a few thousand updates on 2 CPU cores.
SMALL = dict(embed_dim=32, num_layers=2, num_heads=1, context_len=3, batch_size=64, warmup_steps=50, lr=1e-3,
             dropout=0.0)


@pytest.mark.learning
def test_reaches_the_expert_on_cartpole_expert_data(cartpole_expert):
    trainer = dt.make_train(dt.Config(env="CartPole-v1", num_updates=500, **SMALL), cartpole_expert)
    states, metrics = train_seeds(trainer)
    returns = eval_returns(trainer, states, len(SEEDS))
    print(f"DT CartPole-v1 expert: return {returns.mean():.1f} ± {returns.std():.1f} over {len(SEEDS)} seeds")
    assert np.asarray(metrics["action_accuracy"])[:, -50:].mean() > 0.9
    assert returns.mean() > 450, returns  # expert 500, random 21


@pytest.fixture(scope="module")
def pendulum_runs(pendulum_expert):
    """One program: 4 seeds on Pendulum expert data and 4 on medium-expert data (same size), evaluated in
    one more program: expert runs at the expert's mean return, medium-expert runs at a high and a
    low target (the targets are traced floats, as in a CLI sweep)."""
    medium_expert = pendulum_dataset("medium-expert", n=20_000)
    config = dt.Config(env="Pendulum-v1", num_updates=2_000, **SMALL)
    trainer = dt.make_train(config, pendulum_expert)  # state statistics and rtg scale of the expert data
    both = jax.tree.map(lambda *x: jnp.stack(x), trainer.data,
                        dt.with_episode_arrays(medium_expert).replace(info=pendulum_expert.info))
    train = jax.vmap(jax.vmap(lambda k, d: trainer(k, d), in_axes=(0, None)), in_axes=(None, 0))
    states, _ = jax.jit(train)(keys_for(SEEDS), both)
    n = len(SEEDS)
    runs = jax.tree.map(lambda x: jnp.concatenate([x[0], x[1], x[1]]), states)
    # Expert runs are conditioned on the expert's mean return: Pendulum's return depends mostly on the
    # start state, and the best episode of the data (started upright, about 0) is out of reach from below.
    targets = jnp.array([pendulum_expert.info.expert_return] * n + [-200.0] * n + [-900.0] * n)

    def evaluate(state, key, target):
        t = dt.make_train(dataclasses.replace(config, target_return=target), pendulum_expert)
        return evaluate_trainer(t, state, key, 16)["return"].mean()

    keys = jax.random.split(jax.random.PRNGKey(123), 3 * n)
    result = np.asarray(jax.jit(jax.vmap(evaluate))(runs, keys, targets)).reshape(3, n)
    return {"expert": result[0], "medium_expert_high": result[1], "medium_expert_low": result[2]}


@pytest.mark.learning
def test_recovers_most_of_the_expert_on_pendulum_expert_data(pendulum_runs, pendulum_expert):
    # measured (2000 updates): normalized score about 80-90 (expert 100, random 0)
    returns = pendulum_runs["expert"]
    scores = data_lib.normalized_score("Pendulum-v1", returns, pendulum_expert.info)
    print(f"DT Pendulum-v1 expert: return {returns.mean():.1f} ± {returns.std():.1f}, "
          f"normalized {scores.mean():.1f} ± {scores.std():.1f} over {len(SEEDS)} seeds")
    assert scores.mean() > 60, scores


@pytest.mark.learning
def test_a_lower_target_return_gives_a_lower_return(pendulum_runs):
    # measured: target -200 -> about -450, target -900 -> about -900 (medium-expert data, 2000 updates)
    high, low = pendulum_runs["medium_expert_high"], pendulum_runs["medium_expert_low"]
    print(f"DT Pendulum-v1 medium-expert: target -200 -> {high.mean():.1f} ± {high.std():.1f}, "
          f"target -900 -> {low.mean():.1f} ± {low.std():.1f} over {len(SEEDS)} seeds")
    assert high.mean() > low.mean() + 150, (high, low)
