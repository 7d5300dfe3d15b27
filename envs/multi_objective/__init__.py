"""Multi-objective envs: ``reward`` is a vector of shape ``(num_objectives,)``; each env exposes
``num_objectives`` and, where known, ``pareto_front(gamma)`` (computed from its own dynamics).

``REGISTRY`` maps each public id to a factory ``(**kwargs) -> gymnax Environment``. Each env
behaves step for step like the MO-Gymnasium 1.3.2 env named in ``MO_GYMNASIUM_IDS``:

>>> env, params = jaxrl.envs.make("DeepSeaTreasure-v0")            # convex map, Yang et al. 2019
>>> env, params = jaxrl.envs.make("DeepSeaTreasureConcave-v0")     # concave map, Vamplew et al. 2011
>>> env, params = jaxrl.envs.make("FruitTree-v0", depth=7)         # depth 5, 6 (default) or 7

``jaxrl.mo_wrappers.LinearScalarization`` turns any of them into a single-objective env.
"""
from envs.multi_objective.deep_sea_treasure import DeepSeaTreasure
from envs.multi_objective.fruit_tree import FruitTree

REGISTRY: dict = {
    "DeepSeaTreasure-v0": lambda **kw: DeepSeaTreasure(**{"map_name": "convex", **kw}),
    "DeepSeaTreasureConcave-v0": lambda **kw: DeepSeaTreasure(**{"map_name": "concave", **kw}),
    "FruitTree-v0": lambda **kw: FruitTree(**kw),
}

# our id -> (MO-Gymnasium id, its make() kwargs) that it reproduces step for step
MO_GYMNASIUM_IDS = {
    "DeepSeaTreasure-v0": ("deep-sea-treasure-v0", {}),
    "DeepSeaTreasureConcave-v0": ("deep-sea-treasure-concave-v0", {}),
    "FruitTree-v0": ("fruit-tree-v0", {}),
}

__all__ = ["REGISTRY", "MO_GYMNASIUM_IDS", "DeepSeaTreasure", "FruitTree"]
