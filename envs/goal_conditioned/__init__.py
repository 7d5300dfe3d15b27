"""Goal-conditioned envs: observations carry ``observation``, ``achieved_goal`` and ``desired_goal``;
each env has a pure ``compute_reward(achieved_goal, desired_goal)`` and reports ``info["success"]``.

``REGISTRY`` maps each public id to a factory ``(**kwargs) -> gymnax Environment``.
"""
REGISTRY: dict = {}
