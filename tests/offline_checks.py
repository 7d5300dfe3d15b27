"""Helpers shared by the offline agents' tests: train seeds in one program, evaluate them, compare
trees, and hand-made datasets (CartPole-shaped, and the continuous probe datasets with known values)."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxrl import data as data_lib
from jaxrl.evaluation import evaluate_trainer


def train_seeds(trainer, dataset, seeds):
    keys = jnp.stack([jax.random.PRNGKey(s) for s in seeds])
    return jax.jit(jax.vmap(trainer, in_axes=(0, None)))(keys, dataset)


def direct_run(make_train, config, dataset, seeds=(0, 1)):
    """``config`` trained directly, the seeds in one jit(vmap) program: ``(trainer, run, keys, states,
    metrics)``. The compiled ``run`` is returned too, so a dataset of the same shapes reuses it."""
    trainer = make_train(config, dataset)
    run = jax.jit(jax.vmap(trainer, in_axes=(0, None)))
    keys = jnp.stack([jax.random.PRNGKey(s) for s in seeds])
    states, metrics = run(keys, dataset)
    return trainer, run, keys, states, metrics


def cli_runs(tmp_path_factory, make_train, config, dataset, algorithm: str, num_updates: int, *,
             dataset_file: str | None = None, eval_episodes: int = 2, scored: bool = True):
    """The same CLI command twice, 2 seeds each (the second compile comes from the persistent cache);
    returns the two run folders. ``dataset_file`` is recorded as the run's ``--dataset`` (so ``load_run``
    finds the data by itself); ``scored``: the dataset has reference returns, so a normalized score."""
    from jaxrl import cli

    outs = []
    for name in ("first", "second"):
        out = tmp_path_factory.mktemp(algorithm) / name
        options = cli.RunOptions(num_seeds=2, out=str(out), log_points=2, eval_episodes=eval_episodes, quiet=True,
                                 plot=False, dataset=dataset_file)
        summary = cli.train_and_evaluate(config, make_train, options, algorithm, dataset=dataset)
        assert summary["updates_per_run"] == num_updates
        if scored:
            assert np.isfinite(summary["normalized_score"]["mean"])
        outs.append(out)
    return outs


def eval_returns(trainer, states, num_runs, episodes=8):
    keys = jnp.stack([jax.random.PRNGKey(100 + r) for r in range(num_runs)])
    result = jax.jit(jax.vmap(lambda s, k: evaluate_trainer(trainer, s, k, episodes)))(states, keys)
    return np.asarray(result["return"]).mean(axis=1)


def trees_equal(a, b) -> bool:
    return all(np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def cartpole_like_dataset(n: int = 64) -> data_lib.Dataset:
    """A small dataset with CartPole-v1's shapes (obs (4,), integer actions), made by hand."""
    rng = np.random.default_rng(0)
    obs = jnp.asarray(rng.normal(size=(n, 4)), jnp.float32)
    zeros = jnp.zeros(n, jnp.float32)
    return data_lib.Dataset(obs, jnp.asarray(rng.integers(0, 2, n), jnp.int32), jnp.ones(n, jnp.float32), obs, zeros,
                            zeros, info=data_lib.DatasetInfo(env_id="CartPole-v1", size=n))


