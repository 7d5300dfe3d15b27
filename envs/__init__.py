"""Environments gymnax does not ship, one env per file, grouped like ``agents/``.

Each module imports only jax and gymnax. ``REGISTRY`` maps a public id to a factory
``(**constructor_kwargs) -> gymnax Environment``; ``jaxrl.envs.make`` serves these ids
next to gymnax's own.
"""
from envs.probes import PROBE_IDS, ProbeEnv


def _probe(kind: str, continuous: bool):
    return lambda **kw: ProbeEnv(kind=kind, **{"continuous": continuous, **kw})


REGISTRY = {}
for _kind, _id in PROBE_IDS.items():
    REGISTRY[_id] = _probe(_kind, False)
    REGISTRY[_id + "-Continuous"] = _probe(_kind, True)

__all__ = ["REGISTRY"]
