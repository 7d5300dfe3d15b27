"""Hierarchical Implicit Q-Learning (HIQL), offline, as in OGBench (Park, Ghosh, Eysenbach & Levine 2023,
"HIQL: Offline Goal-Conditioned RL with Latent States as Actions", NeurIPS, Sec. 4; implementation and
defaults: OGBench, Park et al. 2025, ICLR, ``impls/agents/hiql.py`` and ``impls/utils/datasets.py``
``HGCDataset``).

One action-free goal-conditioned value V(s, g), learned exactly as GCIVL (``gcivl.py``) learns it, and
two policies extracted from it by advantage-weighted regression:

* a subgoal representation φ([s; g]): an MLP on the concatenation of state and goal, its output of
  ``rep_dim`` units length-normalized to norm √rep_dim (OGBench's ``LengthNormalize``). It is the goal
  encoder of the value, V(s, g) = f(s, φ([s; g])) with twin heads f_1, f_2 on one shared φ, so φ is
  trained by the value loss alone;
* a high-level policy π_h(z | s, g), a Gaussian over representations: it predicts the representation
  z = φ([s_t; s_{t+k}]) of the state ``subgoal_steps`` = k steps ahead in the dataset;
* a low-level policy π_l(a | s, z), a Gaussian over actions, conditioned on the representation of the
  subgoal it must reach.

Per gradient step, one batch of transitions (s_t, a_t, s_{t+1}) at dataset indices t, with (this file's
``sample_batch``, OGBench's ``HGCDataset.sample``):

* value goals g_v: ``jaxrl.gc_data``'s mixture (current state 0.2 / future state of the same trajectory
  at a Geometric(1 − γ) offset 0.5 / random state 0.3), with the goal-reaching reward and mask of
  ``jaxrl.gc_data.goal_reward`` (0 and the end of the bootstrap at the goal, −1 otherwise);
* the low-level subgoal w_l = s_{min(t + k, T)}, T the last index of t's trajectory (clipped at the end);
* high-level goals g_h from the actor mixture (future state of the same trajectory, uniform up to its
  end, 1.0; a random state with ``actor_p_randomgoal``) and the high-level target
  w_h = s_{min(t + k, index of g_h)} for goals of the same trajectory (the subgoal never passes the
  goal), s_{min(t + k, T)} for random goals.

Three losses, summed and minimized with one Adam step (OGBench's ``total_loss``), then a Polyak update
of the target value heads:

* value (HIQL eq. 4 with OGBench's twin weighting, as GCIVL): L_V = Σ_i E[|τ − 1(A_t < 0)| (y_i − V_i(s, g_v))²],
  y_i = r + γ m V̄_i(s', g_v), A_t = r + γ m min_i V̄_i(s', g_v) − mean_i V̄_i(s, g_v). The target values
  V̄_i are target heads f̄_i on the *online* representation φ (OGBench shares one φ module between the
  value and its target network and copies only the heads), and the loss trains both heads and φ;
* high-level actor, AWR (HIQL Sec. 4.2, eq. 6): L_h = −E[min(exp(α_h A_h), 100) log π_h(φ([s; w_h]) | s, g_h)],
  A_h = V(w_h, g_h) − V(s, g_h), with V = (V_1 + V_2) / 2; no gradient into V or into φ (the target's φ);
* low-level actor, AWR (HIQL Sec. 4.2, eq. 7): L_l = −E[min(exp(α_l A_l), 100) log π_l(a | s, φ([s; w_l]))],
  A_l = V(s', w_l) − V(s, w_l). By default (``low_actor_rep_grad=False``, OGBench's choice for state
  observations) φ gets no gradient from this loss either.

Both policies are Gaussians with a learned (tanh-free) mean and a constant standard deviation 1
(OGBench's ``const_std``). Acting (evaluation; OGBench's ``sample_actions`` at temperature 0): the
high-level mean z = μ_h(s, g), length-normalized like φ's outputs, then the low-level mean μ_l(s, z),
clipped to the action box. Networks are MLPs with GELU; the representation and the value heads have
layer normalization after every hidden activation (OGBench's ``layer_norm=True``), the actors none.

Defaults: OGBench's HIQL (``impls/agents/hiql.py`` ``get_config``):
Adam lr 3e-4, batch 1024, three hidden layers of 512 units for the representation, the value heads and
both actors, layer norm, γ 0.99, τ 0.005, expectile 0.7, AWR temperatures α_h = α_l = 3, subgoal steps
25, representation dimension 10, no low-actor gradient into φ, the goal mixtures above; OGBench trains
1M steps; success is OGBench's index equality (``success_radius`` 0).

Measured on CPU (2 cores, shared and loaded), success over 50 episodes per seed (10 per task):

* ``tests/test_hiql.py``: a 2e4-transition PointMaze-Open-v0 navigate dataset, 1,000 updates of batch
  128, two hidden layers of 32 units, lr 1e-3, τ 0.02 (the rest OGBench's defaults), 4 seeds: 0.64 over
  seeds 0-3 through the CLI (0.22, 0.40, 1.00, 0.92); a uniform-random policy 0.00. (The numbers below
  and these: 0.61 through the CLI, 0.70 / 0.55 over seeds 0-3 / 4-7 in a direct program, were measured
  before the actors' output layers took OGBench's 1e-2 initial scale; ``gc-pointmaze`` re-measures UMaze.)
* ``gciql.py``'s larger budget (10,000 updates of batch 256, two hidden layers of 128 units, lr 1e-3,
  τ 0.02; the 2e5-transition PointMaze-UMaze-v0 datasets of ``scripts/make_dataset.py``, seed 0),
  3 seeds: navigate 0.89 (1.00, 0.94, 0.74), stitch 1.00 (1.00, 1.00, 1.00). At that budget with 2
  seeds: GCIVL navigate 0.72; GCIQL 0.83 / 0.94 and GCBC 0.04 / 1.00 (navigate / stitch). Each HIQL
  run took 12-13 min for the 3 seeds (about 300 s of CPU) under a load of about 10.

Evaluation (the headline metric, the CLI's ``eval_success``): on envs with evaluation tasks
(``EnvParams.task_id``, the point maze's five tasks per layout) episode i runs task (i mod 5) + 1;
``report`` gives the success rate per task (10 episodes each), its mean, and the mean episode length per
task in ``summary.json``.

Run:  python scripts/make_dataset.py PointMaze-UMaze-v0 --kind stitch
      python agents/goal_conditioned/hiql.py --env PointMaze-UMaze-v0 \\
          --dataset datasets/PointMaze-UMaze-v0-stitch.npz --num-seeds 3 --num-updates 10000 \\
          --batch-size 256 --hidden-size 128 --num-layers 2 --lr 1e-3 --tau 0.02 --eval-episodes 50
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
    """Hidden layers of the representation, the value heads and both actors (OGBench: 3)."""
    layer_norm: bool = True
    """Layer normalization after every hidden activation of the representation and values (OGBench: True)."""
    gamma: float = 0.99
    """Discount factor; also the geometric parameter of future value goals (OGBench: 0.99)."""
    tau: float = 0.005
    """Polyak rate of the target value heads (OGBench: 0.005)."""
    expectile: float = 0.7
    """Expectile τ of the value loss (OGBench HIQL: 0.7)."""
    high_alpha: float = 3.0
    """AWR inverse temperature of the high-level policy (OGBench: 3)."""
    low_alpha: float = 3.0
    """AWR inverse temperature of the low-level policy (OGBench: 3)."""
    subgoal_steps: int = 25
    """k: the subgoal is the dataset state k steps ahead, clipped at the trajectory's end (OGBench: 25)."""
    rep_dim: int = 10
    """Dimension of the length-normalized subgoal representation φ([s; g]) (OGBench: 10)."""
    low_actor_rep_grad: bool = False
    """Whether the low-level actor's loss also trains the representation φ (OGBench: False for states)."""
    value_p_curgoal: float = 0.2
    """Probability that a value goal is the current state (OGBench: 0.2)."""
    value_p_trajgoal: float = 0.5
    """Probability that a value goal is a future state of the same trajectory (OGBench: 0.5)."""
    value_p_randomgoal: float = 0.3
    """Probability that a value goal is a random dataset state (OGBench: 0.3)."""
    value_geom_sample: bool = True
    """Future value goals at a Geometric(1 − γ) offset (True) or uniform up to the trajectory's end."""
    actor_p_curgoal: float = 0.0
    """Probability that a high-level goal is the current state (OGBench: 0; its HGCDataset ignores it)."""
    actor_p_trajgoal: float = 1.0
    """Probability that a high-level goal is a future state of the same trajectory (OGBench: 1)."""
    actor_p_randomgoal: float = 0.0
    """Probability that a high-level goal is a random dataset state (OGBench: 0)."""
    actor_geom_sample: bool = False
    """Future high-level goals at a geometric offset (True) or uniform up to the trajectory's end (OGBench: False)."""
    success_radius: float = 0.0
    """A state within this distance of the goal counts as reaching it (0: only the goal state itself, OGBench)."""


