"""Envs for the model-based family that gymnax lacks (the tasks PETS and MBPO report on, and the
distracting-dimensions variants of VaGraM).

``REGISTRY`` maps each public id to a factory ``(**kwargs) -> gymnax Environment``.
"""
from envs.model_based import distractors
from envs.model_based.cartpole_swingup import CartPoleSwingUp

REGISTRY: dict = {"CartPoleSwingUp-v0": CartPoleSwingUp, **distractors.REGISTRY}
