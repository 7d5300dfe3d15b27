"""Quasimetric RL (QRL), offline, as in OGBench (Wang, Torralba, Isola & Zhang 2023, "Optimal
Goal-Reaching Reinforcement Learning via Quasimetric Learning", ICML; OGBench: Park et al. 2025, ICLR,
``impls/agents/qrl.py``; IQE: Wang & Isola 2022, "Improved Representation of Asymmetrical Distances with
Interval Quasimetric Embeddings", NeurIPS NeurReps workshop).

The value is a learned quasimetric d(s, g) = IQE(φ(s), φ(g)) (−d is the goal-reaching value of the
−1-per-step reward): a distance that is zero on the diagonal and satisfies the triangle inequality by
construction, but need not be symmetric. QRL's constrained objective (QRL eq. 5/6) pushes distances
between random pairs up while keeping every observed transition within one step:

    max_φ E_{s, g random}[ d(s, g) ]   s.t.   E_{(s, s')}[ relu(d(s, s') − 1)² ] ≤ ε²,

optimized as a Lagrangian with the multiplier λ = softplus(ρ) (QRL's parametrization), minimized in φ
and ascended in λ (dual ascent: L_λ = λ (ε² − stop_grad(C)), so λ grows while the constraint C is
violated). The random-goal term is OGBench's (and the original code's) transformation
100 softplus(5 − d / 100), which is ≈ −d for short distances and saturates for long ones:

    L_d = E[ 100 softplus(5 − d(s, g) / 100) ] + stop_grad(λ) C.

Goals: value goals are uniformly random dataset states (OGBench: ``value_p_randomgoal`` 1); actor
goals are future states of the same trajectory, uniform up to its end (``jaxrl.gc_data``).

Policy extraction (``actor_loss``):

* ``ddpgbc`` (the default, as OGBench and the original QRL): a latent dynamics model
  ψ̂' = φ(s) + f(φ(s), a) trained by the symmetric latent distance (QRL Sec. 4.2; OGBench):
  L_f = E[ (d(φ(s'), ψ̂') + d(ψ̂', φ(s'))) / 2 ] (gradients into φ and f); the actor maximizes
  Q(s, a, g) = −d(ψ̂'(s, μ(s, g)), φ(g)) with DDPG+BC (Fujimoto & Gu 2021, eq. 3, with OGBench's
  normalization): L_π = −E[Q] / stop_grad(E|Q|) − α E[log π(a | s, g)], value and dynamics frozen;
* ``awr``: L_π = −E[ min(exp(α A), 100) log π(a | s, g) ] with A = d(s, g) − d(s', g) (OGBench).

The policy is a Gaussian with a learned mean and constant standard deviation 1 (OGBench's
``const_std``); evaluation takes the mean, clipped to the action box.

IQE (Wang & Isola 2022, Sec. 3): the latent of size ``latent_dim`` is cut into components of
``dim_per_component`` coordinates. In component i, coordinate j gives the interval
[x_ij, max(x_ij, y_ij)]; d_i(x, y) is the total length of the *union* of these intervals, and
d(x, y) = a max_i d_i + (1 − a) mean_i d_i with a learned mixing weight a = sigmoid(ã) (the "maxmean"
reduction; a = 0.5 at initialization).

Defaults: OGBench's QRL (``impls/agents/qrl.py`` ``get_config``; OGBench paper Table 9): Adam lr 3e-4
for every parameter (λ included), batch 1024, three hidden layers of 512 units for φ, dynamics and actor,
layer norm in φ and dynamics, latent 512 in components of 8, ε² = 0.05 (OGBench's ``eps``, the bound
on C; the QRL paper uses ε = 0.25, ε² = 0.0625), DDPG+BC with α = 0.003, λ initialized to 1 (OGBench's
log-parametrized λ starts at 1), the goal mixtures above; OGBench trains 1M steps.

Measured at a small budget (``tests/test_qrl.py``: 1,500 updates of batch 128, 64x64 networks, latent
32 = 4 components of 8, lr 1e-3, DDPG+BC α 0.003) on a 3e4-transition PointMaze-Open-v0 navigate
dataset, 4 seeds, 10 episodes per task: success 0.71 over seeds 0-3 (1.0, 1.0, 0.8, 0.04) and 0.995 over
seeds 4-7; a uniform-random policy 0.00. At this budget the one-step constraint is far from met
(E[relu(d(s, s') − 1)²] ≈ 15-20 against ε² = 0.05, λ still rising from 1 to about 3): the distances are
a scaled step count, which ranks the actions just as well. At ``gciql.py``'s larger budget (2 seeds,
10,000 updates of batch 256, two hidden layers of 128, latent 64, lr 1e-3, the 2e5-transition
PointMaze-UMaze-v0 navigate dataset, seed 0, 50 episodes per seed): success 0.40 (0.46, 0.34), against
GCIVL 0.72, GCIQL 0.83 and GCBC 0.04 (225 s for both seeds, CPU under load ~5).

Evaluation (the headline metric, the CLI's ``eval_success``): on envs with evaluation tasks
(``EnvParams.task_id``, the point maze's five tasks per layout) episode i runs task (i mod 5) + 1;
``report`` gives the success rate per task (10 episodes each) and its mean in ``summary.json``.

Run:  python scripts/make_dataset.py PointMaze-Open-v0 --kind navigate
      python agents/goal_conditioned/qrl.py --env PointMaze-Open-v0 --dataset datasets/PointMaze-Open-v0-navigate.npz
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
from jaxrl.config import require, require_divides, require_positive
from jaxrl.trainer import Trainer

ACTOR_LOSSES = ("ddpgbc", "awr")
EXP_ADV_MAX = 100.0                 # clip of the AWR weights (OGBench)
LAMBDA_INIT = 1.0                   # initial Lagrange multiplier (OGBench's LogParam starts at exp(0) = 1)
REPORT_EPISODES_PER_TASK = 10


@dataclasses.dataclass(frozen=True)
class Config:
    env: str = "PointMaze-Open-v0"
    """Goal-conditioned env id the dataset was collected on (dict observations, Box actions)."""
    num_updates: int = 1_000_000
    """Gradient steps per run (OGBench: 1M)."""
    lr: float = 3e-4
    """Adam learning rate of all parameters, the multiplier included (OGBench: 3e-4)."""
    batch_size: int = 1024
    """Transitions per gradient step (OGBench: 1024)."""
    hidden_size: int = 512
    """Width of every hidden layer of encoder, dynamics and actor (OGBench: 512)."""
    num_layers: int = 3
    """Hidden layers of encoder, dynamics and actor (OGBench: 3)."""
    layer_norm: bool = True
    """Layer normalization after every hidden activation of encoder and dynamics (OGBench: True)."""
    latent_dim: int = 512
    """Size of the quasimetric latent φ(s) (OGBench: 512)."""
    dim_per_component: int = 8
    """Latent coordinates per IQE component; must divide latent_dim (OGBench: 8)."""
    epsilon_sq: float = 0.05
    """Bound ε² on the one-step constraint E[relu(d(s, s') − 1)²] (OGBench eps: 0.05; QRL paper ε = 0.25)."""
    actor_loss: str = "ddpgbc"
    """Policy extraction: "ddpgbc" (latent dynamics + DDPG+BC, OGBench and QRL) or "awr"."""
    alpha: float = 0.003
    """BC coefficient of DDPG+BC (OGBench: 0.003), or the AWR inverse temperature."""
    gamma: float = 0.99
    """Only the geometric parameter of future goals when a mixture uses them (QRL itself is undiscounted)."""
    value_p_curgoal: float = 0.0
    """Probability that a value goal is the current state (OGBench QRL: 0)."""
    value_p_trajgoal: float = 0.0
    """Probability that a value goal is a future state of the same trajectory (OGBench QRL: 0)."""
    value_p_randomgoal: float = 1.0
    """Probability that a value goal is a random dataset state (OGBench QRL: 1)."""
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


# ----------------------------------------------------------------------------------------------
# The interval quasimetric embedding
# ----------------------------------------------------------------------------------------------
def iqe_components(x, y, dim_per_component: int):
    """IQE's per-component distances (Wang & Isola 2022, eq. 4): for each component i, the length of
    the union of the intervals [x_ij, max(x_ij, y_ij)] over its coordinates j. ``x``, ``y``: (..., D)
    with D a multiple of ``dim_per_component``; returns (..., D / dim_per_component).

    The union is measured without sorting (a sort and its gather-gradient are slow on CPU): order the
    intervals by their start; interval j adds relu(b_j − max(a_j, M_j)), where M_j is the largest end
    of the intervals before it, since the union of those has no gap between a_j and M_j. With c
    coordinates per component that is a c × c comparison, elementwise and cheap for IQE's c = 8."""
    shape = x.shape[:-1] + (x.shape[-1] // dim_per_component, dim_per_component)
    start = x.reshape(shape)
    end = jnp.maximum(start, y.reshape(shape))
    a_j, a_k = start[..., :, None], start[..., None, :]
    index = jnp.arange(dim_per_component)
    before = (a_k < a_j) | ((a_k == a_j) & (index[None, :] < index[:, None]))       # [j, k]: k starts before j
    reach = jnp.max(jnp.where(before, end[..., None, :], -jnp.inf), axis=-1)         # M_j (−inf if none)
    return jax.nn.relu(end - jnp.maximum(start, reach)).sum(-1)


def iqe(x, y, dim_per_component: int, mix):
    """IQE with the maxmean reduction (Wang & Isola 2022, Sec. 3; QRL): mix · max_i d_i + (1 − mix) · mean_i d_i."""
    components = iqe_components(x, y, dim_per_component)
    return mix * components.max(-1) + (1.0 - mix) * components.mean(-1)


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


class Quasimetric(nn.Module):
    """d(s, g) = IQE(φ(s), φ(g)) with a learned maxmean weight; ``encode`` gives φ, ``distance`` d on latents."""

    latent_dim: int = 512
    dim_per_component: int = 8
    hidden_size: int = 512
    num_layers: int = 3
    layer_norm: bool = True

    def setup(self):
        self.phi = MLP(self.latent_dim, self.hidden_size, self.num_layers, self.layer_norm)
        self.mix_logit = self.param("mix_logit", nn.initializers.zeros, ())

    def encode(self, obs):
        return self.phi(obs)

    def distance(self, z_from, z_to):
        return iqe(z_from, z_to, self.dim_per_component, jax.nn.sigmoid(self.mix_logit))

    def __call__(self, obs, goal):
        return self.distance(self.encode(obs), self.encode(goal))


# ----------------------------------------------------------------------------------------------
# Losses
# ----------------------------------------------------------------------------------------------
def random_goal_loss(d_random):
    """QRL's objective term on random pairs, max E[d(s, g)] (QRL eq. 5), with OGBench's (and the original
    code's) transformation: E[100 softplus(5 − d / 100)]."""
    return (100.0 * jax.nn.softplus(5.0 - d_random / 100.0)).mean()


def step_constraint(d_step):
    """QRL's constraint (eq. 5): C = E[relu(d(s, s') − 1)²], each transition at most one step apart."""
    return (jax.nn.relu(d_step - 1.0) ** 2).mean()


def qrl_value_loss(d_random, d_step, lam, epsilon_sq):
    """The Lagrangian of QRL eq. (5), split as OGBench: L_d = random_goal_loss + stop_grad(λ) C for the
    quasimetric, L_λ = λ (ε² − stop_grad(C)) for dual ascent on λ. Returns (L_d + L_λ, C)."""
    constraint = step_constraint(d_step)
    loss_d = random_goal_loss(d_random) + jax.lax.stop_gradient(lam) * constraint
    loss_lam = lam * (epsilon_sq - jax.lax.stop_gradient(constraint))
    return loss_d + loss_lam, constraint


def gaussian_log_prob(mean, action):
    """log N(a; mean, I), summed over action dimensions (the constant-std policy of OGBench)."""
    return (-0.5 * (action - mean) ** 2 - 0.5 * jnp.log(2.0 * jnp.pi)).sum(-1)


def ddpgbc_actor_loss(q_of_mean, mean, action, alpha):
    """TD3+BC (Fujimoto & Gu 2021, eq. 3) as OGBench: −E[Q(s, μ, g)] / stop_grad(E|Q|) − α E[log π(a | s, g)]."""
    q_loss = -q_of_mean.mean() / jax.lax.stop_gradient(jnp.abs(q_of_mean).mean() + 1e-6)
    return q_loss - alpha * gaussian_log_prob(mean, action).mean()


def awr_actor_loss(mean, action, advantage, alpha):
    """AWR (Peng et al. 2019; IQL eq. 7) as OGBench's QRL: −E[min(exp(α A), 100) log π(a | s, g)],
    with A = d(s, g) − d(s', g) (the weights without gradient)."""
    weights = jax.lax.stop_gradient(jnp.minimum(jnp.exp(alpha * advantage), EXP_ADV_MAX))
    return -(weights * gaussian_log_prob(mean, action)).mean()


# ----------------------------------------------------------------------------------------------
# Training
# ----------------------------------------------------------------------------------------------
class TrainState(NamedTuple):
    params: dict            # {"actor", "value" (the quasimetric), "dynamics", "lam_raw"}
    opt: optax.OptState
    key: jax.Array


def goal_mixtures(config: Config) -> tuple[gc_data.GoalMixture, gc_data.GoalMixture]:
    value = gc_data.GoalMixture(config.value_p_curgoal, config.value_p_trajgoal, config.value_p_randomgoal,
                                config.value_geom_sample)
    actor = gc_data.GoalMixture(config.actor_p_curgoal, config.actor_p_trajgoal, config.actor_p_randomgoal,
                                config.actor_geom_sample)
    return value, actor


def validate(config: Config) -> None:
    require_positive(config, "num_updates", "lr", "batch_size", "hidden_size", "num_layers", "latent_dim",
                     "dim_per_component", "epsilon_sq")
    require_divides("latent_dim", config.latent_dim, "dim_per_component", config.dim_per_component)
    require((0 <= config.gamma) & (config.gamma < 1), f"gamma must be in [0, 1), got {config.gamma}")
    require(config.alpha >= 0, f"alpha must be >= 0, got {config.alpha}")
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
    """Build the QRL trainer on ``dataset`` (a goal-conditioned dataset of ``config.env``, e.g. from
    ``scripts/make_dataset.py PointMaze-Open-v0 --kind navigate``)."""
    validate(config)
    if env is None:
        env, env_params = envs.make(config.env)
    env_params = env.default_params if env_params is None else env_params
    gc_data.check_dataset(dataset, config.env, env, env_params, "QRL")
    envs.require_action_space(config.env, env, env_params, "continuous", "QRL")
    data = gc_data.prepare(dataset)
    low, high = envs.action_bounds(env, env_params)
    action_dim = int(np.prod(low.shape))
    obs_dim = int(np.prod(dataset.observations.shape[1:]))
    value_mix, actor_mix = goal_mixtures(config)

    actor = Actor(action_dim, config.hidden_size, config.num_layers)
    quasimetric = Quasimetric(config.latent_dim, config.dim_per_component, config.hidden_size, config.num_layers,
                              config.layer_norm)
    dynamics = MLP(config.latent_dim, config.hidden_size, config.num_layers, config.layer_norm)
    tx = optax.adam(config.lr)
    lam_raw_init = float(np.log(np.expm1(LAMBDA_INIT)))      # softplus⁻¹(1)

    def to_unit(action):
        return jnp.clip((action - 0.5 * (high + low)) / (0.5 * (high - low)), -1.0, 1.0)

    def init(key) -> TrainState:
        key, k_actor, k_value, k_dynamics = jax.random.split(key, 4)
        obs = jnp.zeros((1, obs_dim))
        params = {
            "actor": actor.init(k_actor, obs, obs),
            "value": quasimetric.init(k_value, obs, obs),
            "dynamics": dynamics.init(k_dynamics, jnp.zeros((1, config.latent_dim + action_dim))),
            "lam_raw": jnp.asarray(lam_raw_init, jnp.float32),
        }
        return TrainState(params, tx.init(params), key)

    def encode(params, obs):
        return quasimetric.apply(params, obs, method=Quasimetric.encode)

    def distance(params, z_from, z_to):
        return quasimetric.apply(params, z_from, z_to, method=Quasimetric.distance)

    def predict_latent(params, z, action):
        """ψ̂' = φ(s) + f(φ(s), a): the latent dynamics predicts the change of the latent."""
        return z + dynamics.apply(params["dynamics"], jnp.concatenate([z, action], axis=-1))

    def loss_fn(params, batch):
        obs, action, next_obs = batch["observations"], to_unit(batch["actions"]), batch["next_observations"]
        g, g_actor = batch["value_goals"], batch["actor_goals"]
        # quasimetric and multiplier: the Lagrangian of QRL eq. (5)
        z, z_next, z_goal = (encode(params["value"], x) for x in (obs, next_obs, g))
        d_random, d_step = distance(params["value"], z, z_goal), distance(params["value"], z, z_next)
        lam = jax.nn.softplus(params["lam_raw"])
        v_loss, constraint = qrl_value_loss(d_random, d_step, lam, config.epsilon_sq)
        metrics = {"value_loss": v_loss, "constraint": constraint, "lambda": lam, "d_random_mean": d_random.mean(),
                   "d_step_mean": d_step.mean()}
        mean = actor.apply(params["actor"], obs, g_actor)
        frozen = jax.lax.stop_gradient(params)
        if config.actor_loss == "ddpgbc":
            # latent dynamics, symmetric latent distance (QRL Sec. 4.2, OGBench)
            pred = predict_latent(params, z, action)
            dyn_loss = 0.5 * (distance(params["value"], z_next, pred) + distance(params["value"], pred, z_next)).mean()
            # DDPG+BC on Q(s, μ, g) = −d(ψ̂'(s, μ), φ(g)) with the value and dynamics frozen
            z_a, z_goal_a = jax.lax.stop_gradient(z), encode(frozen["value"], g_actor)
            q = -distance(frozen["value"], predict_latent(frozen, z_a, jnp.clip(mean, -1.0, 1.0)), z_goal_a)
            a_loss = ddpgbc_actor_loss(q, mean, action, config.alpha)
            metrics.update(dynamics_loss=dyn_loss, q_mean=q.mean())
        else:
            dyn_loss = 0.0
            z_a, z_next_a = jax.lax.stop_gradient(z), jax.lax.stop_gradient(z_next)
            z_goal_a = encode(frozen["value"], g_actor)
            advantage = distance(frozen["value"], z_a, z_goal_a) - distance(frozen["value"], z_next_a, z_goal_a)
            a_loss = awr_actor_loss(mean, action, advantage, config.alpha)
            metrics.update(advantage_mean=advantage.mean())
        metrics.update(actor_loss=a_loss, mse=((jnp.clip(mean, -1.0, 1.0) - action) ** 2).mean())
        return v_loss + dyn_loss + a_loss, metrics

    def update(state: TrainState, _iteration, data: data_lib.Dataset):
        key, sample_key = jax.random.split(state.key)
        batch = gc_data.sample_batch(sample_key, data, config.batch_size, value_mix, actor_mix, config.gamma)
        grads, metrics = jax.grad(loss_fn, has_aux=True)(state.params, batch)
        updates, opt = tx.update(grads, state.opt, state.params)
        params = optax.apply_updates(state.params, updates)
        return TrainState(params, opt, key), metrics

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

    main(Config, make_train, algorithm="qrl", offline=True)
