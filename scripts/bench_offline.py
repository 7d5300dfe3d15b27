"""The ``offline`` case of ``scripts/bench.py``: gradient updates per second of the offline agents.

Measured, each as a fresh process through the agent's command line on a dataset file written once:

* every offline agent, 1 seed and 8 seeds in one program: compiled-loop updates/s and whole wall time;
* TD3+BC: 8 seeds in one program vs 8 sequential single-seed processes (whole wall time, compiles
  included; the sequential runs share one compilation cache, as a user's default cache would);
* TD3+BC vs a plain PyTorch TD3+BC update loop of the same size (same networks, batch, policy delay,
  dataset on the same device), in this script's ``--torch-worker`` mode (``bench`` extra);
* memory: peak resident memory of TD3+BC on a 1M-transition Pendulum dataset with 1 and 8 seeds:
  the dataset is an argument shared by the vmapped seeds, so 8 seeds must not cost 8 copies.

Run: ``python scripts/bench.py offline`` (or ``--cases offline``); ``--quick`` for a smoke test.
"""
from __future__ import annotations

import json
import os
import resource
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

AGENTS = {  # agent -> env of its benchmark dataset
    "bc": "Pendulum-v1", "td3_bc": "Pendulum-v1", "iql": "Pendulum-v1", "cql": "Pendulum-v1",
    "rebrac": "Pendulum-v1", "awac": "Pendulum-v1", "dt": "Pendulum-v1", "prdc": "Pendulum-v1",
    "cql_discrete": "CartPole-v1",
}


def write_dataset(env_id: str, size: int, path: Path) -> Path:
    """A uniform-random dataset (speed does not depend on the data's quality)."""
    import jax

    from jaxrl import data, envs

    env, params = envs.make(env_id)
    space = env.action_space(params)

    def act(obs, key):
        return jax.vmap(lambda k: space.sample(k))(jax.random.split(key, obs.shape[0]))

    ds = data.collect(env_id, act, size, jax.random.PRNGKey(0), num_envs=64, kind="random",
                      policy="uniform random (benchmark)", random_return=-1.0, expert_return=0.0)
    data.save(ds, path)
    return path


def _run_agent(bench, agent: str, dataset: Path, num_seeds: int, updates: int, cache_dir, env_id: str) -> dict:
    from scripts.bench import _run, _show

    out = bench.fresh("offline") / "out"
    cmd = [sys.executable, str(ROOT / "agents" / "offline" / f"{agent}.py"), "--env", env_id, "--dataset", str(dataset),
           "--num-seeds", str(num_seeds), "--num-updates", str(updates), "--out", str(out), "--quiet",
           "--eval-episodes", "2", "--log-points", "1", "--no-plot"]
    wall, _ = _run(cmd, {"JAXRL_CACHE_DIR": str(cache_dir)}, bench.timeout)
    s = json.loads((out / "summary.json").read_text())
    return {"wall_s": wall, "compile_s": s["compile_time_s"], "train_s": s["train_time_s"],
            "updates_per_s": s["updates_per_second"], "command": _show([c if c != str(out) else "<tmp>" for c in cmd])}


def _peak_rss_mb(bench, agent: str, dataset: Path, num_seeds: int, updates: int, env_id: str) -> float:
    """Peak resident memory (MiB) of one CLI run, read from the child's rusage."""
    import subprocess

    out = bench.fresh("mem") / "out"
    cmd = [sys.executable, "-c",
           "import resource, runpy, sys; sys.argv = sys.argv[1:]; "
           "exec('try:\\n runpy.run_path(sys.argv[0], run_name=\"__main__\")\\nexcept SystemExit:\\n pass'); "
           "print('MAXRSS', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)",
           str(ROOT / "agents" / "offline" / f"{agent}.py"), "--env", env_id, "--dataset", str(dataset),
           "--num-seeds", str(num_seeds), "--num-updates", str(updates), "--out", str(out), "--quiet",
           "--eval-episodes", "1", "--log-points", "1", "--no-plot"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=bench.timeout,
                          env={**os.environ, "JAXRL_CACHE_DIR": "off"})
    line = next((l for l in proc.stdout.splitlines() if l.startswith("MAXRSS")), None)
    if line is None:
        from scripts.bench import BenchError

        raise BenchError(f"memory run failed: {(proc.stderr or proc.stdout)[-300:]}")
    return int(line.split()[1]) / 1024.0


