#!/usr/bin/env python
"""Speed benchmark: our agents side by side with Stable-Baselines3, seed scaling, compilation cache.

Every measurement runs what a user runs, as a subprocess on this machine: our agents through their
command line (``python agents/online/ppo.py --num-seeds N --out TMP --quiet ...``, whose
``summary.json`` is read back), Stable-Baselines3 through a worker mode of this script. Cases:

* ``ppo``     our PPO (PureJaxRL CartPole-v1 defaults, 5e5 steps) vs SB3 PPO with the same
              hyperparameters on CPU. SB3 is slow, so it runs ``--sb3-steps`` (a fraction of the
              budget) and its full-budget time is extrapolated from its measured rate (marked "est.").
* ``dqn``     our DQN (agents/online/dqn.py) vs SB3 DQN with the same hyperparameters.
* ``scaling`` N seeds in one vmapped program vs N sequential single-seed runs (N = 1, 4, 16, 64).
* ``cache``   the same command twice with a fresh ``JAXRL_CACHE_DIR``: cold compile vs cache hit.
* ``offline`` (only when named) gradient updates/s of every offline agent, 1 vs 8 seeds, one program vs
              8 processes, TD3+BC vs a plain PyTorch loop, and memory with a 1M-transition dataset
              (``scripts/bench_offline.py``).

Reported: whole-process wall time (interpreter start, imports, compile, training and the final
evaluation), compiled-loop env-steps/s (``summary.json``'s ``steps_per_second`` = env steps /
``train_time_s``, which exclude compilation), and ratios ours / SB3. The table is printed and
written to ``scripts/results/bench-<date>-<host>.md`` together with the command, the CPU, the core
count, the load average and the library versions.

Usage::

    python scripts/bench.py                         # ppo, dqn, scaling, cache (about 10-20 min on 2 CPU cores)
    python scripts/bench.py offline                 # the offline agents
    python scripts/bench.py --quick                 # tiny budgets: a smoke test of the script
    python scripts/bench.py --cases ppo,cache --skip-sb3
    python scripts/bench.py --sb3-steps 100000 --repeats 3

Stable-Baselines3 is the optional ``bench`` extra (``pip install -e .[bench]``); without it the SB3
rows are skipped with that hint.
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime as _dt
import importlib
import importlib.metadata
import importlib.util
import json
import os
import platform
import re
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # running as a plain script from a checkout
    sys.path.insert(0, str(ROOT))

from jaxrl.io import write_text_atomic  # noqa: E402  (light: imports no jax)

SB3_HINT = "stable-baselines3 is not installed: `pip install -e .[bench]` (CPU torch pinned in setup.cfg)"
PUREJAXRL_REFERENCE = 150_000  # env-steps/s, PureJaxRL ppo.py CartPole-v1, compiled, 2-core CPU
PUREJAXRL_REFERENCE_NOTE = ("published reference figure for PureJaxRL `ppo.py` on CartPole-v1 "
                            "(compiled, 2-core CPU), quoted, not re-measured here")


class BenchError(RuntimeError):
    """A measurement failed; its row shows the message and the script goes on."""


# ----------------------------------------------------------------------------------------------
# Benchmark cases: one entry per agent compared with SB3
# ----------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class AgentCase:
    """One of our agents and the Stable-Baselines3 algorithm configured to match it."""

    name: str
    """Case name for --cases (ppo, dqn)."""
    path: str
    """Our agent file, relative to the repository root."""
    module: str
    """Its import name (to read the Config defaults the SB3 side must match)."""
    sb3_algo: str
    """Stable-Baselines3 class name."""
    sb3_spec: Callable[[dict], dict]
    """Our Config (as a dict) -> {"n_envs": int, "kwargs": {...}, "warmup_steps": int} for SB3."""
    quick_overrides: Callable[[dict], dict] = lambda config: {}
    """Config changes that make a --quick run valid with a tiny budget (e.g. a shorter warm-up)."""
    reference: tuple[float, str] | None = None
    """A published env-steps/s figure shown beside ours (not re-measured), with its note."""
    differences: str = ""
    """What still differs between ours and SB3 once the hyperparameters match (printed under the table)."""


def _ppo_sb3_spec(c: dict) -> dict:
    hidden = [c["hidden_size"]] * 2
    return {
        "n_envs": c["num_envs"],
        "warmup_steps": 0,
        "kwargs": {
            "n_steps": c["num_steps"],
            "batch_size": c["num_envs"] * c["num_steps"] // c["num_minibatches"],
            "n_epochs": c["update_epochs"],
            "learning_rate": {"linear": c["lr"]} if c["anneal_lr"] else c["lr"],
            "gamma": c["gamma"],
            "gae_lambda": c["gae_lambda"],
            "clip_range": c["clip_eps"],
            "clip_range_vf": c["clip_eps"],  # ours clips the value loss like PPO2/PureJaxRL
            "ent_coef": c["ent_coef"],
            "vf_coef": c["vf_coef"],
            "max_grad_norm": c["max_grad_norm"],
            "normalize_advantage": c["normalize_advantages"],
            "policy_kwargs": {"net_arch": {"pi": hidden, "vf": hidden}, "activation_fn": c["activation"]},
        },
    }


def _dqn_sb3_spec(c: dict) -> dict:
    """SB3 DQN matching agents/online/dqn.py (CleanRL ``dqn_jax.py`` defaults).

    Ours trains on the mean squared TD error ("mse") with Adam and no gradient clipping; SB3's DQN
    always uses the Huber loss (the same cost per step), so ``max_grad_norm`` is set out of reach.
    """
    n_envs = c["num_envs"]
    if c["network"] != "mlp" or c["double_dqn"]:
        raise BenchError("the SB3 comparison supports network='mlp' and double_dqn=False only")
    hidden = [int(h) for h in str(c["hidden_sizes"]).replace(" ", "").split(",") if h]
    kwargs = {
        "learning_rate": c["lr"],
        "buffer_size": c["buffer_size"],
        "learning_starts": c["learning_starts"],
        "batch_size": c["batch_size"],
        "tau": c["tau"],
        "gamma": c["gamma"],
        # SB3 counts train_freq in vec-env steps (n_envs transitions each); ours in env steps.
        "train_freq": max(1, c["train_frequency"] // n_envs),
        "gradient_steps": 1,
        # SB3 counts target_update_interval in env steps (it divides by n_envs itself), like ours.
        "target_update_interval": c["target_update_interval"],
        "exploration_fraction": c["exploration_fraction"],
        "exploration_initial_eps": c["start_e"],
        "exploration_final_eps": c["end_e"],
        "max_grad_norm": 1e9,
        "policy_kwargs": {"net_arch": hidden, "activation_fn": "relu"},
    }
    return {"n_envs": n_envs, "warmup_steps": c["learning_starts"], "kwargs": kwargs}


def _dqn_quick_overrides(c: dict) -> dict:
    """Shrink warm-up, buffer and target period so a tiny budget still trains."""
    return {"learning_starts": min(c["learning_starts"], 500), "buffer_size": min(c["buffer_size"], 2_000),
            "target_update_interval": min(c["target_update_interval"], 100)}


AGENT_CASES = [
    AgentCase("ppo", "agents/online/ppo.py", "agents.online.ppo", "PPO", _ppo_sb3_spec,
              reference=(PUREJAXRL_REFERENCE, PUREJAXRL_REFERENCE_NOTE),
              differences="SB3's clipped value loss uses the clipped prediction only (ours, like PPO2/PureJaxRL, the "
                          "max of clipped and unclipped); the compute per step is the same."),
    AgentCase("dqn", "agents/online/dqn.py", "agents.online.dqn", "DQN", _dqn_sb3_spec, _dqn_quick_overrides,
              differences="SB3's DQN always uses the Huber loss (ours: mean squared TD error, CleanRL's default) and "
                          "clips gradients (set out of reach here; ours does not clip); the compute per step is the same."),
]
ALL_CASES = ("ppo", "dqn", "scaling", "cache", "offline")
DEFAULT_CASES = ("ppo", "dqn", "scaling", "cache")  # `offline` runs when named (scripts/bench_offline.py)


# ----------------------------------------------------------------------------------------------
# Running our CLI and the SB3 worker as subprocesses
# ----------------------------------------------------------------------------------------------
def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _show(cmd: list[str], env: dict[str, str] | None = None) -> str:
    """The command as a user would type it (``python``, paths relative to the repository root)."""
    parts = ["python" if c == sys.executable else c for c in cmd]
    parts = [str(Path(p).relative_to(ROOT)) if p.startswith(str(ROOT) + os.sep) else p for p in parts]
    prefix = " ".join(f"{k}={shlex.quote(v)}" for k, v in (env or {}).items())
    return (prefix + " " if prefix else "") + " ".join(shlex.quote(p) for p in parts)


def _run(cmd: list[str], extra_env: dict[str, str], timeout: float) -> tuple[float, str]:
    env = {**os.environ, **extra_env}
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise BenchError(f"timed out after {timeout:.0f}s: {_show(cmd, extra_env)}") from None
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-6:]
        raise BenchError(f"exit {proc.returncode}: {_show(cmd, extra_env)}: " + " / ".join(tail))
    return wall, proc.stdout


@dataclasses.dataclass
class Bench:
    """Shared settings of one benchmark invocation and its scratch folder."""

    scratch: Path
    timeout: float
    eval_episodes: int
    repeats: int
    torch_threads: int = 0
    counter: int = 0

    def fresh(self, kind: str) -> Path:
        self.counter += 1
        path = self.scratch / f"{kind}-{self.counter:03d}"
        path.mkdir(parents=True)
        return path

    def run_ours(self, agent_path: str, num_seeds: int, overrides: dict, cache_dir: Path | str) -> dict:
        """One run of our CLI; whole-process wall time plus the timings of its summary.json."""
        out = self.fresh("run") / "out"
        cmd = [sys.executable, str(ROOT / agent_path), "--num-seeds", str(num_seeds), "--out", str(out), "--quiet",
               "--eval-episodes", str(self.eval_episodes)]
        for name, value in overrides.items():
            cmd += [_flag(name), str(value)]
        extra = {"JAXRL_CACHE_DIR": str(cache_dir)}
        wall, _ = _run(cmd, extra, self.timeout)
        summary = json.loads((out / "summary.json").read_text())
        shown_env = {"JAXRL_CACHE_DIR": "<fresh dir>" if str(cache_dir).startswith(str(self.scratch)) else str(cache_dir)}
        return {
            "wall_s": wall,
            "compile_s": summary["compile_time_s"],
            "train_s": summary["train_time_s"],
            "eval_s": summary["eval_time_s"],
            "steps": summary["env_steps_total"],
            "steps_per_s": summary["steps_per_second"],
            "eval_return": (summary.get("eval_return") or {}).get("mean"),
            "device": summary.get("device"),
            "command": _show([c if c != str(out) else "<tmp>" for c in cmd], shown_env),
        }

    def run_sb3(self, algo: str, env_id: str, spec: dict, steps: int, seed: int = 0) -> dict:
        """One SB3 training run in a fresh interpreter (this script's --sb3-worker mode)."""
        work = self.fresh("sb3")
        job = {"algo": algo, "env": env_id, "steps": steps, "seed": seed, "eval_episodes": self.eval_episodes,
               "torch_threads": self.torch_threads,
               "n_envs": spec["n_envs"], "warmup_steps": spec["warmup_steps"], "kwargs": spec["kwargs"],
               "result": str(work / "result.json")}
        (work / "job.json").write_text(json.dumps(job, indent=1))
        cmd = [sys.executable, str(Path(__file__).resolve()), "--sb3-worker", str(work / "job.json")]
        wall, _ = _run(cmd, {}, self.timeout)
        result = json.loads((work / "result.json").read_text())
        result["wall_s"] = wall
        result["command"] = _show(cmd[:3] + ["<job.json>"])
        return result

    def repeat(self, fn: Callable[[], dict]) -> dict:
        """Median of every numeric field over ``repeats`` runs (the first run's other fields)."""
        results = [fn() for _ in range(self.repeats)]
        merged = dict(results[0])
        for key, value in merged.items():
            values = [r.get(key) for r in results]
            if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
                merged[key] = statistics.median(values)
        merged["repeats"] = len(results)
        return merged


# ----------------------------------------------------------------------------------------------
# The SB3 worker (a fresh interpreter, so the wall time includes torch/SB3 imports)
# ----------------------------------------------------------------------------------------------
def sb3_worker(job_path: str) -> None:
    t_start = time.perf_counter()
    job = json.loads(Path(job_path).read_text())
    import gymnasium as gym
    import torch
    from stable_baselines3 import DQN, PPO
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.evaluation import evaluate_policy
    from stable_baselines3.common.monitor import Monitor
    from stable_baselines3.common.utils import LinearSchedule

    if job.get("torch_threads"):
        torch.set_num_threads(job["torch_threads"])
    t_imported = time.perf_counter()
    kwargs = dict(job["kwargs"])
    policy_kwargs = dict(kwargs.pop("policy_kwargs", {}))
    activation = policy_kwargs.pop("activation_fn", "tanh")
    policy_kwargs["activation_fn"] = {"tanh": torch.nn.Tanh, "relu": torch.nn.ReLU}[activation]
    lr = kwargs.pop("learning_rate")
    if isinstance(lr, dict):  # linear decay to 0 over training, like ours
        lr = LinearSchedule(lr["linear"], 0.0, 1.0)
    algo = {"PPO": PPO, "DQN": DQN}[job["algo"]]
    env = make_vec_env(job["env"], n_envs=job["n_envs"], seed=job["seed"])
    model = algo("MlpPolicy", env, learning_rate=lr, policy_kwargs=policy_kwargs, device="cpu", seed=job["seed"],
                 verbose=0, **kwargs)
    marks: dict[str, float] = {}
    warmup = int(job["warmup_steps"])

    class WarmupMark(BaseCallback):
        """Records when learning starts, to tell the warm-up rate from the training rate."""

        def _on_step(self) -> bool:
            if "warm" not in marks and self.num_timesteps >= warmup:
                marks["warm"] = time.perf_counter()
                marks["warm_steps"] = self.num_timesteps
            return True

    t_setup = time.perf_counter()
    model.learn(total_timesteps=job["steps"], callback=WarmupMark())
    t_learned = time.perf_counter()
    steps = int(model.num_timesteps)
    eval_env = Monitor(gym.make(job["env"]))
    mean_return, _ = evaluate_policy(model, eval_env, n_eval_episodes=job["eval_episodes"], deterministic=True)
    t_end = time.perf_counter()
    warm_s = marks.get("warm", t_setup) - t_setup
    warm_steps = int(marks.get("warm_steps", 0)) if warmup > 0 else 0
    result = {
        "steps": steps,
        "import_s": t_imported - t_start,
        "setup_s": t_setup - t_imported,
        "train_s": t_learned - t_setup,
        "warmup_s": warm_s if warmup > 0 else 0.0,
        "warmup_steps": warm_steps,
        "eval_s": t_end - t_learned,
        "steps_per_s": steps / (t_learned - t_setup),
        "eval_return": float(mean_return),
        "torch_threads": torch.get_num_threads(),
    }
    Path(job["result"]).write_text(json.dumps(result))


def sb3_full_budget(sb3: dict, full_steps: int) -> dict:
    """Extrapolate an SB3 run of ``sb3['steps']`` steps to ``full_steps``.

    The warm-up (DQN's learning_starts, no gradient steps) keeps its measured duration; the rest
    scales with the rate measured after it. Everything outside ``learn`` (imports, setup,
    evaluation) is counted once.
    """
    steps, warm_steps = sb3["steps"], sb3["warmup_steps"]
    if steps >= full_steps:
        return {"train_s": sb3["train_s"], "wall_s": sb3["wall_s"], "steps_per_s": sb3["steps_per_s"], "estimated": False}
    post_rate = (steps - warm_steps) / max(sb3["train_s"] - sb3["warmup_s"], 1e-9)
    train_s = sb3["warmup_s"] + (full_steps - warm_steps) / post_rate
    return {"train_s": train_s, "wall_s": sb3["wall_s"] - sb3["train_s"] + train_s,
            "steps_per_s": full_steps / train_s, "estimated": True}


# ----------------------------------------------------------------------------------------------
# Formatting
# ----------------------------------------------------------------------------------------------
def fmt(value, digits: int = 1, est: bool = False) -> str:
    if value is None:
        return "—"
    if isinstance(value, str):
        return value
    text = f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.{digits}f}"
    return ("≈ " + text + " (est.)") if est else text


