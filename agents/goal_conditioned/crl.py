"""Contrastive RL (CRL): goal-conditioned RL as contrastive representation learning (point maze).

Eysenbach, Zhang, Levine, Salakhutdinov 2022, "Contrastive Learning as Goal-Conditioned
Reinforcement Learning" (NeurIPS). The critic is never trained on rewards. A state-action encoder
φ(s, a) and a goal encoder ψ(g) are trained so that the energy f(s, a, g) = E(φ(s, a), ψ(g)) is high
for goals g reached later in the same trajectory (positives) and low for the goals of the other rows
of the batch (negatives). At its optimum, exp f(s, a, g) is proportional to the discounted occupancy
p^π(s_{t+} = g | s, a) / p(g), i.e. to the goal-conditioned Q-function of the reward p(s_{t+1} = g)
(paper, Sec. 4). The actor maximizes this critic like SAC maximizes its Q-function.

* Critic (the paper's InfoNCE variant, "contrastive RL (CPC)"; JaxGCRL's ``fwd_infonce``): for a
  batch of B transitions (s_i, a_i) with positive goals g_i, logits[i, j] = E(φ(s_i, a_i), ψ(g_j));
  the forward InfoNCE loss is −mean_i(logits[i, i] − logsumexp_j logits[i, j]), plus the logsumexp
  penalty c · mean_i(logsumexp_j logits[i, j])² (JaxGCRL), which pins the normalizer near 1.
* Positives: g_i is the ``achieved_goal`` of s_{t+k} in the same episode, k ~ Geometric(1 − γ) on
  {1, 2, ...} truncated at the episode's end: P(k) ∝ γ^(k − 1) for 1 ≤ k ≤ L − t (JaxGCRL's
  ``flatten_batch``: future indices of the same trajectory weighted by γ^(j − t)). The offset is
  drawn in closed form by inverting the truncated CDF (``future_offset``); a goal never comes from
  another episode.
* Actor (paper, Sec. 4: maximize the critic over actions; with SAC's entropy term as JaxGCRL): a
  tanh-squashed Gaussian π(a | s, g) minimizing mean(α log π(ã | s, g) − E(φ(s, ã), ψ(g))), ã
  reparameterized. Which goals g the actor trains on is ``actor_goals``: "desired" (default, ours:
  the episodes' commanded goals, on PointMaze drawn uniformly over the free cells, the distribution
  the evaluation tasks come from) or "future" (JaxGCRL: the positive goals of the critic batch,
  states the data reached, mostly near s). The critic is trained on future states either way.
  Measured on PointMaze-UMaze-v0 (defaults, 2 seeds, 200 cycles): "desired" 0.52 evaluation
  success, "future" 0.20 (see below).
* Temperature (SAC, Haarnoja et al. 2018, eq. 18, on α as JaxGCRL): J(α) = α · mean(−log π − H̄)
  with target entropy H̄ = −0.5 |A| (JaxGCRL), α starting at 1 (log α = 0, JaxGCRL).

Energy functions (``energy``): "norm" −‖φ − ψ‖₂ (JaxGCRL default), "l2" −‖φ − ψ‖₂², "dot" φ·ψ.
Contrastive losses (``contrastive_loss``): "fwd_infonce" (default), "bwd_infonce" (logsumexp over
the batch's state-actions for each goal) and "sym_infonce" (their sum).

Defaults: JaxGCRL (Bortkiewicz et al. 2025, "Accelerating Goal-Conditioned RL Algorithms and
Research", ICLR; code ``jaxgcrl/agents/crl/crl.py`` class ``CRL`` and ``losses.py``): Adam with
learning rates 3e-4 for the actor, the critic and α; batch 256; γ = 0.99 (``discounting``, used only
to sample future goals); logsumexp penalty 0.1; representations of dimension 64; encoders and actor
with 2 hidden layers of 256 swish units (``h_dim``, ``n_hidden``, ``use_relu=False``; LeCun-uniform
kernels, zero biases; no layer norm); energy "norm"; forward InfoNCE; target entropy −0.5 |A|.

Differences from JaxGCRL, by design (a CPU-sized, episode-based loop like ``sac_her.py``'s):

* One iteration is one *cycle*: ``num_envs`` episodes from fresh resets run to their end with the
  stochastic policy, stored as rows of an on-device episode buffer (``jaxrl.relabel.EpisodeBuffer``:
  one row per episode, so future-goal sampling is exact and never crosses an episode boundary), then
  ``num_optim_steps`` gradient steps on batches drawn uniformly over the stored transitions, in a
  ``lax.scan``. JaxGCRL instead steps 256-1024 envs continuously for 62-step unrolls and trains on
  every stored trajectory segment (about 16 sampled transitions per env step); our default of 40
  steps of 256 per cycle of 16 x T env steps is fewer (0.5 sampled transitions per env step on
  UMaze's 300-step episodes), set for the CPU; ``num_optim_steps`` raises it.
* The replay buffer holds ``buffer_size`` transitions (JaxGCRL: 10,000 steps per env x its envs).
* The actor is trained on the episodes' desired goals (JaxGCRL: future states; ``actor_goals``).
* No prefill phase; actions are rescaled to the action bounds; the greedy policy (squashed mean) is
  evaluated.

Metrics per cycle: ``success_rate`` (fraction of this cycle's exploration episodes that reached their
goal), ``episode_return``, ``episode_length``, ``critic_loss``, ``actor_loss``, ``alpha``,
``entropy``, ``accuracy`` (InfoNCE accuracy: the fraction of rows whose positive has the largest
logit), ``logits_pos``/``logits_neg`` (mean positive and negative logits), ``logsumexp`` and
``buffer_episodes``. Evaluation (the CLI's ``eval_success``, the headline): on envs with evaluation
tasks (``EnvParams.task_id``, the point maze's five OGBench-style tasks) the greedy policy runs
episode i on task (i mod 5) + 1; ``report`` gives the success per task (``summary.json``).

Measured (CPU, shared 2 cores; success = greedy success on the five evaluation tasks):

* PointMaze-Open-v0 with 50-step episodes and max_speed 0.2, networks 64x64, batch 128, α starting
  at 0.1, 20 cycles (16,000 env steps): 1.0 for seeds 0-2 and for seeds 4-6; with 10 cycles 0.96
  (seeds 4-6). With ``actor_goals="future"``: 1.0 (seeds 0-2, 20 cycles), 0.96 (seeds 4-6, 15
  cycles). From α = 1 (JaxGCRL's start; future goals, 15 cycles) the policy stays near uniform: 0.02. A
  uniformly random policy: 0.0-0.003 (``tests/test_crl.py``);
* PointMaze-UMaze-v0, defaults, 200 cycles (960,000 env steps per seed, 11.5 min for 2 seeds on
  a loaded CPU): 0.52 (per task 0.3/0.5/0.6/0.7/0.8 and 0.4/0.3/0.2/0.8/0.6, 10 episodes each; the
  training success on random start and goal cells 0.75-1.0 at the end). With JaxGCRL's
  ``actor_goals="future"``, same budget: 0.20 (tasks 1-3, around the U's bend, never reached;
  training success 0.56-0.88). α was still ~0.2 at the end of both (it starts at 1).

Run:  python agents/goal_conditioned/crl.py --env PointMaze-UMaze-v0 --num-seeds 4
"""
from __future__ import annotations

