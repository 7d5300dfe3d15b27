"""SAC with Hindsight Experience Replay: goal-conditioned continuous control (point maze).

Soft Actor-Critic (Haarnoja et al. 2018, "Soft Actor-Critic Algorithms and Applications") on the
goal-conditioned input s ⊕ g (a universal value function approximator, Schaul et al. 2015), trained
from an on-device buffer of whole episodes whose transitions are replayed with hindsight goals
(Andrychowicz et al. 2017, "Hindsight Experience Replay", NeurIPS; ``jaxrl.relabel``): with
probability k/(k+1) a replayed transition's goal is replaced by the ``achieved_goal`` of a state
reached later in the same episode (strategy ``future``, k = 4) and its reward and termination are
recomputed with the env's ``compute_reward``/``compute_terminated``. ``her=False`` is the same SAC
on the original goals only (the baseline).

SAC, as in the paper (Algorithm 1): a tanh-squashed Gaussian policy rescaled to the action bounds,
with the exact log-density of the squashed action (Appendix C); twin soft Q-functions with clipped
double-Q targets (Sec. 6); the soft Bellman target r + γ (1 − terminated)(min_j Q̄_j(s', a') −
α log π(a'|s')) with a' ~ π(·|s'), bootstrapping through time-limit truncation; automatic entropy
tuning towards the target entropy −|A| (Sec. 5, eq. 18).

The loop is HER's training procedure (paper App. A; OpenAI baselines ``her/her.py``): one iteration
is one *cycle*:

1. COLLECT EPISODES: ``num_envs`` episodes from fresh resets run in parallel to their end, with
   actions sampled from the current stochastic policy (SAC's own exploration);
2. STORE them in the episode buffer (``jaxrl.relabel.EpisodeBuffer``, on device);
3. UPDATE NETWORKS: ``num_optim_steps`` gradient steps (critics, actor, temperature) on minibatches
   of ``batch_size`` relabeled transitions, in a ``lax.scan``;
4. UPDATE TARGET NETWORKS once per cycle: θ' ← polyak·θ' + (1 − polyak)·θ.

Defaults: the HER paper's code (OpenAI baselines ``her/experiment/config.py`` DEFAULT_PARAMS):
Adam with learning rate 0.001 for the actor and the critics, three hidden layers of 256 ReLU units,
minibatch 256, 40 optimization steps per cycle, target decay 0.95 per cycle, a replay buffer of
10^6 transitions, ``future`` with k = 4, targets clipped to [−1/(1−γ), 0] (the return range of −1/0
rewards), and γ = 0.98 (the paper's; baselines sets γ = 1 − 1/T = 0.98 for its T = 50 tasks). 16
episodes per cycle (the paper: 2 rollouts per worker x 8 workers). The SAC parts follow Haarnoja
et al. (2018): target entropy −|A|, temperature learning rate 0.001 (CleanRL's). The paper gives no
initial α; CleanRL and SB3 start at 1, which against rewards of −1 per step keeps the policy near
uniform for much of a short run. Measured on PointMaze-UMaze-v0 (defaults otherwise, 2 seeds, 100
cycles): from α = 1 the policy's entropy stayed at the uniform distribution's (1.35 nats) for 50
cycles and the training success at cycles 80, 90 and 100 averaged 0.32; from α = 0.1 the entropy
was below 0 by cycle 50 and that success 0.54. The default starts at 0.1.

Differences from the paper, by design:

* SAC instead of DDPG: the stochastic policy replaces DDPG's Gaussian action noise, random actions
  (probability 0.3) and the action L2 penalty; the entropy term is part of the target before clipping;
* one process: the episodes of a cycle are ``num_envs`` parallel envs (the paper: MPI workers
  averaging gradients); there are no epochs, only cycles (``total_timesteps`` counts
  ``num_envs × max_steps_in_episode`` env steps per cycle);
* the relabeled mixture is sampled (probability k/(k+1)) instead of stored as k copies;
* observations and goals are not normalized (point maze coordinates are cells, 0..15); the greedy
  policy (the squashed mean) is evaluated.

Metrics per cycle: ``success_rate`` (the fraction of this cycle's exploration episodes that reached
their goal), ``episode_return``, ``episode_length``, ``q_loss``, ``actor_loss``, ``q_value``,
``entropy``, ``alpha`` and ``relabeled_fraction``. Evaluation (the CLI's ``eval_success``, the
headline): on envs with evaluation tasks (``EnvParams.task_id``, as the point maze's five
OGBench-style tasks) the greedy policy runs episode i on task (i mod 5) + 1, so the success rate is
averaged over the fixed task set; ``report`` gives the success per task (``summary.json``).

Measured (CPU, 2 seeds unless stated; success = greedy success on the five evaluation tasks):

* PointMaze-Open-v0 with 50-step episodes and max_speed 0.2, networks 64x64, 40 cycles (32,000 env
  steps): SAC+HER 0.54 (seeds 0-2) and 0.44 (seeds 4-6), SAC without HER 0.13 and 0.07, a random
  policy 0.005 (``tests/test_sac_her.py``);
* PointMaze-UMaze-v0, defaults, 100 cycles (480,000 env steps per seed, 3 min for both seeds): 0.13;
  with 4 envs per cycle and 300 cycles (360,000 env steps, 10 min): 0.05; with polyak 0.5, 100
  cycles: 0.10 (while the training success on random start and goal cells reaches 0.75-1.0: the
  long tasks around the U come last), and 300 cycles (1,440,000 env steps, 12 min): 0.83 (seed 0
  solves all five tasks, seed 1 tasks 3-5 and 30% of task 2);
* PointMaze-Medium-v0, defaults, 40 cycles (640,000 env steps, 2.5 min): 0.00.

Run:  python agents/goal_conditioned/sac_her.py --env PointMaze-UMaze-v0 --num-seeds 4
      python agents/goal_conditioned/sac_her.py --env PointMaze-UMaze-v0 --no-her       # plain SAC
"""
from __future__ import annotations

