"""Environments gymnax does not ship, one env per file, grouped like ``agents/``.

Each module imports only jax and gymnax. ``REGISTRY`` maps a public id to a factory
``(**constructor_kwargs) -> gymnax Environment``; ``jaxrl.envs.make`` serves these ids
next to gymnax's own.
"""
from envs.probes import PROBE_IDS, ProbeEnv

REGISTRY = {env_id: (lambda kind=kind, **kw: ProbeEnv(kind=kind, **kw)) for kind, env_id in PROBE_IDS.items()}

__all__ = ["REGISTRY"]
