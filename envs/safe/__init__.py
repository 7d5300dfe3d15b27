"""Safe-RL envs (constrained MDPs): scalar reward, per-step cost in ``info["cost"]``.

``REGISTRY`` maps each public id to a factory ``(**kwargs) -> gymnax Environment``:

* ``TabularCMDP-v0``: a seeded random tabular CMDP (``tabular_cmdp.py``), solvable exactly with
  ``jaxrl.cmdp``; ``TabularCMDP-Geometric-v0`` also terminates with probability 1 − γ per step, so
  its undiscounted episode return/cost estimate the discounted values of the LP.
* ``SafeCartPole-v0``: CartPole with a cost outside a central band or above a speed limit, 200-step
  episodes; ``SafeCartPole-v1``: the same with 500-step episodes (``safe_cartpole.py``).
* ``SafePendulum-v0``: gymnax's Pendulum-v1 with Sauté RL's cost for the pole in a wedge over the top,
  mostly on the positive-θ side (θ ∈ [−25°, 75°]), 200-step episodes, continuous torque
  (``safe_pendulum.py``).
* ``PointGoal0-v0``, ``PointGoal1-v0``, ``PointGoal2-v0``: Safety Gym's Point-Goal task re-implemented
  in JAX (a point robot, a goal that respawns, hazards, vases, lidar observations, a new layout each
  episode, 1000-step episodes; Safety-Gymnasium's ``SafetyPointGoal{0,1,2}``), continuous actions
  (``point_goal.py``).
"""
from envs.safe.point_goal import PointGoal
from envs.safe.safe_cartpole import SafeCartPole
from envs.safe.safe_pendulum import SafePendulum
from envs.safe.tabular_cmdp import TabularCMDP


def _geometric_cmdp(**kw):
    return TabularCMDP(**{"geometric": True, **kw})


REGISTRY: dict = {
    "TabularCMDP-v0": TabularCMDP,
    "TabularCMDP-Geometric-v0": _geometric_cmdp,
    "SafeCartPole-v0": lambda **kw: SafeCartPole(**{"max_steps_in_episode": 200, **kw}),
    "SafeCartPole-v1": lambda **kw: SafeCartPole(**{"max_steps_in_episode": 500, **kw}),
    "SafePendulum-v0": SafePendulum,
    "PointGoal0-v0": lambda **kw: PointGoal(**{"level": 0, **kw}),
    "PointGoal1-v0": lambda **kw: PointGoal(**{"level": 1, **kw}),
    "PointGoal2-v0": lambda **kw: PointGoal(**{"level": 2, **kw}),
}