import dataclasses
from functools import partial
from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from gymnax.environments import spaces

from jaxrl import envs, relabel
from jaxrl.config import ConfigError, require, require_positive, require_unit_interval
from jaxrl.evaluation import evaluate
from jaxrl.trainer import Trainer
from jaxrl.wrappers import VectorEnv

GOAL_KEYS = ("observation", "achieved_goal", "desired_goal")
LOG_STD_MIN, LOG_STD_MAX = -5.0, 2.0     # bounds of the policy's log-std (as agents/online/sac.py)
NUM_EVAL_TASKS = 5                        # point maze: OGBench-style task_id 1..5
REPORT_EPISODES_PER_TASK = 10


@dataclasses.dataclass(frozen=True)
class Config:
    env: str = "PointMaze-UMaze-v0"
    """Goal-conditioned environment id (dict observations with observation/achieved_goal/desired_goal); Box actions."""
    total_timesteps: int = 960_000
    """Env steps per run; one cycle takes num_envs x max_steps_in_episode of them (default: 200 cycles on UMaze)."""
    policy_lr: float = 1e-3
    """Adam learning rate of the policy (HER code: pi_lr 0.001)."""
    q_lr: float = 1e-3
    """Adam learning rate of the twin Q-networks (HER code: Q_lr 0.001)."""
    alpha_lr: float = 1e-3
    """Adam learning rate of log α (automatic entropy tuning)."""
    num_envs: int = 16
    """Episodes collected in parallel per cycle (HER paper: 16, 2 per worker x 8 workers)."""
    num_optim_steps: int = 40
    """Gradient steps per cycle (HER code: n_batches 40)."""
    batch_size: int = 256
    """Transitions per gradient step (HER code: 256)."""
    buffer_size: int = 1_000_000
    """Replay capacity in transitions (HER: 10^6); stored as buffer_size // max_steps_in_episode episodes."""
    gamma: float = 0.98
    """Discount factor (HER paper: 0.98)."""
    polyak: float = 0.95
    """Target network decay per cycle: θ' ← polyak·θ' + (1 − polyak)·θ (HER code: 0.95)."""
    her: bool = True
    """Replay with hindsight goals (False: plain SAC on the original goals)."""
    strategy: str = "future"
    """Hindsight goal strategy: "future", "final", "episode" or "random" (paper's best: future)."""
    replay_k: int = 4
    """Hindsight goals per original goal: a replayed goal is relabeled with probability k/(k+1) (paper: 4 -> 0.8)."""
    clip_target: bool = True
    """Clip soft TD targets to [-1/(1-γ), 0], the return range of -1/0 rewards (HER)."""
    autotune: bool = True
    """Tune α automatically towards the target entropy; otherwise α is fixed at ``alpha``."""
    alpha: float = 0.2
    """Entropy coefficient when autotune is off."""
    init_alpha: float = 0.1
    """Initial entropy coefficient when autotune is on (ours: 0.1; CleanRL/SB3 start at 1, see the module docstring)."""
    target_entropy_scale: float = 1.0
    """Target entropy = −target_entropy_scale · |A| (the SAC paper's heuristic is scale 1)."""
    hidden_sizes: str = "256,256,256"
    """Comma-separated widths of the ReLU hidden layers of the actor and of each critic (HER code: 3 x 256)."""


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


