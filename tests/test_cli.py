"""The shared runner: results contract, validation, sweeps, checkpoints, resume, sharding, determinism."""
import dataclasses
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from agents.online import ppo
from jaxrl import checkpoint as ckpt
from jaxrl.cli import RunOptions, load_run, parse_args, parse_sweep, train_and_evaluate
from jaxrl.config import ConfigError
from jaxrl.io import read_jsonl

ROOT = Path(__file__).resolve().parents[1]
TINY = dict(total_timesteps=4096, num_envs=4, num_steps=32, num_minibatches=2, update_epochs=2, hidden_size=16)


def tiny_config(**overrides):
    return ppo.Config(**{**TINY, **overrides})


def run(out, config=None, _stop_after_checkpoints=None, **options):
    options = {"num_seeds": 2, **options}
    opts = RunOptions(out=str(out), eval_episodes=4, log_points=8, quiet=True, **options)
    return train_and_evaluate(config or tiny_config(), ppo.make_train, opts, algorithm="ppo",
                              _stop_after_checkpoints=_stop_after_checkpoints)


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "full"
    summary = run(out, checkpoint_every=1024)
    return out, summary


def test_results_contract(finished_run):
    out, summary = finished_run
    config = json.loads((out / "config.json").read_text())
    assert config["algorithm"] == "ppo" and config["config"]["total_timesteps"] == 4096
    rows = read_jsonl(out / "metrics.jsonl")
    assert {r["run"] for r in rows} == {0, 1}
    assert {"env_steps", "episode_return", "policy_loss", "value_loss", "update", "seed"} <= set(rows[0])
    assert rows[-1]["env_steps"] == 4096
    saved = json.loads((out / "summary.json").read_text())
    assert saved == json.loads(json.dumps(summary))
    for key in ("mean", "iqm", "ci95", "n"):
        assert key in saved["eval_return"]
    assert saved["eval_return"]["n"] == 2 and len(saved["runs"]) == 2
    for key in ("wall_time_s", "env_steps_total", "steps_per_second", "jax_version", "device"):
        assert key in saved
    # periodic checkpoints every 8 iterations (1024 steps / 128 per iteration) and the final one
    assert sorted(int(p.name) for p in (out / "checkpoints").iterdir() if p.name.isdigit()) == [8, 16, 24, 32]
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]
    assert (out / "curves.png").stat().st_size > 1000


def test_resume_gives_the_uninterrupted_result(tmp_path, finished_run):
    full_out, full = finished_run
    out = tmp_path / "interrupted"
    partial = run(out, checkpoint_every=1024, _stop_after_checkpoints=2)
    assert partial == {"interrupted_at": 16}
    assert not (out / "summary.json").exists()
    resumed = train_and_evaluate(tiny_config(), ppo.make_train, RunOptions(resume=str(out), quiet=True), algorithm="ppo")
    assert [r["eval_return"] for r in resumed["runs"]] == [r["eval_return"] for r in full["runs"]]
    a, b = load_run(full_out, ppo.Config, ppo.make_train, "ppo"), load_run(out, ppo.Config, ppo.make_train, "ppo")
    jax.tree.map(np.testing.assert_array_equal, a.state.params, b.state.params)
    assert read_jsonl(out / "metrics.jsonl") == read_jsonl(full_out / "metrics.jsonl")


def test_resume_refuses_a_flag_it_would_ignore(finished_run):
    """--resume keeps the saved config: a flag that contradicts it is an error, not silently dropped."""
    out, _ = finished_run
    with pytest.raises(ConfigError, match=r"trained with env='CartPole-v1', not env='Acrobot-v1'"):
        train_and_evaluate(tiny_config(env="Acrobot-v1"), ppo.make_train, RunOptions(resume=str(out), quiet=True),
                           algorithm="ppo")