def ratio(a, b) -> str:
    if a is None or b is None or b == 0:
        return "—"
    r = a / b
    return f"{r:.2f}×" if r >= 0.1 else f"{r:.2g}×"


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _short(err: Exception, limit: int = 300) -> str:
    text = " ".join(str(err).split()).replace("|", "/")
    return text if len(text) <= limit else text[:limit] + "…"


# ----------------------------------------------------------------------------------------------
# The cases
# ----------------------------------------------------------------------------------------------
def _agent_config(case: AgentCase, overrides: dict) -> dict:
    module = importlib.import_module(case.module)
    config = module.Config()
    return dataclasses.asdict(dataclasses.replace(config, **overrides))


def bench_agent(bench: Bench, case: AgentCase, args, failures: list[str]) -> str:
    """Section: our agent (1 seed) vs SB3 with the same hyperparameters."""
    title = f"## {case.name.upper()}: ours vs Stable-Baselines3"
    if not (ROOT / case.path).exists():
        return f"{title}\n\nskipped: `{case.path}` does not exist yet.\n"
    try:
        defaults = _agent_config(case, {})
        overrides: dict[str, Any] = {}
        if args.quick:
            overrides.update(case.quick_overrides(defaults))
            overrides["total_timesteps"] = args.quick_steps
        budget = getattr(args, f"{case.name}_steps", None)
        if budget:
            overrides["total_timesteps"] = budget
        config = _agent_config(case, overrides)
    except Exception as err:  # noqa: BLE001  (a broken agent file must not stop the other cases)
        failures.append(f"{case.name}: {err}")
        return f"{title}\n\nfailed to import `{case.module}`: {_short(err)}\n"
    env_id = config["env"]
    total = config["total_timesteps"]
    lines = [title, "", f"Env `{env_id}`, our budget {total:,} env steps, 1 seed, "
             f"final greedy evaluation of {bench.eval_episodes} episodes in both."]

    rows = []
    ours = None
    try:
        ours = bench.repeat(lambda: bench.run_ours(case.path, 1, overrides, bench.fresh("cache")))
        rows.append([f"ours (`{case.path}`, {ours['device']})", fmt(ours["steps"]), fmt(ours["wall_s"]),
                     fmt(ours["compile_s"]), fmt(ours["train_s"]), fmt(ours["steps_per_s"]), fmt(ours["eval_return"])])
    except BenchError as err:
        failures.append(f"{case.name} ours: {err}")
        rows.append([f"ours (`{case.path}`)", "failed", _short(err), "", "", "", ""])

    sb3 = full = None
    sb3_note = ""
    if args.skip_sb3:
        sb3_note = "SB3 rows skipped (--skip-sb3)."
    elif importlib.util.find_spec("stable_baselines3") is None or importlib.util.find_spec("torch") is None:
        sb3_note = f"SB3 rows skipped: {SB3_HINT}."
    else:
        sb3_steps = min(args.sb3_steps, total)
        try:
            spec = case.sb3_spec(config)
            sb3 = bench.repeat(lambda: bench.run_sb3(case.sb3_algo, env_id, spec, sb3_steps))
            full = sb3_full_budget(sb3, total)
            rows.append([f"SB3 {case.sb3_algo} (CPU, torch threads: {sb3['torch_threads']}), measured",
                         fmt(sb3["steps"]), fmt(sb3["wall_s"]), "—", fmt(sb3["train_s"]), fmt(sb3["steps_per_s"]),
                         fmt(sb3["eval_return"]) + (f" (after {sb3['steps']:,} steps)" if sb3["steps"] < total else "")])
            if full["estimated"]:
                rows.append([f"SB3 {case.sb3_algo}, extrapolated to {total:,} steps", fmt(total),
                             fmt(full["wall_s"], est=True), "—", fmt(full["train_s"], est=True),
                             fmt(full["steps_per_s"], est=True), "—"])
            sb3_note = (f"SB3 ran {sb3['steps']:,} of the {total:,} steps (`--sb3-steps`); its full-budget times are "
                        f"extrapolated from the rate it measured{' after its warm-up' if spec['warmup_steps'] else ''} "
                        f"(imports, setup and evaluation counted once). SB3 hyperparameters: "
                        f"`n_envs={spec['n_envs']}, {', '.join(f'{k}={v!r}' for k, v in spec['kwargs'].items())}`.")
        except BenchError as err:
            failures.append(f"{case.name} sb3: {err}")
            rows.append([f"SB3 {case.sb3_algo}", "failed", _short(err), "", "", "", ""])
    if case.reference:
        rows.append([f"PureJaxRL `ppo.py` (published, not re-measured)", "—", "—", "—", "—",
                     fmt(case.reference[0]), "—"])
    if ours and full:
        rows.append(["**ratio ours / SB3**", "", ratio(ours["wall_s"], full["wall_s"]) + " (wall; < 1: ours faster)",
                     "", ratio(ours["train_s"], full["train_s"]), ratio(ours["steps_per_s"], full["steps_per_s"]) +
                     " (> 1: ours faster)", ""])
    if ours and case.reference:
        rows.append(["ratio ours / PureJaxRL reference", "", "", "", "", ratio(ours["steps_per_s"], case.reference[0]), ""])

    lines += ["", table(["implementation", "env steps", "whole-process wall (s)", "compile (s)",
                         "train loop (s)", "env-steps/s (train loop)", "eval return"], rows), ""]
    if sb3_note:
        lines.append(sb3_note + (" " + case.differences if sb3 and case.differences else ""))
    if case.reference:
        lines.append(f"Reference ≈ {case.reference[0]:,} env-steps/s: {case.reference[1]}.")
    if ours:
        lines += ["", f"Ours: `{ours['command']}` (a fresh, empty compilation cache: a first run)."]
    if sb3:
        lines.append(f"SB3: `{sb3['command']}` (this script's worker mode; Stable-Baselines3 on gymnasium `{env_id}`).")
    return "\n".join(lines) + "\n"