def goal_input(obs: dict) -> jax.Array:
    """The network input: the state ``observation`` and the ``desired_goal`` concatenated (s ⊕ g)."""
    return jnp.concatenate([obs["observation"], obs["desired_goal"]], axis=-1).astype(jnp.float32)


def mlp(x, hidden_sizes):
    for width in hidden_sizes:
        x = nn.relu(nn.Dense(width)(x))
    return x


class Actor(nn.Module):
    """π(·|s ⊕ g) before squashing: mean and log-std (kept in [LOG_STD_MIN, LOG_STD_MAX])."""

    action_dim: int
    hidden_sizes: tuple[int, ...] = (256, 256, 256)

    @nn.compact
    def __call__(self, obs: dict):
        x = mlp(goal_input(obs), self.hidden_sizes)
        mean = nn.Dense(self.action_dim)(x)
        log_std = jnp.tanh(nn.Dense(self.action_dim)(x))
        return mean, LOG_STD_MIN + 0.5 * (LOG_STD_MAX - LOG_STD_MIN) * (log_std + 1.0)


class Critic(nn.Module):
    """Soft Q(s ⊕ g, a); the two critics are two parameter sets (``init`` vmapped over two keys)."""

    hidden_sizes: tuple[int, ...] = (256, 256, 256)

    @nn.compact
    def __call__(self, obs: dict, action):
        x = jnp.concatenate([goal_input(obs), action], axis=-1)
        return nn.Dense(1)(mlp(x, self.hidden_sizes))[..., 0]


def squash(u, low, high):
    """a = mid + half_range · tanh(u): a pre-squash sample mapped into [low, high]."""
    return 0.5 * (high + low) + 0.5 * (high - low) * jnp.tanh(u)


def squashed_log_prob(mean, log_std, u, low, high):
    """log π(a) of a = squash(u), u ~ N(mean, exp(log_std)²), summed over action dimensions (SAC
    paper, Appendix C, eq. 21, plus the rescaling): log N(u) − Σ_i log(half_range_i (1 − tanh(u_i)²)),
    with log(1 − tanh(u)²) = 2 (log 2 − u − softplus(−2u)), finite for large |u|."""
    gaussian = -0.5 * ((u - mean) / jnp.exp(log_std)) ** 2 - log_std - 0.5 * jnp.log(2.0 * jnp.pi)
    log_det = jnp.log(0.5 * (high - low)) + 2.0 * (jnp.log(2.0) - u - jax.nn.softplus(-2.0 * u))
    return (gaussian - log_det).sum(-1)


def sample_action(key, mean, log_std, low, high):
    """Reparameterized sample of the squashed policy: (action in [low, high], its log-probability)."""
    u = mean + jnp.exp(log_std) * jax.random.normal(key, mean.shape)
    return squash(u, low, high), squashed_log_prob(mean, log_std, u, low, high)


# ----------------------------------------------------------------------------------------------
# Losses
# ----------------------------------------------------------------------------------------------
def soft_target(reward, terminated, next_q_min, next_log_prob, alpha, gamma, clip_target: bool):
    """y = r + γ (1 − terminated)(min_j Q̄_j(s', a') − α log π(a'|s')) (SAC paper, eqs. 3 and 7, with
    the clipped double-Q minimum of Sec. 6), clipped to [−1/(1−γ), 0] when ``clip_target`` (HER, App. A)."""
    y = reward + gamma * (1.0 - terminated) * (next_q_min - alpha * next_log_prob)
    if clip_target:
        y = jnp.clip(y, -1.0 / (1.0 - gamma), 0.0)
    return y


def critic_loss(q, target):
    """J_Q = Σ_j mean (Q_j(s, a) − y)² over the two critics (SAC paper, eq. 5); ``q`` is (2, batch)."""
    return ((q - target) ** 2).mean(axis=1).sum()