@pytest.fixture(scope="module")
def direct_states():
    """The same tiny PPO trained by calling ``jit(vmap(train))`` directly, for seeds 0, 1 and 0 again."""
    trainer = ppo.make_train(tiny_config())
    keys = jnp.stack([jax.random.PRNGKey(s) for s in (0, 1, 0)])
    return trainer, jax.jit(jax.vmap(trainer))(keys)[0]


def test_same_key_same_result(direct_states):
    _, state = direct_states
    jax.tree.map(lambda x: np.testing.assert_array_equal(x[0], x[2]), state.params)
    kernel = state.params["params"]["Dense_0"]["kernel"]
    assert not np.array_equal(kernel[0], kernel[1])


def test_save_load_identical_actions(finished_run, direct_states):
    """The CLI's checkpoint, loaded back, acts exactly like the same seeds trained by a direct call."""
    out, _ = finished_run
    trainer, state = direct_states
    loaded = load_run(out, ppo.Config, ppo.make_train, "ppo")
    assert loaded.update == 32 and loaded.config == tiny_config()
    obs = jax.random.normal(jax.random.PRNGKey(3), (64, 4))
    for r in range(2):
        expected = trainer.act(jax.tree.map(lambda x: x[r], state), obs, jax.random.PRNGKey(0))
        np.testing.assert_array_equal(loaded.act(r, obs), expected)


def test_refuses_to_overwrite_a_run(finished_run):
    out, _ = finished_run
    with pytest.raises(ConfigError, match="already holds a run"):
        run(out)


def test_corrupt_checkpoint_is_a_clear_error(tmp_path, finished_run):
    src, _ = finished_run
    out = tmp_path / "copy"
    shutil.copytree(src, out)
    before = sorted(p.relative_to(out) for p in out.rglob("*"))
    for f in (out / "checkpoints" / "32").rglob("*"):
        if f.is_file() and f.stat().st_size > 0 and "state" in f.parts:
            f.write_bytes(b"garbage")
    with pytest.raises(ckpt.CheckpointError, match="corrupt|unreadable|does not match"):
        load_run(out, ppo.Config, ppo.make_train, "ppo")
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == before  # nothing written or removed


def test_mismatched_checkpoint_is_a_clear_error(finished_run):
    out, _ = finished_run
    with pytest.raises(ckpt.CheckpointError, match="not 'dqn'"):
        load_run(out, ppo.Config, ppo.make_train, "dqn")
    bigger = dataclasses.replace(tiny_config(), hidden_size=32)
    abstract = ckpt.abstract_like(jax.eval_shape(jax.vmap(ppo.make_train(bigger).init), jnp.zeros((2, 2), jnp.uint32)))
    with pytest.raises(ckpt.CheckpointError, match="does not match"):
        ckpt.restore(out, abstract, expect={})


@pytest.mark.parametrize("overrides, message", [
    (dict(lr=-1e-3), "lr must be > 0"),
    (dict(num_minibatches=3), "divisible by num_minibatches"),
    (dict(gamma=1.5), "gamma must be in"),
    (dict(env="Cartpole-v1"), "Did you mean: CartPole-v1"),
    (dict(total_timesteps=10), "less than one rollout"),
])
def test_bad_config_fails_before_compiling(tmp_path, overrides, message):
    with pytest.raises(ValueError, match=message):
        run(tmp_path / "bad", tiny_config(**overrides))
    assert not (tmp_path / "bad").exists()


def test_sweep_parsing():
    config = tiny_config()
    assert parse_sweep(config, ("lr=1e-4,3e-4", "gamma=0.9,0.99")) == [
        {"lr": 1e-4, "gamma": 0.9}, {"lr": 1e-4, "gamma": 0.99}, {"lr": 3e-4, "gamma": 0.9}, {"lr": 3e-4, "gamma": 0.99}]
    with pytest.raises(ConfigError, match="only float fields"):
        parse_sweep(config, ("num_envs=4,8",))
    with pytest.raises(ConfigError, match="not a field"):
        parse_sweep(config, ("learning_rate=1e-4",))
    with pytest.raises(ConfigError, match="FIELD=V1,V2"):
        parse_sweep(config, ("lr",))


