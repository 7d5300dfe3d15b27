"""Goal-conditioned Implicit V-Learning (GCIVL), offline, as in OGBench (Park et al. 2025, "OGBench:
Benchmarking Offline Goal-Conditioned RL", ICLR, Sec. 6 and Appendix E); the value-only IQL variant of
HIQL's flat policy (Park et al. 2023, "HIQL: Offline Goal-Conditioned RL with Latent States as Actions",
NeurIPS, Sec. 4, eq. 4 and 6; IQL: Kostrikov, Nair & Levine 2022, ICLR).

IQL without a Q function: the in-sample maximum is taken by an expectile regression of V(s, g) on the
one-sample target r + γ m V̄(s', g) (V̄ the target network), so only a state-goal value is learned and
the actor is extracted from its one-step advantage. Rewards and masks are the goal-reaching reward of
``jaxrl.gc_data`` (0 and the end of the bootstrap at the goal, −1 otherwise, OGBench's ``gc_negative``).
Per gradient step, one batch with two goals per transition (``jaxrl.gc_data.sample_batch``): value goals
(current state 0.2 / future state of the same trajectory at a Geometric(1 − γ) offset 0.5 / random state
0.3) and actor goals (future state, uniform up to the trajectory's end, 1.0). Two losses, summed and
minimized with one Adam step (OGBench's ``total_loss``), then a Polyak update of the target values:

* value (twin V_1, V_2; HIQL eq. 4 with OGBench's weighting, ``impls/agents/gcivl.py``):
  L_V = Σ_i E[ |τ − 1(A_t < 0)| (y_i − V_i(s, g))² ],  y_i = r + γ m V̄_i(s', g),
  where the expectile weight is decided by the *target's* advantage
  A_t = r + γ m min_i V̄_i(s', g) − (V̄_1(s, g) + V̄_2(s, g)) / 2, not by the residual itself;
* actor, AWR (HIQL eq. 6, IQL eq. 7) with the actor goals g_a and V = (V_1 + V_2) / 2:
  L_π = −E[ min(exp(α A), 100) log π(a | s, g_a) ],  A = r_a + γ m_a V(s', g_a) − V(s, g_a),
  r_a, m_a the reward and mask of (s, g_a). (OGBench's GCIVL code drops the reward and discount,
  A = V(s', g_a) − V(s, g_a); the two differ by r_a + (γ − 1) V(s', g_a), nearly a constant −1 +
  small, which the exponential turns into a common scale of the weights.)

The policy is a Gaussian with a learned (tanh-free) mean and a constant standard deviation 1 (OGBench's
``const_std``); evaluation takes the mean, clipped to the action box. Networks are MLPs with GELU and
layer normalization after every hidden activation of the values (OGBench's ``layer_norm=True``).

Defaults: OGBench's GCIVL (``impls/agents/gcivl.py`` ``get_config``; Table 9 of the OGBench paper):
Adam lr 3e-4, batch 1024, three hidden layers of 512 units for actor and values, layer norm, γ 0.99,
τ 0.005, expectile 0.9, AWR temperature α 10, the goal mixtures above; OGBench trains 1M steps; success
is OGBench's index equality (``success_radius`` 0). The tests depart from these only in budget, as
``gciql.py`` does (1,500 updates of batch 256, 64x64 networks, lr 1e-3, τ 0.02). Measured there, on a
3e4-transition PointMaze-Open-v0 navigate dataset (``tests/test_gcivl.py``), 4 seeds, 10 episodes per
task: success 1.00 over seeds 0-3 and 1.00 over seeds 4-7 (0.995 at 3,000 updates); a uniform-random
policy 0.00; GCBC 0.00 and GCIQL 0.79 (3,000 updates) on the same data. At ``gciql.py``'s larger budget
(2 seeds, 10,000 updates of batch 256, two hidden layers of 128, lr 1e-3, τ 0.02, the 2e5-transition
PointMaze-UMaze-v0 navigate dataset of ``scripts/make_dataset.py``, seed 0, 50 episodes per seed):
success 0.72 (0.80, 0.64), against GCIQL 0.83 and GCBC 0.04 (77 s for both seeds, CPU under load ~5).

Evaluation (the headline metric, the CLI's ``eval_success``): on envs with evaluation tasks
(``EnvParams.task_id``, the point maze's five tasks per layout) episode i runs task (i mod 5) + 1;
``report`` gives the success rate per task (10 episodes each) and its mean in ``summary.json``.

Run:  python scripts/make_dataset.py PointMaze-Open-v0 --kind navigate
      python agents/goal_conditioned/gcivl.py --env PointMaze-Open-v0 --dataset datasets/PointMaze-Open-v0-navigate.npz
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
from jaxrl.config import require, require_positive, require_unit_interval
from jaxrl.trainer import Trainer

EXP_ADV_MAX = 100.0                 # clip of the AWR weights (IQL, HIQL and OGBench)
REPORT_EPISODES_PER_TASK = 10


@dataclasses.dataclass(frozen=True)
class Config:
    env: str = "PointMaze-Open-v0"
    """Goal-conditioned env id the dataset was collected on (dict observations, Box actions)."""
    num_updates: int = 1_000_000
    """Gradient steps per run (OGBench: 1M)."""
    lr: float = 3e-4
    """Adam learning rate of all networks (OGBench: 3e-4)."""
    batch_size: int = 1024
    """Transitions per gradient step (OGBench: 1024)."""
    hidden_size: int = 512
    """Width of every hidden layer (OGBench: 512)."""
    num_layers: int = 3
    """Hidden layers of actor and values (OGBench: 3)."""
    layer_norm: bool = True
    """Layer normalization after every hidden activation of the values (OGBench: True)."""
    gamma: float = 0.99
    """Discount factor; also the geometric parameter of future value goals (OGBench: 0.99)."""
    tau: float = 0.005
    """Polyak rate of the target values (OGBench: 0.005)."""
    expectile: float = 0.9
    """Expectile τ of the value loss (OGBench GCIVL: 0.9)."""
    alpha: float = 10.0
    """AWR inverse temperature (OGBench GCIVL: 10)."""
    value_p_curgoal: float = 0.2
    """Probability that a value goal is the current state (OGBench: 0.2)."""
    value_p_trajgoal: float = 0.5
    """Probability that a value goal is a future state of the same trajectory (OGBench: 0.5)."""
    value_p_randomgoal: float = 0.3
    """Probability that a value goal is a random dataset state (OGBench: 0.3)."""
    value_geom_sample: bool = True
    """Future value goals at a Geometric(1 − γ) offset (True) or uniform up to the trajectory's end."""
    actor_p_curgoal: float = 0.0
    """Probability that an actor goal is the current state (OGBench: 0)."""
    actor_p_trajgoal: float = 1.0
    """Probability that an actor goal is a future state of the same trajectory (OGBench: 1)."""
    actor_p_randomgoal: float = 0.0
    """Probability that an actor goal is a random dataset state (OGBench: 0)."""
    actor_geom_sample: bool = False
    """Future actor goals at a geometric offset (True) or uniform up to the trajectory's end (OGBench: False)."""
    success_radius: float = 0.0
    """A state within this distance of the goal counts as reaching it (0: only the goal state itself, OGBench)."""