def bench_scaling(bench: Bench, args, failures: list[str]) -> str:
    """Section: N seeds in one vmapped program vs N sequential single-seed runs."""
    case = AGENT_CASES[0]
    seeds = args.seeds
    total = args.scaling_steps
    overrides = {"total_timesteps": total}
    lines = ["## Seeds in one program: our PPO, vmapped vs sequential", "",
             f"`{case.path}`, CartPole-v1, {total:,} env steps per seed. 'vmapped': one process with "
             f"`--num-seeds N` (a fresh compilation cache each). 'sequential': N single-seed processes one after "
             f"another sharing one compilation cache that starts empty (the first run compiles, the others hit "
             f"the cache, as with the default cache); measured up to N = {args.max_sequential}, beyond that "
             f"estimated as first run + (N − 1) × mean cached run."]
    rows = []
    base_rate = None
    sequential: list[dict] = []
    try:
        cache = bench.fresh("cache")
        for _ in range(min(max(seeds), args.max_sequential)):
            sequential.append(bench.run_ours(case.path, 1, overrides, cache))
    except BenchError as err:
        failures.append(f"scaling sequential: {err}")
        lines += ["", f"sequential runs failed: {_short(err)}"]
    cached = sequential[1:] or sequential

    def seq_time(n: int, key: str) -> tuple[float | None, bool]:
        if not sequential:
            return None, False
        if n <= len(sequential):
            return sum(r[key] for r in sequential[:n]), False
        return sequential[0][key] + (n - 1) * statistics.mean(r[key] for r in cached), True

    command = None
    for n in seeds:
        try:
            vm = bench.repeat(lambda: bench.run_ours(case.path, n, overrides, bench.fresh("cache")))
        except BenchError as err:
            failures.append(f"scaling {n} seeds: {err}")
            rows.append([str(n), "failed", _short(err), "", "", "", "", ""])
            continue
        command = command or vm["command"]
        if n == 1:
            base_rate = vm["steps_per_s"]
        seq_wall, est = seq_time(n, "wall_s")
        seq_train, _ = seq_time(n, "train_s")
        rows.append([str(n), fmt(vm["wall_s"]), fmt(vm["compile_s"]), fmt(vm["train_s"]), fmt(vm["steps_per_s"]),
                     ratio(vm["steps_per_s"], base_rate), fmt(seq_wall, est=est), fmt(seq_train, est=est),
                     ratio(seq_wall, vm["wall_s"])])
    lines += ["", table(["seeds N", "vmapped wall (s)", "compile (s)", "train loop (s)", "env-steps/s (all seeds)",
                         "rate / 1-seed rate", "N sequential: wall (s)", "N sequential: train loop (s)",
                         "wall speed-up (sequential / vmapped)"], rows)]
    if command:
        lines += ["", f"Command: `{command.replace('--num-seeds 1', '--num-seeds N')}`"]
    return "\n".join(lines) + "\n"


