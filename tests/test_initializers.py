"""jaxrl.initializers.orthogonal: flax's matrix from the same key, without LAPACK, under vmap."""
import jax
import numpy as np
import pytest
from flax.linen.initializers import orthogonal as flax_orthogonal

from jaxrl.initializers import orthogonal

SHAPES = [(7, 4), (4, 7), (5, 5), (3, 2, 6), (64, 64), (4, 1)]


@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_matches_flax_orthogonal_for_the_same_key(shape):
    key = jax.random.PRNGKey(3)
    ours = np.asarray(orthogonal(1.7)(key, shape))
    theirs = np.asarray(flax_orthogonal(1.7)(key, shape))  # unbatched: one LAPACK QR, no deadlock
    assert ours.shape == theirs.shape == shape
    np.testing.assert_allclose(ours, theirs, atol=2e-5)


@pytest.mark.parametrize("shape", [(7, 4), (4, 7)], ids=str)
def test_vmapped_over_seeds_gives_orthogonal_matrices(shape):
    keys = jax.random.split(jax.random.PRNGKey(0), 3)
    w = np.asarray(jax.vmap(lambda k: orthogonal(2.0)(k, shape))(keys), np.float64)
    gram = w.transpose(0, 2, 1) @ w if shape[0] >= shape[1] else w @ w.transpose(0, 2, 1)
    np.testing.assert_allclose(gram, np.broadcast_to(4 * np.eye(min(shape)), gram.shape), atol=1e-5)
    assert not np.allclose(w[0], w[1])  # one matrix per key


def test_many_independent_vmapped_layers_do_not_hang():
    """The pattern that deadlocked flax's initializer on 2 cores: several independent layers in one
    program, each vmapped over seeds. Ours has no LAPACK call, so this simply runs."""

    def init(key):
        return [orthogonal(1.0)(k, (65 + i, 65)) for i, k in enumerate(jax.random.split(key, 6))]

    out = jax.jit(jax.vmap(init))(jax.random.split(jax.random.PRNGKey(1), 8))
    assert [o.shape for o in out] == [(8, 65 + i, 65) for i in range(6)]


def test_rank_one_shape_is_a_clear_error():
    with pytest.raises(ValueError, match="rank >= 2"):
        orthogonal()(jax.random.PRNGKey(0), (5,))
