"""jaxrl.data: the on-disk format and its checksum, compatibility errors, Minari and D4RL-HDF5
import/export, normalized scores, and scripts/make_dataset.py's determinism."""
from __future__ import annotations

import dataclasses
import json
import zipfile

import jax.numpy as jnp
import numpy as np
import pytest

from jaxrl import data as data_lib
from jaxrl import envs
from jaxrl.data import DatasetError
from offline_data import cartpole_dataset, pendulum_dataset


@pytest.fixture(scope="module")
def cartpole():
    return cartpole_dataset("expert", n=800)


@pytest.fixture(scope="module")
def pendulum():
    ds = pendulum_dataset("medium", n=800)
    return ds.replace(extras={"costs": jnp.arange(ds.size, dtype=jnp.float32) % 3})


@pytest.fixture(scope="module")
def saved(cartpole, tmp_path_factory):
    return data_lib.save(cartpole, tmp_path_factory.mktemp("saved") / "cartpole.npz")


def assert_same_arrays(a, b):
    assert set(a.arrays()) == set(b.arrays())
    for name, x in a.arrays().items():
        y = b.arrays()[name]
        assert np.asarray(x).dtype == np.asarray(y).dtype, name
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y), err_msg=name)


# ----------------------------------------------------------------------------------------------
# save / load
# ----------------------------------------------------------------------------------------------
def test_roundtrip_is_identical(cartpole, pendulum, saved, tmp_path):
    loaded = data_lib.load(saved)
    assert_same_arrays(cartpole, loaded)
    assert loaded.info == dataclasses.replace(cartpole.info, checksum=data_lib.compute_checksum(cartpole))
    assert loaded.info.checksum and len(loaded.info.checksum) == 64
    # extras and NaN reference returns survive too
    pend = pendulum.replace(info=dataclasses.replace(pendulum.info, random_return=float("nan")))
    back = data_lib.load(data_lib.save(pend, tmp_path / "pendulum.npz"))
    assert_same_arrays(pend, back)
    assert back.extras["costs"].dtype == jnp.float32 and np.isnan(back.info.random_return)
    assert back.info.expert_return == pend.info.expert_return
    # saving is atomic: no temporary file is left beside the result
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pendulum.npz"]


def test_checksum_is_content_based(cartpole):
    edited = cartpole.replace(rewards=cartpole.rewards.at[3].add(1.0))
    assert data_lib.compute_checksum(edited) != data_lib.compute_checksum(cartpole)
    # the same bytes under another dtype or shape, or another name, give another checksum
    zeros = np.zeros(8, np.float32)
    sums = {data_lib._checksum({"rewards": zeros}), data_lib._checksum({"rewards": zeros.view(np.int32)}),
            data_lib._checksum({"rewards": zeros.reshape(4, 2)}), data_lib._checksum({"costs": zeros})}
    assert len(sums) == 4


def test_truncated_file_is_reported(saved, tmp_path):
    raw = saved.read_bytes()
    bad = tmp_path / "truncated.npz"
    bad.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(DatasetError, match=r"truncated\.npz.*(corrupt|truncated)"):
        data_lib.load(bad)


def test_flipped_byte_is_reported(saved, tmp_path):
    raw = bytearray(saved.read_bytes())
    with zipfile.ZipFile(saved) as z:  # flip a byte in the middle of the observations' data
        offset = z.getinfo("observations.npy").header_offset
    raw[offset + 400] ^= 0xFF
    bad = tmp_path / "flipped.npz"
    bad.write_bytes(bytes(raw))
    with pytest.raises(DatasetError, match="flipped.npz"):
        data_lib.load(bad)


def _rewrite(src, dst, edit):
    with np.load(src, allow_pickle=False) as npz:
        members = {k: npz[k] for k in npz.files}
    edit(members)
    np.savez(dst, **members)


