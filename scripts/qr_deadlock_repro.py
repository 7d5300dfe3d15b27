"""Reproduce the jaxlib CPU deadlock that made jaxrl write its own orthogonal initializer.

    python scripts/qr_deadlock_repro.py [--seconds 60]

The script runs one small program in a child process with each initializer: flax's
``orthogonal`` and ``jaxrl.initializers.orthogonal``. The program initializes six independent
layers, vmapped over 8 seeds, and repeats that with a new width each round. With flax's
initializer the vmapped QR is one batched LAPACK call per layer. jaxlib 0.10.2 splits that call
over XLA's CPU thread pool and waits for the pieces (``jax::ParallelBatchMap``). When every pool
thread is waiting like this, no thread is left to run the pieces. On a 2-core machine the child
hangs at 0% CPU, usually in round 1 or 2. gdb then shows both ``tf_XLAEigen`` threads in
``ParallelBatchMap`` -> ``BlockingCounter::Wait``. Our initializer finishes every round.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys

CHILD = """
import sys, time, jax
from flax.linen.initializers import orthogonal as flax_orthogonal
from jaxrl.initializers import orthogonal as jaxrl_orthogonal
orthogonal = {"flax": flax_orthogonal, "jaxrl": jaxrl_orthogonal}[sys.argv[1]]
for round_ in range(int(sys.argv[2])):
    width = 64 + round_
    def init(key):
        return [orthogonal(1.0)(k, (width + i, width)) for i, k in enumerate(jax.random.split(key, 6))]
    start = time.perf_counter()
    jax.block_until_ready(jax.jit(jax.vmap(init))(jax.random.split(jax.random.PRNGKey(round_), 8)))
    print(f"  round {round_}: {time.perf_counter() - start:.2f} s", flush=True)
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="time limit per initializer")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {**os.environ, "PYTHONPATH": root + os.pathsep + os.environ.get("PYTHONPATH", "")}
    print(f"cpu cores: {os.cpu_count()}")
    for name in ("flax", "jaxrl"):
        print(f"{name} orthogonal, {args.rounds} rounds of 6 layers x 8 seeds:", flush=True)
        try:
            subprocess.run([sys.executable, "-c", CHILD, name, str(args.rounds)], env=env, timeout=args.seconds, check=True)
            print("  finished")
        except subprocess.TimeoutExpired:
            print(f"  HUNG: no progress within {args.seconds:.0f} s (killed)")


if __name__ == "__main__":
    main()