# ----------------------------------------------------------------------------------------------
# Networks
# ----------------------------------------------------------------------------------------------
class MLP(nn.Module):
    """OGBench's MLP: GELU hidden layers, each followed by layer normalization when ``layer_norm``; a linear
    output whose initial weights are scaled by ``out_scale`` (OGBench's ``GCActor`` mean layer: 1e-2)."""

    out_dim: int
    hidden_size: int = 512
    num_layers: int = 3
    layer_norm: bool = True
    out_scale: float = 1.0

    @nn.compact
    def __call__(self, x):
        init = variance_scaling(1.0, "fan_avg", "uniform")
        for _ in range(self.num_layers):
            x = nn.gelu(nn.Dense(self.hidden_size, kernel_init=init)(x))
            if self.layer_norm:
                x = nn.LayerNorm()(x)
        return nn.Dense(self.out_dim, kernel_init=variance_scaling(self.out_scale, "fan_avg", "uniform"))(x)


def length_normalize(x):
    """x / ||x|| · √d over the last axis (OGBench's ``LengthNormalize``): the representations lie on a sphere."""
    norm = jnp.linalg.norm(x, axis=-1, keepdims=True)
    return x / jnp.maximum(norm, 1e-6) * jnp.sqrt(x.shape[-1])


class GoalRep(nn.Module):
    """The subgoal representation φ([s; g]), length-normalized to norm √rep_dim."""

    rep_dim: int = 10
    hidden_size: int = 512
    num_layers: int = 3
    layer_norm: bool = True

    @nn.compact
    def __call__(self, obs, goal):
        x = jnp.concatenate([obs, goal], axis=-1)
        return length_normalize(MLP(self.rep_dim, self.hidden_size, self.num_layers, self.layer_norm)(x))