def test_edited_array_fails_the_checksum(saved, tmp_path):
    bad = tmp_path / "edited.npz"
    _rewrite(saved, bad, lambda m: m.__setitem__("rewards", m["rewards"] * 2))
    with pytest.raises(DatasetError, match=r"edited\.npz: checksum mismatch"):
        data_lib.load(bad)


def test_edited_metadata_is_reported(saved, tmp_path):
    def edit(members):
        meta = json.loads(members["__meta__"].tobytes())
        meta["info"]["expert_return"] = 1000.0
        members["__meta__"] = np.frombuffer(json.dumps(meta).encode(), np.uint8)

    bad = tmp_path / "meta.npz"
    _rewrite(saved, bad, edit)
    with pytest.raises(DatasetError, match="metadata was edited"):
        data_lib.load(bad)


def test_object_array_is_rejected_without_unpickling(saved, tmp_path):
    bad = tmp_path / "object.npz"
    _rewrite(saved, bad, lambda m: m.__setitem__("rewards", np.array([{"x": 1}] * len(m["rewards"]), dtype=object)))
    with pytest.raises(DatasetError, match="object array"):
        data_lib.load(bad)
    with pytest.raises(DatasetError, match="object array"):
        data_lib.save(data_lib.Dataset(**{f: np.zeros(2) for f in data_lib.CORE_FIELDS}, extras={"x": np.array([None, 1])},
                                       info=data_lib.DatasetInfo(env_id="CartPole-v1")), tmp_path / "never.npz")


def test_other_files_are_clear_errors(tmp_path):
    np.savez(tmp_path / "plain.npz", observations=np.zeros(3))
    with pytest.raises(DatasetError, match="not a jaxrl dataset"):
        data_lib.load(tmp_path / "plain.npz")
    with pytest.raises(DatasetError, match="does not exist"):
        data_lib.load(tmp_path / "missing.npz")
    with pytest.raises(DatasetError, match="load_d4rl_hdf5"):
        (tmp_path / "x.hdf5").write_bytes(b"")
        data_lib.load(tmp_path / "x.hdf5")


# ----------------------------------------------------------------------------------------------
# check_compatible
# ----------------------------------------------------------------------------------------------
def test_check_compatible_errors(cartpole, pendulum):
    env, params = envs.make("CartPole-v1")
    data_lib.check_compatible(cartpole, "CartPole-v1", env, params, "bc")  # fine
    acro, acro_params = envs.make("Acrobot-v1")
    with pytest.raises(DatasetError, match="collected on 'CartPole-v1' but bc is configured for 'Acrobot-v1'"):
        data_lib.check_compatible(cartpole, "Acrobot-v1", acro, acro_params, "bc")
    anonymous = cartpole.replace(info=data_lib.DatasetInfo(env_id=""))
    with pytest.raises(DatasetError, match=r"observations have shape \(4,\).*\(6,\)"):
        data_lib.check_compatible(anonymous, "Acrobot-v1", acro, acro_params, "bc")
    # discrete actions offered to a continuous env, and the other way round
    pend_env, pend_params = envs.make("Pendulum-v1")
    discrete_pendulum = pendulum.replace(actions=jnp.zeros(pendulum.size, jnp.int32))
    with pytest.raises(DatasetError, match="Pendulum-v1 needs float actions of shape"):
        data_lib.check_compatible(discrete_pendulum, "Pendulum-v1", pend_env, pend_params, "td3_bc")
    continuous_cartpole = cartpole.replace(actions=jnp.zeros((cartpole.size, 1), jnp.float32))
    with pytest.raises(DatasetError, match="CartPole-v1 needs integer actions"):
        data_lib.check_compatible(continuous_cartpole, "CartPole-v1", env, params, "cql_discrete")


