"""Goal-conditioned Implicit Q-Learning (GCIQL), offline, as in OGBench (Park et al. 2025, "OGBench:
Benchmarking Offline Goal-Conditioned RL", ICLR, Sec. 6 and Appendix E; IQL: Kostrikov, Nair & Levine
2022, "Offline Reinforcement Learning with Implicit Q-Learning", ICLR).

IQL with every network conditioned on a goal g (the input is s ⊕ g); rewards are the goal-reaching
reward of ``jaxrl.gc_data`` (0 and the end of the bootstrap when the state is the goal, −1 otherwise,
OGBench's ``gc_negative``). Per gradient step, one batch with two goals per transition
(``jaxrl.gc_data.sample_batch``): value goals (current state 0.2 / future state of the same
trajectory with a Geometric(1 − γ) offset 0.5 / random state 0.3) and actor goals (future state,
uniform up to the trajectory's end, 1.0). Three losses, summed and minimized with one Adam step (as
OGBench's ``total_loss``), all from the parameters before the step:

* value, IQL eq. (5): L_V = E[ |τ − 1(u < 0)| u² ], u = min_i Q̄_i(s, a, g) − V(s, g) (target critics);
* critic, IQL eq. (6): L_Q = Σ_i E[ (r(s, g) + γ m(s, g) V(s', g) − Q_i(s, a, g))² ], m the mask;
* actor with the actor goals g_a, either
  - ``awr``, IQL eq. (7): L_π = −E[ min(exp(α (min_i Q_i(s, a, g_a) − V(s, g_a))), 100) log π(a | s, g_a) ]
    with the temperature α (``alpha``), or
  - ``ddpgbc`` (OGBench's default for GCIQL; Fujimoto & Gu 2021 "A Minimalist Approach to Offline RL",
    eq. 3, with OGBench's normalization): L_π = −E[Q(s, μ(s, g_a), g_a)] / stop_grad(E|Q|) − α E[log π(a | s, g_a)];

then a Polyak update of the target critics (rate ``tau``). The policy is a Gaussian with a learned
(tanh-free) mean and a constant standard deviation 1 (OGBench's ``const_std``); evaluation takes the
mean, clipped to the action box. Networks are MLPs with layer normalization after every hidden
activation (OGBench's ``layer_norm=True``), twin critics.

Defaults: OGBench's GCIQL (``impls/agents/gciql.py`` ``get_config``): Adam lr 3e-4, batch 1024, three
hidden layers of 512 units for actor, value and critics, layer norm, γ 0.99, τ 0.005, expectile 0.9,
the goal mixtures above; OGBench trains 1M steps; success is OGBench's index equality
(``success_radius`` 0). One departure, by the issue's choice: the actor loss defaults to AWR
(OGBench's GCIQL default is DDPG+BC: ``actor_loss="ddpgbc"`` here, with ``alpha=0.003`` as in its
pointmaze runs), with temperature α = 10 (OGBench's AWR temperature of GCIVL on the mazes). Measured on
a 5e4-transition PointMaze-Open-v0 navigate dataset, 3,000 updates (64x64 networks, batch 256, lr 1e-3,
τ 0.02), 4 seeds, 10 episodes per task: success 0.95 with α = 10 against 0.40 with α = 3 (IQL's
locomotion value): the advantages of the oracle's noisy actions are small (a fraction of one step's
−1), so a low temperature is nearly behaviour cloning. DDPG+BC with α = 0.003 and lr 3e-4 reached 0.03
at that budget (the lr 3e-4 AWR run with α = 3: 0.09); GCBC (``gcbc.py``) 0.00 on the same data.

Evaluation (the headline metric, the CLI's ``eval_success``): on envs with evaluation tasks
(``EnvParams.task_id``, the point maze's five tasks per layout) episode i runs task (i mod 5) + 1;
``report`` gives the success rate per task (10 episodes each) and its mean in ``summary.json``.

Measured at a larger budget (CPU, shared and loaded; 2 seeds, 10,000 updates of batch 256, two hidden
layers of 128 units, lr 1e-3, τ 0.02; 2e5-transition datasets from ``scripts/make_dataset.py``, seed 0;
success over 50 episodes per seed, 10 per task), GCIQL / GCBC:

* PointMaze-UMaze-v0 navigate 0.83 / 0.04; stitch 0.94 / 1.00;
* PointMaze-Medium-v0 navigate 0.25 / 0.14; stitch 0.36 / 0.62.
  (GCIQL took 190-230 s per run for both seeds under a load of about 8 on 2 cores).

Run:  python scripts/make_dataset.py PointMaze-Open-v0 --kind navigate
      python agents/goal_conditioned/gciql.py --env PointMaze-Open-v0 --dataset datasets/PointMaze-Open-v0-navigate.npz
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

ACTOR_LOSSES = ("awr", "ddpgbc")
EXP_ADV_MAX = 100.0                 # clip of the AWR weights (IQL and OGBench)
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
    """Hidden layers of actor, value and critics (OGBench: 3)."""
    layer_norm: bool = True
    """Layer normalization after every hidden activation (OGBench: True)."""
    gamma: float = 0.99
    """Discount factor; also the geometric parameter of future value goals (OGBench: 0.99)."""
    tau: float = 0.005
    """Polyak rate of the target critics (OGBench: 0.005)."""
    expectile: float = 0.9
    """Expectile τ of the value loss (OGBench GCIQL: 0.9)."""
    actor_loss: str = "awr"
    """Policy extraction: "awr" (advantage-weighted regression) or "ddpgbc" (OGBench's default)."""
    alpha: float = 10.0
    """AWR inverse temperature (10: OGBench's GCIVL), or the BC coefficient of DDPG+BC (OGBench pointmaze: 0.003)."""
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


class Critic(nn.Module):
    """Q(s, a, g)."""

    hidden_size: int = 512
    num_layers: int = 3
    layer_norm: bool = True

    @nn.compact
    def __call__(self, obs, goal, action):
        x = jnp.concatenate([obs, goal, action], axis=-1)
        return MLP(1, self.hidden_size, self.num_layers, self.layer_norm)(x)[..., 0]


# ----------------------------------------------------------------------------------------------
# Losses
# ----------------------------------------------------------------------------------------------
def expectile_loss(diff, expectile):
    """|τ − 1(u < 0)| u², elementwise (IQL eq. 5); ``expectile`` may be traced."""
    return jnp.where(diff < 0, 1.0 - expectile, expectile) * diff ** 2


def gaussian_log_prob(mean, action):
    """log N(a; mean, I), summed over action dimensions (the constant-std policy of OGBench)."""
    return (-0.5 * (action - mean) ** 2 - 0.5 * jnp.log(2.0 * jnp.pi)).sum(-1)


def awr_actor_loss(mean, action, advantage, alpha):
    """IQL eq. (7): −E[min(exp(α A), 100) log π(a | s, g)], the weights without gradient."""
    weights = jax.lax.stop_gradient(jnp.minimum(jnp.exp(alpha * advantage), EXP_ADV_MAX))
    return -(weights * gaussian_log_prob(mean, action)).mean()


def ddpgbc_actor_loss(q_of_mean, mean, action, alpha):
    """TD3+BC (Fujimoto & Gu 2021, eq. 3) as OGBench: −E[Q(s, μ, g)] / stop_grad(E|Q|) − α E[log π(a | s, g)]."""
    q_loss = -q_of_mean.mean() / jax.lax.stop_gradient(jnp.abs(q_of_mean).mean() + 1e-6)
    return q_loss - alpha * gaussian_log_prob(mean, action).mean()


# ----------------------------------------------------------------------------------------------
# Training
# ----------------------------------------------------------------------------------------------
class TrainState(NamedTuple):
    params: dict            # {"actor", "value", "critic" (twin, stacked on a leading axis of 2)}
    target_critic: dict
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
    require(config.actor_loss in ACTOR_LOSSES,
            f"actor_loss must be one of {', '.join(ACTOR_LOSSES)}, got {config.actor_loss!r}")
    value, actor = goal_mixtures(config)
    gc_data.check_mixture("value", value)
    gc_data.check_mixture("actor", actor)


def goal_observation(obs: dict):
    """(observation, desired goal) of a batch of the env's dict observations."""
    return obs["observation"].reshape(obs["observation"].shape[0], -1), obs["desired_goal"].reshape(
        obs["desired_goal"].shape[0], -1)


def make_train(config: Config, dataset: data_lib.Dataset, env=None, env_params=None) -> Trainer:
    """Build the GCIQL trainer on ``dataset`` (a goal-conditioned dataset of ``config.env``, e.g. from
    ``scripts/make_dataset.py PointMaze-Open-v0 --kind navigate``)."""
    validate(config)
    if env is None:
        env, env_params = envs.make(config.env)
    env_params = env.default_params if env_params is None else env_params
    gc_data.check_dataset(dataset, config.env, env, env_params, "GCIQL")
    envs.require_action_space(config.env, env, env_params, "continuous", "GCIQL")
    data = gc_data.prepare(dataset)
    low, high = envs.action_bounds(env, env_params)
    action_dim = int(np.prod(low.shape))
    obs_dim = int(np.prod(dataset.observations.shape[1:]))
    value_mix, actor_mix = goal_mixtures(config)

    actor = Actor(action_dim, config.hidden_size, config.num_layers)
    value = Value(config.hidden_size, config.num_layers, config.layer_norm)
    critic = Critic(config.hidden_size, config.num_layers, config.layer_norm)
    tx = optax.adam(config.lr)

    def to_unit(action):
        return jnp.clip((action - 0.5 * (high + low)) / (0.5 * (high - low)), -1.0, 1.0)

    def init(key) -> TrainState:
        key, k_actor, k_value, k_critic = jax.random.split(key, 4)
        obs, action = jnp.zeros((1, obs_dim)), jnp.zeros((1, action_dim))
        params = {
            "actor": actor.init(k_actor, obs, obs),
            "value": value.init(k_value, obs, obs),
            "critic": jax.vmap(critic.init, in_axes=(0, None, None, None))(jax.random.split(k_critic), obs, obs, action),
        }
        return TrainState(params, params["critic"], tx.init(params), key)

    def twin_q(params, obs, goal, action):
        return jax.vmap(critic.apply, in_axes=(0, None, None, None))(params, obs, goal, action)

    def loss_fn(params, target_critic, batch):
        obs, action, next_obs = batch["observations"], to_unit(batch["actions"]), batch["next_observations"]
        g, g_actor = batch["value_goals"], batch["actor_goals"]
        # value, IQL eq. (5), on the target critics
        q_target = twin_q(target_critic, obs, g, action).min(0)
        v = value.apply(params["value"], obs, g)
        value_loss = expectile_loss(q_target - v, config.expectile).mean()
        # critics, IQL eq. (6): r + γ m V(s', g)
        next_v = jax.lax.stop_gradient(value.apply(params["value"], next_obs, g))
        td_target = batch["rewards"] + config.gamma * batch["masks"] * next_v
        q = twin_q(params["critic"], obs, g, action)
        critic_loss = ((q - td_target) ** 2).mean(1).sum()
        # actor on the actor goals
        mean = actor.apply(params["actor"], obs, g_actor)
        if config.actor_loss == "awr":
            q_a = twin_q(params["critic"], obs, g_actor, action).min(0)
            advantage = jax.lax.stop_gradient(q_a - value.apply(params["value"], obs, g_actor))
            actor_loss = awr_actor_loss(mean, action, advantage, config.alpha)
        else:
            critic_params = jax.lax.stop_gradient(params["critic"])
            q_pi = twin_q(critic_params, obs, g_actor, jnp.clip(mean, -1.0, 1.0)).min(0)
            advantage = q_pi
            actor_loss = ddpgbc_actor_loss(q_pi, mean, action, config.alpha)
        metrics = {"value_loss": value_loss, "critic_loss": critic_loss, "actor_loss": actor_loss,
                   "v_mean": v.mean(), "q_mean": q.mean(), "advantage_mean": advantage.mean(),
                   "mse": ((jnp.clip(mean, -1.0, 1.0) - action) ** 2).mean(),
                   "reward_mean": batch["rewards"].mean()}
        return value_loss + critic_loss + actor_loss, metrics

    def update(state: TrainState, _iteration, data: data_lib.Dataset):
        key, sample_key = jax.random.split(state.key)
        batch = gc_data.sample_batch(sample_key, data, config.batch_size, value_mix, actor_mix, config.gamma,
                                     config.success_radius)
        grads, metrics = jax.grad(loss_fn, has_aux=True)(state.params, state.target_critic, batch)
        updates, opt = tx.update(grads, state.opt, state.params)
        params = optax.apply_updates(state.params, updates)
        target_critic = optax.incremental_update(params["critic"], state.target_critic, config.tau)
        return TrainState(params, target_critic, opt, key), metrics

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

    main(Config, make_train, algorithm="gciql", offline=True)