class ValueHead(nn.Module):
    """f(s, z): the value of state s for the goal whose representation is z = φ([s; g])."""

    hidden_size: int = 512
    num_layers: int = 3
    layer_norm: bool = True

    @nn.compact
    def __call__(self, obs, rep):
        x = jnp.concatenate([obs, rep], axis=-1)
        return MLP(1, self.hidden_size, self.num_layers, self.layer_norm)(x)[..., 0]


class Actor(nn.Module):
    """Mean of a constant-std Gaussian policy on (s, x): the high level's x is the goal g (output: a
    representation), the low level's x is a subgoal representation z (output: an action)."""

    out_dim: int
    hidden_size: int = 512
    num_layers: int = 3

    @nn.compact
    def __call__(self, obs, x):
        return MLP(self.out_dim, self.hidden_size, self.num_layers, layer_norm=False, out_scale=1e-2)(
            jnp.concatenate([obs, x], axis=-1))


# ----------------------------------------------------------------------------------------------
# Goal and subgoal sampling (OGBench's HGCDataset)
# ----------------------------------------------------------------------------------------------
def subgoal_indices(idx, final_index, subgoal_steps):
    """The low-level subgoal index min(t + k, T): k steps ahead, clipped at the trajectory's last index T."""
    return jnp.minimum(idx + subgoal_steps, final_index)


