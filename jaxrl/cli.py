"""The command line every agent's ``__main__`` calls, and the Python API behind it.

``main(Config, make_train, algorithm="ppo")`` turns the fields of the agent's ``Config`` dataclass
into flags (their docstrings become the help), adds the shared flags (``--seed``, ``--num-seeds``,
``--out``, ``--resume``, ``--sweep``, ...) and calls ``train_and_evaluate``, which

1. validates every configuration before anything compiles (``make_train`` raises ``ConfigError``);
2. trains all seeds x sweep points in one ``jit(vmap(...))`` program, sharded over local devices;
3. runs the loop as equal chunks of one compiled ``lax.scan`` (cached on disk by JAX) and prints
   progress between chunks;
4. writes ``OUT/config.json``, ``OUT/metrics.jsonl``, ``OUT/summary.json`` atomically, saves an
   orbax checkpoint (final, and periodic with ``--checkpoint-every``), evaluates the greedy
   policy of every run with its own key, and prints a table and a one-line summary last.

Swept fields (``--sweep lr=1e-4,3e-4``) must be float fields: inside the compiled program they
are traced values, so an agent may only use them arithmetically (never in Python control flow or
shapes). Integer fields change shapes and cannot be swept.
"""
from __future__ import annotations

import argparse
import ast
import dataclasses
import datetime as _dt
import inspect
import itertools
import json
import os
import platform
import sys
import textwrap
import time
import types
import typing
from pathlib import Path
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from jaxrl import checkpoint as ckpt
from jaxrl import stats
from jaxrl.config import ConfigError
from jaxrl.evaluation import evaluate_trainer
from jaxrl.io import read_jsonl, write_json_atomic, write_jsonl_atomic
from jaxrl.trainer import Trainer

RUN_FIELDS = ("seed", "num_seeds", "sweep", "eval_episodes", "log_points", "checkpoint_every", "dataset")


@dataclasses.dataclass(frozen=True)
class RunOptions:
    """How to run an agent; the shared flags of every agent's command line."""

    seed: int = 0
    """First seed; runs use seeds seed, seed+1, ..., seed+num_seeds-1."""
    num_seeds: int = 8
    """Independent seeds trained together in one vmapped program."""
    out: str | None = None
    """Run folder (default: runs/<algorithm>-<env>-<time>)."""
    resume: str | None = None
    """Continue the run in this folder from its latest checkpoint (its saved config is used)."""
    sweep: tuple[str, ...] = ()
    """Hyperparameter grid, e.g. ("lr=1e-4,3e-4",); float fields only; the product of all is trained."""
    eval_episodes: int = 16
    """Greedy-policy evaluation episodes per run at the end of training."""
    log_points: int = 50
    """How many times per run progress is printed and metrics are logged."""
    checkpoint_every: int = 0
    """Also save a checkpoint every this many env steps (0: only the final one)."""
    tensorboard: bool = False
    """Also write TensorBoard event files to OUT/tb (needs tensorboardX or torch)."""
    wandb_project: str | None = None
    """Also log to Weights & Biases under this project (needs wandb; off by default)."""
    distributed: bool = False
    """Call jax.distributed.initialize() first and shard runs over every host's devices."""
    quiet: bool = False
    """Print only the final summary."""
    plot: bool = True
    """Draw the learning curves to OUT/curves.png at the end."""
    dataset: str | None = None
    """Offline agents: the dataset file to train on (built by scripts/make_dataset.py)."""