# ----------------------------------------------------------------------------------------------
# Minari
# ----------------------------------------------------------------------------------------------
def test_minari_roundtrip(cartpole, pendulum, tmp_path, monkeypatch):
    pytest.importorskip("minari")
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    exported = data_lib.to_minari(cartpole, "jaxrl/cartpole-expert-v0", author="jaxrl tests")
    assert exported.total_steps == cartpole.size
    assert exported.total_episodes == len(data_lib.episode_bounds(cartpole))
    assert (tmp_path / "minari" / "jaxrl" / "cartpole-expert-v0").is_dir()
    back = data_lib.from_minari("jaxrl/cartpole-expert-v0")  # the env id is read from the metadata
    assert_same_arrays(cartpole, back)
    assert back.info.env_id == "CartPole-v1" and back.info.source == "minari:jaxrl/cartpole-expert-v0"
    assert back.info.checksum == data_lib.compute_checksum(cartpole)
    assert (back.info.random_return, back.info.expert_return) == (cartpole.info.random_return, cartpole.info.expert_return)
    # continuous actions, given a MinariDataset object and the env id explicitly (extras are not exported)
    data_lib.to_minari(pendulum, "jaxrl/pendulum-medium-v0")
    import minari

    back = data_lib.from_minari(minari.load_dataset("jaxrl/pendulum-medium-v0"), "Pendulum-v1")
    assert_same_arrays(pendulum.replace(extras={}), back)
    with pytest.raises(DatasetError, match="Pendulum-v1"):
        data_lib.from_minari("jaxrl/pendulum-medium-v0", "CartPole-v1")


def test_minari_dataset_of_a_simulator_outside_the_registry_loads(tmp_path, monkeypatch):
    """A Minari dataset written by another tool for an env gymnax lacks (like Minari's MuJoCo data)
    loads with its spaces and reference scores, unchecked against any registry env."""
    minari = pytest.importorskip("minari")
    from gymnasium import spaces
    from minari.data_collector import EpisodeBuffer

    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    rng = np.random.default_rng(0)
    buffers = [EpisodeBuffer(id=i, observations=rng.normal(size=(6, 5)).astype(np.float32),
                             actions=rng.uniform(-1, 1, (5, 2)).astype(np.float32), rewards=[1.0] * 5,
                             terminations=[False] * 4 + [i == 0], truncations=[False] * 4 + [i == 1]) for i in range(2)]
    made = minari.create_dataset_from_buffers("other/robot-medium-v0", buffers, algorithm_name="elsewhere",
                                              observation_space=spaces.Box(-np.inf, np.inf, (5,)),
                                              action_space=spaces.Box(-1.0, 1.0, (2,)))
    made.storage.update_metadata({"ref_min_score": 0.0, "ref_max_score": 10.0})
    data = data_lib.from_minari("other/robot-medium-v0", "other/robot-medium-v0")
    assert data.size == 10 and data.actions.shape == (10, 2) and data.observations.shape == (10, 5)
    assert np.asarray(data.terminations).tolist() == [0, 0, 0, 0, 1, 0, 0, 0, 0, 0]
    assert np.asarray(data.truncations).tolist()[-1] == 1
    np.testing.assert_allclose(data_lib.normalized_score("other/robot-medium-v0", 5.0, data.info), 50.0)


# ----------------------------------------------------------------------------------------------
# D4RL HDF5
# ----------------------------------------------------------------------------------------------
def _write_d4rl(path, obs, actions, rewards, terminals, timeouts, next_obs=None):
    h5py = pytest.importorskip("h5py")
    with h5py.File(path, "w") as f:
        f["observations"], f["actions"], f["rewards"] = obs, actions, rewards
        f["terminals"], f["timeouts"] = terminals, timeouts
        if next_obs is not None:
            f["next_observations"] = next_obs


