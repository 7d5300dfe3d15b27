"""Hilbert foundation policies (HILP), offline, for zero-shot goal reaching (Park, Kreiman & Levine 2024,
"Foundation Policies with Hilbert Representations", ICML; reference code ``seohongpark/HILP``,
``hilp_gcrl/src/agents/hilp.py``; IQL: Kostrikov, Nair & Levine 2022, ICLR).

Two parts, trained together from one batch per gradient step (one Adam step on the summed losses, as
the reference code), neither of which sees a task reward:

1. A Hilbert representation φ: S → R^d whose distances are temporal distances (HILP Sec. 4.1):
   the goal-conditioned value of the −1-per-step goal-reaching reward is parametrized as
   V(s, g) = −‖φ(s) − φ(g)‖ and learned by implicit V-learning (the expectile regression of HIQL eq. 4
   / OGBench GCIVL, twin φ_1, φ_2 and a Polyak target copy, as the reference code):
       L_φ = Σ_i E[ |τ − 1(A_t < 0)| (y_i − V_i(s, g))² ],  y_i = r + γ m V̄_i(s', g),
       A_t = r + γ m min_i V̄_i(s', g) − (V̄_1(s, g) + V̄_2(s, g)) / 2,
   with the goals, rewards and masks of ``jaxrl.gc_data`` (reward 0 and mask 0 at the goal, −1 and 1
   elsewhere; value goals: future state of the same trajectory at a Geometric(1 − γ) offset 0.625,
   random dataset state 0.375, as the reference's ``p_trajgoal``/``p_randomgoal``).
2. A latent-conditioned policy π(a | s, z), z on the unit sphere of R^d, that moves in the direction z
   in latent space (HILP Sec. 4.2): the intrinsic reward
       r(s, z, s') = ⟨φ(s') − φ(s), z⟩
   (φ = φ_1 of the online value, without gradient; z ~ N(0, I) normalized, a fresh z per transition and
   gradient step: the reference draws its skills with ``np.random.randn`` inside its jitted update, which
   fixes one set of skills at trace time, so the paper's intent is taken here) is maximized with IQL
   (Kostrikov et al. 2022, eq. 5-7), as the reference code does:
       L_V = E[ |τ_z − 1(u < 0)| u² ],          u = min_i Q̄_i(s, a, z) − V(s, z)   (IQL eq. 5)
       L_Q = Σ_i E[ (r + γ_z m_T V(s', z) − Q_i(s, a, z))² ]                      (IQL eq. 6)
       L_π = −E[ min(exp(α (min_i Q̄_i(s, a, z) − V(s, z))), 100) log π(a | s, z) ]  (IQL eq. 7)
   (Q̄ the Polyak target critic; m_T = 1 − terminations: the latent task has no terminal states of its
   own, so only a true env termination stops the bootstrap; the reference code bootstraps everywhere,
   which is the same on datasets without terminations such as the point-maze ones.)

Zero-shot goal reaching (HILP Sec. 5.2, "goal-conditioned prompting"): at test time the policy is
prompted with the unit direction from the state to the goal in latent space,
    z = (φ(g) − φ(s)) / ‖φ(g) − φ(s)‖,
recomputed at every step; the action is the policy mean, clipped to the action box. The policy never
sees a goal during training. (The paper's test-time planning variant, HILP-Plan, which replaces φ(g) by
a latent midpoint subgoal, is not here.)

Small departures from the reference code, documented in the functions: the Hilbert value is
−(√(‖φ(s) − φ(g)‖² + ε) − √ε) with ε = 1e-6 (the reference's −√max(‖·‖², ε) is −1e-3 at s = g and has
the same gradient away from it; this one is exactly 0 at s = g and smooth); the prompt at φ(g) = φ(s) is
the zero vector instead of 0 / 0; the skill critic stops its bootstrap at true terminations (above); and
the Polyak updates read the parameters after the gradient step, as the other agents here (the reference
reads them before it, a one-step lag).

Networks (reference code): φ, V(s, z) and Q(s, a, z) are MLPs with GELU and layer normalization after
every hidden activation, twin φ and twin Q; the actor is a ReLU MLP whose mean layer is initialized at
scale 1e-2, with a learned state-independent log standard deviation clipped to [−5, 2] (jaxrl_m's
``Policy(state_dependent_std=False, log_std_min=-5)``), no tanh.

Defaults: the reference code's ``hilp_gcrl/main.py`` flags and ``create_learner`` defaults (the
paper's goal-conditioned experiments, D4RL AntMaze / Kitchen): Adam lr 3e-4, batch 1024, three hidden
layers of 512 units for all networks, layer norm, latent (skill) dimension 32, γ 0.99, τ 0.005,
expectile 0.95 for φ; for the policy: expectile 0.9, AWR temperature 10, γ_z 0.99; value goals 0.625
trajectory / 0.375 random / 0 current, geometric offsets; 1M gradient steps; success is OGBench's index
equality (``success_radius`` 0, as the other offline goal-conditioned agents here).

Measured at a small budget (``tests/test_hilp.py``: 4,000 updates of batch 64, 64x64 networks, lr 1e-3,
τ 0.02, every other value the default) on a 3e4-transition PointMaze-Open-v0 navigate dataset, 4 seeds,
10 episodes per task: zero-shot success 0.81 over seeds 0-3 (0.78, 0.80, 0.64, 1.00) and 0.92 over
seeds 4-7; a uniform-random policy 0.00 (GCIVL 1.00, QRL 0.71 on the same data at their budgets).
The budget matters more than for GCIVL: 1,500 updates of batch 256 reach only 0.17 (seeds 0-3), since the skill
policy learns from rewards of a φ that is still moving, and its critic must resolve one step of
progress out of values of order 1 / (1 − γ_z). At ``gciql.py``'s larger budget (10,000 updates of
batch 256, two hidden layers of 128, lr 1e-3, τ 0.02, latent 32, the 2e5-transition PointMaze-UMaze-v0
navigate dataset of ``scripts/make_dataset.py``, seed 0, 3 seeds, 50 episodes per seed): success 0.99
(1.00, 0.96, 1.00), against GCIVL 0.72, GCIQL 0.83, QRL 0.40 and GCBC 0.04 at the same budget
(1,262 s for the three seeds in one program, CPU under load ~7-10).

Evaluation (the headline metric, the CLI's ``eval_success``): on envs with evaluation tasks
(``EnvParams.task_id``, the point maze's five tasks per layout) episode i runs task (i mod 5) + 1;
``report`` gives the success rate per task (10 episodes each) and its mean in ``summary.json``.

Run:  python scripts/make_dataset.py PointMaze-Open-v0 --kind navigate
      python agents/goal_conditioned/hilp.py --env PointMaze-Open-v0 --dataset datasets/PointMaze-Open-v0-navigate.npz
"""
from __future__ import annotations

