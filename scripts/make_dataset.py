"""Build D4RL-style offline datasets with this project's own online agents (no download).

    python scripts/make_dataset.py Pendulum-v1 --kind medium                # -> datasets/Pendulum-v1-medium.npz
    python scripts/make_dataset.py CartPole-v1 --kind all --size 100000     # all five kinds
    python scripts/make_dataset.py Acrobot-v1 --kind expert --seed 1 --out /tmp/acro.npz
    python scripts/make_dataset.py PointMaze-Medium-v0 --kind stitch --size 200000   # OGBench-style maze data

Kinds, after D4RL (Fu et al. 2020, §4 and Appendix C):

* ``random``: uniform-random actions.
* ``expert``: the expert policy: the checkpoint of the online run with the best greedy return
  (ties: the later one), with exploration noise (below).
* ``medium``: the checkpoint whose greedy return is closest to 40 on the normalized scale
  (random = 0, expert = 100), i.e. "a third to a half of expert"; the measured ratio is stored in
  ``DatasetInfo.notes``. Same noise as expert.
* ``medium-replay``: the replay of the run up to medium, re-collected: every checkpoint up to and
  including medium rolls out a share of the transitions proportional to the env steps it stands
  for (the steps since the previous checkpoint), with the same noise; steps of an agent's uniform
  random warm-up (SAC's ``learning_starts``) are collected with uniform-random actions, as in the run.
* ``medium-expert``: half medium, half expert (D4RL concatenates the two full datasets; we keep
  ``--size`` as the total).

Exploration noise of every policy-collected transition: continuous actions get Gaussian noise of
standard deviation ``0.2 x`` the half-range of the action box on the greedy action (then clipped);
discrete actions are epsilon-greedy with epsilon 0.1. (D4RL sampled its SAC policies' own
stochastic actions; our ``Trainer.act`` is greedy, so we add documented noise instead.)

The online run (one seed, ``jaxrl.cli.train_and_evaluate`` with periodic checkpoints) is cached in
``--runs-dir`` (default ``datasets/runs/<env>-<algo>-seed<S>-<steps>``) and reused by every kind,
together with the greedy evaluation of each checkpoint (``checkpoint_eval.json``). Reference returns
stored in every dataset: ``random_return`` = uniform-random actions over 100 episodes,
``expert_return`` = the expert checkpoint's greedy policy over 100 fresh episodes.

Point-maze kinds (``PointMaze-*-v0`` only, and only these two there), after OGBench's pointmaze
datasets (Park et al. 2025, "OGBench", Sec. 5 and Appendix; its ``data_gen_scripts/generate_locomaze.py``):
the collecting policy is the env's scripted oracle (``PointMaze.oracle_action``: shortest path over the
maze cells, full speed) plus Gaussian action noise of std 0.2 (OGBench's ``noise``), clipped to [-1, 1];
the collecting env never terminates (OGBench's ``terminate_at_goal=False``).

* ``navigate``: episodes of 1000 steps (OGBench: 1001) from a uniformly random free cell; the goal is a
  random *vertex* cell (a free cell that is not a straight corridor cell, ``vertex_cells``), and each
  time the point reaches it a new vertex goal is drawn, so it wanders between random goals.
* ``stitch``: short episodes of 200 steps (OGBench: 201) from a random free cell to a cell exactly 4
  cells away along the maze (breadth-first distance; the start cell itself if none is that far), then
  staying there: reaching far goals needs stitching several trajectories.

``--size`` transitions are rounded down to whole episodes (default 1e5: 100 navigate or 500 stitch
episodes, a few seconds on a CPU). Stored fields: ``observations``/``next_observations`` = the (x, y)
``observation`` part of the dict observation, ``actions``, ``rewards`` = the env's ``compute_reward``
against the collecting goal, ``terminations`` all 0, ``truncations`` 1 at the last step of each
episode (the trajectory boundaries), and extras ``goals`` (the collecting goal (x, y) of each step)
and ``final_index`` (int32: index of the last transition of each transition's episode; what
``jaxrl.gc_data`` goal sampling reads). No reference returns (success rate is the headline metric).

Agents: SAC (agents/online/sac.py) on Pendulum-v1 and MountainCarContinuous-v0 (with temporally
correlated exploration noise there), PPO
(agents/online/ppo.py) on CartPole-v1 and Acrobot-v1 (the reproduce-table configs). Everything is
seeded from ``--seed``: the same seed builds the same file (same checksum) on the same machine.
"""
from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # running as a plain script from a checkout
    sys.path.insert(0, str(ROOT))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import jaxrl  # noqa: E402