def test_sweep_trains_the_grid_in_one_program(tmp_path):
    summary = run(tmp_path / "sweep", sweep=("lr=1e-4,1e-3",))
    assert [g["sweep"] for g in summary["sweep"]] == [{"lr": 1e-4}, {"lr": 1e-3}]
    assert len(summary["runs"]) == 4
    # a swept run equals a plain run of the same grid point and seed
    plain = run(tmp_path / "plain", tiny_config(lr=1e-3))
    swept = [r["eval_return"] for r in summary["runs"] if r["sweep"] == {"lr": 1e-3}]
    np.testing.assert_allclose(swept, [r["eval_return"] for r in plain["runs"]], rtol=1e-5)
    with pytest.raises(ValueError, match="lr must be > 0"):
        run(tmp_path / "badsweep", sweep=("lr=1e-3,-1",))


def test_flags_from_config_docstrings():
    config, options = parse_args(ppo.Config, ["--lr", "1e-3", "--num-envs", "8", "--no-anneal-lr", "--num-seeds", "3",
                                              "--sweep", "gamma=0.9,0.99", "--total-timesteps", "5e5"])
    assert config.lr == 1e-3 and config.num_envs == 8 and not config.anneal_lr and config.total_timesteps == 500_000
    assert options.num_seeds == 3 and options.sweep == ("gamma=0.9,0.99",)
    with pytest.raises(SystemExit):
        parse_args(ppo.Config, ["--num-envs", "2.5"])
    help_text = subprocess.run([sys.executable, str(ROOT / "agents/online/ppo.py"), "--help"],
                               capture_output=True, text=True, check=True).stdout
    assert "Clipping range of the probability ratio" in help_text and "--num-seeds" in help_text


def test_cli_reports_bad_input_without_traceback(tmp_path):
    proc = subprocess.run([sys.executable, str(ROOT / "agents/online/ppo.py"), "--env", "Pendulm-v1", "--out", str(tmp_path / "x")],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and "Did you mean: Pendulum-v1" in proc.stderr and "Traceback" not in proc.stderr


def test_sharded_over_four_devices_equals_one_device(tmp_path, finished_run):
    """XLA_FLAGS=--xla_force_host_platform_device_count=4: the runs are sharded, results unchanged."""
    code = (
        "import jax, json, sys; from agents.online import ppo; from jaxrl.cli import RunOptions, train_and_evaluate; "
        "assert jax.device_count() == 4; "
        f"c = ppo.Config(**{TINY!r}); "
        "s = train_and_evaluate(c, ppo.make_train, RunOptions(num_seeds=4, out=sys.argv[1], eval_episodes=4, log_points=8, quiet=True), 'ppo'); "
        "print(json.dumps([r['eval_return'] for r in s['runs']]))"
    )
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=4", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path / "sharded")], capture_output=True, text=True, env=env, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    sharded = json.loads(proc.stdout.strip().splitlines()[-1])
    single = run(tmp_path / "single", num_seeds=4)
    np.testing.assert_allclose(sharded, [r["eval_return"] for r in single["runs"]], rtol=1e-5)


def test_training_loop_lands_in_the_persistent_compilation_cache(finished_run):
    """The compiled chunk has no host callback, so JAX persists it and a second process skips XLA."""
    cache = Path(os.environ["JAXRL_CACHE_DIR"])
    assert any(p.name.startswith("jit_chunk_one") for p in cache.iterdir()), sorted(p.name[:30] for p in cache.iterdir())


def test_optional_logging_backend_missing_is_a_clear_error(tmp_path, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_tensorboard(name, *args, **kwargs):
        if name in ("tensorboardX", "torch.utils.tensorboard", "wandb"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_tensorboard)
    with pytest.raises(ConfigError, match="tensorboardX"):
        run(tmp_path / "tb", tensorboard=True)
    with pytest.raises(ConfigError, match="wandb"):
        run(tmp_path / "wb", wandb_project="p")