# ----------------------------------------------------------------------------------------------
# Command-line parsing from a Config dataclass
# ----------------------------------------------------------------------------------------------
def field_docs(cls) -> dict[str, str]:
    """Attribute docstrings (a string literal right below a field) of a dataclass, by field name."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        try:
            tree = ast.parse(textwrap.dedent(inspect.getsource(klass)))
        except (OSError, TypeError, SyntaxError):
            continue
        body = tree.body[0].body
        for node, nxt in zip(body, body[1:]):
            if (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)
                    and isinstance(nxt, ast.Expr) and isinstance(nxt.value, ast.Constant)
                    and isinstance(nxt.value.value, str)):
                docs[node.target.id] = " ".join(nxt.value.value.split())
    return docs


def _field_type(cls, field: dataclasses.Field) -> type:
    """The scalar type a flag parses to: the annotation, with ``X | None`` reduced to ``X``."""
    hint = typing.get_type_hints(cls).get(field.name, str)
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        hint = next(a for a in typing.get_args(hint) if a is not type(None))
    if typing.get_origin(hint) is tuple:
        return tuple
    return hint if isinstance(hint, type) else str


def _parse_int(text: str) -> int:
    value = float(text)  # accepts 5e5; rejects junk
    if not value.is_integer():
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}")
    return int(value)


def _add_dataclass_flags(parser: argparse.ArgumentParser, cls, skip: tuple[str, ...] = ()) -> None:
    docs = field_docs(cls)
    for field in dataclasses.fields(cls):
        if field.name in skip:
            continue
        kind = _field_type(cls, field)
        flags = [f"--{field.name.replace('_', '-')}"]
        default = field.default if field.default is not dataclasses.MISSING else None
        help_text = f"{docs.get(field.name, '')} (default: {default!r})"
        if kind is bool:
            parser.add_argument(*flags, dest=field.name, action=argparse.BooleanOptionalAction,
                                default=argparse.SUPPRESS, help=help_text)
        elif kind is tuple:
            parser.add_argument(*flags, dest=field.name, action="append", default=argparse.SUPPRESS, help=help_text)
        else:
            parse = {int: _parse_int, float: float}.get(kind, str)
            parser.add_argument(*flags, dest=field.name, type=parse, default=argparse.SUPPRESS,
                                metavar=kind.__name__.upper(), help=help_text)


def parse_args(config_cls, argv: list[str] | None = None, algorithm: str = "") -> tuple[Any, RunOptions]:
    """Parse ``argv`` into ``(config, run_options)``; every Config field is a ``--flag``."""
    parser = argparse.ArgumentParser(
        prog=algorithm or None,
        description=(inspect.getdoc(sys.modules[config_cls.__module__]) or "").split("\n\n")[0],
    )
    group = parser.add_argument_group("algorithm (Config fields)")
    _add_dataclass_flags(group, config_cls)
    run_group = parser.add_argument_group("run (shared by every agent)")
    _add_dataclass_flags(run_group, RunOptions, skip=("sweep",))
    run_group.add_argument("--sweep", action="append", default=argparse.SUPPRESS, metavar="FIELD=V1,V2,...",
                           help="train a grid over a float Config field in the same program (repeatable: the product is trained)")
    ns = vars(parser.parse_args(argv))
    run_names = {f.name for f in dataclasses.fields(RunOptions)}
    run = RunOptions(**{k: (tuple(v) if k == "sweep" else v) for k, v in ns.items() if k in run_names})
    config = config_cls(**{k: v for k, v in ns.items() if k not in run_names})
    return config, run


# ----------------------------------------------------------------------------------------------
# Sweeps
# ----------------------------------------------------------------------------------------------
def parse_sweep(config, sweep: tuple[str, ...]) -> list[dict[str, float]]:
    """``("lr=1e-4,3e-4", "gamma=0.9,0.99")`` -> the list of grid points (dicts), row-major."""
    if not sweep:
        return [{}]
    fields = {f.name: f for f in dataclasses.fields(config)}
    axes: dict[str, list[float]] = {}
    for spec in sweep:
        name, sep, values = spec.partition("=")
        name = name.strip().lstrip("-").replace("-", "_")
        if not sep or not values:
            raise ConfigError(f"--sweep {spec!r}: expected FIELD=V1,V2,... (e.g. --sweep lr=1e-4,3e-4)")
        if name not in fields:
            floats = [n for n, v in dataclasses.asdict(config).items() if isinstance(v, float)]
            raise ConfigError(f"--sweep: {name!r} is not a field of {type(config).__name__}; float fields: {', '.join(floats)}")
        if not isinstance(getattr(config, name), float) or isinstance(getattr(config, name), bool):
            raise ConfigError(
                f"--sweep: {name!r} is a {type(getattr(config, name)).__name__} field; only float fields can be "
                "swept in one program (integer fields change array shapes). Run separate commands instead."
            )
        try:
            axes[name] = [float(v) for v in values.split(",") if v.strip()]
        except ValueError:
            raise ConfigError(f"--sweep {spec!r}: values must be numbers") from None
        if name in axes and len(set(axes[name])) != len(axes[name]):
            raise ConfigError(f"--sweep {spec!r}: repeated value")
    names = list(axes)
    return [dict(zip(names, combo)) for combo in itertools.product(*(axes[n] for n in names))]


def sweep_label(point: dict[str, float]) -> str:
    return " ".join(f"{k}={v:g}" for k, v in point.items()) or "-"


# ----------------------------------------------------------------------------------------------
# Compilation cache, devices, progress
# ----------------------------------------------------------------------------------------------
def enable_compilation_cache(directory: str | None = None) -> str:
    """Turn on JAX's persistent compilation cache so a second run skips XLA compilation.

    The folder is ``$JAXRL_CACHE_DIR`` or ``~/.cache/jaxrl/xla``; ``JAXRL_CACHE_DIR=off`` disables it.
    """
    directory = directory or os.environ.get("JAXRL_CACHE_DIR") or str(Path.home() / ".cache" / "jaxrl" / "xla")
    if directory == "off":
        return ""
    jax.config.update("jax_compilation_cache_dir", directory)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)
    return directory


def run_sharding(num_runs: int):
    """(sharding of the run axis over all global devices, replicated sharding), or one device for
    both when the devices do not divide the runs."""
    devices = jax.devices()
    if len(devices) > 1 and num_runs % len(devices) == 0:
        mesh = jax.sharding.Mesh(np.array(devices), ("runs",))
        P = jax.sharding.PartitionSpec
        return jax.sharding.NamedSharding(mesh, P("runs")), jax.sharding.NamedSharding(mesh, P())
    if len(devices) > 1:
        print(f"note: {num_runs} runs do not divide over {len(devices)} devices; using one device", file=sys.stderr)
    single = jax.sharding.SingleDeviceSharding(devices[0])
    return single, single


def _put(array: np.ndarray, sharding) -> jax.Array:
    """Place a host array that every process holds in full onto ``sharding`` (works multi-host)."""
    array = np.asarray(array)
    return jax.make_array_from_callback(array.shape, sharding, lambda index: array[index])


def _to_host(tree):
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        return multihost_utils.process_allgather(tree, tiled=True)
    return jax.device_get(tree)


class Progress:
    """One console line per logged chunk: env steps, steps/s over all runs, mean ± std return, ETA."""

    def __init__(self, label: str, total_updates: int, steps_per_update: int, num_runs: int, quiet: bool):
        # Offline agents take no env steps: count gradient updates instead.
        self.unit = "steps" if steps_per_update > 0 else "updates"
        steps_per_update = max(steps_per_update, 1)
        self.label, self.total_updates, self.steps_per_update = label, total_updates, steps_per_update
        self.num_runs, self.quiet = num_runs, quiet
        self.run_time, self.run_updates = 0.0, 0

    def report(self, done: int, updates_in_chunk: int, seconds: float, returns: np.ndarray) -> None:
        self.run_time += seconds
        self.run_updates += updates_in_chunk
        if self.quiet or jax.process_index() != 0:
            return
        rate = self.run_updates * self.steps_per_update * self.num_runs / max(self.run_time, 1e-9)
        eta = (self.total_updates - done) * self.run_time / max(self.run_updates, 1)
        finite = returns[np.isfinite(returns)]
        ret = f"return {finite.mean():9.2f} ± {finite.std():7.2f}" if finite.size else "return       n/a (no episode ended yet)"
        print(f"[{self.label}] {done * self.steps_per_update:>11,}/{self.total_updates * self.steps_per_update:,} {self.unit} "
              f"({100 * done / self.total_updates:5.1f}%) | {rate:>10,.0f} {self.unit}/s | {ret} over {returns.size} runs "
              f"| eta {eta:6.1f}s", flush=True)


def chunked(update_fn: Callable, length: int, num_updates: int) -> Callable:
    """``(state, start) -> (state, metrics)``: ``length`` iterations of ``update_fn`` from ``start`` in a scan.

    Iterations at or past ``num_updates`` (the tail of the last chunk) are skipped with a ``lax.cond``
    on the unbatched iteration index, so every chunk has the same length and one compiled program
    serves the whole run (and resumes). Skipped iterations report NaN (or 0 for integer metrics).
    """
    if num_updates % length == 0:
        return lambda state, start: jax.lax.scan(update_fn, state, start + jnp.arange(length))

    def body(state, i):
        shapes = jax.eval_shape(update_fn, state, i)[1]
        blank = jax.tree.map(lambda s: jnp.full(s.shape, jnp.nan if jnp.issubdtype(s.dtype, jnp.floating) else 0, s.dtype), shapes)
        return jax.lax.cond(i < num_updates, update_fn, lambda st, _: (st, blank), state, i)

    return lambda state, start: jax.lax.scan(body, state, start + jnp.arange(length))


# ----------------------------------------------------------------------------------------------
# The run
# ----------------------------------------------------------------------------------------------
def _default_out(algorithm: str, env: str) -> str:
    return str(Path("runs") / f"{algorithm}-{env}-{_dt.datetime.now().strftime('%Y%m%d-%H%M%S')}")


def _config_from_dict(config_cls, values: dict):
    names = {f.name for f in dataclasses.fields(config_cls)}
    unknown = set(values) - names
    if unknown:
        raise ConfigError(f"saved config has fields {sorted(unknown)} that {config_cls.__name__} does not know")
    return config_cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})


def _resumed_config(given, saved, out: Path):
    """The saved config of a resumed run. A field of ``given`` set away from its default to a value other
    than the saved one (``--resume OUT --env Other-v0``) is a clear error: a resumed run keeps its saved
    config, and a flag that would be ignored silently is worse than none."""
    def default(field):
        if field.default is not dataclasses.MISSING:
            return field.default
        if field.default_factory is not dataclasses.MISSING:
            return field.default_factory()
        return dataclasses.MISSING   # a required field: whatever was given counts as set

    conflicts = [(f.name, getattr(given, f.name), getattr(saved, f.name)) for f in dataclasses.fields(given)
                 if getattr(given, f.name) != default(f) and getattr(given, f.name) != getattr(saved, f.name)]
    if conflicts:
        raise ConfigError(f"--resume {out}: that run was trained with "
                          + ", ".join(f"{k}={s!r}" for k, _, s in conflicts) + ", not "
                          + ", ".join(f"{k}={v!r}" for k, v, _ in conflicts)
                          + "; a resumed run keeps its saved config (drop those flags, or start a new run with "
                          "another --out)")
    return saved


def _sinks(out: Path, options: RunOptions, config_dict: dict):
    sinks = []
    if options.tensorboard:
        try:
            from tensorboardX import SummaryWriter
        except ImportError:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                raise ConfigError("--tensorboard needs tensorboardX (pip install tensorboardX) or torch") from None
        writer = SummaryWriter(str(out / "tb"))

        def tb(rows):
            for r in rows:
                for k, v in r.items():
                    if isinstance(v, (int, float)) and v is not None and k not in ("run", "seed", "update", "env_steps"):
                        writer.add_scalar(f"run{r['run']}/{k}", v, r["env_steps"])
            writer.flush()

        sinks.append(tb)
    if options.wandb_project:
        try:
            import wandb
        except ImportError:
            raise ConfigError("--wandb-project needs wandb installed (pip install wandb)") from None
        wb = wandb.init(project=options.wandb_project, config=config_dict, dir=str(out))

        def wandb_sink(rows):
            for r in rows:
                wb.log({f"run{r['run']}/{k}": v for k, v in r.items() if isinstance(v, (int, float))})

        sinks.append(wandb_sink)
    return sinks


def train_and_evaluate(
    config,
    make_train: Callable[[Any], Trainer],
    options: RunOptions = RunOptions(),
    algorithm: str = "agent",
    *,
    offline: bool = False,
    dataset: Any = None,
    _stop_after_checkpoints: int | None = None,
) -> dict:
    """Train ``options.num_seeds`` seeds (x the sweep grid) of ``make_train(config)`` in one program.

    Offline agents (``offline=True``) are built as ``make_train(config, dataset)``; the dataset is
    ``dataset`` or the file ``options.dataset``, and the greedy policy is evaluated in the env at
    every logging point (``episode_return``, and ``normalized_score`` when the dataset has
    reference returns).

    Returns the summary dict written to ``OUT/summary.json``. ``_stop_after_checkpoints`` simulates an
    interruption after that many periodic checkpoints (used by the resume test).
    """
    t_process = time.perf_counter()
    if options.distributed:
        jax.distributed.initialize()
    config_cls = type(config)
    resume_meta = None
    if options.resume:
        out = Path(options.resume)
        if not (out / "config.json").exists():
            raise ConfigError(f"--resume {out}: no config.json there (not a jaxrl run folder)")
        saved = json.loads((out / "config.json").read_text())
        if saved.get("algorithm") != algorithm:
            raise ConfigError(f"--resume {out}: that run is {saved.get('algorithm')!r}, not {algorithm!r}")
        config = _resumed_config(config, _config_from_dict(config_cls, saved["config"]), out)
        saved_run = saved["run"]
        options = dataclasses.replace(options, **{k: (tuple(saved_run[k]) if k == "sweep" else saved_run[k])
                                                  for k in RUN_FIELDS if k in saved_run})
        resume_meta = saved
    cache_dir = enable_compilation_cache()
    env_id = getattr(config, "env", "?")
    if offline or dataset is not None:
        offline = True
        dataset = _load_dataset(options, dataset, algorithm, env_id, resume_meta)
        make_train = _bind_dataset(make_train, dataset)
    if options.num_seeds < 1:
        raise ConfigError(f"--num-seeds must be >= 1, got {options.num_seeds}")
    if options.log_points < 1:
        raise ConfigError(f"--log-points must be >= 1, got {options.log_points}")
    if options.eval_episodes < 1:
        raise ConfigError(f"--eval-episodes must be >= 1, got {options.eval_episodes}")
    grid = parse_sweep(config, options.sweep)

    # 1. Validate every configuration with concrete values before compiling anything.
    trainer, *_ = [make_train(dataclasses.replace(config, **point)) for point in grid]
    if trainer.num_updates < 1:
        raise ConfigError(f"the budget gives {trainer.num_updates} iterations; raise --total-timesteps")

    out = Path(options.out or options.resume or _default_out(algorithm, env_id))
    seeds = [options.seed + s for s in range(options.num_seeds)]
    runs = [(g, s) for g in range(len(grid)) for s in seeds]
    num_runs = len(runs)
    sweep_names = list(grid[0])
    hp = {n: np.array([grid[g][n] for g, _ in runs], np.float32) for n in sweep_names}
    keys = np.stack([np.asarray(jax.random.PRNGKey(s)) for _, s in runs])
    config_dict = dataclasses.asdict(config)
    run_meta = {"algorithm": algorithm, "env": env_id, "num_runs": num_runs, "config": json.dumps(config_dict, sort_keys=True)}

    sinks = _sinks(out, options, config_dict) if jax.process_index() == 0 else []
    if jax.process_index() == 0 and not options.resume:
        if (out / "summary.json").exists() or ckpt.latest_step(out) is not None:
            raise ConfigError(f"{out} already holds a run; pass --resume {out} to continue it or choose another --out")
        write_json_atomic(out / "config.json", {
            "algorithm": algorithm, "env": env_id, "config": config_dict,
            "run": {k: getattr(options, k) for k in RUN_FIELDS},
            "command": " ".join([Path(sys.argv[0]).name] + sys.argv[1:]),
            **({"dataset": _dataset_meta(dataset, options)} if offline else {}),
            "created": _dt.datetime.now().isoformat(timespec="seconds"),
            "jax_version": jax.__version__,
        })

    # 2. Build the program: init, then the update loop as equal chunks of one compiled scan.
    sharding, replicated = run_sharding(num_runs)
    keys_d = _put(keys, sharding)
    hp_d = {n: _put(v, sharding) for n, v in hp.items()}
    num_updates = trainer.num_updates
    # The compiled program is one chunk of `length` iterations; progress, metrics and checkpoints
    # happen between chunks, on the host. (A jax.debug.callback inside the loop would make the
    # executable uncacheable: JAX does not persist programs with host callbacks.)
    length = -(-num_updates // max(1, options.log_points))
    ckpt_every = max(1, round(options.checkpoint_every / trainer.env_steps_per_update)) if options.checkpoint_every > 0 else 0
    if ckpt_every:
        length = min(length, ckpt_every)
    label = f"{algorithm} {env_id}"
    progress = Progress(label, num_updates, trainer.env_steps_per_update, num_runs, options.quiet)

    def trainer_for(point):
        return make_train(dataclasses.replace(config, **point))

    def init_one(key, point):
        return trainer_for(point).init(key)

    def chunk_one(state, point, start, data):
        return chunked(trainer_for(point).step_fn(data), length, num_updates)(state, start)

    # Every leaf of the state and metrics has the run axis first: pin it to the run sharding so
    # that chunk after chunk the program sees exactly the layout it was compiled for.
    # Seeds are initialized one after another (lax.map), not vmapped. Our agents use
    # jaxrl.initializers.orthogonal, which is safe under vmap. A network a user brings may still use
    # flax's orthogonal initializer, and vmapped, that one can deadlock jaxlib's CPU thread pool (see
    # scripts/qr_deadlock_repro.py). Initialization is cheap, and training stays vmapped.
    init_all = jax.jit(lambda keys, hp: jax.lax.map(lambda args: init_one(*args), (keys, hp)), out_shardings=sharding)
    # Donating the state lets accelerators update replay buffers in place. On CPU it made PPO's
    # chunk ~30% slower (measured: 105k vs 145k env-steps/s on CartPole, small state) and saved
    # nothing measurable for DQN, so it is off there.
    donate = (0,) if jax.default_backend() != "cpu" else ()
    chunk_all = jax.jit(jax.vmap(chunk_one, in_axes=(0, 0, None, None)),
                        in_shardings=(sharding, sharding, replicated, replicated),
                        out_shardings=sharding, donate_argnums=donate)
    # The trainer's own data: an agent may augment the dataset in make_train (e.g. BC-10%'s index of
    # the top episodes, a Decision Transformer's returns-to-go), and that is what update reads.
    data_d = jax.device_put(trainer.data, replicated) if offline else None

    def eval_one(state, point, key, episodes, round_):
        t = trainer_for(point)
        eval_key = jax.random.fold_in(jax.random.fold_in(key, 0x5EED), round_)
        return evaluate_trainer(t, state, eval_key, episodes)

    # Offline runs have no training episodes to report: their curve is the greedy policy's return
    # in the env at every logging point (a few episodes; the final evaluation uses eval_episodes).
    eval_during = (jax.jit(jax.vmap(lambda st, p, k, r: eval_one(st, p, k, min(8, options.eval_episodes), r),
                                    in_axes=(0, 0, 0, None))) if offline else None)

    start = 0
    rows: list[dict] = []
    if resume_meta is not None:
        state, meta = _restore_state(out, init_all, keys_d, hp_d, sharding, run_meta)
        start = int(meta["update"])
        rows = [r for r in read_jsonl(out / "metrics.jsonl") if r["update"] < start] if (out / "metrics.jsonl").exists() else []
        if not options.quiet:
            print(f"[{label}] resuming {out} from iteration {start}/{num_updates}", flush=True)
    else:
        state = init_all(keys_d, hp_d)

    if not options.quiet and jax.process_index() == 0:
        devices = jax.devices()
        print(f"[{label}] {num_runs} runs ({len(seeds)} seeds x {len(grid)} sweep points) in one program on "
              f"{len(devices)} {devices[0].platform} device(s); {num_updates} iterations x "
              f"{trainer.env_steps_per_update} env steps; out: {out}", flush=True)

    t0 = time.perf_counter()
    step_chunk = chunk_all.lower(state, hp_d, start, data_d).compile()
    compile_time = time.perf_counter() - t0
    if not options.quiet and jax.process_index() == 0:
        print(f"[{label}] compiled the training loop ({length} iterations per chunk) in {compile_time:.1f}s", flush=True)
    train_time = 0.0
    checkpoints_saved = 0
    while start < num_updates:
        t0 = time.perf_counter()
        state, metrics = step_chunk(state, hp_d, start, data_d)
        metrics = _to_host(metrics)
        seconds = time.perf_counter() - t0
        train_time += seconds
        end = min(start + length, num_updates)
        new_rows = _rows(metrics, runs, grid, end - 1, start, trainer.env_steps_per_update)
        if offline:
            _add_offline_eval(new_rows, _to_host(eval_during(state, hp_d, keys_d, end)), env_id, dataset)
        rows.extend(new_rows)
        progress.report(end, end - start, seconds, np.array([r.get("episode_return", np.nan) for r in new_rows], float))
        if jax.process_index() == 0:
            write_jsonl_atomic(out / "metrics.jsonl", rows)
            for sink in sinks:
                sink(new_rows)
        crossed = ckpt_every and (end // ckpt_every > start // ckpt_every)
        start = end
        if crossed or start == num_updates:
            ckpt.save(out, start, state, {**run_meta, "update": start})
            checkpoints_saved += 1
        if _stop_after_checkpoints is not None and checkpoints_saved >= _stop_after_checkpoints and start < num_updates:
            return {"interrupted_at": start}

    # 3. Evaluate every run's greedy policy with its own key.
    t0 = time.perf_counter()
    final_eval = jax.jit(jax.vmap(lambda st, p, k: eval_one(st, p, k, options.eval_episodes, 0)))
    results = _to_host(final_eval(state, hp_d, keys_d))
    eval_time = time.perf_counter() - t0

    summary = _summary(
        algorithm, env_id, config_dict, options, grid, runs, results, rows, trainer,
        wall_time=time.perf_counter() - t_process, compile_time=compile_time, train_time=train_time,
        eval_time=eval_time, cache_dir=cache_dir, out=out,
    )
    if offline:
        _add_offline_summary(summary, results, runs, grid, env_id, dataset, options, num_updates, rows)
    if trainer.report is not None:
        _add_reports(summary, _to_host(state), keys, grid, runs, trainer_for)
    if jax.process_index() == 0:
        write_json_atomic(out / "summary.json", summary)
        if options.plot:
            has_front = any((r.get("report") or {}).get("front") for r in summary["runs"])
            _plot(out, x="update" if offline else "env_steps", front=has_front)
        _print_summary(summary, grid)
    return summary


# ----------------------------------------------------------------------------------------------
# Offline agents: the dataset
# ----------------------------------------------------------------------------------------------
def _load_dataset(options: RunOptions, dataset, algorithm: str, env_id: str, resume_meta: dict | None):
    """The dataset object (given, or loaded from ``--dataset``); on resume it must be the same data."""
    from jaxrl import data as data_lib

    if dataset is None:
        if not options.dataset:
            raise ConfigError(
                f"{algorithm} is an offline agent and needs a dataset: --dataset PATH "
                f"(build one with: python scripts/make_dataset.py {env_id} --kind medium)"
            )
        dataset = data_lib.load(options.dataset)
    if resume_meta is not None and "dataset" in resume_meta:
        saved = resume_meta["dataset"].get("checksum")
        if saved and dataset.info.checksum and saved != dataset.info.checksum:
            raise data_lib.DatasetError(
                f"--resume: the run was trained on dataset checksum {saved[:12]}..., but "
                f"{options.dataset or 'the given dataset'} has {dataset.info.checksum[:12]}...; resume with the same data"
            )
    return dataset


def _bind_dataset(make_train: Callable, dataset) -> Callable[[Any], Trainer]:
    def make_train_on_dataset(config):
        return make_train(config, dataset)

    return make_train_on_dataset


def _dataset_meta(dataset, options: RunOptions) -> dict:
    info = dataset.info
    return {"path": options.dataset, "env_id": info.env_id, "kind": info.kind, "size": dataset.size,
            "policy": info.policy, "checksum": info.checksum,
            "random_return": info.random_return, "expert_return": info.expert_return}


def _normalized(env_id: str, returns: np.ndarray, dataset) -> np.ndarray | None:
    """D4RL-style normalized scores, or None when no reference returns are known for ``env_id``."""
    from jaxrl import data as data_lib

    try:
        return np.asarray(data_lib.normalized_score(env_id, returns, dataset.info))
    except data_lib.DatasetError:
        return None


def _add_offline_eval(rows: list[dict], results: dict, env_id: str, dataset) -> None:
    returns = np.asarray(results["return"]).mean(axis=1)
    scores = _normalized(env_id, returns, dataset)
    for r, row in enumerate(rows):
        row["episode_return"] = float(returns[r])
        if scores is not None:
            row["normalized_score"] = float(scores[r])


def _add_offline_summary(summary: dict, results: dict, runs, grid, env_id: str, dataset, options: RunOptions,
                         num_updates: int, rows: list[dict]) -> None:
    """Offline fields of summary.json: the dataset, gradient-update counts and normalized scores.

    Like CORL, two columns: the final evaluation (``normalized_score``) and the best of the logged
    evaluations during training per run (``best_normalized_score``, a few episodes each, so it is
    optimistic by construction).
    """
    summary["dataset"] = _dataset_meta(dataset, options)
    summary["updates_per_run"] = num_updates
    summary["updates_per_second"] = num_updates * len(runs) / max(summary["train_time_s"], 1e-9)
    per_run_return = np.asarray(results["return"]).mean(axis=1)
    scores = _normalized(env_id, per_run_return, dataset)
    if scores is None:
        return
    best = np.array([max([row["normalized_score"] for row in rows if row["run"] == r and "normalized_score" in row],
                         default=float(scores[r])) for r in range(len(runs))])
    for r, entry in enumerate(summary["runs"]):
        entry["normalized_score"] = float(scores[r])
        entry["best_normalized_score"] = float(best[r])
    if len(grid) == 1:
        summary["normalized_score"] = stats.summarize(scores)
        summary["best_normalized_score"] = stats.summarize(best)
    for g, group in enumerate(summary["sweep"]):
        members = [r for r, (gg, _) in enumerate(runs) if gg == g]
        group["normalized_score"] = stats.summarize(scores[members])
        group["best_normalized_score"] = stats.summarize(best[members])


def _add_reports(summary: dict, state, keys: np.ndarray, grid, runs, trainer_for) -> None:
    """``summary["runs"][r]["report"]``: the ``Trainer.report(state, key)`` of every run (host side),
    with the run's own key; one trainer per sweep point, so a report can reuse its compiled program."""
    trainers = [trainer_for(point) for point in grid]
    for r, (g, _) in enumerate(runs):
        run_state = jax.tree.map(lambda x: x[r], state)
        key = jax.random.fold_in(jnp.asarray(keys[r]), 0x4E9)
        summary["runs"][r]["report"] = trainers[g].report(run_state, key)