from jaxrl import cli, envs  # noqa: E402
from jaxrl import data as data_lib  # noqa: E402
from jaxrl.config import ConfigError  # noqa: E402
from jaxrl.evaluation import evaluate  # noqa: E402
from jaxrl.io import write_json_atomic  # noqa: E402

KINDS = ("random", "medium", "expert", "medium-replay", "medium-expert")
MEDIUM_TARGET = 40.0
"""Normalized score (random 0, expert 100) the medium checkpoint is chosen closest to."""
GAUSSIAN_NOISE = 0.2
"""Std of the Gaussian action noise, as a fraction of the action box's half-range."""
EPSILON = 0.1
"""Probability of a uniform-random action for discrete policies."""
REFERENCE_EPISODES = 100
"""Episodes of the random and expert reference evaluations."""
CHECKPOINT_EPISODES = 32
"""Greedy episodes per checkpoint when choosing medium and expert."""
COLLECT_ENVS = 16
"""Parallel envs of each collection."""
MAZE_KINDS = ("navigate", "stitch")
"""Point-maze dataset kinds (OGBench's pointmaze navigate and stitch)."""
MAZE_EPISODE_STEPS = {"navigate": 1000, "stitch": 200}
"""Episode length of each point-maze kind (OGBench: 1001 and 201)."""
MAZE_NOISE = 0.2
"""Std of the Gaussian noise on the oracle's actions (OGBench's noise 0.2)."""
STITCH_DISTANCE = 4
"""Maze distance in cells from the start cell to the goal cell of a stitch episode (OGBench's adj_steps)."""


@dataclasses.dataclass(frozen=True)
class Recipe:
    """How the online run of an env is trained."""

    module: str
    algorithm: str
    total_timesteps: int
    checkpoint_every: int
    overrides: dict = dataclasses.field(default_factory=dict)
    source: str = ""


_PPO_BLINES = {"lr": 5e-4, "anneal_lr": False, "max_grad_norm": 1.0, "activation": "relu"}
RECIPES: dict[str, Recipe] = {
    "CartPole-v1": Recipe("agents.online.ppo", "ppo", 200_000, 4_096, {},
                          "PPO defaults (PureJaxRL CartPole config) for 2e5 steps: its greedy policy passes 450 within "
                          "25k steps, so checkpoints are dense enough to catch a medium policy"),
    "Acrobot-v1": Recipe("agents.online.ppo", "ppo", 150_000, 3_072, {**_PPO_BLINES, "num_envs": 16, "num_steps": 32},
                         "PPO with the gymnax-blines Acrobot config (as scripts/reproduce.py gymnax-classic) for 1.5e5 "
                         "steps: its greedy policy jumps from -500 to about -80 between 5e4 and 7.5e4 steps, so "
                         "checkpoints are dense"),
    "Pendulum-v1": Recipe("agents.online.sac", "sac", 20_000, 1_000, {},
                          "SAC defaults (Haarnoja et al. 2018 Table 1, CleanRL learning rates), 2e4 steps"),
    "MountainCarContinuous-v0": Recipe("agents.online.sac", "sac", 20_000, 1_000, {"noise_correlation": 0.95},
                                       "SAC with temporally correlated exploration noise (noise_correlation 0.95, a "
                                       "correlation time of about 20 steps; Eberhard et al. 2023) for 2e4 steps: with "
                                       "SAC's white noise the uniform warm-up reaches the flag in 0.2% of episodes and "
                                       "SAC learns to stand still; correlated warm-up actions reach it in most "
                                       "episodes and SAC's training return passes 90 by 1.2e4 steps (4 seeds)"),
}