import dataclasses
from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from gymnax.environments import spaces

from jaxrl import envs, relabel
from jaxrl.config import ConfigError, require, require_positive
from jaxrl.evaluation import evaluate
from jaxrl.trainer import Trainer
from jaxrl.wrappers import VectorEnv

GOAL_KEYS = ("observation", "achieved_goal", "desired_goal")
LOG_STD_MIN, LOG_STD_MAX = -5.0, 2.0     # bounds of the policy's log-std (JaxGCRL, SpinningUp)
ENERGIES = ("norm", "l2", "dot")
CONTRASTIVE_LOSSES = ("fwd_infonce", "bwd_infonce", "sym_infonce")
ACTOR_GOALS = ("desired", "future")
NUM_EVAL_TASKS = 5                        # point maze: OGBench-style task_id 1..5
REPORT_EPISODES_PER_TASK = 10


@dataclasses.dataclass(frozen=True)
class Config:
    env: str = "PointMaze-UMaze-v0"
    """Goal-conditioned environment id (dict observations with observation/achieved_goal/desired_goal); Box actions."""
    total_timesteps: int = 960_000
    """Env steps per run; one cycle takes num_envs x max_steps_in_episode of them (default: 200 cycles on UMaze)."""
    policy_lr: float = 3e-4
    """Adam learning rate of the actor (JaxGCRL: 3e-4)."""
    critic_lr: float = 3e-4
    """Adam learning rate of the two encoders φ and ψ (JaxGCRL: 3e-4)."""
    alpha_lr: float = 3e-4
    """Adam learning rate of log α (JaxGCRL: 3e-4)."""
    num_envs: int = 16
    """Episodes collected in parallel per cycle (ours, CPU-sized; JaxGCRL steps 256-1024 envs)."""
    num_optim_steps: int = 40
    """Gradient steps per cycle (ours; see the module docstring for JaxGCRL's replay ratio)."""
    batch_size: int = 256
    """Transitions per gradient step; each row's positive goal is every other row's negative (JaxGCRL: 256)."""
    buffer_size: int = 160_000
    """Replay capacity in transitions, stored as buffer_size // max_steps_in_episode episodes (JaxGCRL: 10,000 per env)."""
    gamma: float = 0.99
    """Discount of the occupancy measure: future goals are k ~ Geometric(1 − gamma) steps ahead (JaxGCRL: 0.99)."""
    logsumexp_penalty: float = 0.1
    """Coefficient c of the penalty c · mean(logsumexp_j logits[i, j])² added to the critic loss (JaxGCRL: 0.1)."""
    repr_dim: int = 64
    """Dimension of the representations φ(s, a) and ψ(g) (JaxGCRL: 64)."""
    energy: str = "norm"
    """Energy E(φ, ψ): "norm" −‖φ − ψ‖₂ (JaxGCRL default), "l2" −‖φ − ψ‖₂², or "dot" φ·ψ."""
    contrastive_loss: str = "fwd_infonce"
    """Critic loss: "fwd_infonce" (JaxGCRL default), "bwd_infonce" or "sym_infonce"."""
    actor_goals: str = "desired"
    """Goals of the actor loss: "desired" (the episodes' own goals; ours, see the module docstring) or "future" (the critic batch's positive goals, JaxGCRL)."""
    autotune: bool = True
    """Tune α automatically towards the target entropy; otherwise α is fixed at ``alpha``."""
    alpha: float = 0.2
    """Entropy coefficient when autotune is off."""
    init_alpha: float = 1.0
    """Initial entropy coefficient when autotune is on (JaxGCRL: log α = 0)."""
    target_entropy_scale: float = 0.5
    """Target entropy = −target_entropy_scale · |A| (JaxGCRL: 0.5)."""
    hidden_sizes: str = "256,256"
    """Comma-separated widths of the swish hidden layers of the actor and of each encoder (JaxGCRL: 2 x 256)."""


