"""``mb-distractors``: MLE model loss vs VaGraM under distracting state dimensions (Voelcker et al. 2022,
"Value Gradient weighted Model-Based Reinforcement Learning", ICLR, Sec. 5: with a small model and
distracting dimensions, the value-gradient weighted loss keeps MBPO working where MLE degrades).

    python scripts/reproduce.py mb-distractors                        # distractors 0, 5, 10; 3 seeds; 5000 steps
    python scripts/reproduce.py mb-distractors --distractors 0,20 --seeds 2 --total-timesteps 3000
    python scripts/reproduce.py mb-distractors --no-train             # the table and figure from the stored JSON
    python scripts/reproduce.py mb-distractors --quick --out /tmp/smoke  # a one-minute smoke run

(``python scripts/reproduce_mb_distractors.py ...`` is the same.)

The task: Pendulum-v1 with n distracting dimensions appended to its observation
(``Pendulum-Distract{n}-v0``, ``envs/model_based/distractors.py``: chaotic, action- and reward-independent
dynamics, the paper code's construction); n = 0 is plain Pendulum-v1. The agent:
``agents/model_based/vagram.py`` with ``model_loss="mle"`` (MBPO's Gaussian NLL ensemble) and
``model_loss="vagram"``, the same deliberately small model for both (``SMALL``: 5 members of one hidden
layer of 32 units; the paper's point is about limited capacity) and the same SAC and budget. Every
(n, loss) pair is one compiled program training all seeds (vmapped). Reported per (n, loss), mean ± std
over seeds: the final greedy return (16 episodes per seed) and the model's held-out squared error of
the next state on the base (Pendulum) dimensions and on the distractors at its last retraining
(env units).

The committed table (the default command, distractors 0, 5 and 10): ``scripts/results/mb-distractors.md``.
An earlier run with ``--distractors 0,10`` (2 CPU cores, 10.7 min; greedy return mean ± std over seeds 0-2, random
play about -1200; base-dim model MSE at the last retraining):

    | distractors | model loss | greedy return   | base-dim model MSE |
    | 0           | mle        | -369.9 ± 233.5  | 0.0133 ± 0.0100    |
    | 0           | vagram     | -128.6 ± 15.9   | 0.0024 ± 0.0005    |
    | 10          | mle        | -1654.0 ± 169.0 | 0.0018 ± 0.0019    |
    | 10          | vagram     | -927.5 ± 448.0  | 0.0103 ± 0.0025    |

At 3 000 env steps (too short for MLE with this small model even without distractors): n=0 mle -908 ±
588, vagram -350 ± 156; n=10 mle -1670 ± 49, vagram -1534 ± 44. VaGraM keeps more return under 10
distractors (two of three seeds learn at 5 000 steps, none with MLE), as the paper reports. Its base-dim
error is the higher one, but the two errors are not comparable: each is measured on its own agent's
held-out data. Both errors on the distractors are about their variance. Three seeds: an indication, not a result.

Output: ``OUT/mb-distractors.md`` (the table), ``OUT/mb-distractors.png`` (return and base-dim model
error against n) and ``OUT/mb-distractors.json``; ``OUT`` is ``--out``, by default ``scripts/results/``
when every other flag is at its default (the committed table), else ``runs/reproduce-mb-distractors-<time>``.
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime as _dt
import shlex
import sys
import time
from pathlib import Path
from typing import Sequence

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

NAME = "mb-distractors"
TITLE = "MLE vs VaGraM model loss on Pendulum with distracting dimensions (small model)"
LOSSES = ("mle", "vagram")
SMALL = dict(ensemble_size=5, hidden_size=32, num_layers=1, model_batch_size=64, rollouts_per_step=100,
             updates_per_step=20, batch_size=128, sac_hidden_size=64)
"""The shared setting: tests/test_vagram.py's learning-check setting (MBPO's test setting) with a small model,
5 members of ONE hidden layer of 32 swish units (module docstring)."""
QUICK = dict(ensemble_size=2, hidden_size=8, num_layers=1, model_batch_size=32, max_epochs=2,
             rollouts_per_step=4, updates_per_step=1, batch_size=32, sac_hidden_size=16,
             train_every=100, epoch_length=100, random_steps=100)
EVAL_EPISODES = 16
DEFAULT_DISTRACTORS, DEFAULT_SEEDS, DEFAULT_TIMESTEPS = [0, 5, 10], 3, 5_000


def env_id(n: int) -> str:
    return "Pendulum-v1" if n == 0 else f"Pendulum-Distract{n}-v0"


def config_for(n: int, loss: str, total_timesteps: int, quick: bool):
    from agents.model_based import vagram

    return vagram.Config(env=env_id(n), model_loss=loss, total_timesteps=total_timesteps,
                         **(QUICK if quick else SMALL))


def last_finite(x: np.ndarray) -> np.ndarray:
    """Per run (rows), the last finite value of a metric logged only at retrainings."""
    out = np.full(x.shape[0], np.nan)
    for i, row in enumerate(x):
        finite = np.flatnonzero(np.isfinite(row))
        if finite.size:
            out[i] = row[finite[-1]]
    return out


def train_one(config, seeds: int) -> dict:
    """Train ``seeds`` seeds of ``config`` in one program; final greedy returns and model errors."""
    import jax
    import jax.numpy as jnp

    from agents.model_based import vagram
    from jaxrl.evaluation import evaluate_trainer

    trainer = vagram.make_train(config)

    def run(key):
        state, metrics = trainer(key)
        ret = evaluate_trainer(trainer, state, jax.random.fold_in(key, 1), EVAL_EPISODES)["return"].mean()
        return ret, metrics["model_base_mse"], metrics["model_distractor_mse"], metrics["episode_return"]

    keys = jnp.stack([jax.random.PRNGKey(s) for s in range(seeds)])
    t0 = time.perf_counter()
    returns, base, distract, curve = jax.block_until_ready(jax.jit(jax.vmap(run))(keys))
    return {"env": config.env, "model_loss": config.model_loss, "seconds": time.perf_counter() - t0,
            "returns": np.asarray(returns, float), "base_mse": last_finite(np.asarray(base, float)),
            "distractor_mse": last_finite(np.asarray(distract, float)),
            "curve": np.asarray(curve, float)}


def compare_model_losses(distractors: Sequence[int] = tuple(DEFAULT_DISTRACTORS), seeds: int = DEFAULT_SEEDS,
                         total_timesteps: int = DEFAULT_TIMESTEPS,
                         quick: bool = False, quiet: bool = False) -> list[dict]:
    """Train both model losses for every distractor count; one result dict per (count, loss)."""
    results = []
    for n in distractors:
        for loss in LOSSES:
            result = train_one(config_for(n, loss, total_timesteps, quick), seeds)
            result["distractors"] = n
            results.append(result)
            if not quiet:
                print(f"[{NAME}] n={n:>2} {loss:>6}: return {result['returns'].mean():8.1f} "
                      f"(seeds {np.round(result['returns'], 1).tolist()}), base-dim model MSE "
                      f"{np.nanmean(result['base_mse']):.4f}, {result['seconds']:.0f}s", flush=True)
    return results


def _std(x: np.ndarray) -> float:
    """The sample standard deviation (ddof 1; 0 for a single value)."""
    return float(x.std(ddof=1)) if x.size > 1 else 0.0


def _mean_std(x: np.ndarray, fmt: str) -> str:
    x = x[np.isfinite(x)]
    return "n/a" if x.size == 0 else f"{format(x.mean(), fmt)} ± {format(_std(x), fmt)}"


CLAIM = ("The claim tested (Voelcker et al. 2022, Sec. 5): with a model too small to fit every "
         "state dimension, MLE spends its capacity on the distracting dimensions and MBPO's return collapses "
         "as they are added, while the value-gradient weighted loss fits what the value function depends on "
         "and keeps the return.")


def findings(results: list[dict]) -> list[str]:
    """Per distractor count: which loss returns more and whether the gap exceeds both stds; then each loss's
    drop from no distractors, which is what the claim is about."""
    out = []
    returns = {(r["distractors"], r["model_loss"]): np.asarray(r["returns"], float) for r in results}
    counts = sorted({n for n, _ in returns})
    for n in counts:
        if not all((n, loss) in returns for loss in LOSSES):
            continue
        mle, vag = returns[(n, "mle")], returns[(n, "vagram")]
        gap = vag.mean() - mle.mean()
        clear = abs(gap) > max(_std(mle), _std(vag))
        better = "VaGraM" if gap > 0 else "MLE"
        out.append(f"- {n} distractors: {better} returns {abs(gap):.0f} more (MLE {mle.mean():.0f}, VaGraM "
                   f"{vag.mean():.0f}); {'larger' if clear else 'not larger'} than the spread over seeds "
                   f"(std {_std(mle):.0f} / {_std(vag):.0f}).")
    if 0 in counts and len(counts) > 1:
        drops = []
        for loss in LOSSES:
            if (0, loss) in returns:
                per_n = ", ".join(f"{returns[(0, loss)].mean() - returns[(n, loss)].mean():.0f} at {n}"
                                  for n in counts[1:] if (n, loss) in returns)
                drops.append(f"{'MLE' if loss == 'mle' else 'VaGraM'} {per_n}")
        out.append("- Return lost against no distractors: " + "; ".join(drops) + ".")
    out.append("- The model errors are not comparable across the two losses: each is measured on its own agent's "
               "held-out data, and an agent that fails visits fewer, easier states.")
    return out


def render(results: list[dict], command: str, seeds: int, total_timesteps: int, elapsed: float, quick: bool,
           setup: dict | None = None) -> str:
    lines = [f"# {NAME}: {TITLE}", "", CLAIM, "",
             f"{seeds} seeds per cell, {total_timesteps} env steps, {EVAL_EPISODES} greedy episodes per seed; "
             f"mean ± sample std over seeds; model errors: held-out squared error of the next state at the last "
             f"retraining, env units. Random play scores about -1200. Small model: {QUICK if quick else SMALL}."
             + (" **QUICK smoke run: numbers mean nothing.**" if quick else ""), "",
             "| distractors | model loss | greedy return | base-dim model MSE | distractor model MSE | seconds |",
             "|---|---|---|---|---|---|"]
    for r in results:
        lines.append(f"| {r['distractors']} | {r['model_loss']} | {_mean_std(np.asarray(r['returns'], float), '.1f')} | "
                     f"{_mean_std(np.asarray(r['base_mse'], float), '.4f')} | "
                     f"{_mean_std(np.asarray(r['distractor_mse'], float), '.3g')} | {r['seconds']:.0f} |")
    lines += ["", "## Findings", "", *findings(results), f"- {seeds} seeds per cell: an indication, not a result.",
              "", "## Setup", "", f"- Command: `{command}`", f"- Wall time {elapsed / 60:.1f} min"]
    if setup:
        machine = setup["machine"]
        lines += [f"- Date: {setup['date']} (UTC); revision {setup['revision']}",
                  f"- Machine: {machine['cpu']}, {machine['usable']} usable cores; {machine['platform']}; load "
                  f"average (1/5/15 min) {machine['load']} -> {setup['load_at_end']} (the machine may have been shared)",
                  "- Versions: " + ", ".join(f"{k} {v}" for k, v in setup["versions"].items())]
    return "\n".join(lines + ["", f"![return and model error]({NAME}.png)"]) + "\n"


def plot(results: list[dict], path: Path) -> Path:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from jaxrl.io import save_figure_atomic

    fig = Figure(figsize=(10, 4))
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 2)
    for loss, marker in zip(LOSSES, ("o", "s")):
        mine = [r for r in results if r["model_loss"] == loss]
        n = [r["distractors"] for r in mine]
        for ax, key in zip(axes, ("returns", "base_mse")):
            values = [r[key][np.isfinite(r[key])] for r in mine]
            ax.errorbar(n, [v.mean() if v.size else np.nan for v in values],
                        yerr=[v.std() if v.size else 0.0 for v in values], marker=marker, capsize=3, label=loss)
    axes[0].set(xlabel="distracting dimensions", ylabel="final greedy return", title="Return")
    axes[1].set(xlabel="distracting dimensions", ylabel="held-out MSE, base dims", title="Model error (Pendulum dims)",
                yscale="log")
    for ax in axes:
        ax.legend()
        ax.grid(alpha=0.3)
    fig.suptitle(TITLE)
    fig.tight_layout()
    return save_figure_atomic(fig, path)


def parse_args(argv: Sequence[str]):
    parser = argparse.ArgumentParser(prog=f"reproduce {NAME}", description=__doc__.split("\n")[0])
    parser.add_argument("--distractors", default=",".join(map(str, DEFAULT_DISTRACTORS)),
                        help="comma-separated distractor counts (0: Pendulum-v1)")
    parser.add_argument("--seeds", type=int, default=DEFAULT_SEEDS)
    parser.add_argument("--total-timesteps", type=int, default=DEFAULT_TIMESTEPS)
    parser.add_argument("--quick", action="store_true", help="tiny networks and budget: a one-minute smoke run")
    parser.add_argument("--out", default=None, help="output folder (default: scripts/results/, where the committed "
                        "table lives, when every other flag is at its default; else runs/reproduce-mb-distractors-<time>)")
    parser.add_argument("--quiet", action="store_true")
    parser.add_argument("--no-train", action="store_true",
                        help="train nothing: rewrite the table and figure from OUT/mb-distractors.json")
    args = parser.parse_args(argv)
    try:
        args.distractors = [int(v) for v in args.distractors.split(",") if v.strip()]
    except ValueError:
        parser.error(f"--distractors must be comma-separated integers, got {args.distractors!r}")
    from envs.model_based.distractors import DISTRACTOR_COUNTS

    bad = [n for n in args.distractors if n != 0 and n not in DISTRACTOR_COUNTS]
    if bad:
        parser.error(f"--distractors {bad}: registered counts are 0 (plain Pendulum) and {list(DISTRACTOR_COUNTS)}")
    if args.seeds < 1:
        parser.error(f"--seeds must be >= 1, got {args.seeds}")
    if args.quick:
        args.total_timesteps = min(args.total_timesteps, 300)
        args.distractors = args.distractors[-1:]
        args.seeds = min(args.seeds, 2)
    return args


def _compact(values: np.ndarray) -> list:
    """A result array as a list for the JSON store: per-seed values (1-D: returns, model errors) to 6
    significant digits, curves (2-D) to 0.01."""
    return [float(f"{v:.6g}") for v in values.ravel()] if values.ndim == 1 else np.round(values, 2).tolist()


def _load_results(path: Path) -> dict:
    import json

    if not path.exists():
        raise SystemExit(f"error: --no-train needs {path}; run without --no-train first (or pass --out)")
    stored = json.loads(path.read_text())
    for r in stored["results"]:
        for key in ("returns", "base_mse", "distractor_mse", "curve"):
            r[key] = np.asarray(r[key], float)
    return stored


def rerender(out: Path) -> tuple[str, Path]:
    """The table and figure from a stored JSON (no training)."""
    from jaxrl.io import write_text_atomic

    stored = _load_results(out / f"{NAME}.json")
    text = render(stored["results"], stored["command"], stored["seeds"], stored["total_timesteps"],
                  stored.get("elapsed_s", float("nan")), stored.get("quick", False), stored.get("setup"))
    write_text_atomic(out / f"{NAME}.md", text)
    return text, plot(stored["results"], out / f"{NAME}.png")


def train_and_write(args, argv: list[str], out: Path) -> tuple[str, Path]:
    from jaxrl.config import ConfigError
    from jaxrl.io import write_json_atomic, write_text_atomic
    from scripts.reproduce import git_revision, machine_info, versions

    out.mkdir(parents=True, exist_ok=True)
    setup = {"date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M"), "revision": git_revision(),
             "machine": machine_info(), "versions": versions()}
    t0 = time.perf_counter()
    try:
        results = compare_model_losses(args.distractors, args.seeds, args.total_timesteps, args.quick, args.quiet)
    except ConfigError as err:
        raise SystemExit(f"error: {err}") from None
    elapsed = time.perf_counter() - t0
    setup["load_at_end"] = machine_info()["load"]
    command = ("python scripts/reproduce.py mb-distractors " + shlex.join(argv)).strip()
    write_json_atomic(out / f"{NAME}.json", {
        "command": command, "seeds": args.seeds, "total_timesteps": args.total_timesteps, "quick": args.quick,
        "elapsed_s": elapsed, "setup": setup,
        "config": {r["model_loss"] + f"/{r['distractors']}": dataclasses.asdict(
            config_for(r["distractors"], r["model_loss"], args.total_timesteps, args.quick)) for r in results},
        "results": [{k: (_compact(v) if isinstance(v, np.ndarray) else v) for k, v in r.items()} for r in results]},
        indent=None)
    text = render(results, command, args.seeds, args.total_timesteps, elapsed, args.quick, setup)
    write_text_atomic(out / f"{NAME}.md", text)
    return text, plot(results, out / f"{NAME}.png")


def _default_settings(args) -> bool:
    """The committed table's settings: the defaults of every flag that changes what is trained."""
    return (not args.quick and args.distractors == DEFAULT_DISTRACTORS and args.seeds == DEFAULT_SEEDS
            and args.total_timesteps == DEFAULT_TIMESTEPS)


def main(argv: Sequence[str] | None = None, helpers=None) -> int:
    """Entry point; ``scripts/reproduce.py`` may pass the arguments after the entry name."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == NAME:
        argv = argv[1:]
    args = parse_args(argv)
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%d-%H%M%S")
    if args.out:
        out = Path(args.out)
    elif args.no_train or _default_settings(args):
        out = ROOT / "scripts" / "results"
    else:  # a smoke run or other settings must not overwrite the committed table
        out = ROOT / "runs" / f"reproduce-{NAME}{'-quick' if args.quick else ''}-{stamp}"
    if args.no_train:
        text, plot_path = rerender(out)
    else:
        text, plot_path = train_and_write(args, argv, out)
    if not args.quiet:
        print(text)
        print(f"[{NAME}] wrote {out / f'{NAME}.md'} and {plot_path}"
              + ("" if args.no_train else f" and {out / f'{NAME}.json'}"), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