def actor_loss(log_prob, q_min, alpha):
    """J_π = mean(α log π(ã|s) − min_j Q_j(s, ã)), ã reparameterized (SAC paper, eq. 7 / eq. 12)."""
    return (alpha * log_prob - q_min).mean()


def temperature_loss(log_alpha, log_prob, target_entropy):
    """J(α) = −mean(log α · (log π(a|s) + H̄)) (SAC paper, eq. 18, on log α as SpinningUp/SB3)."""
    return -(log_alpha * jax.lax.stop_gradient(log_prob + target_entropy)).mean()


# ----------------------------------------------------------------------------------------------
# Training
# ----------------------------------------------------------------------------------------------
class TrainState(NamedTuple):
    actor_params: dict
    q_params: dict           # both critics, stacked on a leading axis of 2
    target_q_params: dict
    log_alpha: jax.Array
    actor_opt: optax.OptState
    q_opt: optax.OptState
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
    require(isinstance(space, spaces.Dict) and set(GOAL_KEYS) <= set(keys) and hasattr(env, "compute_reward"),
            f"SAC+HER needs a goal-conditioned env (dict observations with {', '.join(GOAL_KEYS)} and a "
            f"compute_reward method), but {env_id} has observation space {type(space).__name__} {keys or ''}. "
            "Try PointMaze-UMaze-v0.")
    envs.require_action_space(env_id, env, env_params, "continuous", "SAC+HER")