# ----------------------------------------------------------------------------------------------
# Networks
# ----------------------------------------------------------------------------------------------
class MLP(nn.Module):
    """OGBench's MLP: GELU hidden layers, each followed by layer normalization when ``layer_norm``; a linear output."""

    out_dim: int
    hidden_size: int = 512
    num_layers: int = 3
    layer_norm: bool = True

    @nn.compact
    def __call__(self, x):
        init = variance_scaling(1.0, "fan_avg", "uniform")
        for _ in range(self.num_layers):
            x = nn.gelu(nn.Dense(self.hidden_size, kernel_init=init)(x))
            if self.layer_norm:
                x = nn.LayerNorm()(x)
        return nn.Dense(self.out_dim, kernel_init=init)(x)


class Actor(nn.Module):
    """Mean of the goal-conditioned Gaussian policy π(a | s, g) (standard deviation 1)."""

    action_dim: int
    hidden_size: int = 512
    num_layers: int = 3

    @nn.compact
    def __call__(self, obs, goal):
        return MLP(self.action_dim, self.hidden_size, self.num_layers, layer_norm=False)(
            jnp.concatenate([obs, goal], axis=-1))


class Value(nn.Module):
    """V(s, g)."""

    hidden_size: int = 512
    num_layers: int = 3
    layer_norm: bool = True

    @nn.compact
    def __call__(self, obs, goal):
        x = jnp.concatenate([obs, goal], axis=-1)
        return MLP(1, self.hidden_size, self.num_layers, self.layer_norm)(x)[..., 0]