# ----------------------------------------------------------------------------------------------
# Networks and the squashed Gaussian
# ----------------------------------------------------------------------------------------------
def parse_hidden_sizes(hidden_sizes) -> tuple[int, ...]:
    """ "256,256" -> (256, 256); raises ConfigError on anything else."""
    try:
        sizes = tuple(int(s) for s in str(hidden_sizes).replace(" ", "").split(",") if s)
    except ValueError:
        raise ConfigError(f"hidden_sizes must be comma-separated positive integers like '256,256', got {hidden_sizes!r}") from None
    if not sizes or min(sizes) <= 0:
        raise ConfigError(f"hidden_sizes must be one or more positive integers like '256,256', got {hidden_sizes!r}")
    return sizes


def flat(x) -> jax.Array:
    """One observation part as a float32 vector per row (trailing axes flattened)."""
    x = jnp.asarray(x, jnp.float32)
    return x.reshape(x.shape[:1] + (-1,)) if x.ndim > 1 else x


def lecun_uniform():
    """JaxGCRL's kernel initializer: variance scaling 1/3, fan-in, uniform."""
    return nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")


def swish_mlp(x, hidden_sizes, out_dim: int):
    for width in hidden_sizes:
        x = nn.swish(nn.Dense(width, kernel_init=lecun_uniform())(x))
    return nn.Dense(out_dim, kernel_init=lecun_uniform())(x)


class Encoder(nn.Module):
    """An MLP from an input vector to a ``repr_dim`` representation (φ on s ⊕ a, ψ on g)."""

    repr_dim: int = 64
    hidden_sizes: tuple[int, ...] = (256, 256)

    @nn.compact
    def __call__(self, x):
        return swish_mlp(x, self.hidden_sizes, self.repr_dim)


class Critic(nn.Module):
    """The pair (φ(s, a), ψ(g)): a state-action encoder and a goal encoder with separate weights."""

    repr_dim: int = 64
    hidden_sizes: tuple[int, ...] = (256, 256)

    def setup(self):
        self.sa_encoder = Encoder(self.repr_dim, self.hidden_sizes)
        self.g_encoder = Encoder(self.repr_dim, self.hidden_sizes)

    def __call__(self, state, action, goal):
        return self.sa_encoder(jnp.concatenate([state, action], axis=-1)), self.g_encoder(goal)