import dataclasses
from typing import Callable, NamedTuple

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

EXP_ADV_MAX = 100.0                 # clip of the AWR weights (IQL and the reference code)
DISTANCE_EPS = 1e-6                 # ε of the smoothed latent distance (the reference's clamp of ‖·‖²)
LOG_STD_MIN, LOG_STD_MAX = -5.0, 2.0
REPORT_EPISODES_PER_TASK = 10


@dataclasses.dataclass(frozen=True)
class Config:
    env: str = "PointMaze-Open-v0"
    """Goal-conditioned env id the dataset was collected on (dict observations, Box actions)."""
    num_updates: int = 1_000_000
    """Gradient steps per run (reference code: 1M)."""
    lr: float = 3e-4
    """Adam learning rate of all networks (reference code: 3e-4)."""
    batch_size: int = 1024
    """Transitions per gradient step (reference code: 1024)."""
    hidden_size: int = 512
    """Width of every hidden layer (reference code: 512)."""
    num_layers: int = 3
    """Hidden layers of φ, the skill value, critic and actor (reference code: 3)."""
    layer_norm: bool = True
    """Layer normalization after every hidden activation of φ, V(s, z) and Q(s, a, z) (reference code: True)."""
    latent_dim: int = 32
    """Dimension d of the Hilbert representation φ(s) and of the skills z (reference code ``skill_dim``: 32)."""
    gamma: float = 0.99
    """Discount of the goal-reaching value that shapes φ; also the geometric parameter of future goals (0.99)."""
    tau: float = 0.005
    """Polyak rate of the target φ and of the target skill critic (reference code: 0.005)."""
    expectile: float = 0.95
    """Expectile τ of the Hilbert value loss (reference code: 0.95)."""
    skill_gamma: float = 0.99
    """Discount of the intrinsic-reward task of the latent-conditioned policy (reference code: 0.99)."""
    skill_expectile: float = 0.9
    """Expectile τ_z of the skill value V(s, z) (IQL eq. 5; reference code: 0.9)."""
    alpha: float = 10.0
    """AWR inverse temperature of the skill actor (reference code ``skill_temperature``: 10)."""
    value_p_curgoal: float = 0.0
    """Probability that a value goal is the current state (reference code: 0)."""
    value_p_trajgoal: float = 0.625
    """Probability that a value goal is a future state of the same trajectory (reference code: 0.625)."""
    value_p_randomgoal: float = 0.375
    """Probability that a value goal is a random dataset state (reference code: 0.375)."""
    value_geom_sample: bool = True
    """Future value goals at a Geometric(1 − γ) offset (True, reference code) or uniform up to the trajectory's end."""
    success_radius: float = 0.0
    """A state within this distance of the goal counts as reaching it (0: only the goal state itself, OGBench)."""