def _restore_state(out, init_all, keys, hp, sharding, run_meta, update=None):
    abstract = ckpt.abstract_like(jax.eval_shape(init_all, keys, hp), sharding)
    return ckpt.restore(out, abstract, expect=run_meta, update=update)


@dataclasses.dataclass
class LoadedRun:
    """A trained run folder: its config, the trainer, and the train state of every run (leading axis)."""

    config: Any
    trainer: Trainer
    state: Any
    runs: list[dict]
    update: int

    def act(self, run: int, obs: jax.Array, key: jax.Array | None = None) -> jax.Array:
        """Greedy actions of run ``run`` for a batch of raw observations."""
        state = jax.tree.map(lambda x: x[run], self.state)
        key = jax.random.PRNGKey(0) if key is None else key
        return self.trainer.act(state, obs, key)


def load_run(out: str | os.PathLike, config_cls, make_train: Callable[[Any], Trainer], algorithm: str,
             update: int | None = None, dataset: Any = None) -> LoadedRun:
    """Load the checkpoint of a run folder written by ``train_and_evaluate`` (default: the latest).

    Raises ``CheckpointError`` for a folder of another algorithm/env/config or a corrupt checkpoint.
    Runs with a sweep use the config of each run's grid point for ``act``; ``trainer`` is the first's.
    Offline runs rebuild their trainer on ``dataset`` (default: the dataset file the run recorded).
    """
    out = Path(out)
    if not (out / "config.json").exists():
        raise ckpt.CheckpointError(f"{out}: no config.json (not a jaxrl run folder)")
    saved = json.loads((out / "config.json").read_text())
    if saved.get("algorithm") != algorithm:
        raise ckpt.CheckpointError(f"{out} holds a {saved.get('algorithm')!r} run, not {algorithm!r}")
    config = _config_from_dict(config_cls, saved["config"])
    run = saved["run"]
    if "dataset" in saved:
        if dataset is None:
            from jaxrl import data as data_lib

            dataset = data_lib.load(saved["dataset"]["path"])
        make_train = _bind_dataset(make_train, dataset)
    grid = parse_sweep(config, tuple(run["sweep"]))
    seeds = [run["seed"] + s for s in range(run["num_seeds"])]
    runs = [(g, s) for g in range(len(grid)) for s in seeds]
    hp = {n: jnp.array([grid[g][n] for g, _ in runs], jnp.float32) for n in grid[0]}
    keys = jnp.stack([jax.random.PRNGKey(s) for _, s in runs])

    def init_one(key, point):
        return make_train(dataclasses.replace(config, **point)).init(key)

    run_meta = {"algorithm": algorithm, "env": saved["env"], "num_runs": len(runs),
                "config": json.dumps(saved["config"], sort_keys=True)}
    sharding = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    state, meta = _restore_state(out, jax.vmap(init_one), keys, hp, sharding, run_meta, update)
    table = [{"run": r, "seed": s, "sweep": grid[g]} for r, (g, s) in enumerate(runs)]
    return LoadedRun(config, make_train(config), state, table, int(meta["update"]))