class Actor(nn.Module):
    """π(·|s ⊕ g) before squashing: mean and log-std (kept in [LOG_STD_MIN, LOG_STD_MAX])."""

    action_dim: int
    hidden_sizes: tuple[int, ...] = (256, 256)

    @nn.compact
    def __call__(self, state, goal):
        x = jnp.concatenate([state, goal], axis=-1)
        for width in self.hidden_sizes:
            x = nn.swish(nn.Dense(width, kernel_init=lecun_uniform())(x))
        mean = nn.Dense(self.action_dim, kernel_init=lecun_uniform())(x)
        log_std = jnp.tanh(nn.Dense(self.action_dim, kernel_init=lecun_uniform())(x))
        return mean, LOG_STD_MIN + 0.5 * (LOG_STD_MAX - LOG_STD_MIN) * (log_std + 1.0)


def squash(u, low, high):
    """a = mid + half_range · tanh(u): a pre-squash sample mapped into [low, high]."""
    return 0.5 * (high + low) + 0.5 * (high - low) * jnp.tanh(u)


def squashed_log_prob(mean, log_std, u, low, high):
    """log π(a) of a = squash(u), u ~ N(mean, exp(log_std)²), summed over action dimensions (SAC
    paper, Appendix C, eq. 21, plus the rescaling), with log(1 − tanh(u)²) = 2 (log 2 − u − softplus(−2u))."""
    gaussian = -0.5 * ((u - mean) / jnp.exp(log_std)) ** 2 - log_std - 0.5 * jnp.log(2.0 * jnp.pi)
    log_det = jnp.log(0.5 * (high - low)) + 2.0 * (jnp.log(2.0) - u - jax.nn.softplus(-2.0 * u))
    return (gaussian - log_det).sum(-1)


def sample_action(key, mean, log_std, low, high):
    """Reparameterized sample of the squashed policy: (action in [low, high], its log-probability)."""
    u = mean + jnp.exp(log_std) * jax.random.normal(key, mean.shape)
    return squash(u, low, high), squashed_log_prob(mean, log_std, u, low, high)


# ----------------------------------------------------------------------------------------------
# Future goals and losses
# ----------------------------------------------------------------------------------------------
def future_offset(u, remaining, gamma):
    """k in [1, remaining] with P(k) ∝ γ^(k − 1): Geometric(1 − γ) on {1, 2, ...} truncated at the
    episode's end (``remaining`` = L − t ≥ 1 states after s_t), from a uniform ``u`` in [0, 1) by
    inverting the truncated CDF F(k) = (1 − γ^k) / (1 − γ^remaining):
    k = 1 + ⌊log(1 − u (1 − γ^remaining)) / log γ⌋ (Eysenbach et al. 2022, Sec. 4: positives from
    the discounted state occupancy; JaxGCRL weights future indices by γ^(j − t) the same way)."""
    remaining = jnp.maximum(remaining, 1)
    tail = 1.0 - u * (1.0 - gamma ** remaining.astype(jnp.float32))
    k = 1 + jnp.floor(jnp.log(tail) / jnp.log(gamma)).astype(jnp.int32)
    return jnp.clip(k, 1, remaining)


class Batch(NamedTuple):
    state: jax.Array           # [B, obs_dim]   observation of s_t
    action: jax.Array          # [B, action_dim]
    future_goal: jax.Array     # [B, goal_dim]  achieved_goal of s_{t+k}, the positive
    desired_goal: jax.Array    # [B, goal_dim]  the episode's own goal
    offset: jax.Array          # [B] k


def sample_batch(key, buffer: relabel.EpisodeBuffer, batch_size: int, gamma) -> Batch:
    """``batch_size`` transitions (e, t) uniform over the stored ones, each with the positive goal
    ``achieved_goal`` of s_{t+k}, k = ``future_offset`` in [1, L_e − t]: always a later state of the
    same episode row e (rows are whole episodes, so no episode boundary is crossed)."""
    transition_key, offset_key = jax.random.split(key)
    episode, t = relabel.sample_transitions(transition_key, buffer.length, buffer.size, batch_size)
    k = future_offset(jax.random.uniform(offset_key, (batch_size,)), buffer.length[episode] - t, gamma)
    states = buffer.states
    return Batch(flat(states["observation"][episode, t]), buffer.action[episode, t],
                 flat(states["achieved_goal"][episode, t + k]), flat(states["desired_goal"][episode, t]), k)