def bench_cache(bench: Bench, args, failures: list[str]) -> str:
    """Section: whole-process wall time, cold compile vs persistent-cache hit."""
    case = next(c for c in AGENT_CASES if c.name == args.cache_agent)
    lines = ["## Compilation cache: first run vs cached run", ""]
    if not (ROOT / case.path).exists():
        return "\n".join(lines) + f"skipped: `{case.path}` does not exist yet.\n"
    total = args.quick_steps if args.quick else getattr(args, f"{case.name}_steps", None)
    overrides = {"total_timesteps": total} if total else {}
    if args.quick and case.name == "dqn":
        overrides.update(case.quick_overrides(_agent_config(case, {})))
    pairs = []
    try:
        for _ in range(bench.repeats):
            cache = bench.fresh("cache")
            first = bench.run_ours(case.path, 1, overrides, cache)
            second = bench.run_ours(case.path, 1, overrides, cache)
            size = sum(f.stat().st_size for f in cache.rglob("*") if f.is_file())
            pairs.append((first, second, size))
    except BenchError as err:
        failures.append(f"cache: {err}")
        return "\n".join(lines) + f"failed: {_short(err)}\n"
    med = lambda values: statistics.median(values)  # noqa: E731
    first = {k: med([p[0][k] for p in pairs]) for k in ("wall_s", "compile_s", "train_s", "eval_s")}
    second = {k: med([p[1][k] for p in pairs]) for k in ("wall_s", "compile_s", "train_s", "eval_s")}
    rows = [
        ["first run (empty cache)", fmt(first["wall_s"]), fmt(first["compile_s"]), fmt(first["train_s"]), fmt(first["eval_s"])],
        ["second run (same cache)", fmt(second["wall_s"]), fmt(second["compile_s"]), fmt(second["train_s"]), fmt(second["eval_s"])],
        ["**ratio second / first**", ratio(second["wall_s"], first["wall_s"]), ratio(second["compile_s"], first["compile_s"]),
         "", ""],
    ]
    lines += [f"`{case.path}`, 1 seed, {pairs[0][0]['steps']:,} env steps; both processes get the same "
              f"`JAXRL_CACHE_DIR` (a fresh temporary folder; {pairs[0][2] / 1e6:.1f} MB after the first run). "
              f"'compile' is the training loop's lower+compile as the CLI reports it (a cache hit still traces and "
              f"lowers); the evaluation program's compile is inside 'eval'.", "",
              table(["run", "whole-process wall (s)", "compile (s)", "train loop (s)", "eval (s)"], rows), "",
              f"Command (twice): `{pairs[0][0]['command'].replace('<fresh dir>', '$TMP_CACHE')}`"]
    if second["compile_s"] > 0.5 * first["compile_s"]:
        lines += ["", "Note: the training loop's compile time did not drop, so it was not served from the cache. "
                      "JAX does not persist an executable that contains host callbacks (it logs \"Not writing "
                      "persistent cache entry ... because it uses host callbacks\"), and the CLI's progress "
                      "reporting puts a `jax.debug.callback` in the training loop (even with `--quiet`); only "
                      "the init and evaluation programs are cached."]
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------------------------
# Machine description
# ----------------------------------------------------------------------------------------------
def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def load_average() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "n/a"


