"""Multi-objective envs: ``reward`` is a vector of shape ``(num_objectives,)``; each env exposes
``num_objectives`` and, where known, ``pareto_front(gamma)`` (computed from its own dynamics).

``REGISTRY`` maps each public id to a factory ``(**kwargs) -> gymnax Environment``. Each env
behaves step for step like the MO-Gymnasium 1.3.2 env named in ``MO_GYMNASIUM_IDS``:

>>> env, params = jaxrl.envs.make("DeepSeaTreasure-v0")            # convex map, Yang et al. 2019
>>> env, params = jaxrl.envs.make("DeepSeaTreasureConcave-v0")     # concave map, Vamplew et al. 2011
>>> env, params = jaxrl.envs.make("FruitTree-v0", depth=7)         # depth 5, 6 (default) or 7
>>> env, params = jaxrl.envs.make("ResourceGathering-v0")          # stochastic enemies, 3 objectives
>>> env, params = jaxrl.envs.make("FourRoom-v0")                   # collect shapes, reach the goal
>>> env, params = jaxrl.envs.make("MOMountainCar-v0")              # [time, reverse, forward]
>>> env, params = jaxrl.envs.make("MOMountainCar-3d-v0")           # also -timemove-v0, -timespeed-v0
>>> env, params = jaxrl.envs.make("MOMountainCarContinuous-v0")    # Box actions, [time, fuel]

``jaxrl.mo_wrappers.LinearScalarization`` turns any of them into a single-objective env.
"""
from envs.multi_objective.deep_sea_treasure import DeepSeaTreasure
from envs.multi_objective.four_room import FourRoom
from envs.multi_objective.fruit_tree import FruitTree
from envs.multi_objective.mo_mountain_car import MOMountainCar
from envs.multi_objective.mo_mountain_car_continuous import MOMountainCarContinuous
from envs.multi_objective.resource_gathering import ResourceGathering

REGISTRY: dict = {
    "DeepSeaTreasure-v0": lambda **kw: DeepSeaTreasure(**{"map_name": "convex", **kw}),
    "DeepSeaTreasureConcave-v0": lambda **kw: DeepSeaTreasure(**{"map_name": "concave", **kw}),
    "FruitTree-v0": lambda **kw: FruitTree(**kw),
    "ResourceGathering-v0": lambda **kw: ResourceGathering(**kw),
    "FourRoom-v0": lambda **kw: FourRoom(**kw),
    "MOMountainCar-v0": lambda **kw: MOMountainCar(**{"variant": "default", **kw}),
    "MOMountainCar-3d-v0": lambda **kw: MOMountainCar(**{"variant": "3d", **kw}),
    "MOMountainCar-timemove-v0": lambda **kw: MOMountainCar(**{"variant": "timemove", **kw}),
    "MOMountainCar-timespeed-v0": lambda **kw: MOMountainCar(**{"variant": "timespeed", **kw}),
    "MOMountainCarContinuous-v0": lambda **kw: MOMountainCarContinuous(**kw),
}

# our id -> (MO-Gymnasium id, its make() kwargs) that it reproduces step for step
MO_GYMNASIUM_IDS = {
    "DeepSeaTreasure-v0": ("deep-sea-treasure-v0", {}),
    "DeepSeaTreasureConcave-v0": ("deep-sea-treasure-concave-v0", {}),
    "FruitTree-v0": ("fruit-tree-v0", {}),
    "ResourceGathering-v0": ("resource-gathering-v0", {}),
    "FourRoom-v0": ("four-room-v0", {}),
    "MOMountainCar-v0": ("mo-mountaincar-v0", {}),
    "MOMountainCar-3d-v0": ("mo-mountaincar-3d-v0", {}),
    "MOMountainCar-timemove-v0": ("mo-mountaincar-timemove-v0", {}),
    "MOMountainCar-timespeed-v0": ("mo-mountaincar-timespeed-v0", {}),
    "MOMountainCarContinuous-v0": ("mo-mountaincarcontinuous-v0", {}),
}

__all__ = ["REGISTRY", "MO_GYMNASIUM_IDS", "DeepSeaTreasure", "FruitTree", "ResourceGathering", "FourRoom",
           "MOMountainCar", "MOMountainCarContinuous"]