def test_load_d4rl_hdf5(tmp_path):
    # Pendulum-shaped stream: episode A (3 steps, terminal), B (4 steps, timeout), a 2-step tail without flags.
    n = 9
    obs = np.arange(n * 3, dtype=np.float64).reshape(n, 3)
    actions = np.linspace(-1, 1, n)[:, None]
    rewards = np.arange(n, dtype=np.float64)
    terminals = np.zeros(n, bool)
    terminals[2] = True
    timeouts = np.zeros(n, bool)
    timeouts[6] = True
    _write_d4rl(tmp_path / "pend.hdf5", obs, actions, rewards, terminals, timeouts)
    ds = data_lib.load_d4rl_hdf5(tmp_path / "pend.hdf5", "Pendulum-v1")
    kept = [0, 1, 2, 3, 4, 5, 7]  # the timeout step (6) and the file's last step (8) have no known next state
    np.testing.assert_array_equal(np.asarray(ds.rewards), rewards[kept].astype(np.float32))
    np.testing.assert_array_equal(np.asarray(ds.terminations), [0, 0, 1, 0, 0, 0, 0])
    np.testing.assert_array_equal(np.asarray(ds.truncations), [0, 0, 0, 0, 0, 1, 1])
    np.testing.assert_array_equal(np.asarray(ds.next_observations)[[0, 1, 3, 4, 5, 6]], obs[[1, 2, 4, 5, 6, 8]])
    assert ds.observations.dtype == jnp.float32 and ds.actions.shape == (7, 1) and ds.actions.dtype == jnp.float32
    assert ds.info.env_id == "Pendulum-v1" and ds.info.source == "d4rl-hdf5:pend.hdf5" and ds.info.size == 7
    assert ds.info.checksum == data_lib.compute_checksum(ds)
    assert [e - s for s, e in data_lib.episode_bounds(ds)] == [3, 3, 1]

    # with next_observations every step is kept, and timeouts map to truncations
    _write_d4rl(tmp_path / "next.hdf5", obs, actions, rewards, terminals, timeouts, next_obs=obs + 0.5)
    ds = data_lib.load_d4rl_hdf5(tmp_path / "next.hdf5", "Pendulum-v1")
    assert ds.size == n
    np.testing.assert_array_equal(np.asarray(ds.next_observations), (obs + 0.5).astype(np.float32))
    np.testing.assert_array_equal(np.asarray(ds.truncations), timeouts | (np.arange(n) == n - 1))

    # a shape that does not fit the env, a missing key
    with pytest.raises(DatasetError, match=r"observations have shape \(3,\)"):
        data_lib.load_d4rl_hdf5(tmp_path / "next.hdf5", "CartPole-v1")
    h5py = pytest.importorskip("h5py")
    with h5py.File(tmp_path / "broken.hdf5", "w") as f:
        f["observations"] = obs
    with pytest.raises(DatasetError, match="missing D4RL keys"):
        data_lib.load_d4rl_hdf5(tmp_path / "broken.hdf5", "Pendulum-v1")


def test_d4rl_file_of_an_unregistered_env_uses_d4rl_references(tmp_path):
    n = 6
    _write_d4rl(tmp_path / "hopper-medium-v2.hdf5", np.zeros((n, 11)), np.zeros((n, 3)), np.ones(n),
                np.zeros(n, bool), np.eye(n, dtype=bool)[n - 1])
    ds = data_lib.load_d4rl_hdf5(tmp_path / "hopper-medium-v2.hdf5", "hopper-medium-v2")
    assert (ds.info.random_return, ds.info.expert_return) == (-20.272305, 3234.3)
    assert ds.observations.shape == (n - 1, 11)
    np.testing.assert_allclose(data_lib.normalized_score("hopper-medium-v2", 3234.3, ds.info), 100.0)