def versions() -> str:
    names = ["jax", "jaxlib", "flax", "optax", "gymnax", "numpy", "torch", "stable-baselines3", "gymnasium"]
    parts = [f"python {platform.python_version()}"]
    for name in names:
        try:
            parts.append(f"{name} {importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            parts.append(f"{name} (not installed)")
    return ", ".join(parts)


def machine_tag() -> str:
    host = re.sub(r"[^A-Za-z0-9_.-]+", "-", platform.node() or "machine")[:40]
    return f"{_dt.date.today().isoformat()}-{host}"


# ----------------------------------------------------------------------------------------------
# Main
# ----------------------------------------------------------------------------------------------
def parse_args(argv: list[str] | None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("Usage::")[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("names", nargs="*", metavar="CASE", help=f"cases to run (same as --cases): {', '.join(ALL_CASES)}")
    p.add_argument("--cases", default=None,
                   help=f"comma-separated subset of {','.join(ALL_CASES)} (default: {','.join(DEFAULT_CASES)})")
    p.add_argument("--offline-updates", type=lambda s: int(float(s)), default=20_000,
                   help="gradient updates per run in the offline case (default 20000)")
    p.add_argument("--offline-agents", default="bc,td3_bc,iql,cql,rebrac,awac,dt,cql_discrete,prdc",
                   help="offline agents to measure (default: all)")
    p.add_argument("--quick", action="store_true", help="tiny budgets (a smoke test of this script, not a measurement)")
    p.add_argument("--skip-sb3", action="store_true", help="do not run Stable-Baselines3")
    p.add_argument("--ppo-steps", type=lambda s: int(float(s)), default=None,
                   help="our PPO budget (default: its Config, 5e5)")
    p.add_argument("--dqn-steps", type=lambda s: int(float(s)), default=None,
                   help="our DQN budget (default: its Config)")
    p.add_argument("--sb3-steps", type=lambda s: int(float(s)), default=50_000,
                   help="env steps SB3 actually runs; its full-budget time is extrapolated (default 50000)")
    p.add_argument("--seeds", default="1,4,16,64", help="seed counts of the scaling case")
    p.add_argument("--scaling-steps", type=lambda s: int(float(s)), default=None,
                   help="env steps per seed in the scaling case (default: the PPO budget)")
    p.add_argument("--max-sequential", type=int, default=4,
                   help="measure at most this many sequential single-seed runs; estimate beyond (default 4)")
    p.add_argument("--cache-agent", default="ppo", choices=[c.name for c in AGENT_CASES],
                   help="agent of the cache case (default ppo)")
    p.add_argument("--torch-threads", type=int, default=1,
                   help="torch.set_num_threads for SB3 (default 1, SB3's fastest setting for these small MLPs "
                        "on a CPU; 0 keeps torch's default of one thread per core)")
    p.add_argument("--eval-episodes", type=int, default=16, help="final greedy evaluation episodes (ours and SB3)")
    p.add_argument("--repeats", type=int, default=1, help="repeat each measurement and report medians")
    p.add_argument("--timeout", type=float, default=1800, help="seconds before a subprocess is killed")
    p.add_argument("--out", default=None, help="result file (default scripts/results/bench-<date>-<host>[-quick].md)")
    p.add_argument("--keep-runs", action="store_true", help="keep the scratch folder of run outputs and caches")
    p.add_argument("--sb3-worker", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.sb3_worker:
        return args
    if args.names and args.cases:
        p.error("name the cases either as arguments or with --cases, not both")
    spec = ",".join(args.names) if args.names else (args.cases or ",".join(DEFAULT_CASES))
    cases = [c.strip() for c in spec.split(",") if c.strip()]
    unknown = sorted(set(cases) - set(ALL_CASES))
    if unknown:
        p.error(f"--cases: unknown {unknown}; choose from {','.join(ALL_CASES)}")
    args.cases = cases
    args.offline_agents = [a.strip() for a in args.offline_agents.split(",") if a.strip()]
    args.seeds = sorted({int(s) for s in args.seeds.split(",") if s.strip()})
    if args.repeats < 1 or args.eval_episodes < 1 or not args.seeds or min(args.seeds) < 1:
        p.error("--repeats, --eval-episodes and --seeds must be >= 1")
    args.quick_steps = 4_096
    if args.quick:
        args.sb3_steps = min(args.sb3_steps, 2_048)
        args.seeds = [s for s in args.seeds if s <= 4] or [1]
        args.max_sequential = min(args.max_sequential, 2)
        args.scaling_steps = args.scaling_steps or args.quick_steps
        args.eval_episodes = min(args.eval_episodes, 2)
    if args.scaling_steps is None:
        args.scaling_steps = args.ppo_steps or 500_000
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.sb3_worker:
        sb3_worker(args.sb3_worker)
        return 0
    started = _dt.datetime.now()
    load_start = load_average()
    command = "python scripts/bench.py" + "".join(" " + shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv))
    scratch = Path(tempfile.mkdtemp(prefix="jaxrl-bench-"))
    bench = Bench(scratch=scratch, timeout=args.timeout, eval_episodes=args.eval_episodes, repeats=args.repeats,
                  torch_threads=args.torch_threads)
    failures: list[str] = []
    sections = []
    t0 = time.perf_counter()
    try:
        for case in AGENT_CASES:
            if case.name in args.cases:
                print(f"[bench] {case.name} ...", file=sys.stderr, flush=True)
                sections.append(bench_agent(bench, case, args, failures))
        if "scaling" in args.cases:
            print("[bench] scaling ...", file=sys.stderr, flush=True)
            sections.append(bench_scaling(bench, args, failures))
        if "cache" in args.cases:
            print("[bench] cache ...", file=sys.stderr, flush=True)
            sections.append(bench_cache(bench, args, failures))
        if "offline" in args.cases:
            from scripts.bench_offline import bench_offline

            print("[bench] offline ...", file=sys.stderr, flush=True)
            sections.append(bench_offline(bench, args, failures))
    finally:
        if args.keep_runs:
            print(f"[bench] run outputs kept in {scratch}", file=sys.stderr)
        else:
            import shutil

            shutil.rmtree(scratch, ignore_errors=True)
    elapsed = time.perf_counter() - t0
    cores = os.cpu_count() or 0
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else cores
    load_end = load_average()
    busy = max(float(x) for x in (load_start.split()[0], load_end.split()[0]) if x != "n/a") if "n/a" not in (
        load_start, load_end) else 0.0
    header = [
        f"# jaxrl speed benchmark{' (--quick smoke test: budgets too small to mean anything)' if args.quick else ''}",
        "",
        f"- Command: `{command}`",
        f"- Date: {started.isoformat(timespec='seconds')} (took {elapsed / 60:.1f} min)",
        f"- Machine: `{platform.node()}`, CPU {cpu_model()}, {cores} cores ({usable} usable), {platform.platform()}",
        f"- Load average (1/5/15 min) at start: {load_start}; at end: {load_end}",
        f"- Versions: {versions()}",
        f"- Repeats per measurement: {args.repeats} (medians shown)",
        "",
        "Whole-process wall time: the subprocess from interpreter start to exit (imports, compilation, training, "
        "final evaluation). Train loop: the compiled training program only (ours: `summary.json` `train_time_s`, "
        "compilation excluded; SB3: `model.learn`). env-steps/s = env steps / train-loop time.",
    ]
    if busy > 0.5 * max(usable, 1):
        header += ["", f"**Warning: the machine was busy (load average up to {busy:.2f} on {usable} usable cores); "
                       "these timings are noisy. Re-run on a quiet machine before quoting them.**"]
    if failures:
        header += ["", "**Failures:** " + "; ".join(_short(Exception(f), 200) for f in failures)]
    text = "\n".join(header) + "\n\n" + "\n".join(sections)
    print(text)
    subset = "" if tuple(args.cases) == DEFAULT_CASES else "-" + "-".join(args.cases)
    out = Path(args.out) if args.out else ROOT / "scripts" / "results" / f"bench-{machine_tag()}{subset}{'-quick' if args.quick else ''}.md"
    write_text_atomic(out, text)
    print(f"[bench] wrote {out}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