# ----------------------------------------------------------------------------------------------
# Losses
# ----------------------------------------------------------------------------------------------
def expectile_loss(advantage, diff, expectile):
    """|τ − 1(A < 0)| u², elementwise: IQL's expectile loss (Kostrikov et al. 2022, eq. 5) with the weight
    chosen by the sign of the target's advantage A rather than of the residual u (HIQL, Park et al. 2023,
    eq. 4 as implemented in OGBench's GCIVL); ``expectile`` may be traced."""
    return jnp.where(advantage >= 0, expectile, 1.0 - expectile) * diff ** 2


def value_loss(v, target_v, target_next_v, reward, mask, gamma, expectile):
    """Twin implicit V-learning loss (HIQL eq. 4, OGBench GCIVL). ``v``, ``target_v``, ``target_next_v``
    have shape (2, B): V_i(s, g), V̄_i(s, g), V̄_i(s', g). Returns (loss, A_t, y) with
    y_i = r + γ m V̄_i(s', g) and A_t = r + γ m min_i V̄_i(s', g) − mean_i V̄_i(s, g)."""
    target = reward + gamma * mask * target_next_v
    advantage = reward + gamma * mask * target_next_v.min(0) - target_v.mean(0)
    loss = expectile_loss(advantage, target - v, expectile).mean(1).sum()
    return loss, advantage, target


def gaussian_log_prob(mean, action):
    """log N(a; mean, I), summed over action dimensions (the constant-std policy of OGBench)."""
    return (-0.5 * (action - mean) ** 2 - 0.5 * jnp.log(2.0 * jnp.pi)).sum(-1)


def awr_actor_loss(mean, action, advantage, alpha):
    """AWR (HIQL eq. 6; IQL eq. 7): −E[min(exp(α A), 100) log π(a | s, g)], the weights without gradient."""
    weights = jax.lax.stop_gradient(jnp.minimum(jnp.exp(alpha * advantage), EXP_ADV_MAX))
    return -(weights * gaussian_log_prob(mean, action)).mean()


# ----------------------------------------------------------------------------------------------
# Training
# ----------------------------------------------------------------------------------------------
class TrainState(NamedTuple):
    params: dict            # {"actor", "value" (twin, stacked on a leading axis of 2)}
    target_value: dict
    opt: optax.OptState
    key: jax.Array


def goal_mixtures(config: Config) -> tuple[gc_data.GoalMixture, gc_data.GoalMixture]:
    value = gc_data.GoalMixture(config.value_p_curgoal, config.value_p_trajgoal, config.value_p_randomgoal,
                                config.value_geom_sample)
    actor = gc_data.GoalMixture(config.actor_p_curgoal, config.actor_p_trajgoal, config.actor_p_randomgoal,
                                config.actor_geom_sample)
    return value, actor


def validate(config: Config) -> None:
    require_positive(config, "num_updates", "lr", "batch_size", "hidden_size", "num_layers")
    require_unit_interval(config, "gamma")
    require_unit_interval(config, "expectile", closed=False)
    require((0 < config.tau) & (config.tau <= 1), f"tau must be in (0, 1], got {config.tau}")
    require(config.alpha >= 0, f"alpha must be >= 0, got {config.alpha}")
    require(config.success_radius >= 0, f"success_radius must be >= 0, got {config.success_radius}")
    value, actor = goal_mixtures(config)
    gc_data.check_mixture("value", value)
    gc_data.check_mixture("actor", actor)


def goal_observation(obs: dict):
    """(observation, desired goal) of a batch of the env's dict observations."""
    return obs["observation"].reshape(obs["observation"].shape[0], -1), obs["desired_goal"].reshape(
        obs["desired_goal"].shape[0], -1)