def high_goal_indices(key, idx, final_index, size: int, mixture: gc_data.GoalMixture, gamma, subgoal_steps):
    """(high-level goal, high-level target) indices for the dataset indices ``idx``.

    Goals come from ``mixture`` as in ``jaxrl.gc_data.sample_goal_indices``; the target is the state
    k steps ahead, clipped at the goal for goals of the same trajectory (current or future state) and at
    the trajectory's end for random goals (OGBench's ``HGCDataset``, which has no current-state goals)."""
    k_future, k_random, k_pick, k_cur = jax.random.split(key, 4)
    future = gc_data.future_indices(k_future, idx, final_index, gamma, mixture.geom_sample)
    random = jax.random.randint(k_random, idx.shape, 0, size)
    use_future = jax.random.uniform(k_pick, idx.shape) < mixture.p_traj / (1.0 - mixture.p_cur + 1e-6)
    use_current = jax.random.uniform(k_cur, idx.shape) < mixture.p_cur
    goal = jnp.where(use_current, idx, jnp.where(use_future, future, random))
    same_trajectory = use_current | use_future
    target = jnp.where(same_trajectory, jnp.minimum(idx + subgoal_steps, goal),
                       subgoal_indices(idx, final_index, subgoal_steps))
    return goal, target


def sample_batch(key, data: data_lib.Dataset, batch_size: int, value: gc_data.GoalMixture,
                 actor: gc_data.GoalMixture, gamma, subgoal_steps, success_radius=0.0) -> dict:
    """A uniform batch of transitions with value goals (and their rewards and masks), low-level subgoals
    and high-level goals and targets (jit-able; ``data`` must carry ``extras["final_index"]``, see
    ``jaxrl.gc_data.prepare``). Index keys: idx, value_goal_idx, low_goal_idx, high_goal_idx, high_target_idx."""
    k_idx, k_value, k_high = jax.random.split(key, 3)
    size = data.observations.shape[0]
    idx = jax.random.randint(k_idx, (batch_size,), 0, size)
    final = data.extras["final_index"][idx]
    value_idx = gc_data.sample_goal_indices(k_value, idx, final, size, value, gamma)
    reward, mask = gc_data.goal_reward(data.observations, idx, value_idx, success_radius)
    low_idx = subgoal_indices(idx, final, subgoal_steps)
    high_idx, high_target_idx = high_goal_indices(k_high, idx, final, size, actor, gamma, subgoal_steps)
    obs = data.observations
    return {
        "observations": obs[idx], "actions": data.actions[idx], "next_observations": data.next_observations[idx],
        "value_goals": obs[value_idx], "rewards": reward, "masks": mask,
        "low_goals": obs[low_idx], "high_goals": obs[high_idx], "high_targets": obs[high_target_idx],
        "idx": idx, "value_goal_idx": value_idx, "low_goal_idx": low_idx, "high_goal_idx": high_idx,
        "high_target_idx": high_target_idx,
    }


# ----------------------------------------------------------------------------------------------
# Losses
# ----------------------------------------------------------------------------------------------
def expectile_loss(advantage, diff, expectile):
    """|τ − 1(A < 0)| u², elementwise: IQL's expectile loss (Kostrikov et al. 2022, eq. 5) with the weight
    chosen by the sign of the target's advantage A rather than of the residual u (HIQL, Park et al. 2023,
    eq. 4 as implemented in OGBench); ``expectile`` may be traced."""
    return jnp.where(advantage >= 0, expectile, 1.0 - expectile) * diff ** 2


def value_loss(v, target_v, target_next_v, reward, mask, gamma, expectile):
    """Twin implicit V-learning loss (HIQL eq. 4, OGBench's HIQL/GCIVL ``value_loss``). ``v``, ``target_v``,
    ``target_next_v`` have shape (2, B): V_i(s, g), V̄_i(s, g), V̄_i(s', g). Returns (loss, A_t, y) with
    y_i = r + γ m V̄_i(s', g) and A_t = r + γ m min_i V̄_i(s', g) − mean_i V̄_i(s, g)."""
    target = reward + gamma * mask * target_next_v
    advantage = reward + gamma * mask * target_next_v.min(0) - target_v.mean(0)
    loss = expectile_loss(advantage, target - v, expectile).mean(1).sum()
    return loss, advantage, target