def energy_fn(name: str, phi, psi):
    """E(φ, ψ) over the last axis (broadcasting): "norm" −‖φ − ψ‖₂, "l2" −‖φ − ψ‖₂², "dot" φ·ψ
    (JaxGCRL ``losses.energy_fn``; "dot" is the inner-product critic φᵀψ of Eysenbach et al. 2022)."""
    if name == "norm":
        return -jnp.sqrt(jnp.sum((phi - psi) ** 2, axis=-1) + 1e-12)
    if name == "l2":
        return -jnp.sum((phi - psi) ** 2, axis=-1)
    if name == "dot":
        return jnp.sum(phi * psi, axis=-1)
    raise ConfigError(f"energy must be one of {', '.join(ENERGIES)}, got {name!r}")


def contrastive_logits(name: str, phi, psi):
    """logits[i, j] = E(φ_i, ψ_j) for every pair of the batch; the diagonal holds the positives."""
    return energy_fn(name, phi[:, None, :], psi[None, :, :])


def infonce_loss(logits, kind: str = "fwd_infonce", logsumexp_penalty=0.0):
    """InfoNCE critic loss (Oord et al. 2018, "Representation Learning with Contrastive Predictive
    Coding", eq. 4; applied to (s, a) and future goals by Eysenbach et al. 2022, "contrastive RL (CPC)";
    JaxGCRL ``contrastive_loss_fn``) on a [B, B] logits matrix
    whose diagonal holds the positives, plus JaxGCRL's logsumexp penalty:

    fwd: −mean_i(logits[i, i] − logsumexp_j logits[i, j]) (a softmax over goals for each (s, a));
    bwd: −mean_j(logits[j, j] − logsumexp_i logits[i, j]) (over state-actions for each goal);
    sym: fwd + bwd; and + c · mean_i(logsumexp_j logits[i, j])² (c = ``logsumexp_penalty``).

    Returns (loss, logsumexp of each row)."""
    diagonal = jnp.diagonal(logits)
    row_lse = jax.nn.logsumexp(logits, axis=1)
    col_lse = jax.nn.logsumexp(logits, axis=0)
    if kind == "fwd_infonce":
        loss = -jnp.mean(diagonal - row_lse)
    elif kind == "bwd_infonce":
        loss = -jnp.mean(diagonal - col_lse)
    elif kind == "sym_infonce":
        loss = -jnp.mean(2.0 * diagonal - row_lse - col_lse)
    else:
        raise ConfigError(f"contrastive_loss must be one of {', '.join(CONTRASTIVE_LOSSES)}, got {kind!r}")
    return loss + logsumexp_penalty * jnp.mean(row_lse ** 2), row_lse


def infonce_accuracy(logits):
    """Fraction of rows whose positive (the diagonal) has the largest logit."""
    return jnp.mean(jnp.argmax(logits, axis=1) == jnp.arange(logits.shape[0]))


def actor_loss(log_prob, energy, alpha):
    """J_π = mean(α log π(ã|s, g) − E(φ(s, ã), ψ(g))), ã reparameterized: the critic maximized over
    actions (Eysenbach et al. 2022, Sec. 4) with SAC's entropy term (Haarnoja et al. 2018, "Soft
    Actor-Critic Algorithms and Applications", eqs. 7 and 12; JaxGCRL ``update_actor_and_alpha``)."""
    return (alpha * log_prob - energy).mean()


def temperature_loss(alpha, log_prob, target_entropy):
    """J(α) = α · mean(−log π(a|s, g) − H̄) (Haarnoja et al. 2018, "Soft Actor-Critic Algorithms
    and Applications", eq. 18), with ``alpha`` = exp(log α) as JaxGCRL."""
    return alpha * jax.lax.stop_gradient(-log_prob - target_entropy).mean()


# ----------------------------------------------------------------------------------------------
# Training
# ----------------------------------------------------------------------------------------------
class TrainState(NamedTuple):
    actor_params: dict
    critic_params: dict
    log_alpha: jax.Array
    actor_opt: optax.OptState
    critic_opt: optax.OptState
    alpha_opt: optax.OptState
    buffer: relabel.EpisodeBuffer
    key: jax.Array


def episode_steps(env_params) -> int:
    """T: the env's time limit, the longest an episode can be (a Python int: it sets array shapes)."""
    return int(env_params.max_steps_in_episode)