# ----------------------------------------------------------------------------------------------
# Networks
# ----------------------------------------------------------------------------------------------
class MLP(nn.Module):
    """Hidden layers of ``activation``, each followed by layer normalization when ``layer_norm``; a linear
    output initialized with variance scaling ``out_scale`` (fan_avg, uniform; the reference's ``default_init``)."""

    out_dim: int
    hidden_size: int = 512
    num_layers: int = 3
    layer_norm: bool = True
    activation: Callable = nn.gelu
    out_scale: float = 1.0

    @nn.compact
    def __call__(self, x):
        init = variance_scaling(1.0, "fan_avg", "uniform")
        for _ in range(self.num_layers):
            x = self.activation(nn.Dense(self.hidden_size, kernel_init=init)(x))
            if self.layer_norm:
                x = nn.LayerNorm()(x)
        return nn.Dense(self.out_dim, kernel_init=variance_scaling(self.out_scale, "fan_avg", "uniform"))(x)


class Actor(nn.Module):
    """π(a | s, z): Gaussian with an MLP mean and a learned state-independent log std (the reference's
    ``Policy(state_dependent_std=False)``). Returns (mean, log_std)."""

    action_dim: int
    hidden_size: int = 512
    num_layers: int = 3

    @nn.compact
    def __call__(self, obs, skill):
        mean = MLP(self.action_dim, self.hidden_size, self.num_layers, layer_norm=False, activation=nn.relu,
                   out_scale=1e-2)(jnp.concatenate([obs, skill], axis=-1))
        log_std = self.param("log_std", nn.initializers.zeros, (self.action_dim,))
        return mean, jnp.clip(log_std, LOG_STD_MIN, LOG_STD_MAX)


class SkillValue(nn.Module):
    """V(s, z)."""

    hidden_size: int = 512
    num_layers: int = 3
    layer_norm: bool = True

    @nn.compact
    def __call__(self, obs, skill):
        x = jnp.concatenate([obs, skill], axis=-1)
        return MLP(1, self.hidden_size, self.num_layers, self.layer_norm)(x)[..., 0]


class SkillCritic(nn.Module):
    """Q(s, a, z)."""

    hidden_size: int = 512
    num_layers: int = 3
    layer_norm: bool = True

    @nn.compact
    def __call__(self, obs, skill, action):
        x = jnp.concatenate([obs, skill, action], axis=-1)
        return MLP(1, self.hidden_size, self.num_layers, self.layer_norm)(x)[..., 0]


# ----------------------------------------------------------------------------------------------
# The Hilbert representation and the latent prompts
# ----------------------------------------------------------------------------------------------
def hilbert_value(phi_s, phi_g):
    """V(s, g) = −‖φ(s) − φ(g)‖ (HILP Sec. 4.1), smoothed as −(√(‖φ(s) − φ(g)‖² + ε) − √ε), ε = 1e-6:
    exactly 0 at φ(s) = φ(g), ≤ 0 everywhere, with a finite gradient at 0 (the reference code clamps
    ‖·‖² at ε instead). Shapes (..., d) -> (...)."""
    squared = ((phi_s - phi_g) ** 2).sum(-1)
    return -(jnp.sqrt(squared + DISTANCE_EPS) - jnp.sqrt(DISTANCE_EPS))


def intrinsic_reward(phi_s, phi_next, skill):
    """HILP's directional reward (Sec. 4.2): r(s, z, s') = ⟨φ(s') − φ(s), z⟩. Shapes (..., d) -> (...)."""
    return ((phi_next - phi_s) * skill).sum(-1)


