"""The shared runner with an offline trainer: dataset passed as an argument, per-chunk evaluation,
normalized scores, resume on the same data, clear errors for a missing or mismatched dataset."""
from __future__ import annotations

import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxrl import cli, data as data_lib, envs
from jaxrl.config import ConfigError
from jaxrl.trainer import Trainer
from offline_data import cartpole_dataset


@dataclasses.dataclass(frozen=True)
class TinyConfig:
    env: str = "CartPole-v1"
    """Env id."""
    num_updates: int = 1000
    """Gradient updates."""
    lr: float = 1e-1
    """Learning rate."""
    batch_size: int = 64
    """Minibatch size."""


def make_tiny_bc(config: TinyConfig, dataset) -> Trainer:
    """Linear-softmax behaviour cloning: the smallest offline trainer that can learn CartPole's controller."""
    env, env_params = envs.make(config.env)
    data_lib.check_compatible(dataset, config.env, env, env_params, "tiny-bc")
    tx = optax.adam(config.lr)

    def init(key):
        params = {"w": jnp.zeros((4, 2)), "b": jnp.zeros(2)}
        return {"params": params, "opt": tx.init(params), "key": key}

    def update(state, i, data):
        key, sample_key = jax.random.split(state["key"])
        batch = data_lib.sample_batch(data, sample_key, config.batch_size)

        def loss(p):
            logits = batch.observations @ p["w"] + p["b"]
            return -jnp.take_along_axis(jax.nn.log_softmax(logits), batch.actions[:, None], 1).mean()

        value, grads = jax.value_and_grad(loss)(state["params"])
        updates, opt = tx.update(grads, state["opt"])
        return {"params": optax.apply_updates(state["params"], updates), "opt": opt, "key": key}, {"bc_loss": value}

    def act(state, obs, key):
        return jnp.argmax(obs @ state["params"]["w"] + state["params"]["b"], -1)

    return Trainer(init, update, act, config.num_updates, 0, env, env_params, data=dataset)


@pytest.fixture(scope="module")
def expert():
    return cartpole_dataset("expert", n=4_000)


@pytest.fixture(scope="module")
def finished_run(expert, tmp_path_factory):
    out = tmp_path_factory.mktemp("offline") / "run"
    data_lib_path = out.parent / "expert.npz"
    if hasattr(data_lib, "save"):
        data_lib.save(expert, data_lib_path)
    options = cli.RunOptions(num_seeds=3, out=str(out), log_points=3, quiet=True, plot=False, eval_episodes=4,
                             dataset=str(data_lib_path) if hasattr(data_lib, "save") else None)
    summary = cli.train_and_evaluate(TinyConfig(), make_tiny_bc, options, "tiny-bc", dataset=expert)
    return out, summary


def test_offline_results_contract(finished_run):
    out, summary = finished_run
    assert summary["updates_per_run"] == 1000 and summary["env_steps_per_run"] == 0
    assert summary["dataset"]["env_id"] == "CartPole-v1" and summary["dataset"]["size"] == 4_000
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert {"update", "bc_loss", "episode_return", "normalized_score"} <= set(rows[0]) and "env_steps" not in rows[0]
    assert len(rows) == 3 * 3  # three logging points x three runs
    for key in ("normalized_score", "best_normalized_score"):
        assert set(summary[key]) >= {"mean", "iqm", "ci95"}
    for run in summary["runs"]:
        assert run["best_normalized_score"] >= run["normalized_score"] - 1e-6 or np.isfinite(run["best_normalized_score"])


def test_offline_linear_bc_learns_cartpole_controller(finished_run):
    _, summary = finished_run
    # the scripted expert balances for 500 steps; a linear policy can represent it exactly
    assert summary["eval_return"]["mean"] > 300, summary["eval_return"]


def test_offline_needs_a_dataset(tmp_path):
    with pytest.raises(ConfigError, match="needs a dataset"):
        cli.train_and_evaluate(TinyConfig(), make_tiny_bc, cli.RunOptions(out=str(tmp_path / "r"), quiet=True),
                               "tiny-bc", offline=True)


def test_dataset_of_another_env_is_rejected(expert, tmp_path):
    with pytest.raises(data_lib.DatasetError, match="CartPole-v1.*Acrobot-v1|Acrobot-v1.*CartPole-v1"):
        cli.train_and_evaluate(TinyConfig(env="Acrobot-v1"), make_tiny_bc,
                               cli.RunOptions(out=str(tmp_path / "r"), quiet=True), "tiny-bc", dataset=expert)
    assert not (tmp_path / "r").exists()


def test_trainer_call_with_shared_dataset_matches_runner_shape(expert):
    trainer = make_tiny_bc(TinyConfig(num_updates=20), expert)
    keys = jnp.stack([jax.random.PRNGKey(s) for s in range(2)])
    states, metrics = jax.jit(jax.vmap(trainer, in_axes=(0, None)))(keys, expert)
    assert metrics["bc_loss"].shape == (2, 20)
    with pytest.raises(ValueError, match="needs its dataset"):
        trainer(keys[0])
