"""Goal-conditioned behaviour cloning (GCBC), offline, as in OGBench (Park et al. 2025, "OGBench:
Benchmarking Offline Goal-Conditioned RL", ICLR, Sec. 6; GCBC after Ghosh et al. 2021, "Learning to
Reach Goals via Iterated Supervised Learning", and Lynch et al. 2019, "Learning Latent Plans from Play").

Hindsight relabeling turns every trajectory into demonstrations of reaching its own future states:
for a dataset transition (s, a) the goal g is a future state of the same trajectory, uniform between
the next state and the trajectory's end (``jaxrl.gc_data``; OGBench's ``actor_p_trajgoal = 1``,
``actor_geom_sample = False``), and the policy maximizes the likelihood of a (Ghosh et al. 2021, eq. 2;
OGBench ``impls/agents/gcbc.py``):

    L_π = −E_{(s, a, g)} [ log π(a | s, g) ],

with π a Gaussian with a learned mean and constant standard deviation 1 (OGBench's ``const_std``),
so the loss is half the squared error of the mean plus a constant; evaluation takes the mean, clipped
to the action box.

Defaults: OGBench's GCBC (``impls/agents/gcbc.py`` ``get_config``): Adam lr 3e-4, batch 1024, three
hidden layers of 512 GELU units, the goal mixture above; OGBench trains 1M steps.

Evaluation (the headline metric, the CLI's ``eval_success``): on envs with evaluation tasks
(``EnvParams.task_id``, the point maze's five tasks per layout) episode i runs task (i mod 5) + 1;
``report`` gives the success rate per task (10 episodes each) and its mean in ``summary.json``.

Measured at a larger budget (CPU, shared and loaded; 2 seeds, 10,000 updates of batch 256, two hidden
layers of 128 units, lr 1e-3; 2e5-transition datasets from ``scripts/make_dataset.py``, seed 0;
success over 50 episodes per seed, 10 per task), GCBC / GCIQL:

* PointMaze-UMaze-v0 navigate 0.04 / 0.83; stitch 1.00 / 0.94;
* PointMaze-Medium-v0 navigate 0.14 / 0.25; stitch 0.62 / 0.36.
  (GCBC took 45-50 s per run for both seeds under a load of about 8 on 2 cores).

Run:  python scripts/make_dataset.py PointMaze-Open-v0 --kind navigate
      python agents/goal_conditioned/gcbc.py --env PointMaze-Open-v0 --dataset datasets/PointMaze-Open-v0-navigate.npz
"""
from __future__ import annotations

import dataclasses
from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax.linen.initializers import variance_scaling

from jaxrl import data as data_lib
from jaxrl import envs, gc_data
from jaxrl.config import require_positive, require_unit_interval
from jaxrl.trainer import Trainer

REPORT_EPISODES_PER_TASK = 10


@dataclasses.dataclass(frozen=True)
class Config:
    env: str = "PointMaze-Open-v0"
    """Goal-conditioned env id the dataset was collected on (dict observations, Box actions)."""
    num_updates: int = 1_000_000
    """Gradient steps per run (OGBench: 1M)."""
    lr: float = 3e-4
    """Adam learning rate (OGBench: 3e-4)."""
    batch_size: int = 1024
    """Transitions per gradient step (OGBench: 1024)."""
    hidden_size: int = 512
    """Width of every hidden layer (OGBench: 512)."""
    num_layers: int = 3
    """Hidden layers of the policy (OGBench: 3)."""
    gamma: float = 0.99
    """Discount of geometric goal offsets (used only with actor_geom_sample; OGBench: 0.99)."""
    actor_p_curgoal: float = 0.0
    """Probability that a goal is the current state (OGBench: 0)."""
    actor_p_trajgoal: float = 1.0
    """Probability that a goal is a future state of the same trajectory (OGBench: 1)."""
    actor_p_randomgoal: float = 0.0
    """Probability that a goal is a random dataset state (OGBench: 0)."""
    actor_geom_sample: bool = False
    """Future goals at a Geometric(1 − γ) offset (True) or uniform up to the trajectory's end (OGBench: False)."""


class MLP(nn.Module):
    """OGBench's MLP: GELU hidden layers and a linear output."""

    out_dim: int
    hidden_size: int = 512
    num_layers: int = 3

    @nn.compact
    def __call__(self, x):
        init = variance_scaling(1.0, "fan_avg", "uniform")
        for _ in range(self.num_layers):
            x = nn.gelu(nn.Dense(self.hidden_size, kernel_init=init)(x))
        return nn.Dense(self.out_dim, kernel_init=init)(x)


class Actor(nn.Module):
    """Mean of the goal-conditioned Gaussian policy π(a | s, g) (standard deviation 1)."""

    action_dim: int
    hidden_size: int = 512
    num_layers: int = 3

    @nn.compact
    def __call__(self, obs, goal):
        return MLP(self.action_dim, self.hidden_size, self.num_layers)(jnp.concatenate([obs, goal], axis=-1))