def probe_dataset(kind: str, n: int, rng) -> data_lib.Dataset:
    """n transitions of ``kind`` under uniform-random actions in [-1, 1]."""
    action = rng.uniform(-1.0, 1.0, n).astype(np.float32)
    sign = rng.choice(np.array([-1.0, 1.0], np.float32), n)
    t = np.arange(n)
    zero, one = np.zeros(n, np.float32), np.ones(n, np.float32)
    if kind == "constant":      # reward 1 forever, cut (truncated) every 10 steps
        obs, reward, next_obs, term, trunc = zero, one, zero, zero, (t % 10 == 9).astype(np.float32)
    elif kind == "obs_reward":  # one step, reward = obs
        obs, reward, next_obs, term, trunc = sign, sign, sign, one, zero
    elif kind == "two_step":    # obs 0 -> obs 1 -> end with reward 1
        second = (t % 2).astype(np.float32)
        obs, reward, next_obs, term, trunc = second, second, one, second, zero
    elif kind == "action":      # one step, reward 1 - |a - 0.5|
        obs, reward, next_obs, term, trunc = zero, 1.0 - np.abs(action - 0.5), zero, one, zero
    else:                       # obs_action: one step, reward 1 - |a - obs / 2|
        obs, reward, next_obs, term, trunc = sign, 1.0 - np.abs(action - 0.5 * sign), sign, one, zero
    info = data_lib.DatasetInfo(env_id="Probe-Action", env_params='{"continuous": true}', size=n)
    col = lambda x: jnp.asarray(x, jnp.float32)[:, None]  # noqa: E731
    return data_lib.Dataset(col(obs), col(action), jnp.asarray(reward, jnp.float32), col(next_obs),
                            jnp.asarray(term, jnp.float32), jnp.asarray(trunc, jnp.float32), info=info)


def random_policy_success(env_id: str, keys) -> np.ndarray:
    """Success rate of a uniform-random policy on a point maze's five evaluation tasks, 200 episodes
    (40 per task) per key: the baseline of the offline goal-conditioned learning checks."""
    from jaxrl import envs, gc_data

    env, params = envs.make(env_id)

    def policy(obs, k):
        return jax.random.uniform(k, (obs["observation"].shape[0], 2), minval=-1.0, maxval=1.0)

    run = jax.vmap(lambda k: gc_data.evaluate_on_tasks(env, params, policy, k, 200)["success"].mean())
    return np.asarray(jax.jit(run)(keys))


# ---------------------------------------------------------------------------------------------
# The offline goal-conditioned agents' CLI checks (the two runs of ``cli_runs``, tiny config)
# ---------------------------------------------------------------------------------------------
def check_task_report(out) -> None:
    """Every run's ``summary.json`` report has the success of each of the five tasks and their mean."""
    import json

    import pytest

    for run in json.loads((out / "summary.json").read_text())["runs"]:
        report = run["report"]
        assert len(report["task_success"]) == 5 and report["success"] == pytest.approx(np.mean(report["task_success"]))


def check_same_seed_same_params(module, algorithm: str, outs, dataset) -> None:
    """The two identical CLI runs restore identical states; the two seeds of a run differ (actor)."""
    from jaxrl import cli

    first, second = (cli.load_run(out, module.Config, module.make_train, algorithm, dataset=dataset) for out in outs)
    assert trees_equal(first.state, second.state)
    assert not trees_equal(*(jax.tree.map(lambda x: x[i], first.state.params["actor"]) for i in range(2)))


def check_save_load_identical_actions(module, algorithm: str, other_algorithm: str, config, out, dataset,
                                      num_updates: int) -> None:
    """The run restored from its checkpoint (finding its recorded dataset file) acts as a direct run of
    the same config and keys; restoring it as ``other_algorithm`` raises a CheckpointError naming it."""
    import pytest

    from jaxrl import checkpoint, cli

    loaded = cli.load_run(out, module.Config, module.make_train, algorithm)
    assert loaded.config == config and loaded.update == num_updates
    trainer = module.make_train(config, dataset)
    keys = jnp.stack([jax.random.PRNGKey(s) for s in range(2)])
    states, _ = jax.jit(jax.vmap(trainer, in_axes=(0, None)))(keys, trainer.data)
    obs = {"observation": dataset.observations[:32], "achieved_goal": dataset.observations[:32],
           "desired_goal": dataset.observations[100:132]}
    for run in range(2):
        direct = trainer.act(jax.tree.map(lambda x: x[run], states), obs, None)
        np.testing.assert_allclose(np.asarray(loaded.act(run, obs)), np.asarray(direct), atol=1e-5)
    with pytest.raises(checkpoint.CheckpointError, match=algorithm):
        cli.load_run(out, module.Config, module.make_train, other_algorithm, dataset=dataset)