def bench_offline(bench, args, failures: list[str]) -> str:
    from scripts.bench import BenchError, fmt, ratio, table

    quick = args.quick
    updates = 200 if quick else args.offline_updates
    size = 5_000 if quick else 100_000
    big = 20_000 if quick else 1_000_000
    data_dir = bench.fresh("datasets")
    datasets = {env: write_dataset(env, size, data_dir / f"{env}.npz") for env in sorted(set(AGENTS.values()))}
    lines = ["## Offline agents: gradient updates per second", "",
             f"Dataset: {size:,} uniform-random transitions per env (the content does not change the cost); "
             f"{updates:,} updates per run, batch and networks at each agent's defaults; evaluation kept minimal "
             "(1 logging point, 2 episodes). updates/s = updates x seeds / compiled-loop time.", ""]
    rows = []
    for agent in args.offline_agents:
        env_id = AGENTS[agent]
        try:
            one = bench.repeat(lambda: _run_agent(bench, agent, datasets[env_id], 1, updates, bench.fresh("cache"), env_id))
            eight = bench.repeat(lambda: _run_agent(bench, agent, datasets[env_id], 8, updates, bench.fresh("cache"), env_id))
        except BenchError as err:
            failures.append(f"offline {agent}: {err}")
            rows.append([agent, env_id, "failed", "", "", "", "", ""])
            continue
        rows.append([agent, env_id, fmt(one["updates_per_s"], 0), fmt(eight["updates_per_s"], 0),
                     ratio(eight["updates_per_s"], one["updates_per_s"]), fmt(one["wall_s"]), fmt(eight["wall_s"]),
                     fmt(one["compile_s"])])
    lines.append(table(["agent", "env", "updates/s, 1 seed", "updates/s, 8 seeds (all)", "8 seeds / 1 seed",
                        "wall 1 seed (s)", "wall 8 seeds (s)", "compile (s)"], rows))

    # 8 seeds in one program vs 8 sequential processes (TD3+BC)
    lines += ["", "### TD3+BC: 8 seeds in one program vs 8 sequential processes", ""]
    try:
        cache = bench.fresh("cache")
        vmapped = _run_agent(bench, "td3_bc", datasets["Pendulum-v1"], 8, updates, bench.fresh("cache"), "Pendulum-v1")
        sequential = [_run_agent(bench, "td3_bc", datasets["Pendulum-v1"], 1, updates, cache, "Pendulum-v1")
                      for _ in range(2 if quick else 8)]
        n_seq = len(sequential)
        seq_wall = sum(r["wall_s"] for r in sequential) * (8 / n_seq)
        est = " (est.)" if n_seq < 8 else ""
        lines.append(table(["", "wall (s)", "compiled loop (s)"], [
            ["8 seeds, one program", fmt(vmapped["wall_s"]), fmt(vmapped["train_s"])],
            [f"8 sequential single-seed processes{est}", fmt(seq_wall), fmt(sum(r['train_s'] for r in sequential) * 8 / n_seq)],
            ["**speed-up (sequential / one program)**", ratio(seq_wall, vmapped["wall_s"]), ""],
        ]))
        lines += ["", "On a 2-core CPU the vmapped seeds add little raw throughput (the updates are compute-bound); "
                  "the win of one program is mostly paying interpreter start, imports, tracing and compilation once "
                  "instead of 8 times."]
    except BenchError as err:
        failures.append(f"offline sequential: {err}")
        lines.append(f"failed: {err}")

    # vs plain PyTorch
    lines += ["", "### TD3+BC: ours vs a plain PyTorch update loop of the same size", ""]
    try:
        ours = _run_agent(bench, "td3_bc", datasets["Pendulum-v1"], 1, updates, bench.fresh("cache"), "Pendulum-v1")
        torch_result = torch_td3bc(bench, datasets["Pendulum-v1"], 200 if quick else min(updates, 5_000))
        lines.append(table(["implementation", "updates/s (1 seed)", "ratio ours / torch"], [
            ["ours (`agents/offline/td3_bc.py`, compiled loop)", fmt(ours["updates_per_s"], 0), ratio(ours["updates_per_s"], torch_result["updates_per_s"])],
            [f"plain PyTorch loop (torch threads: {torch_result['threads']})", fmt(torch_result["updates_per_s"], 0), ""],
        ]))
        lines += ["", "The PyTorch loop: actor 256-256 tanh head, twin critics 256-256, Adam 3e-4, batch 256, "
                  "policy delay 2, target smoothing noise, soft target updates, indices sampled on the same device; "
                  "it is what a CORL-style single-file TD3+BC does per update, without logging or evaluation."]
    except (BenchError, ImportError) as err:
        failures.append(f"offline torch: {err}")
        lines.append(f"skipped: {err}")

    # memory
    lines += ["", "### Memory: a 1M-transition dataset shared by the seeds", ""]
    try:
        big_path = write_dataset("Pendulum-v1", big, data_dir / "big.npz")
        dataset_mb = big_path.stat().st_size / 2 ** 20
        rss = {n: _peak_rss_mb(bench, "td3_bc", big_path, n, 50 if quick else 1_000, "Pendulum-v1") for n in (1, 8)}
        lines.append(table(["", "MiB"], [
            [f"dataset file ({big:,} transitions)", fmt(dataset_mb)],
            ["peak RSS, 1 seed", fmt(rss[1])], ["peak RSS, 8 seeds", fmt(rss[8])],
            ["extra for 7 more seeds", fmt(rss[8] - rss[1])],
            ["7 more copies of the dataset would cost", fmt(7 * dataset_mb)],
        ]))
    except BenchError as err:
        failures.append(f"offline memory: {err}")
        lines.append(f"failed: {err}")
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------------------------
# Plain PyTorch TD3+BC (the bench extra), run in a fresh interpreter
# ----------------------------------------------------------------------------------------------
def torch_td3bc(bench, dataset: Path, updates: int) -> dict:
    from scripts.bench import _run

    work = bench.fresh("torch")
    job = {"dataset": str(dataset), "updates": updates, "threads": bench.torch_threads, "result": str(work / "r.json")}
    (work / "job.json").write_text(json.dumps(job))
    _run([sys.executable, str(Path(__file__).resolve()), "--torch-worker", str(work / "job.json")], {}, bench.timeout)
    return json.loads((work / "r.json").read_text())


