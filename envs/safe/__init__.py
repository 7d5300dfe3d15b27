"""Safe-RL envs (constrained MDPs): scalar reward, per-step cost in ``info["cost"]``.

``REGISTRY`` maps each public id to a factory ``(**kwargs) -> gymnax Environment``:

* ``TabularCMDP-v0``: a seeded random tabular CMDP (``tabular_cmdp.py``), solvable exactly with
  ``jaxrl.cmdp``; ``TabularCMDP-Geometric-v0`` also terminates with probability 1 − γ per step, so
  its undiscounted episode return/cost estimate the discounted values of the LP.
* ``SafeCartPole-v0``: CartPole with a cost outside a central band or above a speed limit, 200-step
  episodes; ``SafeCartPole-v1``: the same with 500-step episodes (``safe_cartpole.py``).
"""
from envs.safe.safe_cartpole import SafeCartPole
from envs.safe.tabular_cmdp import TabularCMDP


def _geometric_cmdp(**kw):
    return TabularCMDP(**{"geometric": True, **kw})


REGISTRY: dict = {
    "TabularCMDP-v0": TabularCMDP,
    "TabularCMDP-Geometric-v0": _geometric_cmdp,
    "SafeCartPole-v0": lambda **kw: SafeCartPole(**{"max_steps_in_episode": 200, **kw}),
    "SafeCartPole-v1": lambda **kw: SafeCartPole(**{"max_steps_in_episode": 500, **kw}),
}
