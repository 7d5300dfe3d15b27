"""Goal-conditioned envs: observations carry ``observation``, ``achieved_goal`` and ``desired_goal``;
each env has a pure ``compute_reward(achieved_goal, desired_goal)`` and reports ``info["success"]``.

``REGISTRY`` maps each public id to a factory ``(**kwargs) -> gymnax Environment``.

* ``BitFlipping-v0``: the HER paper's bit-flipping task with n = 10 bits; ``n`` is a constructor
  override (``jaxrl.envs.make("BitFlipping-v0", n=20)``).
* ``BitFlipping-<n>-v0`` for the n of the HER paper's Fig. 1 sweep (5, 8, 10, 15, 20, 30, 40, 50),
  so that a command line (``--env BitFlipping-20-v0``) can pick n.
* ``FourRoomsGoal-v0``: the four-rooms gridworld with a goal cell sampled at every reset.
* ``PointMaze-{Open,UMaze,Medium,Large,Giant}-v0``: a velocity-controlled point in the D4RL/OGBench
  maze layouts; ``layout`` is a constructor override (``make("PointMaze-Open-v0", layout="large")``).
"""
from envs.goal_conditioned.bit_flipping import BitFlipping
from envs.goal_conditioned.four_rooms_goal import FourRoomsGoal
from envs.goal_conditioned.point_maze import ENV_IDS as POINT_MAZE_IDS
from envs.goal_conditioned.point_maze import PointMaze

BIT_FLIPPING_SIZES = (5, 8, 10, 15, 20, 30, 40, 50)


def _point_maze(default_layout: str):
    def factory(layout: str = default_layout, **kwargs):
        return PointMaze(layout=layout, **kwargs)

    return factory


def _bit_flipping(default_n: int):
    def factory(n: int = default_n, **kwargs):
        return BitFlipping(n=n, **kwargs)

    return factory


REGISTRY: dict = {"BitFlipping-v0": _bit_flipping(10)}
REGISTRY.update({f"BitFlipping-{n}-v0": _bit_flipping(n) for n in BIT_FLIPPING_SIZES})
REGISTRY["FourRoomsGoal-v0"] = FourRoomsGoal
REGISTRY.update({env_id: _point_maze(layout) for layout, env_id in POINT_MAZE_IDS.items()})
