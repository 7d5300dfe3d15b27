"""Multi-objective envs: ``reward`` is a vector of shape ``(num_objectives,)``; each env exposes
``num_objectives`` and, where known, ``pareto_front(gamma)``.

``REGISTRY`` maps each public id to a factory ``(**kwargs) -> gymnax Environment``.
"""
REGISTRY: dict = {}
