"""Network initializers that are safe to ``vmap`` over seeds on every backend.

``orthogonal`` replaces ``flax.linen.initializers.orthogonal`` (= ``jax.nn.initializers.orthogonal``)
in our agents. Flax's draws a Gaussian matrix and takes its QR decomposition with LAPACK. Under
``vmap`` the QR becomes one batched LAPACK call. jaxlib 0.10.2 splits a batched call over XLA's CPU
thread pool (``jax::ParallelBatchMap``) and then waits for the pieces. A network has several
independent layers, so XLA can run several of these calls at the same time. When every pool
thread is inside one of them, each thread waits for pieces that no free thread can run. The
process then hangs at 0% CPU. On a 2-core machine two concurrent QRs are enough. We saw this with
8 seeds of PPO in the quick-start notebook under CI. ``scripts/qr_deadlock_repro.py`` shows it in a
few seconds. Our version orthonormalizes the columns by Gram-Schmidt in plain ``jnp``, so there is
no LAPACK call and no nested thread pool.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def orthogonal(scale: float = 1.0):
    """Orthogonal kernel initializer (Saxe et al. 2014, "Exact solutions to the nonlinear dynamics
    of learning in deep linear networks"), for kernels shaped ``(*fan_in_dims, fan_out)``.

    This computes the same matrix as ``flax.linen.initializers.orthogonal(scale)`` from the same key,
    up to float rounding. Flax takes the QR of a Gaussian matrix ``A`` and flips the signs of ``Q``'s
    columns so that ``R`` has a positive diagonal. The Q of that QR is unique, and Gram-Schmidt on
    ``A``'s columns produces exactly that Q. ``tests/test_initializers.py`` checks the match, and it
    checks that the initializer runs under ``vmap``.
    """

    def init(key, shape, dtype=jnp.float32):
        if len(shape) < 2:
            raise ValueError(f"orthogonal initializer needs a kernel of rank >= 2, got shape {shape}")
        fan_in, fan_out = int(np.prod(shape[:-1])), int(shape[-1])
        rows, cols = max(fan_in, fan_out), min(fan_in, fan_out)
        a = jax.random.normal(key, (rows, cols), dtype)
        q = _gram_schmidt(a.astype(jnp.float32))
        q = q if fan_in >= fan_out else q.T
        return (scale * q).reshape(shape).astype(dtype)

    return init


def _gram_schmidt(a: jax.Array) -> jax.Array:
    """Orthonormal columns spanning ``a``'s columns, in order (the Q of ``a``'s QR with R_jj > 0).

    Each column is orthogonalized twice against the previous ones. The second pass removes the
    error left by the first, so the result is orthogonal to float32 precision.
    """

    def column(j, q):
        v = a[:, j]
        for _ in range(2):
            v = v - q @ (q.T @ v)
        return q.at[:, j].set(v / jnp.linalg.norm(v))

    return jax.lax.fori_loop(0, a.shape[1], column, jnp.zeros_like(a))