def _rows(metrics, runs, grid, update, chunk_start, steps_per_update) -> list[dict]:
    """metrics.jsonl rows for iteration ``update`` of this chunk: one per run."""
    rows = []
    for r, (g, seed) in enumerate(runs):
        row = {"run": r, "seed": seed, "sweep": grid[g], "update": int(update)}
        if steps_per_update > 0:
            row["env_steps"] = int((update + 1) * steps_per_update)
        row.update({k: float(v[r, update - chunk_start]) for k, v in metrics.items()})
        rows.append(row)
    return rows


def _summary(algorithm, env_id, config_dict, options, grid, runs, results, rows, trainer, *, wall_time,
             compile_time, train_time, eval_time, cache_dir, out) -> dict:
    per_run_return = np.asarray(results["return"]).mean(axis=1)
    per_run = []
    for r, (g, seed) in enumerate(runs):
        entry = {
            "run": r, "seed": seed, "sweep": grid[g],
            "eval_return": per_run_return[r].tolist(),
            "eval_length": float(np.asarray(results["length"][r]).mean()),
        }
        cost_limit = config_dict.get("cost_limit")  # safe agents
        if np.asarray(results["cost"]).any() or cost_limit is not None:  # a safe agent reports cost 0 too
            entry["eval_cost"] = float(np.asarray(results["cost"][r]).mean())
        if cost_limit is not None:
            limit = grid[g].get("cost_limit", cost_limit)
            entry["eval_over_limit"] = float((np.asarray(results["cost"][r]) > limit).mean())
        if np.asarray(results["success"]).any():
            entry["eval_success"] = float(np.asarray(results["success"][r]).mean())
        per_run.append(entry)
    groups = []
    for g, point in enumerate(grid):
        values = [per_run_return[r] for r, (gg, _) in enumerate(runs) if gg == g]
        values = np.asarray(values)
        group = {"sweep": point, "eval_return": stats.summarize(values if values.ndim == 1 else values.mean(-1))}
        if values.ndim == 2:  # a vector reward: "eval_return" is the mean over objectives; here each one
            group["eval_return_per_objective"] = [stats.summarize(values[:, i]) for i in range(values.shape[1])]
        groups.append(group)
    env_steps = trainer.total_env_steps
    total_steps = env_steps * len(runs)
    device = jax.devices()[0]
    summary = {
        "algorithm": algorithm, "env": env_id, "out": str(out),
        "eval_return": groups[0]["eval_return"] if len(grid) == 1 else None,
        **({"eval_return_per_objective": groups[0]["eval_return_per_objective"]}
           if len(grid) == 1 and "eval_return_per_objective" in groups[0] else {}),
        "sweep": groups if options.sweep else [],
        "runs": per_run,
        "eval_episodes": options.eval_episodes,
        "env_steps_per_run": env_steps,
        "env_steps_total": total_steps,
        "wall_time_s": wall_time, "compile_time_s": compile_time, "train_time_s": train_time, "eval_time_s": eval_time,
        "steps_per_second": total_steps / max(train_time, 1e-9),
        "jax_version": jax.__version__, "device": f"{device.platform}:{getattr(device, 'device_kind', '')}",
        "num_devices": jax.device_count(), "python": platform.python_version(), "machine": platform.node(),
        "compilation_cache": cache_dir or None,
        "config": config_dict,
    }
    return summary


