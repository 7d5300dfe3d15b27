"""``offline-d4rl``: our offline agents on D4RL or Minari data you supply, beside CORL's published scores.

    python scripts/reproduce.py offline-d4rl --data hopper-medium-v2.hdf5 [--data walker2d-medium-v2.hdf5]
    python scripts/reproduce.py offline-d4rl --minari mujoco/hopper/medium-v0 --agents td3_bc,iql

Nothing is downloaded. A ``--data`` file is a D4RL-style HDF5 file (``observations``, ``actions``,
``rewards``, ``terminals``, ``timeouts``; see ``jaxrl.data.load_d4rl_hdf5``) or a dataset saved by
``jaxrl.data.save``. A ``--minari`` id names a dataset already in the local Minari folder. The file
name (``hopper-medium-v2``) or the Minari id names the dataset.

The MuJoCo simulators are not in gymnax. Each agent trains inside one compiled program, all seeds
vmapped, on a ``jaxrl.envs.SpacesOnly`` env that only describes the spaces. Every ``--eval-every``
updates the program stops. The greedy policy of every seed then plays ``--eval-episodes`` episodes
in the real simulator: Gymnasium's ``Hopper-v4`` etc., which needs ``pip install "gymnasium[mujoco]"``.
The policy runs as one jitted call per step for all seeds together. Scores are D4RL-normalized
(``jaxrl.data.normalized_score``). The table gives the last and the best score, the two columns
CORL reports. CORL's numbers come from ``scripts/references.json`` (set ``corl-d4rl``).

Output: ``OUT/<dataset>/<agent>.json`` (the curve of every seed), then ``RESULTS/offline-d4rl.md``
and ``.png``. ``RESULTS`` is the ``--out`` folder unless you pass ``--results``.
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime as _dt
import importlib
import json
import re
import shlex
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

NAME = "offline-d4rl"
TITLE = "Offline agents on user-supplied D4RL/Minari data, D4RL-normalized, beside CORL"
DEFAULT_AGENTS = ("td3_bc", "iql", "cql", "rebrac")
SUPPORTED_AGENTS = ("bc", "td3_bc", "iql", "cql", "rebrac", "awac", "prdc")
"""Continuous-action agents whose ``act`` is a function of the current observation (a Decision
Transformer needs its context, which a step-by-step host rollout does not carry)."""
GYMNASIUM_IDS = {"hopper": "Hopper-v4", "halfcheetah": "HalfCheetah-v4", "walker2d": "Walker2d-v4", "ant": "Ant-v4"}
"""D4RL's v2 datasets were recorded with MuJoCo v3 envs; Gymnasium's v4 envs use the same models
with the new mujoco bindings (Gymnasium's docs list no change to dynamics or reward)."""


# ----------------------------------------------------------------------------------------------
# Loading the data and the simulator
# ----------------------------------------------------------------------------------------------
def load_source(source: str, minari_id: bool):
    """(name, Dataset) from a file path or a Minari id, with a clear error for anything unusable."""
    from jaxrl import data as data_lib

    if minari_id:
        try:
            import minari
        except ImportError:
            raise SystemExit("error: --minari needs the optional extra: pip install 'jaxrl[offline]'") from None
        try:
            dataset = minari.load_dataset(source)
        except Exception as err:  # minari raises several types for a missing/invalid id
            raise SystemExit(f"error: cannot load Minari dataset {source!r} ({type(err).__name__}: {err}); "
                             "list local ones with `minari list local`") from None
        exported_by_jaxrl = "jaxrl_info" in dataset.storage.metadata  # it names its own registry env
        try:
            data = data_lib.from_minari(dataset, env_id=None if exported_by_jaxrl else source)
        except data_lib.DatasetError as err:
            raise SystemExit(f"error: {err}") from None
        if exported_by_jaxrl:
            source = data.info.env_id
        spec = getattr(dataset, "env_spec", None)  # the env the data was recorded in, e.g. Hopper-v5
        if spec is not None and getattr(spec, "id", None):
            RECORDED_ENV[source] = spec.id
        return source, data
    path = Path(source)
    if not path.exists():
        raise SystemExit(f"error: --data {path} does not exist")
    try:
        if path.suffix in (".hdf5", ".h5"):
            return path.stem, data_lib.load_d4rl_hdf5(path, env_id=path.stem)
        return path.stem, data_lib.load(path)
    except data_lib.DatasetError as err:
        raise SystemExit(f"error: {err}") from None


RECORDED_ENV: dict[str, str] = {}
"""Gymnasium ids that Minari datasets record (``dataset.env_spec``), by dataset name."""


def gymnasium_id(name: str, override: str | None) -> str:
    """The Gymnasium env to evaluate in: ``--eval-env``, else the one a Minari dataset recorded,
    else the MuJoCo task named in the dataset name (``hopper-medium-v2`` -> ``Hopper-v4``)."""
    if override:
        return override
    if name in RECORDED_ENV:
        return RECORDED_ENV[name]
    for token in re.split(r"[/_\-]", name.lower()):
        if token in GYMNASIUM_IDS:
            return GYMNASIUM_IDS[token]
    raise SystemExit(f"error: cannot tell which simulator {name!r} comes from (known: {', '.join(GYMNASIUM_IDS)}); "
                     "pass --eval-env with a Gymnasium id, e.g. --eval-env Hopper-v4")


def make_eval_envs(env_id: str, count: int):
    try:
        import gymnasium
    except ImportError:
        raise SystemExit("error: evaluation needs Gymnasium: pip install 'gymnasium[mujoco]'") from None
    try:
        return [gymnasium.make(env_id) for _ in range(count)]
    except Exception as err:  # missing mujoco, unknown id, ...
        raise SystemExit(f"error: cannot create the evaluation env {env_id!r} ({type(err).__name__}: {err}); "
                         "MuJoCo tasks need: pip install 'gymnasium[mujoco]'") from None


def spaces_env(name: str, dataset, eval_env):
    """The ``SpacesOnly`` env the agents train on: the dataset's shapes, the simulator's action bounds."""
    from gymnasium import spaces as gym_spaces

    from jaxrl.config import ConfigError
    from jaxrl.envs import SpacesOnly

    space = eval_env.action_space
    if not isinstance(space, gym_spaces.Box):
        raise SystemExit(f"error: offline-d4rl supports continuous actions only; {eval_env.spec.id} has {space}")
    obs_shape = tuple(dataset.observations.shape[1:])
    if obs_shape != tuple(eval_env.observation_space.shape) or tuple(dataset.actions.shape[1:]) != tuple(space.shape):
        raise SystemExit(f"error: {name} has observations {obs_shape} and actions {tuple(dataset.actions.shape[1:])}, "
                         f"but {eval_env.spec.id} has {tuple(eval_env.observation_space.shape)} and {tuple(space.shape)}: "
                         "a dataset for another env? (pass the right --eval-env)")
    low, high = float(np.min(space.low)), float(np.max(space.high))
    max_steps = eval_env.spec.max_episode_steps or 1000
    try:
        return SpacesOnly.continuous(name, obs_shape, space.shape[0], low, high, max_steps)
    except ConfigError as err:
        raise SystemExit(f"error: {err}") from None


# ----------------------------------------------------------------------------------------------
# Training in chunks, evaluating in the simulator between them
# ----------------------------------------------------------------------------------------------
def evaluate_in_simulator(act, states, eval_envs, episodes: int, seed: int) -> np.ndarray:
    """Undiscounted returns ``(seeds, episodes)`` of each seed's greedy policy. ``act(states, obs)``
    maps the stacked observations of all seeds to their actions in one jitted call."""
    num = len(eval_envs)
    returns = np.zeros((num, episodes))
    for episode in range(episodes):
        obs = np.stack([env.reset(seed=seed + 1000 * episode + i)[0] for i, env in enumerate(eval_envs)])
        done = np.zeros(num, bool)
        while not done.all():
            actions = np.asarray(act(states, obs.astype(np.float32)))
            for i, env in enumerate(eval_envs):
                if done[i]:
                    continue
                obs[i], reward, terminated, truncated, _ = env.step(actions[i])
                returns[i, episode] += reward
                done[i] = terminated or truncated
    return returns


def train_agent(agent: str, name: str, dataset, spec_env, eval_envs, args) -> dict[str, Any]:
    import jax
    import jax.numpy as jnp

    from jaxrl import data as data_lib

    module = importlib.import_module(f"agents.offline.{agent}")
    config = module.Config(env=name, num_updates=args.num_updates)
    trainer = module.make_train(config, dataset, env=spec_env, env_params=spec_env.default_params)
    keys = jnp.stack([jax.random.PRNGKey(args.seed + s) for s in range(args.seeds)])
    chunk = max(1, min(args.eval_every, args.num_updates))
    states = jax.jit(jax.vmap(trainer.init))(keys)
    run_chunk = jax.jit(jax.vmap(lambda st, start, n_data: trainer.run(st, start, chunk, n_data)[0],
                                 in_axes=(0, None, None)))
    act_key = jax.random.PRNGKey(0)  # act is greedy; the key is unused by deterministic policies
    act = jax.jit(jax.vmap(lambda st, o: trainer.act(st, o[None], act_key)[0]))
    data = jax.device_put(trainer.data)
    curve, updates, start, t0 = [], [], 0, time.perf_counter()
    while start < args.num_updates:
        states = run_chunk(states, start, data)
        start += chunk
        returns = evaluate_in_simulator(act, states, eval_envs, args.eval_episodes, seed=10_000 + start)
        scores = data_lib.normalized_score(name, returns, dataset.info).mean(axis=1)  # per seed
        curve.append(scores.tolist())
        updates.append(start)
        if not args.quiet:
            rate = start / (time.perf_counter() - t0)
            print(f"[{name} {agent}] update {start:,}/{args.num_updates:,}  normalized score "
                  f"{scores.mean():6.1f} (seeds {np.round(scores, 1).tolist()})  {rate:,.0f} updates/s (compile and evaluation included)", flush=True)
    curve_arr = np.asarray(curve)  # (evaluations, seeds)
    return {"agent": agent, "dataset": name, "updates": updates, "scores": curve_arr.T.tolist(),
            "last": curve_arr[-1].tolist(), "best": curve_arr.max(axis=0).tolist(),
            "wall_time_s": time.perf_counter() - t0, "config": json.loads(json.dumps(dataclasses.asdict(config), default=str))}


# ----------------------------------------------------------------------------------------------
# Report
# ----------------------------------------------------------------------------------------------
def corl_reference(references: dict, dataset: str, agent: str) -> tuple[float, float] | None:
    values = references.get("offline", {}).get("corl-d4rl", {}).get("values", {})
    entry = values.get(dataset, {}).get(agent)
    return (entry["last"], entry["best"]) if entry else None


def _cell(values: list[float]) -> str:
    from jaxrl import stats

    s = stats.summarize(values)
    return f"{s['mean']:.1f} [{s['ci95'][0]:.1f}, {s['ci95'][1]:.1f}]"


def render(results: list[dict], references: dict, *, command: str, args, machine: dict, versions: dict,
           started: _dt.datetime, elapsed: float, plot_name: str) -> str:
    source = references.get("offline", {}).get("corl-d4rl", {}).get("source", "CORL")
    lines = [f"# {NAME}: {TITLE}", "",
             f"Command: `{command}`  ", f"Date: {started:%Y-%m-%d %H:%M} ({elapsed / 60:.1f} min)  ",
             f"Machine: {machine.get('cpu', '?')}, {machine.get('cores', '?')} cores, device {machine.get('device', '?')}  ",
             "Versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()) + "  ",
             f"Budget: {args.num_updates:,} updates per run, {args.seeds} seeds in one program per agent, "
             f"evaluation every {args.eval_every:,} updates on {args.eval_episodes} episodes per seed in Gymnasium.", "",
             "Normalized score (D4RL's references), mean over seeds with a 95% bootstrap CI. *last*: after the final "
             "update; *best*: the best evaluation during training (per seed, then averaged). CORL: " + source + ".", "",
             "| dataset | agent | ours last | CORL last | ours best | CORL best |", "|---|---|---|---|---|---|"]
    for r in results:
        ref = corl_reference(references, r["dataset"], r["agent"])
        ref_last, ref_best = (f"{ref[0]:.1f}", f"{ref[1]:.1f}") if ref else ("–", "–")
        lines.append(f"| {r['dataset']} | {r['agent']} | {_cell(r['last'])} | {ref_last} | {_cell(r['best'])} | {ref_best} |")
    lines += ["", f"![curves]({plot_name})", ""]
    if args.num_updates < 1_000_000:
        lines.append(f"CORL trains for 1,000,000 updates; these runs used {args.num_updates:,}, so compare with care.")
    return "\n".join(lines) + "\n"


def plot(results: list[dict], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from jaxrl.io import save_figure_atomic

    datasets = list(dict.fromkeys(r["dataset"] for r in results))
    fig, axes = plt.subplots(1, len(datasets), figsize=(5 * len(datasets), 3.5), squeeze=False)
    for ax, name in zip(axes[0], datasets):
        for r in (r for r in results if r["dataset"] == name):
            scores = np.asarray(r["scores"])  # (seeds, evaluations)
            mean, lo, hi = scores.mean(0), scores.min(0), scores.max(0)
            ax.plot(r["updates"], mean, label=r["agent"])
            ax.fill_between(r["updates"], lo, hi, alpha=0.2)
        ax.set_title(name)
        ax.set_xlabel("gradient updates")
        ax.set_ylabel("normalized score (min-max over seeds shaded)")
        ax.legend()
    fig.tight_layout()
    return save_figure_atomic(fig, path)


# ----------------------------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------------------------
def parse_args(argv: Sequence[str]):
    parser = argparse.ArgumentParser(prog="scripts/reproduce.py offline-d4rl", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", action="append", default=[], help="a D4RL-style .hdf5 file or a jaxrl dataset .npz (repeatable)")
    parser.add_argument("--minari", action="append", default=[], help="a local Minari dataset id (repeatable)")
    parser.add_argument("--agents", default=",".join(DEFAULT_AGENTS),
                        help=f"comma-separated offline agents (default: {','.join(DEFAULT_AGENTS)}; "
                             f"supported: {','.join(SUPPORTED_AGENTS)})")
    parser.add_argument("--seeds", type=int, default=5, help="seeds per agent, trained in one program")
    parser.add_argument("--seed", type=int, default=0, help="first seed")
    parser.add_argument("--num-updates", type=int, default=1_000_000, help="gradient updates per run (CORL: 1e6)")
    parser.add_argument("--eval-every", type=int, default=50_000, help="updates between evaluations")
    parser.add_argument("--eval-episodes", type=int, default=10, help="simulator episodes per seed and evaluation")
    parser.add_argument("--eval-env", default=None, help="Gymnasium id to evaluate in (default: from the dataset name)")
    parser.add_argument("--out", default=None, help="folder for the curves (default: runs/reproduce-offline-d4rl-TIME)")
    parser.add_argument("--results", default=None, help="folder for offline-d4rl.md/.png (default: the --out folder)")
    parser.add_argument("--quick", action="store_true", help="2 seeds, 200 updates, 1 evaluation of 1 episode: a smoke test")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    if args.quick:
        args.seeds, args.num_updates, args.eval_every, args.eval_episodes = 2, 200, 200, 1
    if not args.data and not args.minari:
        parser.error("offline-d4rl runs only on data you supply: pass --data FILE or --minari ID "
                     "(D4RL's hdf5 files or a local Minari dataset; nothing is downloaded)")
    agents = [a.strip() for a in args.agents.split(",") if a.strip()]
    unknown = [a for a in agents if a not in SUPPORTED_AGENTS]
    if unknown or not agents:
        parser.error(f"unknown or unsupported agents {unknown or args.agents!r}; supported: {', '.join(SUPPORTED_AGENTS)}")
    args.agent_list = agents
    for flag in ("seeds", "num_updates", "eval_every", "eval_episodes"):
        if getattr(args, flag) < 1:
            parser.error(f"--{flag.replace('_', '-')} must be >= 1, got {getattr(args, flag)}")
    return args


def main(argv: Sequence[str], helpers=None) -> int:
    """Entry point (``scripts/reproduce.py`` passes its own module as ``helpers`` for machine info)."""
    args = parse_args(argv)
    if helpers is None:
        from scripts import reproduce as helpers
    from jaxrl.io import write_json_atomic, write_text_atomic

    started = _dt.datetime.now()
    out = Path(args.out or Path("runs") / f"reproduce-{NAME}-{started:%Y%m%d-%H%M%S}")
    results_dir = Path(args.results) if args.results else out
    sources = [(s, False) for s in args.data] + [(s, True) for s in args.minari]
    loaded = [load_source(s, m) for s, m in sources]  # every file is checked before anything trains
    eval_ids = [gymnasium_id(name, args.eval_env) for name, _ in loaded]
    machine, t0, results = helpers.machine_info(), time.perf_counter(), []
    for (name, dataset), eval_id in zip(loaded, eval_ids):
        eval_envs = make_eval_envs(eval_id, args.seeds)
        spec_env = spaces_env(name, dataset, eval_envs[0])
        for agent in args.agent_list:
            result = train_agent(agent, name, dataset, spec_env, eval_envs, args)
            result["eval_env"] = eval_id
            write_json_atomic(out / name / f"{agent}.json", result)
            results.append(result)
    elapsed = time.perf_counter() - t0
    plot_path = plot(results, results_dir / f"{NAME}.png")
    text = render(results, helpers.load_references(), command="python scripts/reproduce.py " + shlex.join([NAME, *argv]),
                  args=args, machine=machine, versions=helpers.versions(), started=started, elapsed=elapsed,
                  plot_name=plot_path.name)
    table = write_text_atomic(results_dir / f"{NAME}.md", text)
    print("\n" + "\n".join(line for line in text.splitlines() if line.startswith("|")) + "\n")
    print(f"[reproduce] wrote {table} and {plot_path} ({elapsed / 60:.1f} min)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