# ----------------------------------------------------------------------------------------------
# Normalized scores
# ----------------------------------------------------------------------------------------------
def test_normalized_score_hand_computed():
    info = data_lib.DatasetInfo(env_id="CartPole-v1", random_return=10.0, expert_return=110.0)
    np.testing.assert_allclose(data_lib.normalized_score("CartPole-v1", [10.0, 60.0, 110.0, 160.0], info),
                               [0.0, 50.0, 100.0, 150.0])
    # D4RL hopper: random -20.272305, expert 3234.3 -> the midpoint 1607.0138475 scores 50
    for name in ("hopper-medium-v2", "hopper", "Hopper-v4", "mujoco/hopper/medium-v0"):
        np.testing.assert_allclose(data_lib.normalized_score(name, [-20.272305, 1607.0138475, 3234.3]), [0.0, 50.0, 100.0])
    # halfcheetah: (4000 - (-280.178953)) / (12135 - (-280.178953)) * 100 = 34.4755...
    np.testing.assert_allclose(data_lib.normalized_score("halfcheetah-medium-replay-v2", 4000.0),
                               100 * 4280.178953 / 12415.178953)
    np.testing.assert_allclose(data_lib.normalized_score("walker2d-expert-v2", 1.629008), 0.0, atol=1e-12)
    # a dataset's own references win over the table; an unknown env is a clear error
    assert data_lib.normalized_score("hopper", 0.0, data_lib.DatasetInfo(env_id="x", random_return=0.0, expert_return=1.0)) == 0.0
    with pytest.raises(DatasetError, match="no reference returns for 'NoSuchEnv-v0'"):
        data_lib.normalized_score("NoSuchEnv-v0", 1.0)
    with pytest.raises(DatasetError, match="equal"):
        data_lib.normalized_score("x", 1.0, data_lib.DatasetInfo(env_id="x", random_return=1.0, expert_return=1.0))


def test_our_envs_have_reference_returns():
    for env_id in ("Pendulum-v1", "MountainCarContinuous-v0", "CartPole-v1", "Acrobot-v1"):
        random_return, expert_return = data_lib.reference_returns(env_id)
        assert expert_return > random_return


# ----------------------------------------------------------------------------------------------
# scripts/make_dataset.py
# ----------------------------------------------------------------------------------------------
def test_make_dataset_is_deterministic(tmp_path):
    """Two builds from scratch (separate online runs) with the same seed give the same file."""
    from scripts import make_dataset

    builds = []
    for i in range(2):
        ds, path = make_dataset.build("CartPole-v1", "medium-replay", size=640, seed=3, out=tmp_path / f"{i}.npz",
                                      runs_dir=tmp_path / f"runs{i}", total_timesteps=2048, checkpoint_every=512,
                                      quiet=True)
        builds.append(ds)
    a, b = builds
    assert a.info.checksum == b.info.checksum == data_lib.load(tmp_path / "0.npz").info.checksum
    assert_same_arrays(a, b)
    info = a.info
    assert info.kind == "medium-replay" and info.env_id == "CartPole-v1" and info.seed == 3 and info.size == 640
    assert np.isfinite(info.random_return) and np.isfinite(info.expert_return) and info.jaxrl_version
    assert "checkpoints" in info.policy_checkpoint and "medium = checkpoint" in info.notes
    # the cached run is reused for another kind: no retraining, same references
    expert, _ = make_dataset.build("CartPole-v1", "expert", size=320, seed=3, out=tmp_path / "e.npz",
                                   runs_dir=tmp_path / "runs0", total_timesteps=2048, checkpoint_every=512, quiet=True)
    assert (expert.info.random_return, expert.info.expert_return) == (info.random_return, info.expert_return)
    assert expert.info.kind == "expert" and expert.size == 320


def test_make_dataset_rejects_bad_input(tmp_path):
    from scripts import make_dataset
    from jaxrl.config import ConfigError

    with pytest.raises(ConfigError, match="--kind"):
        make_dataset.build("CartPole-v1", "mediocre", runs_dir=tmp_path)
    with pytest.raises(ConfigError, match="no online recipe for 'Breakout-MinAtar'"):
        make_dataset.build("Breakout-MinAtar", "medium", runs_dir=tmp_path)