def goal_prompt(phi_s, phi_g):
    """HILP's goal-conditioned prompt (Sec. 5.2): z = (φ(g) − φ(s)) / ‖φ(g) − φ(s)‖, the unit latent
    direction towards the goal; the zero vector when φ(g) = φ(s) (the reference divides 0 by 0)."""
    diff = phi_g - phi_s
    norm = jnp.linalg.norm(diff, axis=-1, keepdims=True)
    return jnp.where(norm > 0, diff / jnp.where(norm > 0, norm, 1.0), 0.0)


def sample_skills(key, num: int, latent_dim: int):
    """``num`` skills uniform on the unit sphere of R^d (normalized standard normals, the reference code)."""
    z = jax.random.normal(key, (num, latent_dim))
    return z / jnp.linalg.norm(z, axis=-1, keepdims=True)


# ----------------------------------------------------------------------------------------------
# Losses
# ----------------------------------------------------------------------------------------------
def expectile_loss(advantage, diff, expectile):
    """|τ − 1(A < 0)| u², elementwise: IQL's expectile loss (Kostrikov et al. 2022, eq. 5), the weight
    chosen by the sign of the advantage A (for the Hilbert value, the target's advantage as in HIQL eq. 4
    and the reference code); ``expectile`` may be traced."""
    return jnp.where(advantage >= 0, expectile, 1.0 - expectile) * diff ** 2


def hilbert_value_loss(v, target_v, target_next_v, reward, mask, gamma, expectile):
    """Twin implicit V-learning of the Hilbert value (HILP Sec. 4.1 with HIQL eq. 4, as the reference
    code): ``v``, ``target_v``, ``target_next_v`` have shape (2, B): V_i(s, g), V̄_i(s, g), V̄_i(s', g),
    each V = −‖φ_i(s) − φ_i(g)‖. Returns (Σ_i E[|τ − 1(A_t < 0)| (y_i − V_i)²], A_t, y) with
    y_i = r + γ m V̄_i(s', g) and A_t = r + γ m min_i V̄_i(s', g) − mean_i V̄_i(s, g)."""
    target = reward + gamma * mask * target_next_v
    advantage = reward + gamma * mask * target_next_v.min(0) - target_v.mean(0)
    loss = expectile_loss(advantage, target - v, expectile).mean(1).sum()
    return loss, advantage, target


def skill_value_loss(v, target_q, expectile):
    """IQL eq. 5 on the skill task: E[|τ_z − 1(u < 0)| u²], u = min_i Q̄_i(s, a, z) − V(s, z).
    ``v``: (B,), ``target_q``: (2, B)."""
    diff = jax.lax.stop_gradient(target_q.min(0)) - v
    return expectile_loss(diff, diff, expectile).mean()


def skill_critic_loss(q, reward, next_v, not_terminal, gamma):
    """IQL eq. 6 on the skill task: Σ_i E[(r + γ_z m_T V(s', z) − Q_i(s, a, z))²], V(s', z) without
    gradient; ``q``: (2, B). Returns (loss, target)."""
    target = reward + gamma * not_terminal * jax.lax.stop_gradient(next_v)
    return ((q - target) ** 2).mean(1).sum(), target


def gaussian_log_prob(mean, log_std, action):
    """log N(a; mean, diag(exp(log_std))²), summed over action dimensions."""
    z = (action - mean) * jnp.exp(-log_std)
    return (-0.5 * z ** 2 - log_std - 0.5 * jnp.log(2.0 * jnp.pi)).sum(-1)


def awr_actor_loss(mean, log_std, action, advantage, alpha):
    """AWR (IQL eq. 7, the reference's skill actor): −E[min(exp(α A), 100) log π(a | s, z)], the weights
    without gradient."""
    weights = jax.lax.stop_gradient(jnp.minimum(jnp.exp(alpha * advantage), EXP_ADV_MAX))
    return -(weights * gaussian_log_prob(mean, log_std, action)).mean()


# ----------------------------------------------------------------------------------------------
# Training
# ----------------------------------------------------------------------------------------------
class TrainState(NamedTuple):
    params: dict            # {"phi" (twin, stacked on a leading axis of 2), "skill_value", "critic" (twin), "actor"}
    target_phi: dict
    target_critic: dict
    opt: optax.OptState
    key: jax.Array


def goal_mixture(config: Config) -> gc_data.GoalMixture:
    return gc_data.GoalMixture(config.value_p_curgoal, config.value_p_trajgoal, config.value_p_randomgoal,
                               config.value_geom_sample)


