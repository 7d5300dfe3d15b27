"""``scripts/reproduce.py offline-d4rl`` on a D4RL-style HDF5 file the test writes: Pendulum data
collected in gymnax, agents trained on a ``SpacesOnly`` env, evaluated in Gymnasium's Pendulum-v1."""
import json

import h5py
import numpy as np
import pytest

pytest.importorskip("gymnasium")

from jaxrl.envs import SpacesOnly
from scripts import reproduce, reproduce_d4rl
import offline_data


def write_d4rl_file(path, dataset):
    with h5py.File(path, "w") as f:
        f["observations"] = np.asarray(dataset.observations)
        f["actions"] = np.asarray(dataset.actions)
        f["rewards"] = np.asarray(dataset.rewards)
        f["terminals"] = np.asarray(dataset.terminations)
        f["timeouts"] = np.asarray(dataset.truncations)
    return path


@pytest.fixture(scope="module")
def expert_file(tmp_path_factory):
    return write_d4rl_file(tmp_path_factory.mktemp("d4rl") / "Pendulum-v1.hdf5", offline_data.pendulum_dataset("expert", n=6000))


@pytest.fixture(scope="module")
def td3_bc_run(expert_file, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    argv = ["offline-d4rl", "--data", str(expert_file), "--eval-env", "Pendulum-v1", "--agents", "td3_bc", "--seeds", "2",
            "--num-updates", "2000", "--eval-every", "1000", "--eval-episodes", "3", "--out", str(out), "--quiet"]
    assert reproduce.main(argv) == 0
    return out


@pytest.mark.learning
def test_td3_bc_on_expert_data_plays_well_in_gymnasium(td3_bc_run):
    """Trained on data from gymnax's Pendulum, the policy is scored in Gymnasium's: the two
    simulators agree, so TD3+BC recovers most of the expert there."""
    result = json.loads((td3_bc_run / "Pendulum-v1" / "td3_bc.json").read_text())
    assert result["updates"] == [1000, 2000] and np.asarray(result["scores"]).shape == (2, 2)
    assert np.mean(result["last"]) > 70, result["last"]
    table = (td3_bc_run / "offline-d4rl.md").read_text()
    assert "| Pendulum-v1 | td3_bc |" in table and (td3_bc_run / "offline-d4rl.png").stat().st_size > 1000


def test_minari_source_runs_end_to_end(tmp_path, monkeypatch):
    pytest.importorskip("minari")
    from jaxrl import data as data_lib

    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    data_lib.to_minari(offline_data.pendulum_dataset("expert", n=2000), "jaxrl/pendulum-expert-v0")
    argv = ["offline-d4rl", "--minari", "jaxrl/pendulum-expert-v0", "--eval-env", "Pendulum-v1", "--agents", "bc",
            "--quick", "--out", str(tmp_path / "out"), "--quiet"]
    assert reproduce.main(argv) == 0
    result = json.loads((tmp_path / "out" / "Pendulum-v1" / "bc.json").read_text())
    assert result["updates"] == [200] and len(result["last"]) == 2 and np.isfinite(result["last"]).all()


def test_corl_numbers_are_the_published_ones():
    refs = reproduce.load_references()
    assert reproduce_d4rl.corl_reference(refs, "hopper-medium-v2", "rebrac") == (102.3, 103.2)
    assert reproduce_d4rl.corl_reference(refs, "walker2d-medium-v2", "iql") == (80.9, 87.6)
    assert reproduce_d4rl.corl_reference(refs, "Pendulum-v1", "iql") is None


@pytest.mark.parametrize("argv, message", [
    ([], "runs only on data you supply"),
    (["--data", "missing.hdf5"], "does not exist"),
    (["--data", "x.hdf5", "--agents", "dt"], "unsupported agents"),
    (["--data", "x.hdf5", "--num-updates", "0"], "--num-updates must be >= 1"),
])
def test_bad_arguments_are_clear_errors(argv, message, capsys):
    with pytest.raises(SystemExit) as err:
        reproduce_d4rl.main(argv)
    assert message in str(err.value.code) + capsys.readouterr().err


def test_dataset_for_another_env_is_refused(expert_file, tmp_path):
    argv = ["--data", str(expert_file), "--eval-env", "MountainCarContinuous-v0", "--quick", "--out", str(tmp_path)]
    with pytest.raises(SystemExit, match="a dataset for another env"):
        reproduce_d4rl.main(argv)


def test_unknown_simulator_name_asks_for_eval_env():
    with pytest.raises(SystemExit, match="pass --eval-env"):
        reproduce_d4rl.gymnasium_id("my-robot-medium", None)
    assert reproduce_d4rl.gymnasium_id("hopper-medium-v2", None) == "Hopper-v4"
    assert reproduce_d4rl.gymnasium_id("mujoco/walker2d/expert-v0", None) == "Walker2d-v4"


def test_spaces_only_env_describes_but_cannot_simulate():
    import jax

    env = SpacesOnly.continuous("hopper-medium-v2", (11,), 3)
    assert env.observation_space().shape == (11,) and env.action_space().shape == (3,)
    assert env.default_params.max_steps_in_episode == 1000
    with pytest.raises(NotImplementedError, match="cannot be simulated"):
        env.reset(jax.random.PRNGKey(0))