def bc_loss(mean, action):
    """−E[log π(a | s, g)] for π = N(mean, I) (Ghosh et al. 2021, eq. 2; OGBench's GCBC actor loss)."""
    log_prob = (-0.5 * (action - mean) ** 2 - 0.5 * jnp.log(2.0 * jnp.pi)).sum(-1)
    return -log_prob.mean()


class TrainState(NamedTuple):
    params: dict
    opt: optax.OptState
    key: jax.Array


def goal_mixture(config: Config) -> gc_data.GoalMixture:
    return gc_data.GoalMixture(config.actor_p_curgoal, config.actor_p_trajgoal, config.actor_p_randomgoal,
                               config.actor_geom_sample)


def validate(config: Config) -> None:
    require_positive(config, "num_updates", "lr", "batch_size", "hidden_size", "num_layers")
    require_unit_interval(config, "gamma")
    gc_data.check_mixture("actor", goal_mixture(config))


def make_train(config: Config, dataset: data_lib.Dataset, env=None, env_params=None) -> Trainer:
    """Build the GCBC trainer on ``dataset`` (a goal-conditioned dataset of ``config.env``)."""
    validate(config)
    if env is None:
        env, env_params = envs.make(config.env)
    env_params = env.default_params if env_params is None else env_params
    gc_data.check_dataset(dataset, config.env, env, env_params, "GCBC")
    envs.require_action_space(config.env, env, env_params, "continuous", "GCBC")
    data = gc_data.prepare(dataset)
    low, high = envs.action_bounds(env, env_params)
    action_dim = int(np.prod(low.shape))
    obs_dim = int(np.prod(dataset.observations.shape[1:]))
    mixture = goal_mixture(config)
    actor = Actor(action_dim, config.hidden_size, config.num_layers)
    tx = optax.adam(config.lr)

    def to_unit(action):
        return jnp.clip((action - 0.5 * (high + low)) / (0.5 * (high - low)), -1.0, 1.0)

    def init(key) -> TrainState:
        key, k_actor = jax.random.split(key)
        obs = jnp.zeros((1, obs_dim))
        params = actor.init(k_actor, obs, obs)
        return TrainState(params, tx.init(params), key)

    def update(state: TrainState, _iteration, data: data_lib.Dataset):
        key, sample_key = jax.random.split(state.key)
        # the value goals are unused: GCBC draws only actor goals (the same mixture twice is cheap)
        batch = gc_data.sample_batch(sample_key, data, config.batch_size, mixture, mixture, config.gamma)
        action = to_unit(batch["actions"])

        def loss_fn(params):
            mean = actor.apply(params, batch["observations"], batch["actor_goals"])
            return bc_loss(mean, action), mean

        (loss, mean), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
        updates, opt = tx.update(grads, state.opt, state.params)
        params = optax.apply_updates(state.params, updates)
        return TrainState(params, opt, key), {"actor_loss": loss,
                                              "mse": ((jnp.clip(mean, -1.0, 1.0) - action) ** 2).mean()}

    def act(state: TrainState, obs, key):
        """The policy mean for the goal in the observation, clipped and rescaled to the action box."""
        o = obs["observation"].reshape(obs["observation"].shape[0], -1)
        g = obs["desired_goal"].reshape(obs["desired_goal"].shape[0], -1)
        mean = jnp.clip(actor.apply(state.params, o, g), -1.0, 1.0)
        return 0.5 * (high + low) + 0.5 * (high - low) * mean

    tasks = gc_data.has_eval_tasks(env_params)

    def evaluate_tasks(state: TrainState, key, num_episodes: int) -> dict:
        return gc_data.evaluate_on_tasks(env, env_params, lambda o, k: act(state, o, k), key, num_episodes)

    per_task_success = jax.jit(lambda state, key: gc_data.task_success(
        env, env_params, lambda o, k: act(state, o, k), key, REPORT_EPISODES_PER_TASK))

    def report(state: TrainState, key) -> dict:
        """Success rate of the policy on each of the five evaluation tasks (10 episodes each)."""
        per_task = np.asarray(per_task_success(state, key))
        return {"task_success": [float(x) for x in per_task], "success": float(per_task.mean()),
                "episodes_per_task": REPORT_EPISODES_PER_TASK}

    return Trainer(init=init, update=update, act=act, num_updates=config.num_updates, env_steps_per_update=0,
                   env=env, env_params=env_params, data=data, evaluate=evaluate_tasks if tasks else None,
                   report=report if tasks else None)


if __name__ == "__main__":
    from jaxrl.cli import main

    main(Config, make_train, algorithm="gcbc", offline=True)