def _plot(out: Path, x: str = "env_steps", front: bool = False) -> None:
    """OUT/curves.png, and OUT/front.png for a multi-objective run (``front``); a plotting problem is
    reported, never allowed to lose a finished run."""
    try:
        from jaxrl.plotting import plot_runs

        plot_runs([out], out=out / "curves.png", x=x)
    except Exception as err:  # noqa: BLE001 - the results are already written
        print(f"warning: could not draw {out / 'curves.png'}: {err}", file=sys.stderr)
    if not front:
        return
    try:
        from jaxrl.plotting import plot_front

        plot_front(out)  # OUT/front.png: a multi-objective agent's fronts beside the true one
    except Exception as err:  # noqa: BLE001
        print(f"warning: could not draw {out / 'front.png'}: {err}", file=sys.stderr)


def _family_summary(runs: list[dict]) -> str:
    """The headline numbers of the safe, goal-conditioned and multi-objective families, averaged over
    all runs, for the final line (success rate, episode cost and the fraction over the limit,
    hypervolume ratio to the true front)."""
    parts = []
    for key, name, fmt in (("eval_success", "success", ".2f"), ("eval_cost", "cost", ".2f"),
                           ("eval_over_limit", "over limit", ".2f")):
        values = [r[key] for r in runs if key in r]
        if values:
            parts.append(f"{name} {np.mean(values):{fmt}}")
    ratios = [r["report"]["hypervolume_ratio"] for r in runs
              if isinstance(r.get("report"), dict) and r["report"].get("hypervolume_ratio") is not None]
    if ratios:
        parts.append(f"hypervolume {np.mean(ratios):.2f} of the true front")
    return (", " + ", ".join(parts)) if parts else ""