def gaussian_log_prob(mean, x):
    """log N(x; mean, I), summed over the last axis (the constant-std policies of OGBench)."""
    return (-0.5 * (x - mean) ** 2 - 0.5 * jnp.log(2.0 * jnp.pi)).sum(-1)


def awr_weights(advantage, alpha):
    """min(exp(α A), 100), without gradient: the AWR weights of both HIQL levels (HIQL eqs. 6 and 7)."""
    return jax.lax.stop_gradient(jnp.minimum(jnp.exp(alpha * advantage), EXP_ADV_MAX))


def awr_loss(mean, target, advantage, alpha):
    """AWR (HIQL Sec. 4.2, eqs. 6 and 7; IQL eq. 7): −E[min(exp(α A), 100) log N(target; mean, I)].
    High level: target = φ([s; w_h]), A = V(w_h, g) − V(s, g);
    low level: target = a, A = V(s', w_l) − V(s, w_l)."""
    return -(awr_weights(advantage, alpha) * gaussian_log_prob(mean, target)).mean()


# ----------------------------------------------------------------------------------------------
# Training
# ----------------------------------------------------------------------------------------------
class TrainState(NamedTuple):
    params: dict            # {"rep", "value" (twin heads, stacked on a leading axis of 2), "high_actor", "low_actor"}
    target_value: dict      # the target twin heads (they read the online φ, as in OGBench)
    opt: optax.OptState
    key: jax.Array


def goal_mixtures(config: Config) -> tuple[gc_data.GoalMixture, gc_data.GoalMixture]:
    value = gc_data.GoalMixture(config.value_p_curgoal, config.value_p_trajgoal, config.value_p_randomgoal,
                                config.value_geom_sample)
    actor = gc_data.GoalMixture(config.actor_p_curgoal, config.actor_p_trajgoal, config.actor_p_randomgoal,
                                config.actor_geom_sample)
    return value, actor


def is_count(value) -> bool:
    """Whether ``value`` is an integer >= 1 (not a bool); a traced value passes (checked before tracing)."""
    if isinstance(value, jax.core.Tracer):
        return True
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value >= 1


def validate(config: Config) -> None:
    require_positive(config, "num_updates", "lr", "batch_size", "hidden_size", "num_layers")
    require_unit_interval(config, "gamma")
    require_unit_interval(config, "expectile", closed=False)
    require((0 < config.tau) & (config.tau <= 1), f"tau must be in (0, 1], got {config.tau}")
    require(config.high_alpha >= 0, f"high_alpha must be >= 0, got {config.high_alpha}")
    require(config.low_alpha >= 0, f"low_alpha must be >= 0, got {config.low_alpha}")
    require(is_count(config.subgoal_steps), f"subgoal_steps must be an integer >= 1 (the subgoal is the dataset "
                                            f"state that many steps ahead), got {config.subgoal_steps!r}")
    require(is_count(config.rep_dim), f"rep_dim must be an integer >= 1 (the representation's size), "
                                      f"got {config.rep_dim!r}")
    require(config.success_radius >= 0, f"success_radius must be >= 0, got {config.success_radius}")
    value, actor = goal_mixtures(config)
    gc_data.check_mixture("value", value)
    gc_data.check_mixture("actor", actor)


def goal_observation(obs: dict):
    """(observation, desired goal) of a batch of the env's dict observations."""
    return obs["observation"].reshape(obs["observation"].shape[0], -1), obs["desired_goal"].reshape(
        obs["desired_goal"].shape[0], -1)