def log(message: str, quiet: bool = False) -> None:
    if not quiet:
        print(f"[make_dataset] {message}", flush=True)


# ----------------------------------------------------------------------------------------------
# The online run and its checkpoints
# ----------------------------------------------------------------------------------------------
def recipe_for(env_id: str) -> Recipe:
    if env_id not in RECIPES:
        raise ConfigError(f"no online recipe for {env_id!r}; make_dataset knows {', '.join(RECIPES)} "
                          "(random datasets work for any env: --kind random)")
    return RECIPES[env_id]


def agent(recipe: Recipe):
    module = importlib.import_module(recipe.module)
    return module.Config, module.make_train


def run_dir(runs_dir: Path, env_id: str, recipe: Recipe, seed: int, total_timesteps: int) -> Path:
    return Path(runs_dir) / f"{env_id}-{recipe.algorithm}-seed{seed}-{total_timesteps}"


def train_online(env_id: str, seed: int, runs_dir: Path, total_timesteps: int | None = None,
                 checkpoint_every: int | None = None, quiet: bool = False) -> tuple[Path, Recipe, int]:
    """Train (or reuse, or resume) the online run that every kind of ``env_id`` is cut from."""
    recipe = recipe_for(env_id)
    steps = total_timesteps or recipe.total_timesteps
    every = checkpoint_every or (recipe.checkpoint_every if total_timesteps is None else max(1, steps // 8))
    Config, make_train = agent(recipe)
    out = run_dir(runs_dir, env_id, recipe, seed, steps)
    config = Config(env=env_id, total_timesteps=steps, **recipe.overrides)
    if (out / "summary.json").exists():
        log(f"reusing the trained {recipe.algorithm} run {out}", quiet)
        return out, recipe, every
    options = cli.RunOptions(seed=seed, num_seeds=1, out=str(out), checkpoint_every=every, log_points=20,
                             eval_episodes=16, plot=False, quiet=quiet)
    from jaxrl import checkpoint as ckpt

    if (out / "config.json").exists() and ckpt.latest_step(out) is not None:
        log(f"resuming the interrupted run {out}", quiet)
        options = dataclasses.replace(options, out=None, resume=str(out))
    else:
        log(f"training {recipe.algorithm} on {env_id} for {steps:,} env steps (seed {seed}, checkpoint every "
            f"{every:,} steps) -> {out}", quiet)
    cli.train_and_evaluate(config, make_train, options, recipe.algorithm)
    return out, recipe, every


def checkpoint_steps(out: Path) -> list[int]:
    """Iterations of the saved checkpoints (orbax names each step's folder by its number)."""
    folder = Path(out) / "checkpoints"
    return sorted(int(p.name) for p in folder.iterdir() if p.is_dir() and p.name.isdigit())


class Policies:
    """The checkpoints of one online run, their greedy evaluations and noisy behaviour policies."""

    def __init__(self, env_id: str, out: Path, recipe: Recipe, seed: int, quiet: bool = False):
        self.env_id, self.out, self.recipe, self.seed, self.quiet = env_id, Path(out), recipe, seed, quiet
        self.Config, self.make_train = agent(recipe)
        self.env, self.env_params = envs.make(env_id)
        self.discrete = envs.is_discrete(self.env, self.env_params)
        self.steps = checkpoint_steps(self.out)
        if not self.steps:
            raise ConfigError(f"{out} has no checkpoints")
        self._states: dict[int, object] = {}
        first = cli.load_run(self.out, self.Config, self.make_train, recipe.algorithm, update=self.steps[-1])
        self.trainer, self.config = first.trainer, first.config
        self._states[self.steps[-1]] = jax.tree.map(lambda x: x[0], first.state)
        self.env_steps_per_update = self.trainer.env_steps_per_update
        self._eval = {}

    def state(self, step: int):
        if step not in self._states:
            loaded = cli.load_run(self.out, self.Config, self.make_train, self.recipe.algorithm, update=step)
            self._states[step] = jax.tree.map(lambda x: x[0], loaded.state)
        return self._states[step]

    def env_steps(self, step: int) -> int:
        return step * self.env_steps_per_update

    def greedy_return(self, state, key, episodes: int) -> float:
        if episodes not in self._eval:
            trainer, env, params = self.trainer, self.env, self.env_params
            self._eval[episodes] = jax.jit(lambda st, k: evaluate(env, params, lambda o, kk: trainer.act(st, o, kk), k, episodes)["return"])
        return float(np.mean(self._eval[episodes](state, key)))

    def random_act(self):
        space = self.env.action_space(self.env_params)
        if self.discrete:
            return lambda obs, key: jax.random.randint(key, obs.shape[:1], 0, space.n)
        low, high = envs.action_bounds(self.env, self.env_params)
        return lambda obs, key: jax.random.uniform(key, obs.shape[:1] + low.shape, minval=low, maxval=high)

    def noisy_act(self, step: int):
        """The greedy policy of checkpoint ``step`` plus the documented exploration noise."""
        state, trainer = self.state(step), self.trainer
        if self.discrete:
            n = self.env.action_space(self.env_params).n

            def act(obs, key):
                k_act, k_eps, k_rand = jax.random.split(key, 3)
                greedy = trainer.act(state, obs, k_act)
                explore = jax.random.uniform(k_eps, greedy.shape) < EPSILON
                return jnp.where(explore, jax.random.randint(k_rand, greedy.shape, 0, n), greedy)

            return act
        low, high = envs.action_bounds(self.env, self.env_params)
        half = 0.5 * (high - low)

        def act(obs, key):
            k_act, k_noise = jax.random.split(key)
            greedy = trainer.act(state, obs, k_act)
            return jnp.clip(greedy + GAUSSIAN_NOISE * half * jax.random.normal(k_noise, greedy.shape), low, high)

        return act


def evaluate_run(policies: Policies, quiet: bool = False) -> dict:
    """Greedy returns of every checkpoint, the references, and the chosen medium/expert (cached)."""
    cache = policies.out / "checkpoint_eval.json"
    if cache.exists():
        saved = json.loads(cache.read_text())
        if saved.get("steps") == policies.steps and saved.get("episodes") == CHECKPOINT_EPISODES:
            return saved
    base = jax.random.fold_in(jax.random.PRNGKey(policies.seed), 0xE7A1)
    returns = []
    for i, step in enumerate(policies.steps):
        r = policies.greedy_return(policies.state(step), jax.random.fold_in(base, i), CHECKPOINT_EPISODES)
        returns.append(r)
        log(f"checkpoint {step} ({policies.env_steps(step):,} env steps): greedy return {r:.2f}", quiet)
    env, params = policies.env, policies.env_params
    random_act = policies.random_act()
    random_return = float(np.mean(jax.jit(lambda k: evaluate(env, params, random_act, k, REFERENCE_EPISODES)["return"])(
        jax.random.fold_in(base, 10_001))))
    best = max(range(len(returns)), key=lambda i: (returns[i], i))  # best; ties -> later
    expert_step = policies.steps[best]
    expert_return = policies.greedy_return(policies.state(expert_step), jax.random.fold_in(base, 10_002), REFERENCE_EPISODES)
    gap = expert_return - random_return
    normalized = [100.0 * (r - random_return) / gap if gap > 0 else float("nan") for r in returns]
    candidates = [i for i in range(len(returns)) if policies.steps[i] <= expert_step]
    medium = min(candidates, key=lambda i: (abs(np.nan_to_num(normalized[i], nan=1e9) - MEDIUM_TARGET), i))
    result = {"steps": policies.steps, "episodes": CHECKPOINT_EPISODES, "returns": returns, "normalized": normalized,
              "random_return": random_return, "expert_return": expert_return, "expert_step": expert_step,
              "medium_step": policies.steps[medium], "medium_return": returns[medium],
              "medium_normalized": normalized[medium]}
    log(f"random {random_return:.2f} | expert = checkpoint {expert_step}: {expert_return:.2f} over "
        f"{REFERENCE_EPISODES} episodes | medium = checkpoint {policies.steps[medium]}: {returns[medium]:.2f} "
        f"(normalized {normalized[medium]:.1f}; target {MEDIUM_TARGET:.0f})", quiet)
    if not 20.0 <= normalized[medium] <= 60.0:
        print(f"warning: no checkpoint of {policies.out} is near {MEDIUM_TARGET:.0f}% of expert; the closest, "
              f"{policies.steps[medium]}, is at {normalized[medium]:.1f}% (recorded in the dataset's notes)", file=sys.stderr)
    if gap <= 0:
        print(f"warning: the expert of {policies.out} ({expert_return:.2f}) is no better than random "
              f"({random_return:.2f}); the datasets' normalized scores are meaningless", file=sys.stderr)
    write_json_atomic(cache, result)
    return result


# ----------------------------------------------------------------------------------------------
# Collection
# ----------------------------------------------------------------------------------------------
def _shares(total: int, weights: list[float], unit: int) -> list[int]:
    """Split ``total`` into multiples of ``unit`` proportional to ``weights`` (the last takes the rest)."""
    weights = np.asarray(weights, float)
    raw = total * weights / weights.sum()
    shares = [int(r // unit) * unit for r in raw[:-1]]
    shares.append(max(0, (total // unit) * unit - sum(shares)))
    return shares


# ----------------------------------------------------------------------------------------------
# Point maze: the oracle with noise (navigate, stitch)
# ----------------------------------------------------------------------------------------------
def is_point_maze(env_id: str) -> bool:
    from envs.goal_conditioned.point_maze import ENV_IDS

    return env_id in ENV_IDS.values()


def maze_episodes(env, params, kind: str, num_episodes: int, steps: int, key: jax.Array):
    """``num_episodes`` noisy-oracle episodes of ``steps`` steps (vmapped, one ``lax.scan``); arrays
    (episode, step, ...): obs, action, reward, next_obs, goal."""
    from envs.goal_conditioned import point_maze

    free = jnp.asarray(point_maze.free_cells(env.layout), jnp.int32)
    vertices = jnp.asarray(point_maze.vertex_cells(env.layout), jnp.int32)
    dist = np.asarray(point_maze.cell_distances(env.layout))
    free_np = np.asarray(free)
    near = np.array([[dist[a[0], a[1], b[0], b[1]] == STITCH_DISTANCE for b in free_np] for a in free_np])
    near |= ~near.any(axis=1, keepdims=True) & np.eye(len(free_np), dtype=bool)  # none that far: the start cell
    near_logits = jnp.where(jnp.asarray(near), 0.0, -jnp.inf)

    def episode(key):
        k_start, k_goal, k_start_noise, k_goal_noise, k_run = jax.random.split(key, 5)
        start = jax.random.randint(k_start, (), 0, free.shape[0])
        if kind == "navigate":
            goal_cell = vertices[jax.random.randint(k_goal, (), 0, vertices.shape[0])]
        else:
            goal_cell = free[jax.random.categorical(k_goal, near_logits[start])]
        state = point_maze.PointMazeState(pos=env._noisy_center(k_start_noise, free[start], params),
                                          goal=env._noisy_center(k_goal_noise, goal_cell, params), time=0)

        def step(state, step_key):
            k_noise, k_env, k_new, k_new_noise = jax.random.split(step_key, 4)
            action = env.oracle_action(state.pos, state.goal, params) + MAZE_NOISE * jax.random.normal(k_noise, (2,))
            action = jnp.clip(action, -1.0, 1.0)
            obs, next_state, reward, _, info = env.step_env(k_env, state, action, params)
            row = (state.pos, action, reward, next_state.pos, state.goal)
            if kind == "navigate":  # a new random vertex goal each time the goal is reached
                new_goal = env._noisy_center(k_new_noise, vertices[jax.random.randint(k_new, (), 0, vertices.shape[0])],
                                             params)
                next_state = next_state.replace(goal=jnp.where(info["success"], new_goal, next_state.goal))
            return next_state, row

        _, rows = jax.lax.scan(step, state, jax.random.split(k_run, steps))
        return rows

    return jax.jit(jax.vmap(episode))(jax.random.split(key, num_episodes))


def build_maze(env_id: str, kind: str, size: int, seed: int, out: str | Path | None,
               quiet: bool = False) -> tuple[data_lib.Dataset, Path]:
    """Build and save a point-maze ``navigate`` or ``stitch`` dataset (see the module docstring)."""
    if kind not in MAZE_KINDS:
        raise ConfigError(f"{env_id} is a point maze: --kind must be one of {', '.join(MAZE_KINDS)} (OGBench-style "
                          f"goal-reaching data), got {kind!r}")
    steps = MAZE_EPISODE_STEPS[kind]
    num_episodes = size // steps
    if num_episodes < 1:
        raise ConfigError(f"--size must be at least one {kind} episode ({steps} transitions), got {size}")
    out = Path(out) if out else Path("datasets") / f"{env_id}-{kind}.npz"
    t0 = time.perf_counter()
    env, params = envs.make(env_id)
    params = params.replace(terminate_on_success=False, max_steps_in_episode=steps)
    key = jax.random.fold_in(jax.random.PRNGKey(seed), len(KINDS) + MAZE_KINDS.index(kind))
    log(f"collecting {num_episodes} {kind} episodes of {steps} steps with the noisy oracle", quiet)
    obs, action, reward, next_obs, goal = maze_episodes(env, params, kind, num_episodes, steps, key)
    n = num_episodes * steps
    flat = lambda x: x.reshape((n,) + x.shape[2:]).astype(jnp.float32)  # noqa: E731
    truncations = jnp.zeros((num_episodes, steps), jnp.float32).at[:, -1].set(1.0).reshape(n)
    final_index = jnp.repeat(jnp.arange(num_episodes, dtype=jnp.int32) * steps + steps - 1, steps)
    policy = (f"oracle (envs/goal_conditioned/point_maze.py PointMaze.oracle_action: shortest path over cells) + "
              f"Gaussian action noise std {MAZE_NOISE}, clipped; {kind}: "
              + ("a new random vertex-cell goal on each success" if kind == "navigate"
                 else f"goal {STITCH_DISTANCE} cells from the start"))
    dataset = data_lib.Dataset(
        observations=flat(obs), actions=flat(action), rewards=flat(reward), next_observations=flat(next_obs),
        terminations=jnp.zeros(n, jnp.float32), truncations=truncations,
        extras={"goals": flat(goal), "final_index": final_index},
        info=data_lib.DatasetInfo(env_id=env_id, kind=kind, policy=policy, seed=seed, size=n,
                                  jaxrl_version=jaxrl.__version__,
                                  notes=f"OGBench-style pointmaze {kind} data (Park et al. 2025): {num_episodes} "
                                        f"episodes of {steps} steps; the collecting env does not terminate at the goal"),
    )
    path = data_lib.save(dataset, out)
    dataset = data_lib.load(path)
    reached = float(np.mean(np.asarray(dataset.rewards) == 0.0))
    log(f"wrote {path}: {n:,} transitions, {num_episodes} episodes, {reached:.1%} of steps at the collecting goal, "
        f"checksum {dataset.info.checksum[:16]}..., {time.perf_counter() - t0:.1f}s", quiet)
    return dataset, path


def build(env_id: str, kind: str, size: int = 100_000, seed: int = 0, out: str | Path | None = None,
          runs_dir: str | Path = "datasets/runs", total_timesteps: int | None = None,
          checkpoint_every: int | None = None, quiet: bool = False) -> tuple[data_lib.Dataset, Path]:
    """Build and save one dataset; returns ``(dataset, path)``. See the module docstring."""
    if is_point_maze(env_id):
        return build_maze(env_id, kind, size, seed, out, quiet)
    if kind in MAZE_KINDS:
        raise ConfigError(f"--kind {kind} is for the point mazes only ({', '.join(sorted(_maze_ids()))}), "
                          f"not {env_id!r}; kinds for it: {', '.join(KINDS)}")
    if kind not in KINDS:
        raise ConfigError(f"--kind must be one of {', '.join(KINDS)}, got {kind!r}")
    if size < COLLECT_ENVS * 2:
        raise ConfigError(f"--size must be at least {COLLECT_ENVS * 2}, got {size}")
    out = Path(out) if out else Path("datasets") / f"{env_id}-{kind}.npz"
    t0 = time.perf_counter()
    key = jax.random.fold_in(jax.random.PRNGKey(seed), KINDS.index(kind))
    run_out, recipe, _ = train_online(env_id, seed, Path(runs_dir), total_timesteps, checkpoint_every, quiet)
    policies = Policies(env_id, run_out, recipe, seed, quiet)
    ev = evaluate_run(policies, quiet)
    refs = dict(random_return=ev["random_return"], expert_return=ev["expert_return"])
    common = dict(seed=seed, jaxrl_version=jaxrl.__version__, **refs)
    ckpt_path = lambda step: str(run_out / "checkpoints" / str(step))  # noqa: E731
    algo = f"{recipe.algorithm} ({recipe.module.replace('.', '/')}.py)"
    noise = (f"epsilon-greedy {EPSILON}" if policies.discrete else f"Gaussian noise {GAUSSIAN_NOISE} x half-range")
    medium_note = (f"medium = checkpoint {ev['medium_step']} ({policies.env_steps(ev['medium_step']):,} env steps), "
                   f"greedy return {ev['medium_return']:.2f} = {ev['medium_normalized']:.1f}% of the way from random "
                   f"to expert (target {MEDIUM_TARGET:.0f}%)")
    expert_note = (f"expert = checkpoint {ev['expert_step']} ({policies.env_steps(ev['expert_step']):,} env steps) "
                   f"of {run_out}, greedy return {ev['expert_return']:.2f} over {REFERENCE_EPISODES} episodes")
    notes = f"{expert_note}; {medium_note}; online run: {recipe.source}"

    def collect(act, n, k, **info):
        return data_lib.collect(env_id, act, n, k, num_envs=COLLECT_ENVS, **info)

    def policy_data(step, n, k, label):
        log(f"collecting {n:,} transitions from checkpoint {step} ({label}, {noise})", quiet)
        return collect(policies.noisy_act(step), n, k, kind=label, policy=f"{algo} checkpoint {step} ({label}), {noise}",
                       policy_checkpoint=ckpt_path(step), **common)

    if kind == "random":
        log(f"collecting {size:,} uniform-random transitions", quiet)
        dataset = collect(policies.random_act(), size, key, kind="random", policy="uniform-random actions", **common)
    elif kind == "expert":
        dataset = policy_data(ev["expert_step"], size, key, "expert")
    elif kind == "medium":
        dataset = policy_data(ev["medium_step"], size, key, "medium")
    elif kind == "medium-expert":
        half = (size // 2 // COLLECT_ENVS) * COLLECT_ENVS
        parts = [policy_data(ev["medium_step"], half, jax.random.fold_in(key, 0), "medium"),
                 policy_data(ev["expert_step"], size - half, jax.random.fold_in(key, 1), "expert")]
        dataset = data_lib.concatenate(parts, kind="medium-expert", policy=" + ".join(p.info.policy for p in parts),
                                       policy_checkpoint=" + ".join(p.info.policy_checkpoint for p in parts))
    else:  # medium-replay
        steps = [s for s in policies.steps if s <= ev["medium_step"]]
        warmup = int(getattr(policies.config, "learning_starts", 0))
        segments = []  # (behaviour, env steps it stands for)
        previous = 0
        for s in steps:
            end = policies.env_steps(s)
            random_part = max(0, min(end, warmup) - previous)
            if random_part:
                segments.append(("random", random_part))
            if end - previous - random_part > 0:
                segments.append((s, end - previous - random_part))
            previous = end
        shares = _shares(size, [w for _, w in segments], COLLECT_ENVS)
        parts = []
        for i, ((behaviour, _), n) in enumerate(zip(segments, shares)):
            if n < COLLECT_ENVS:
                continue
            k = jax.random.fold_in(key, i)
            if behaviour == "random":
                log(f"collecting {n:,} uniform-random transitions (the run's warm-up)", quiet)
                parts.append(collect(policies.random_act(), n, k, kind="medium-replay", policy="uniform-random warm-up",
                                     **common))
            else:
                parts.append(policy_data(behaviour, n, k, "medium-replay"))
        dataset = data_lib.concatenate(
            parts, kind="medium-replay",
            policy=f"{algo}: checkpoints {steps[0]}..{steps[-1]} (up to medium), {noise}"
                   + (f", uniform-random warm-up ({warmup} steps)" if warmup else ""),
            policy_checkpoint=ckpt_path(ev["medium_step"]))
    dataset = dataset.replace(info=dataclasses.replace(dataset.info, notes=notes, kind=kind))
    path = data_lib.save(dataset, out)
    dataset = data_lib.load(path)
    returns = data_lib.episode_returns(dataset)
    score = data_lib.normalized_score(env_id, returns.mean(), dataset.info) if ev["expert_return"] > ev["random_return"] else float("nan")
    log(f"wrote {path}: {dataset.size:,} transitions, {len(returns)} episodes (incl. cut), mean episode return "
        f"{returns.mean():.2f} (normalized {score:.1f}), checksum {dataset.info.checksum[:16]}..., "
        f"{time.perf_counter() - t0:.1f}s", quiet)
    return dataset, path


def _maze_ids() -> list[str]:
    from envs.goal_conditioned.point_maze import ENV_IDS

    return list(ENV_IDS.values())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("env", help=f"env id ({', '.join(RECIPES)}; PointMaze-*-v0 for navigate and stitch)")
    parser.add_argument("--kind", required=True, choices=KINDS + MAZE_KINDS + ("all",),
                        help="dataset kind, or all (the five D4RL kinds; navigate and stitch on a point maze)")
    parser.add_argument("--size", type=int, default=100_000, help="transitions (default 100000)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the online run and of the collection")
    parser.add_argument("--out", default=None, help="output .npz (default datasets/<env>-<kind>.npz; with --kind all, "
                        "a folder)")
    parser.add_argument("--runs-dir", default="datasets/runs", help="where online runs are cached")
    parser.add_argument("--total-timesteps", type=int, default=None, help="override the online run's budget")
    parser.add_argument("--checkpoint-every", type=int, default=None, help="override the checkpoint interval (env steps)")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    cli.enable_compilation_cache()
    try:
        all_kinds = MAZE_KINDS if is_point_maze(args.env) else KINDS
        kinds = all_kinds if args.kind == "all" else (args.kind,)
        for kind in kinds:
            out = args.out
            if args.kind == "all":
                out = str(Path(args.out or "datasets") / f"{args.env}-{kind}.npz")
            build(args.env, kind, args.size, args.seed, out, args.runs_dir, args.total_timesteps,
                  args.checkpoint_every, args.quiet)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