def validate(config: Config, env, env_params) -> None:
    """Raise ConfigError for settings that cannot work (before anything compiles)."""
    require_positive(config, "total_timesteps", "policy_lr", "q_lr", "alpha_lr", "num_envs", "num_optim_steps",
                     "batch_size", "buffer_size", "alpha", "init_alpha")
    require_unit_interval(config, "gamma")
    require(config.gamma < 1, f"gamma must be < 1 (targets are clipped to [-1/(1-gamma), 0]), got {config.gamma!r}")
    require((0 <= config.polyak) & (config.polyak < 1), f"polyak must be in [0, 1), got {config.polyak!r}")
    require(config.strategy in relabel.STRATEGIES,
            f"strategy must be one of {', '.join(relabel.STRATEGIES)}, got {config.strategy!r}")
    require(isinstance(config.replay_k, int) and config.replay_k >= 0, f"replay_k must be an integer >= 0, got {config.replay_k!r}")
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
    """Build the SAC+HER ``Trainer``; ``env``/``env_params`` replace ``config.env``'s defaults when given
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
    actor, critic = Actor(action_dim, hidden), Critic(hidden)
    actor_tx, q_tx, alpha_tx = optax.adam(config.policy_lr), optax.adam(config.q_lr), optax.adam(config.alpha_lr)
    target_entropy = -config.target_entropy_scale * action_dim
    num_envs, steps = config.num_envs, episode_steps(env_params)
    capacity = config.buffer_size // steps
    relabel_prob = relabel.relabel_probability(config.replay_k) if config.her else 0.0
    vec_env = VectorEnv(env, num_envs)
    compute_terminated = (partial(env.compute_terminated, params=env_params)
                          if hasattr(env, "compute_terminated") else None)

    def q_values(q_params, obs, action):
        """Both critics: shape (2, batch)."""
        return jax.vmap(critic.apply, in_axes=(0, None, None))(q_params, obs, action)

    def get_alpha(log_alpha):
        return jnp.exp(log_alpha) if config.autotune else jnp.asarray(config.alpha, jnp.float32)

    def init(key) -> TrainState:
        key, actor_key, q_key, env_key = jax.random.split(key, 4)
        obs, _ = env.reset(env_key, env_params)
        batch_obs = jax.tree.map(lambda x: x[None], obs)
        dummy_action = jnp.zeros((1, action_dim))
        actor_params = actor.init(actor_key, batch_obs)
        q_params = jax.vmap(critic.init, in_axes=(0, None, None))(jax.random.split(q_key, 2), batch_obs, dummy_action)
        log_alpha = jnp.log(jnp.asarray(config.init_alpha, jnp.float32))
        buffer = relabel.init(capacity, steps, obs, jnp.float32, (action_dim,))
        return TrainState(actor_params, q_params, q_params, log_alpha, actor_tx.init(actor_params),
                          q_tx.init(q_params), alpha_tx.init(log_alpha), buffer, key)

    def collect(actor_params, key):
        """``num_envs`` episodes of the stochastic policy from fresh resets, each run for ``steps``
        steps; steps after an episode's end (termination or truncation) are masked by its length."""
        reset_key, run_key = jax.random.split(key)
        obs, env_state = vec_env.reset(reset_key, env_params)

        def env_step(carry, step_key):
            obs, env_state, alive = carry
            action_key, env_key = jax.random.split(step_key)
            mean, log_std = actor.apply(actor_params, obs)
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

    def q_loss_fn(q_params, target_q_params, actor_params, log_alpha, batch: relabel.Transition, key):
        mean, log_std = actor.apply(actor_params, batch.next_obs)
        next_action, next_log_prob = sample_action(key, mean, log_std, low, high)
        next_q = q_values(target_q_params, batch.next_obs, next_action).min(axis=0)
        target = soft_target(batch.reward, batch.terminated, next_q, next_log_prob, get_alpha(log_alpha),
                             config.gamma, config.clip_target)
        q = q_values(q_params, batch.obs, batch.action)
        return critic_loss(q, jax.lax.stop_gradient(target)), q.mean()

    def actor_loss_fn(actor_params, q_params, log_alpha, obs, key):
        mean, log_std = actor.apply(actor_params, obs)
        action, log_prob = sample_action(key, mean, log_std, low, high)
        q_min = q_values(q_params, obs, action).min(axis=0)
        return actor_loss(log_prob, q_min, get_alpha(log_alpha)), log_prob

    def gradient_step(state: TrainState, key):
        sample_key, q_key, actor_key = jax.random.split(key, 3)
        batch = relabel.sample(sample_key, state.buffer, config.batch_size, config.strategy, relabel_prob,
                               env.compute_reward, compute_terminated)
        # UPDATE CRITICS
        (q_loss, q_mean), q_grads = jax.value_and_grad(q_loss_fn, has_aux=True)(
            state.q_params, state.target_q_params, state.actor_params, state.log_alpha, batch, q_key)
        q_updates, q_opt = q_tx.update(q_grads, state.q_opt, state.q_params)
        q_params = optax.apply_updates(state.q_params, q_updates)
        # UPDATE ACTOR
        (a_loss, log_prob), actor_grads = jax.value_and_grad(actor_loss_fn, has_aux=True)(
            state.actor_params, q_params, state.log_alpha, batch.obs, actor_key)
        actor_updates, actor_opt = actor_tx.update(actor_grads, state.actor_opt, state.actor_params)
        actor_params = optax.apply_updates(state.actor_params, actor_updates)
        # UPDATE TEMPERATURE
        if config.autotune:
            alpha_grad = jax.grad(temperature_loss)(state.log_alpha, log_prob, target_entropy)
            alpha_update, alpha_opt = alpha_tx.update(alpha_grad, state.alpha_opt, state.log_alpha)
            log_alpha = optax.apply_updates(state.log_alpha, alpha_update)
        else:
            alpha_opt, log_alpha = state.alpha_opt, state.log_alpha
        state = state._replace(actor_params=actor_params, q_params=q_params, log_alpha=log_alpha,
                               actor_opt=actor_opt, q_opt=q_opt, alpha_opt=alpha_opt)
        return state, {"q_loss": q_loss, "actor_loss": a_loss, "q_value": q_mean, "entropy": -log_prob.mean(),
                       "relabeled_fraction": batch.relabeled.mean()}

    def update(state: TrainState, i):
        key, collect_key, train_key = jax.random.split(state.key, 3)

        # COLLECT EPISODES and STORE them
        episodes, stats = collect(state.actor_params, collect_key)
        state = state._replace(buffer=relabel.add(state.buffer, *episodes), key=key)

        # UPDATE NETWORKS: num_optim_steps gradient steps on hindsight-relabeled minibatches
        state, losses = jax.lax.scan(gradient_step, state, jax.random.split(train_key, config.num_optim_steps))

        # UPDATE TARGET NETWORKS (Polyak averaging, once per cycle)
        state = state._replace(target_q_params=optax.incremental_update(
            state.q_params, state.target_q_params, 1.0 - config.polyak))

        metrics = {**stats, **{k: v.mean() for k, v in losses.items()}, "alpha": get_alpha(state.log_alpha),
                   "buffer_episodes": state.buffer.size}
        return state, metrics

    def act(state: TrainState, obs, key):
        """Deterministic action: the squashed mean, in the env's bounds, for a batch of goal observations."""
        mean, _ = actor.apply(state.actor_params, obs)
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

    main(Config, make_train, algorithm="sac_her")