def _print_summary(summary: dict, grid) -> None:
    label = f"{summary['algorithm']} {summary['env']}"
    groups = summary["sweep"] or [{"sweep": {}, "eval_return": summary["eval_return"]}]
    print(f"\n{'sweep':<24} {'runs':>4} {'mean':>10} {'IQM':>10} {'95% CI':>23} {'std':>9}")
    for group in groups:
        s = group["eval_return"]
        ci = f"[{s['ci95'][0]:.2f}, {s['ci95'][1]:.2f}]"
        print(f"{sweep_label(group['sweep']):<24} {s['n']:>4} {s['mean']:>10.2f} {s['iqm']:>10.2f} {ci:>23} {s['std']:>9.2f}")
    best = max(groups, key=lambda g: g["eval_return"]["mean"])
    s = best["eval_return"]
    where = f" (best: {sweep_label(best['sweep'])})" if summary["sweep"] else ""
    if "updates_per_run" in summary:  # offline: gradient updates, and the normalized score when known
        work = (f"{summary['updates_per_run'] * s['n']:,} updates in {summary['train_time_s']:.1f}s "
                f"({summary['updates_per_second']:,.0f} updates/s)")
        score = summary.get("normalized_score")
        if score:
            label += f": normalized score {score['mean']:.1f} (IQM {score['iqm']:.1f})"
        label += ","
    else:
        work = (f"{summary['env_steps_total']:,} env steps in {summary['train_time_s']:.1f}s "
                f"({summary['steps_per_second']:,.0f} steps/s)")
        label += ":"
    family = _family_summary(summary["runs"])
    print(f"{label} eval return {s['mean']:.2f} (IQM {s['iqm']:.2f}, 95% CI [{s['ci95'][0]:.2f}, {s['ci95'][1]:.2f}]) "
          f"over {s['n']} runs{where}{family} | {work}, compile {summary['compile_time_s']:.1f}s, "
          f"wall {summary['wall_time_s']:.1f}s | {summary['out']}", flush=True)


def main(config_cls, make_train: Callable[..., Trainer], algorithm: str, argv: list[str] | None = None,
         offline: bool = False) -> dict | None:
    """Entry point of every agent file: parse flags, train, evaluate, write results.

    Offline agents pass ``offline=True``: their ``make_train(config, dataset)`` gets the ``--dataset`` file.
    """
    try:
        config, options = parse_args(config_cls, argv, algorithm)
        return train_and_evaluate(config, make_train, options, algorithm, offline=offline)
    except (ConfigError, ckpt.CheckpointError) as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    except KeyboardInterrupt:
        out = locals().get("options") and (options.out or options.resume)
        if out and ckpt.latest_step(out) is not None:
            print(f"\ninterrupted; continue with: --resume {out}", file=sys.stderr)
        raise SystemExit(130) from None