def make_train(config: Config, dataset: data_lib.Dataset, env=None, env_params=None) -> Trainer:
    """Build the GCIVL trainer on ``dataset`` (a goal-conditioned dataset of ``config.env``, e.g. from
    ``scripts/make_dataset.py PointMaze-Open-v0 --kind navigate``)."""
    validate(config)
    if env is None:
        env, env_params = envs.make(config.env)
    env_params = env.default_params if env_params is None else env_params
    gc_data.check_dataset(dataset, config.env, env, env_params, "GCIVL")
    envs.require_action_space(config.env, env, env_params, "continuous", "GCIVL")
    data = gc_data.prepare(dataset)
    low, high = envs.action_bounds(env, env_params)
    action_dim = int(np.prod(low.shape))
    obs_dim = int(np.prod(dataset.observations.shape[1:]))
    value_mix, actor_mix = goal_mixtures(config)

    actor = Actor(action_dim, config.hidden_size, config.num_layers)
    value = Value(config.hidden_size, config.num_layers, config.layer_norm)
    tx = optax.adam(config.lr)

    def to_unit(action):
        return jnp.clip((action - 0.5 * (high + low)) / (0.5 * (high - low)), -1.0, 1.0)

    def init(key) -> TrainState:
        key, k_actor, k_value = jax.random.split(key, 3)
        obs = jnp.zeros((1, obs_dim))
        params = {
            "actor": actor.init(k_actor, obs, obs),
            "value": jax.vmap(value.init, in_axes=(0, None, None))(jax.random.split(k_value), obs, obs),
        }
        return TrainState(params, params["value"], tx.init(params), key)

    def twin_v(params, obs, goal):
        return jax.vmap(value.apply, in_axes=(0, None, None))(params, obs, goal)

    def loss_fn(params, target_value, batch):
        obs, action, next_obs = batch["observations"], to_unit(batch["actions"]), batch["next_observations"]
        g, g_actor = batch["value_goals"], batch["actor_goals"]
        # value: expectile regression on the target values (HIQL eq. 4, OGBench)
        v = twin_v(params["value"], obs, g)
        v_loss, target_advantage, _ = value_loss(v, twin_v(target_value, obs, g), twin_v(target_value, next_obs, g),
                                                 batch["rewards"], batch["masks"], config.gamma, config.expectile)
        # actor: AWR on A = r_a + γ m_a V(s', g_a) − V(s, g_a) with the online twin mean
        value_params = jax.lax.stop_gradient(params["value"])
        v_a = twin_v(value_params, obs, g_actor).mean(0)
        next_v_a = twin_v(value_params, next_obs, g_actor).mean(0)
        advantage = batch["actor_rewards"] + config.gamma * batch["actor_masks"] * next_v_a - v_a
        mean = actor.apply(params["actor"], obs, g_actor)
        a_loss = awr_actor_loss(mean, action, advantage, config.alpha)
        metrics = {"value_loss": v_loss, "actor_loss": a_loss, "v_mean": v.mean(),
                   "target_advantage_mean": target_advantage.mean(), "advantage_mean": advantage.mean(),
                   "mse": ((jnp.clip(mean, -1.0, 1.0) - action) ** 2).mean(),
                   "reward_mean": batch["rewards"].mean()}
        return v_loss + a_loss, metrics

    def update(state: TrainState, _iteration, data: data_lib.Dataset):
        key, sample_key = jax.random.split(state.key)
        batch = gc_data.sample_batch(sample_key, data, config.batch_size, value_mix, actor_mix, config.gamma,
                                     config.success_radius)
        batch["actor_rewards"], batch["actor_masks"] = gc_data.goal_reward(
            data.observations, batch["idx"], batch["actor_goal_idx"], config.success_radius)
        grads, metrics = jax.grad(loss_fn, has_aux=True)(state.params, state.target_value, batch)
        updates, opt = tx.update(grads, state.opt, state.params)
        params = optax.apply_updates(state.params, updates)
        target_value = optax.incremental_update(params["value"], state.target_value, config.tau)
        return TrainState(params, target_value, opt, key), metrics

    def act(state: TrainState, obs, key):
        """The policy mean for the goal in the observation, clipped and rescaled to the action box."""
        o, g = goal_observation(obs)
        mean = jnp.clip(actor.apply(state.params["actor"], o, g), -1.0, 1.0)
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

    main(Config, make_train, algorithm="gcivl", offline=True)
