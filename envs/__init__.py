"""Environments gymnax does not ship, one env per file, grouped like ``agents/``.

Each module imports only jax and gymnax. ``REGISTRY`` maps a public id to a factory
``(**constructor_kwargs) -> gymnax Environment``; ``jaxrl.envs.make`` serves these ids
next to gymnax's own.
"""
from envs import goal_conditioned, model_based, multi_objective, safe
from envs.probes import PROBE_IDS, ProbeEnv


def _probe(kind: str, continuous: bool):
    return lambda **kw: ProbeEnv(kind=kind, **{"continuous": continuous, **kw})


REGISTRY = {}
for _kind, _id in PROBE_IDS.items():
    REGISTRY[_id] = _probe(_kind, False)
    REGISTRY[_id + "-Continuous"] = _probe(_kind, True)

# Each family package keeps its own registry, so adding an env touches only its family folder.
for _family in (safe, goal_conditioned, multi_objective, model_based):
    _clash = REGISTRY.keys() & _family.REGISTRY.keys()
    if _clash:
        raise RuntimeError(f"env ids registered twice: {sorted(_clash)}")
    REGISTRY.update(_family.REGISTRY)

__all__ = ["REGISTRY"]