def make_train(config: Config, dataset: data_lib.Dataset, env=None, env_params=None) -> Trainer:
    """Build the HIQL trainer on ``dataset`` (a goal-conditioned dataset of ``config.env``, e.g. from
    ``scripts/make_dataset.py PointMaze-Open-v0 --kind navigate``)."""
    validate(config)
    if env is None:
        env, env_params = envs.make(config.env)
    env_params = env.default_params if env_params is None else env_params
    gc_data.check_dataset(dataset, config.env, env, env_params, "HIQL")
    envs.require_action_space(config.env, env, env_params, "continuous", "HIQL")
    data = gc_data.prepare(dataset)
    low, high = envs.action_bounds(env, env_params)
    action_dim = int(np.prod(low.shape))
    obs_dim = int(np.prod(dataset.observations.shape[1:]))
    value_mix, actor_mix = goal_mixtures(config)

    rep = GoalRep(config.rep_dim, config.hidden_size, config.num_layers, config.layer_norm)
    head = ValueHead(config.hidden_size, config.num_layers, config.layer_norm)
    high_actor = Actor(config.rep_dim, config.hidden_size, config.num_layers)
    low_actor = Actor(action_dim, config.hidden_size, config.num_layers)
    tx = optax.adam(config.lr)

    def to_unit(action):
        return jnp.clip((action - 0.5 * (high + low)) / (0.5 * (high - low)), -1.0, 1.0)

    def init(key) -> TrainState:
        key, k_rep, k_value, k_high, k_low = jax.random.split(key, 5)
        obs, z = jnp.zeros((1, obs_dim)), jnp.zeros((1, config.rep_dim))
        params = {
            "rep": rep.init(k_rep, obs, obs),
            "value": jax.vmap(head.init, in_axes=(0, None, None))(jax.random.split(k_value), obs, z),
            "high_actor": high_actor.init(k_high, obs, obs),
            "low_actor": low_actor.init(k_low, obs, z),
        }
        return TrainState(params, params["value"], tx.init(params), key)

    def twin_v(rep_params, head_params, obs, goal):
        """(V_1, V_2)(s, g) = f_i(s, φ([s; g])), shape (2, B)."""
        z = rep.apply(rep_params, obs, goal)
        return jax.vmap(head.apply, in_axes=(0, None, None))(head_params, obs, z)

    def loss_fn(params, target_value, batch):
        obs, action, next_obs = batch["observations"], to_unit(batch["actions"]), batch["next_observations"]
        g, w_low, g_high, w_high = batch["value_goals"], batch["low_goals"], batch["high_goals"], batch["high_targets"]
        cat = lambda *xs: jnp.concatenate(xs, axis=0)  # noqa: E731  one network call per group (a smaller program)
        # value: expectile regression on the target heads over the online φ (HIQL eq. 4, OGBench)
        v = twin_v(params["rep"], params["value"], obs, g)
        target_v, target_next_v = jnp.split(
            twin_v(jax.lax.stop_gradient(params["rep"]), target_value, cat(obs, next_obs), cat(g, g)), 2, axis=1)
        v_loss, target_advantage, _ = value_loss(v, target_v, target_next_v, batch["rewards"], batch["masks"],
                                                 config.gamma, config.expectile)
        # advantages of both levels from the online twin mean V = (V_1 + V_2) / 2, without gradient
        fixed = jax.lax.stop_gradient(params)
        states, goals = cat(w_high, obs, next_obs, obs), cat(g_high, g_high, w_low, w_low)
        v_w_high, v_high, v_next_low, v_low = jnp.split(twin_v(fixed["rep"], fixed["value"], states, goals).mean(0), 4)
        high_advantage = v_w_high - v_high          # A_h = V(w_h, g_h) − V(s, g_h)
        low_advantage = v_next_low - v_low          # A_l = V(s', w_l) − V(s, w_l)
        # representations: the high level's target φ([s; w_h]) (no gradient) and the low level's input φ([s; w_l])
        high_target, z_low = jnp.split(rep.apply(params["rep"], cat(obs, obs), cat(w_high, w_low)), 2)
        high_target = jax.lax.stop_gradient(high_target)
        if not config.low_actor_rep_grad:
            z_low = jax.lax.stop_gradient(z_low)
        # high level: AWR toward φ([s; w_h]) (HIQL eq. 6); low level: AWR toward a given φ([s; w_l]) (eq. 7)
        high_mean = high_actor.apply(params["high_actor"], obs, g_high)
        high_loss = awr_loss(high_mean, high_target, high_advantage, config.high_alpha)
        low_mean = low_actor.apply(params["low_actor"], obs, z_low)
        low_loss = awr_loss(low_mean, action, low_advantage, config.low_alpha)
        metrics = {"value_loss": v_loss, "high_actor_loss": high_loss, "low_actor_loss": low_loss,
                   "v_mean": v.mean(), "target_advantage_mean": target_advantage.mean(),
                   "high_advantage_mean": high_advantage.mean(), "low_advantage_mean": low_advantage.mean(),
                   "high_mse": ((high_mean - high_target) ** 2).mean(),
                   "low_mse": ((jnp.clip(low_mean, -1.0, 1.0) - action) ** 2).mean(),
                   "reward_mean": batch["rewards"].mean()}
        return v_loss + high_loss + low_loss, metrics

    def update(state: TrainState, _iteration, data: data_lib.Dataset):
        key, sample_key = jax.random.split(state.key)
        batch = sample_batch(sample_key, data, config.batch_size, value_mix, actor_mix, config.gamma,
                             config.subgoal_steps, config.success_radius)
        grads, metrics = jax.grad(loss_fn, has_aux=True)(state.params, state.target_value, batch)
        updates, opt = tx.update(grads, state.opt, state.params)
        params = optax.apply_updates(state.params, updates)
        target_value = optax.incremental_update(params["value"], state.target_value, config.tau)
        return TrainState(params, target_value, opt, key), metrics

    def subgoal(state: TrainState, o, g):
        """The high-level mean, length-normalized: the representation of the next subgoal."""
        return length_normalize(high_actor.apply(state.params["high_actor"], o, g))

    def act(state: TrainState, obs, key):
        """z = normalized μ_h(s, g), then the low-level mean μ_l(s, z), clipped and rescaled to the action box."""
        o, g = goal_observation(obs)
        mean = jnp.clip(low_actor.apply(state.params["low_actor"], o, subgoal(state, o, g)), -1.0, 1.0)
        return 0.5 * (high + low) + 0.5 * (high - low) * mean

    tasks = gc_data.has_eval_tasks(env_params)

    def evaluate_tasks(state: TrainState, key, num_episodes: int) -> dict:
        return gc_data.evaluate_on_tasks(env, env_params, lambda o, k: act(state, o, k), key, num_episodes)

    def per_task(state: TrainState, key):
        """Success rate and mean episode length on each of the five evaluation tasks, shape (5,) each."""
        result = gc_data.evaluate_on_tasks(env, env_params, lambda o, k: act(state, o, k), key,
                                           REPORT_EPISODES_PER_TASK * gc_data.NUM_EVAL_TASKS)
        shape = (REPORT_EPISODES_PER_TASK, gc_data.NUM_EVAL_TASKS)     # episode i runs task (i mod 5) + 1
        return (result["success"].astype(jnp.float32).reshape(shape).mean(0),
                result["length"].astype(jnp.float32).reshape(shape).mean(0))

    per_task_jit = jax.jit(per_task)

    def report(state: TrainState, key) -> dict:
        """Success rate and mean episode length on each of the five evaluation tasks (10 episodes each)."""
        success, length = (np.asarray(x) for x in per_task_jit(state, key))
        return {"task_success": [float(x) for x in success], "success": float(success.mean()),
                "task_length": [float(x) for x in length], "episodes_per_task": REPORT_EPISODES_PER_TASK}

    return Trainer(init=init, update=update, act=act, num_updates=config.num_updates, env_steps_per_update=0,
                   env=env, env_params=env_params, data=data, evaluate=evaluate_tasks if tasks else None,
                   report=report if tasks else None)


if __name__ == "__main__":
    from jaxrl.cli import main

    main(Config, make_train, algorithm="hiql", offline=True)
