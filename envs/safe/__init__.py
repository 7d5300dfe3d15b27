"""Safe-RL envs (constrained MDPs): scalar reward, per-step cost in ``info["cost"]``.

``REGISTRY`` maps each public id to a factory ``(**kwargs) -> gymnax Environment``.
"""
REGISTRY: dict = {}