def validate(config: Config) -> None:
    require_positive(config, "num_updates", "lr", "batch_size", "hidden_size", "num_layers", "latent_dim")
    require_unit_interval(config, "gamma", "skill_gamma")
    require_unit_interval(config, "expectile", "skill_expectile", closed=False)
    require((0 < config.tau) & (config.tau <= 1), f"tau must be in (0, 1], got {config.tau}")
    require(config.alpha >= 0, f"alpha must be >= 0, got {config.alpha}")
    require(config.success_radius >= 0, f"success_radius must be >= 0, got {config.success_radius}")
    gc_data.check_mixture("value", goal_mixture(config))


def goal_observation(obs: dict):
    """(observation, desired goal) of a batch of the env's dict observations."""
    return obs["observation"].reshape(obs["observation"].shape[0], -1), obs["desired_goal"].reshape(
        obs["desired_goal"].shape[0], -1)


def make_train(config: Config, dataset: data_lib.Dataset, env=None, env_params=None) -> Trainer:
    """Build the HILP trainer on ``dataset`` (a goal-conditioned dataset of ``config.env``, e.g. from
    ``scripts/make_dataset.py PointMaze-Open-v0 --kind navigate``)."""
    validate(config)
    if env is None:
        env, env_params = envs.make(config.env)
    env_params = env.default_params if env_params is None else env_params
    gc_data.check_dataset(dataset, config.env, env, env_params, "HILP")
    envs.require_action_space(config.env, env, env_params, "continuous", "HILP")
    data = gc_data.prepare(dataset)
    low, high = envs.action_bounds(env, env_params)
    action_dim = int(np.prod(low.shape))
    obs_dim = int(np.prod(dataset.observations.shape[1:]))
    value_mix = goal_mixture(config)
    # the actor goals of gc_data's batch are not used (the policy is trained on skills), any valid mixture
    actor_mix = gc_data.GoalMixture(0.0, 0.0, 1.0, False)

    phi = MLP(config.latent_dim, config.hidden_size, config.num_layers, config.layer_norm)
    skill_value = SkillValue(config.hidden_size, config.num_layers, config.layer_norm)
    critic = SkillCritic(config.hidden_size, config.num_layers, config.layer_norm)
    actor = Actor(action_dim, config.hidden_size, config.num_layers)
    tx = optax.adam(config.lr)

    def to_unit(action):
        return jnp.clip((action - 0.5 * (high + low)) / (0.5 * (high - low)), -1.0, 1.0)

    def init(key) -> TrainState:
        key, k_phi, k_value, k_critic, k_actor = jax.random.split(key, 5)
        obs, skill, action = jnp.zeros((1, obs_dim)), jnp.zeros((1, config.latent_dim)), jnp.zeros((1, action_dim))
        params = {
            "phi": jax.vmap(phi.init, in_axes=(0, None))(jax.random.split(k_phi), obs),
            "skill_value": skill_value.init(k_value, obs, skill),
            "critic": jax.vmap(critic.init, in_axes=(0, None, None, None))(jax.random.split(k_critic), obs, skill,
                                                                          action),
            "actor": actor.init(k_actor, obs, skill),
        }
        return TrainState(params, params["phi"], params["critic"], tx.init(params), key)

    def twin_phi(params, obs):
        return jax.vmap(phi.apply, in_axes=(0, None))(params, obs)

    def first_phi(params, obs):
        """φ = φ_1, the first of the twin (the reference's ``get_phi``): rewards and prompts use it."""
        return phi.apply(jax.tree.map(lambda x: x[0], params), obs)

    def twin_q(params, obs, skill, action):
        return jax.vmap(critic.apply, in_axes=(0, None, None, None))(params, obs, skill, action)

    def loss_fn(params, target_phi, target_critic, batch, skill):
        obs, action, next_obs = batch["observations"], to_unit(batch["actions"]), batch["next_observations"]
        n = obs.shape[0]
        states = jnp.concatenate([obs, next_obs, batch["value_goals"]])     # one φ pass for s, s', g
        # 1. Hilbert representation: twin implicit V-learning of V(s, g) = −‖φ(s) − φ(g)‖
        phi_s, phi_next, phi_g = jnp.split(twin_phi(params["phi"], states), 3, axis=1)
        target_s, target_next, target_g = jnp.split(twin_phi(target_phi, states), 3, axis=1)
        v = hilbert_value(phi_s, phi_g)
        phi_loss, target_advantage, _ = hilbert_value_loss(
            v, hilbert_value(target_s, target_g), hilbert_value(target_next, target_g), batch["rewards"],
            batch["masks"], config.gamma, config.expectile)
        # 2. the skill task: r = ⟨φ(s') − φ(s), z⟩ with the online φ_1 (the reference's ``get_phi``), no gradient
        reward = intrinsic_reward(jax.lax.stop_gradient(phi_s[0]), jax.lax.stop_gradient(phi_next[0]), skill)
        target_q = twin_q(target_critic, obs, skill, action)
        v_z, next_v_z = jnp.split(skill_value.apply(params["skill_value"], states[:2 * n],
                                                    jnp.concatenate([skill, skill])), 2)
        v_loss = skill_value_loss(v_z, target_q, config.skill_expectile)
        q_loss, _ = skill_critic_loss(twin_q(params["critic"], obs, skill, action), reward, next_v_z,
                                      1.0 - batch["terminations"], config.skill_gamma)
        advantage = jax.lax.stop_gradient(target_q.min(0) - v_z)
        mean, log_std = actor.apply(params["actor"], obs, skill)
        a_loss = awr_actor_loss(mean, log_std, action, advantage, config.alpha)
        metrics = {"phi_loss": phi_loss, "v_mean": v.mean(), "target_advantage_mean": target_advantage.mean(),
                   "skill_value_loss": v_loss, "critic_loss": q_loss, "actor_loss": a_loss,
                   "intrinsic_reward_mean": reward.mean(), "skill_advantage_mean": advantage.mean(),
                   "log_std_mean": log_std.mean(), "mse": ((jnp.clip(mean, -1.0, 1.0) - action) ** 2).mean()}
        return phi_loss + v_loss + q_loss + a_loss, metrics

    def update(state: TrainState, _iteration, data: data_lib.Dataset):
        key, sample_key, skill_key = jax.random.split(state.key, 3)
        batch = gc_data.sample_batch(sample_key, data, config.batch_size, value_mix, actor_mix, config.gamma,
                                     config.success_radius)
        batch["terminations"] = data.terminations[batch["idx"]]
        skill = sample_skills(skill_key, config.batch_size, config.latent_dim)
        grads, metrics = jax.grad(loss_fn, has_aux=True)(state.params, state.target_phi, state.target_critic,
                                                         batch, skill)
        updates, opt = tx.update(grads, state.opt, state.params)
        params = optax.apply_updates(state.params, updates)
        target_phi = optax.incremental_update(params["phi"], state.target_phi, config.tau)
        target_critic = optax.incremental_update(params["critic"], state.target_critic, config.tau)
        return TrainState(params, target_phi, target_critic, opt, key), metrics

    def act(state: TrainState, obs, key):
        """Zero-shot goal reaching: the policy mean for the prompt z = (φ(g) − φ(s)) / ‖φ(g) − φ(s)‖,
        clipped and rescaled to the action box."""
        o, g = goal_observation(obs)
        skill = goal_prompt(first_phi(state.params["phi"], o), first_phi(state.params["phi"], g))
        mean, _ = actor.apply(state.params["actor"], o, skill)
        return 0.5 * (high + low) + 0.5 * (high - low) * jnp.clip(mean, -1.0, 1.0)

    tasks = gc_data.has_eval_tasks(env_params)

    def evaluate_tasks(state: TrainState, key, num_episodes: int) -> dict:
        return gc_data.evaluate_on_tasks(env, env_params, lambda o, k: act(state, o, k), key, num_episodes)

    per_task_success = jax.jit(lambda state, key: gc_data.task_success(
        env, env_params, lambda o, k: act(state, o, k), key, REPORT_EPISODES_PER_TASK))

    def report(state: TrainState, key) -> dict:
        """Success rate of the prompted policy on each of the five evaluation tasks (10 episodes each)."""
        per_task = np.asarray(per_task_success(state, key))
        return {"task_success": [float(x) for x in per_task], "success": float(per_task.mean()),
                "episodes_per_task": REPORT_EPISODES_PER_TASK}

    return Trainer(init=init, update=update, act=act, num_updates=config.num_updates, env_steps_per_update=0,
                   env=env, env_params=env_params, data=data, evaluate=evaluate_tasks if tasks else None,
                   report=report if tasks else None)


if __name__ == "__main__":
    from jaxrl.cli import main

    main(Config, make_train, algorithm="hilp", offline=True)