def has_eval_tasks(env_params) -> bool:
    """Whether the env has a fixed evaluation task set selected by ``EnvParams.task_id`` (1..5)."""
    return "task_id" in {f.name for f in dataclasses.fields(env_params)}


def check_env(env_id: str, env, env_params) -> None:
    """Raise ConfigError unless ``env`` is goal-conditioned with Box actions."""
    space = env.observation_space(env_params)
    keys = sorted(getattr(space, "spaces", {}) or {})
    allowed = "PointMaze-{Open,UMaze,Medium,Large,Giant}-v0"
    described = f"{type(space).__name__} {keys}" if keys else type(space).__name__
    require(isinstance(space, spaces.Dict) and set(GOAL_KEYS) <= set(keys),
            f"CRL needs a goal-conditioned env (dict observations with {', '.join(GOAL_KEYS)}), but {env_id} "
            f"has observation space {described}. Goal-conditioned envs with continuous actions: {allowed}.")
    require(not envs.is_discrete(env, env_params),
            f"CRL supports only continuous action spaces (Box), but {env_id} has "
            f"{envs.describe_action_space(env, env_params)}. Goal-conditioned envs with continuous actions: {allowed}.")


def validate(config: Config, env, env_params) -> None:
    """Raise ConfigError for settings that cannot work (before anything compiles)."""
    require_positive(config, "total_timesteps", "policy_lr", "critic_lr", "alpha_lr", "num_envs", "num_optim_steps",
                     "batch_size", "buffer_size", "repr_dim", "alpha", "init_alpha")
    require((0 < config.gamma) & (config.gamma < 1),
            f"gamma must be in (0, 1) (future goals are Geometric(1 - gamma) steps ahead), got {config.gamma!r}")
    require(config.logsumexp_penalty >= 0, f"logsumexp_penalty must be >= 0, got {config.logsumexp_penalty!r}")
    require(config.energy in ENERGIES, f"energy must be one of {', '.join(ENERGIES)}, got {config.energy!r}")
    require(config.contrastive_loss in CONTRASTIVE_LOSSES,
            f"contrastive_loss must be one of {', '.join(CONTRASTIVE_LOSSES)}, got {config.contrastive_loss!r}")
    require(config.actor_goals in ACTOR_GOALS,
            f"actor_goals must be one of {', '.join(ACTOR_GOALS)}, got {config.actor_goals!r}")
    require(config.batch_size >= 2, f"batch_size must be >= 2 (the other rows are the negatives), got {config.batch_size!r}")
    parse_hidden_sizes(config.hidden_sizes)
    check_env(config.env, env, env_params)
    steps = episode_steps(env_params)
    cycle = config.num_envs * steps
    require(config.total_timesteps >= cycle,
            f"total_timesteps={config.total_timesteps} is less than one cycle ({config.num_envs} envs x "
            f"{steps} steps = {cycle}); raise it")
    require(config.buffer_size >= cycle,
            f"buffer_size={config.buffer_size} must hold one cycle of episodes ({config.num_envs} x {steps} = {cycle} transitions)")


def evaluate_on_tasks(env, env_params, policy, key, num_episodes: int) -> dict:
    """``num_episodes`` episodes of ``policy(obs_batch, key) -> actions``, episode i on evaluation task
    (i mod 5) + 1 (``EnvParams.task_id``), so the success rate averages over the fixed task set.
    Returns ``jaxrl.evaluation.evaluate``'s per-episode statistics, shape (num_episodes,)."""
    task_ids = jnp.arange(num_episodes) % NUM_EVAL_TASKS + 1
    steps = episode_steps(env_params)

    def one(task_id, episode_key):
        result = evaluate(env, env_params.replace(task_id=task_id), policy, episode_key, 1, max_steps=steps)
        return jax.tree.map(lambda x: x[0], result)

    return jax.vmap(one)(task_ids, jax.random.split(key, num_episodes))