def torch_worker(job_path: str) -> None:
    import numpy as np
    import torch
    from torch import nn

    job = json.loads(Path(job_path).read_text())
    if job["threads"]:
        torch.set_num_threads(job["threads"])
    from jaxrl import data

    ds = data.load(job["dataset"])
    arrays = {k: torch.as_tensor(np.asarray(getattr(ds, k)))
              for k in ("observations", "actions", "rewards", "next_observations", "terminations")}
    obs_dim, act_dim = arrays["observations"].shape[1], arrays["actions"].shape[1]
    n = arrays["rewards"].shape[0]

    def mlp(i, o, out_act=None):
        layers = [nn.Linear(i, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, o)]
        return nn.Sequential(*(layers + ([out_act] if out_act else [])))

    actor, critic1, critic2 = mlp(obs_dim, act_dim, nn.Tanh()), mlp(obs_dim + act_dim, 1), mlp(obs_dim + act_dim, 1)
    import copy

    actor_t, c1_t, c2_t = copy.deepcopy(actor), copy.deepcopy(critic1), copy.deepcopy(critic2)
    a_opt = torch.optim.Adam(actor.parameters(), 3e-4)
    c_opt = torch.optim.Adam(list(critic1.parameters()) + list(critic2.parameters()), 3e-4)

    def step(it):
        idx = torch.randint(0, n, (256,))
        s, a, r = arrays["observations"][idx], arrays["actions"][idx], arrays["rewards"][idx]
        s2, d = arrays["next_observations"][idx], arrays["terminations"][idx]
        with torch.no_grad():
            noise = (torch.randn_like(a) * 0.2).clamp(-0.5, 0.5)
            a2 = (actor_t(s2) + noise).clamp(-1, 1)
            sa2 = torch.cat([s2, a2], 1)
            target = r[:, None] + 0.99 * (1 - d[:, None]) * torch.min(c1_t(sa2), c2_t(sa2))
        sa = torch.cat([s, a], 1)
        c_loss = ((critic1(sa) - target) ** 2).mean() + ((critic2(sa) - target) ** 2).mean()
        c_opt.zero_grad(); c_loss.backward(); c_opt.step()
        if it % 2 == 0:
            pi = actor(s)
            q = critic1(torch.cat([s, pi], 1))
            lmbda = 2.5 / q.abs().mean().detach()
            a_loss = -lmbda * q.mean() + ((pi - a) ** 2).mean()
            a_opt.zero_grad(); a_loss.backward(); a_opt.step()
            with torch.no_grad():
                for net, tgt in ((actor, actor_t), (critic1, c1_t), (critic2, c2_t)):
                    for p, tp in zip(net.parameters(), tgt.parameters()):
                        tp.mul_(0.995).add_(0.005 * p)

    for it in range(20):  # warm-up
        step(it)
    t0 = time.perf_counter()
    for it in range(job["updates"]):
        step(it)
    seconds = time.perf_counter() - t0
    Path(job["result"]).write_text(json.dumps({"updates_per_s": job["updates"] / seconds, "seconds": seconds,
                                               "threads": torch.get_num_threads()}))


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--torch-worker":
        torch_worker(sys.argv[2])
    else:
        raise SystemExit("usage: python scripts/bench.py offline   (this module is the offline case of bench.py)")