def make_train(config: Config, env=None, env_params=None) -> Trainer:
    """Build the CRL ``Trainer``; ``env``/``env_params`` replace ``config.env``'s defaults when given
    (e.g. ``envs.make("PointMaze-Open-v0", max_steps_in_episode=50)`` for a short horizon)."""
    if env is None:
        env, default_params = envs.make(config.env)
        env_params = default_params if env_params is None else env_params
    env_params = env.default_params if env_params is None else env_params
    validate(config, env, env_params)
    hidden = parse_hidden_sizes(config.hidden_sizes)
    low, high = envs.action_bounds(env, env_params)
    action_dim = int(np.prod(low.shape))
    low, high = low.reshape(-1), high.reshape(-1)
    actor, critic = Actor(action_dim, hidden), Critic(config.repr_dim, hidden)
    actor_tx, critic_tx, alpha_tx = optax.adam(config.policy_lr), optax.adam(config.critic_lr), optax.adam(config.alpha_lr)
    target_entropy = -config.target_entropy_scale * action_dim
    num_envs, steps = config.num_envs, episode_steps(env_params)
    capacity = config.buffer_size // steps
    vec_env = VectorEnv(env, num_envs)

    def get_alpha(log_alpha):
        return jnp.exp(log_alpha) if config.autotune else jnp.asarray(config.alpha, jnp.float32)

    def policy(actor_params, obs):
        """Mean and log-std of π(·|s, g) for a batch of goal observations (g: their desired goals)."""
        return actor.apply(actor_params, flat(obs["observation"]), flat(obs["desired_goal"]))

    def init(key) -> TrainState:
        key, actor_key, critic_key, env_key = jax.random.split(key, 4)
        obs, _ = env.reset(env_key, env_params)
        state, goal = flat(obs["observation"][None]), flat(obs["achieved_goal"][None])
        actor_params = actor.init(actor_key, state, flat(obs["desired_goal"][None]))
        critic_params = critic.init(critic_key, state, jnp.zeros((1, action_dim)), goal)
        log_alpha = jnp.log(jnp.asarray(config.init_alpha, jnp.float32))
        buffer = relabel.init(capacity, steps, obs, jnp.float32, (action_dim,))
        return TrainState(actor_params, critic_params, log_alpha, actor_tx.init(actor_params),
                          critic_tx.init(critic_params), alpha_tx.init(log_alpha), buffer, key)

    def collect(actor_params, key):
        """``num_envs`` episodes of the stochastic policy from fresh resets, each run for ``steps``
        steps; steps after an episode's end (termination or truncation) are masked by its length."""
        reset_key, run_key = jax.random.split(key)
        obs, env_state = vec_env.reset(reset_key, env_params)

        def env_step(carry, step_key):
            obs, env_state, alive = carry
            action_key, env_key = jax.random.split(step_key)
            mean, log_std = policy(actor_params, obs)
            action, _ = sample_action(action_key, mean, log_std, low, high)
            next_obs, env_state, reward, terminated, truncated, info = vec_env.step(env_key, env_state, action, env_params)
            out = (action, reward.astype(jnp.float32), terminated.astype(jnp.float32),
                   info["final_observation"], info["success"], alive)
            return (next_obs, env_state, alive & ~(terminated | truncated)), out

        alive = jnp.ones(num_envs, bool)
        _, (action, reward, terminated, reached, success, valid) = jax.lax.scan(
            env_step, (obs, env_state, alive), jax.random.split(run_key, steps))
        # time-major [T, num_envs] -> episode-major [num_envs, T]; states s_0 .. s_T
        states = jax.tree.map(lambda first, rest: jnp.concatenate([first[None], rest]).swapaxes(0, 1), obs, reached)
        action, reward, terminated, success, valid = (x.swapaxes(0, 1) for x in (action, reward, terminated, success, valid))
        length = valid.sum(axis=1).astype(jnp.int32)
        stats = {
            "success_rate": jnp.any(success & valid, axis=1).astype(jnp.float32).mean(),
            "episode_return": jnp.where(valid, reward, 0.0).sum(axis=1).mean(),
            "episode_length": length.astype(jnp.float32).mean(),
        }
        return (states, action, reward, terminated, length), stats

    def critic_loss_fn(critic_params, batch: Batch):
        phi, psi = critic.apply(critic_params, batch.state, batch.action, batch.future_goal)
        logits = contrastive_logits(config.energy, phi, psi)
        loss, row_lse = infonce_loss(logits, config.contrastive_loss, config.logsumexp_penalty)
        eye = jnp.eye(logits.shape[0])
        diagnostics = {"accuracy": infonce_accuracy(logits), "logits_pos": jnp.diagonal(logits).mean(),
                       "logits_neg": (logits * (1 - eye)).sum() / (1 - eye).sum(), "logsumexp": row_lse.mean()}
        return loss, diagnostics

    def actor_loss_fn(actor_params, critic_params, log_alpha, batch: Batch, key):
        goal = batch.future_goal if config.actor_goals == "future" else batch.desired_goal
        mean, log_std = actor.apply(actor_params, batch.state, goal)
        action, log_prob = sample_action(key, mean, log_std, low, high)
        phi, psi = critic.apply(critic_params, batch.state, action, goal)
        return actor_loss(log_prob, energy_fn(config.energy, phi, psi), get_alpha(log_alpha)), log_prob

    def gradient_step(state: TrainState, key):
        sample_key, actor_key = jax.random.split(key)
        batch = sample_batch(sample_key, state.buffer, config.batch_size, config.gamma)
        # UPDATE CRITIC (both encoders) with the contrastive loss
        (c_loss, diagnostics), critic_grads = jax.value_and_grad(critic_loss_fn, has_aux=True)(state.critic_params, batch)
        critic_updates, critic_opt = critic_tx.update(critic_grads, state.critic_opt, state.critic_params)
        critic_params = optax.apply_updates(state.critic_params, critic_updates)
        # UPDATE ACTOR against the updated critic
        (a_loss, log_prob), actor_grads = jax.value_and_grad(actor_loss_fn, has_aux=True)(
            state.actor_params, critic_params, state.log_alpha, batch, actor_key)
        actor_updates, actor_opt = actor_tx.update(actor_grads, state.actor_opt, state.actor_params)
        actor_params = optax.apply_updates(state.actor_params, actor_updates)
        # UPDATE TEMPERATURE
        if config.autotune:
            alpha_grad = jax.grad(lambda la: temperature_loss(jnp.exp(la), log_prob, target_entropy))(state.log_alpha)
            alpha_update, alpha_opt = alpha_tx.update(alpha_grad, state.alpha_opt, state.log_alpha)
            log_alpha = optax.apply_updates(state.log_alpha, alpha_update)
        else:
            alpha_opt, log_alpha = state.alpha_opt, state.log_alpha
        state = state._replace(actor_params=actor_params, critic_params=critic_params, log_alpha=log_alpha,
                               actor_opt=actor_opt, critic_opt=critic_opt, alpha_opt=alpha_opt)
        return state, {"critic_loss": c_loss, "actor_loss": a_loss, "entropy": -log_prob.mean(), **diagnostics}

    def update(state: TrainState, i):
        key, collect_key, train_key = jax.random.split(state.key, 3)

        # COLLECT EPISODES and STORE them, one buffer row per episode
        episodes, stats = collect(state.actor_params, collect_key)
        state = state._replace(buffer=relabel.add(state.buffer, *episodes), key=key)

        # UPDATE NETWORKS: num_optim_steps contrastive critic + actor + temperature steps
        state, losses = jax.lax.scan(gradient_step, state, jax.random.split(train_key, config.num_optim_steps))

        metrics = {**stats, **{k: v.mean() for k, v in losses.items()}, "alpha": get_alpha(state.log_alpha),
                   "buffer_episodes": state.buffer.size}
        return state, metrics

    def act(state: TrainState, obs, key):
        """Deterministic action: the squashed mean, in the env's bounds, for a batch of goal observations."""
        mean, _ = policy(state.actor_params, obs)
        return squash(mean, low, high).reshape(mean.shape[:-1] + tuple(env.action_space(env_params).shape))

    def evaluate_tasks(state: TrainState, key, num_episodes: int) -> dict:
        """The greedy policy on the evaluation tasks, round-robin (``evaluate_on_tasks``)."""
        return evaluate_on_tasks(env, env_params, lambda obs, k: act(state, obs, k), key, num_episodes)

    @jax.jit
    def task_success(state: TrainState, key):
        episodes = NUM_EVAL_TASKS * REPORT_EPISODES_PER_TASK
        success = evaluate_tasks(state, key, episodes)["success"].astype(jnp.float32)
        return success.reshape(REPORT_EPISODES_PER_TASK, NUM_EVAL_TASKS).mean(axis=0)

    def report(state: TrainState, key) -> dict:
        """Success rate of the greedy policy on each of the five evaluation tasks (10 episodes each)."""
        per_task = np.asarray(task_success(state, key))
        return {"task_success": [float(x) for x in per_task], "success": float(per_task.mean()),
                "episodes_per_task": REPORT_EPISODES_PER_TASK}

    tasks = has_eval_tasks(env_params)
    return Trainer(init=init, update=update, act=act, num_updates=config.total_timesteps // (num_envs * steps),
                   env_steps_per_update=num_envs * steps, env=env, env_params=env_params,
                   evaluate=evaluate_tasks if tasks else None, report=report if tasks else None)


if __name__ == "__main__":
    from jaxrl.cli import main

    main(Config, make_train, algorithm="crl")
