"""Conservative Q-Learning, continuous actions (Kumar et al. 2020, "Conservative Q-Learning for Offline
Reinforcement Learning", NeurIPS 2020).

SAC-based CQL(H): the soft actor-critic of Haarnoja et al. (2018) whose critics minimize, next to
the TD error, the CQL(H) regularizer of eq. 4,

    α · E_s~D [ log Σ_a exp Q(s, a)  −  E_a~D Q(s, a) ],

which pushes Q down on the actions the critic likes (the soft maximum over all actions) and up on
the dataset's actions, so out-of-distribution actions cannot look better than the data. The log-sum-
exp over a continuous action space is estimated by importance sampling (Appendix F, "Computing
log Σ_a exp Q(s, a)"): ``num_sampled_actions`` actions from the uniform distribution on the action
box and as many from the current policy at s and at s', each weighted by its density,

    log Σ_a exp Q(s, a) ≈ logsumexp_i [ Q(s, a_i) − log μ(a_i) ],   a_i ~ μ ∈ {Unif, π(·|s), π(·|s')}.

Like the reference implementations (young-geng/CQL and CORL, which derives from it) the constant
log(3N) of the Monte-Carlo average is left out; it changes nothing but the level of the gap compared
with ``target_action_gap``, so published gaps keep their meaning here.

* Twin critics with a clipped double-Q target (min of two Polyak-averaged target critics), no
  entropy term in the backup (CORL's ``backup_entropy=False``), and optionally the max-backup of
  CORL's AntMaze configs (``max_target_backup``: max over N policy samples of the min critic).
* A tanh-Gaussian policy trained with SAC's loss α·log π(ã|s) − min_j Q_j(s, ã) and automatic
  entropy tuning towards −|A|.
* The Lagrangian variant CQL(H)-Lagrange (Appendix F): the weight of the regularizer is
  α' · ``cql_alpha`` with α' = exp(log α') ≥ 0 learned by dual gradient ascent on
  α' · (gap − ``target_action_gap``): α' grows while the gap between the soft maximum and the data's
  Q exceeds the target, and shrinks once it is below.
* Bootstrapping through time-limit truncation: the dataset's ``next_observations`` are the true next
  states and only ``terminations`` stop the backup.

Actions are handled in normalized units: the critics see a ∈ [−1, 1]^|A| (dataset actions are
mapped from the env's bounds), so the uniform proposal has density 2^−|A| for every env and the
greedy action tanh(mean) is mapped back to the env's bounds in ``act``. Observations are normalized
with the dataset's mean and standard deviation (computed once in ``make_train``, CORL's
``normalize=True``); ``act`` applies the same normalization to raw env observations.

Defaults are CORL's (Tarasov et al. 2022, "CORL: Research-oriented Deep Offline Reinforcement
Learning Library") Gym-MuJoCo configs ``configs/offline/cql/{halfcheetah,hopper,walker2d}/*.yaml``
and its ``algorithms/offline/cql.py``: batch 256, policy lr 3e-5, critic lr 3e-4, α lr = policy lr,
γ 0.99, τ 5e-3, ``cql_alpha`` (CORL's ``cql_alpha``/``cql_min_q_weight``) 10, 10 sampled actions,
importance sampling on, temperature 1, Lagrange off, max backup off, entropy backup off, automatic
entropy tuning from α = 1, orthogonal initialization, state normalization, three hidden layers of 256
in actor and critics, policy log-std offset −1 clipped to [−20, 2], log α' initialized at 1 and
trained with the critic lr, 1M updates. For the Lagrangian variant CORL's AntMaze configs use
``target_action_gap`` 0.8, policy lr 1e-4 and the max backup. CORL's reward rescaling hooks are
available as ``reward_scale``/``reward_bias`` (off by default). Not taken from CORL: its log-std
multiplier/offset are learnable scalars (fixed here), and its policy's hidden layers keep PyTorch's
default initialization (orthogonal here when ``orthogonal_init``).

Run:  python agents/offline/cql.py --env Pendulum-v1 --dataset PATH --num-seeds 5 --num-updates 100000
"""
from __future__ import annotations

import dataclasses
from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax.linen.initializers import constant

from jaxrl import data as data_lib
from jaxrl import envs
from jaxrl.config import require, require_positive, require_unit_interval
from jaxrl.initializers import orthogonal
from jaxrl.trainer import Trainer

LOG_STD_MIN, LOG_STD_MAX = -20.0, 2.0  # clip of the policy's log-std (CORL's ReparameterizedTanhGaussian)
LOG_STD_OFFSET = -1.0                  # added to the network's log-std output (CORL's policy_log_std_offset)
OBS_STD_EPS = 1e-3                     # added to the dataset's observation std (CORL's compute_mean_std)
MAX_ALPHA_PRIME = 1e6                  # clip of α' = exp(log α') (CORL)


@dataclasses.dataclass(frozen=True)
class Config:
    env: str = "Pendulum-v1"
    """Environment id of the dataset (gymnax or this project's envs/); must have a Box action space."""
    num_updates: int = 1_000_000
    """Gradient updates per run (CORL: 1M)."""
    batch_size: int = 256
    """Transitions per gradient update, sampled uniformly from the dataset."""
    policy_lr: float = 3e-5
    """Adam learning rate of the policy (CORL Gym configs 3e-5; paper and CORL AntMaze 1e-4)."""
    q_lr: float = 3e-4
    """Adam learning rate of the twin critics."""
    alpha_lr: float = 3e-5
    """Adam learning rate of log α (entropy temperature); CORL uses the policy lr."""
    alpha_prime_lr: float = 3e-4
    """Adam learning rate of log α' (Lagrangian variant); CORL uses the critic lr."""
    gamma: float = 0.99
    """Discount factor."""
    tau: float = 5e-3
    """Polyak averaging rate of the target critics (updated every step)."""
    cql_alpha: float = 10.0
    """α, the weight of the CQL(H) regularizer (min-Q weight); with lagrange it multiplies α'."""
    num_sampled_actions: int = 10
    """N: actions sampled per state from each proposal (uniform, π(·|s), π(·|s')) for the log-sum-exp."""
    cql_temp: float = 1.0
    """Temperature T of the log-sum-exp: T · logsumexp(Q / T)."""
    importance_sample: bool = True
    """Weight sampled actions by their density (Appendix F); off: plain logsumexp of the sampled Qs and Q(s, a_data)."""
    lagrange: bool = False
    """CQL(H)-Lagrange: tune α' by dual gradient ascent so the gap stays near target_action_gap."""
    target_action_gap: float = 0.8
    """τ of the Lagrangian variant (CORL AntMaze 0.8); unused without lagrange."""
    init_log_alpha_prime: float = 1.0
    """Initial log α' of the Lagrangian variant (CORL: 1.0, α' ≈ 2.72)."""
    max_target_backup: bool = False
    """Back up max over num_sampled_actions policy samples of the min critic (CORL AntMaze)."""
    backup_entropy: bool = False
    """Subtract α log π(a'|s') in the TD target (SAC's soft backup; CORL: off)."""
    autotune: bool = True
    """Tune the entropy temperature α towards the target entropy; off: α fixed at ``alpha``."""
    alpha: float = 1.0
    """Entropy temperature when autotune is off (and its initial value when on)."""
    target_entropy_scale: float = 1.0
    """Target entropy = −target_entropy_scale · |A|."""
    reward_scale: float = 1.0
    """Rewards are used as reward_scale · r + reward_bias (CORL's reward normalization hooks)."""
    reward_bias: float = 0.0
    """See reward_scale."""
    normalize_observations: bool = True
    """Standardize observations with the dataset's mean and std (also in act)."""
    hidden_size: int = 256
    """Width of every hidden layer of the policy and of each critic."""
    num_layers: int = 3
    """Hidden layers of the policy and of each critic (CORL: 3)."""
    orthogonal_init: bool = True
    """Orthogonal initialization (gain √2 hidden, 1e-2 output) instead of flax's defaults."""


# ----------------------------------------------------------------------------------------------
# Networks and the tanh-squashed Gaussian (in normalized action units, a ∈ [-1, 1]^|A|)
# ----------------------------------------------------------------------------------------------
def _dense(features: int, scale: float, orthogonal_kernel: bool) -> nn.Dense:
    if orthogonal_kernel:
        return nn.Dense(features, kernel_init=orthogonal(scale), bias_init=constant(0.0))
    return nn.Dense(features)


class MLP(nn.Module):
    out_dim: int
    hidden_size: int = 256
    num_layers: int = 3
    orthogonal_init: bool = True

    @nn.compact
    def __call__(self, x):
        for _ in range(self.num_layers):
            x = nn.relu(_dense(self.hidden_size, np.sqrt(2), self.orthogonal_init)(x))
        return _dense(self.out_dim, 1e-2, self.orthogonal_init)(x)


class Actor(nn.Module):
    """Mean and log-std of the Gaussian before the tanh."""

    action_dim: int
    hidden_size: int = 256
    num_layers: int = 3
    orthogonal_init: bool = True

    @nn.compact
    def __call__(self, obs):
        out = MLP(2 * self.action_dim, self.hidden_size, self.num_layers, self.orthogonal_init)(obs)
        mean, log_std = jnp.split(out, 2, axis=-1)
        return mean, jnp.clip(log_std + LOG_STD_OFFSET, LOG_STD_MIN, LOG_STD_MAX)


class Critic(nn.Module):
    """Q(s, a) for normalized actions; two independent copies come from vmapping ``init`` over keys."""

    hidden_size: int = 256
    num_layers: int = 3
    orthogonal_init: bool = True

    @nn.compact
    def __call__(self, obs, action):
        batch = jnp.broadcast_shapes(obs.shape[:-1], action.shape[:-1])
        x = jnp.concatenate([jnp.broadcast_to(obs, batch + obs.shape[-1:]),
                             jnp.broadcast_to(action, batch + action.shape[-1:])], axis=-1)
        return MLP(1, self.hidden_size, self.num_layers, self.orthogonal_init)(x)[..., 0]


def tanh_gaussian_sample(key, mean, log_std):
    """Reparameterized a = tanh(u), u ~ N(mean, exp(log_std)²); returns (a, log π(a)) summed over dims.

    log π(a) = log N(u) − Σ log(1 − tanh(u)²), with log(1 − tanh(u)²) = 2 (log 2 − u − softplus(−2u))
    (finite for every u).
    """
    u = mean + jnp.exp(log_std) * jax.random.normal(key, mean.shape)
    gaussian = -0.5 * ((u - mean) / jnp.exp(log_std)) ** 2 - log_std - 0.5 * jnp.log(2.0 * jnp.pi)
    log_det = 2.0 * (jnp.log(2.0) - u - jax.nn.softplus(-2.0 * u))
    return jnp.tanh(u), (gaussian - log_det).sum(-1)


# ----------------------------------------------------------------------------------------------
# The CQL(H) regularizer
# ----------------------------------------------------------------------------------------------
def cql_logsumexp(q_random, q_current, logp_current, q_next, logp_next, q_data, action_dim: int,
                  temp, importance_sample: bool):
    """Estimate of T · log Σ_a exp(Q(s, a) / T) per state, from N sampled actions per proposal.

    ``q_random`` (B, N): Q at uniform actions on [-1, 1]^|A| (density 2^−|A|); ``q_current``/``q_next``
    (B, N): Q(s, ·) at actions of π(·|s) and π(·|s'), with their log-densities ``logp_*`` (B, N);
    ``q_data`` (B,): Q at the dataset action, used only without importance sampling (as in CORL).
    """
    if importance_sample:
        log_uniform = -action_dim * jnp.log(2.0)
        cat = jnp.concatenate([q_random - log_uniform, q_next - logp_next, q_current - logp_current], axis=-1)
    else:
        cat = jnp.concatenate([q_random, q_data[..., None], q_next, q_current], axis=-1)
    return jax.scipy.special.logsumexp(cat / temp, axis=-1) * temp


def lagrange_alpha_prime_loss(log_alpha_prime, gap, target_action_gap):
    """Dual loss of α' = exp(log α') (Appendix F): minimizing −α' (gap − τ) raises α' while the
    (stop-gradient) gap exceeds τ and lowers it otherwise; α' stays ≥ 0 by construction."""
    alpha_prime = jnp.clip(jnp.exp(log_alpha_prime), 0.0, MAX_ALPHA_PRIME)
    return -(alpha_prime * (jax.lax.stop_gradient(gap) - target_action_gap)).mean()


# ----------------------------------------------------------------------------------------------
# Training
# ----------------------------------------------------------------------------------------------
class TrainState(NamedTuple):
    actor_params: dict
    q_params: dict            # both critics, stacked on a leading axis of 2
    target_q_params: dict
    log_alpha: jax.Array
    log_alpha_prime: jax.Array
    actor_opt: optax.OptState
    q_opt: optax.OptState
    alpha_opt: optax.OptState
    alpha_prime_opt: optax.OptState
    key: jax.Array


def validate(config: Config) -> None:
    """Raise ConfigError for settings that cannot work (before anything compiles)."""
    require_positive(config, "num_updates", "batch_size", "policy_lr", "q_lr", "alpha_lr", "alpha_prime_lr",
                     "num_sampled_actions", "cql_temp", "hidden_size", "num_layers", "alpha", "target_entropy_scale")
    require_unit_interval(config, "gamma")
    require((0 < config.tau) & (config.tau <= 1), f"tau must be in (0, 1], got {config.tau!r}")
    require(config.cql_alpha >= 0, f"cql_alpha must be >= 0, got {config.cql_alpha!r}")
    require(config.reward_scale != 0, "reward_scale must be non-zero")


def make_train(config: Config, dataset: data_lib.Dataset, env=None, env_params=None) -> Trainer:
    """Build the CQL trainer on ``dataset``. ``env``/``env_params`` replace the env of ``config.env``
    when given: an env that needs constructor arguments, or ``jaxrl.envs.SpacesOnly`` for a D4RL/Minari
    dataset from a simulator gymnax does not have."""
    validate(config)
    if env is None:
        env, env_params = data_lib.env_for(config.env, dataset)
    env_params = env.default_params if env_params is None else env_params
    envs.require_action_space(config.env, env, env_params, "continuous", "CQL")
    data_lib.check_compatible(dataset, config.env, env, env_params, "cql")
    obs_shape = tuple(env.observation_space(env_params).shape)
    obs_dim = int(np.prod(obs_shape))
    low, high = envs.action_bounds(env, env_params)
    action_shape = tuple(low.shape)
    action_dim = int(np.prod(action_shape))
    low, high = low.reshape(-1), high.reshape(-1)
    mid, half = 0.5 * (high + low), 0.5 * (high - low)
    # Observation statistics: small host-side constants (the arrays themselves reach `update` as an argument).
    if config.normalize_observations:
        flat_obs = np.asarray(dataset.observations, np.float64).reshape((dataset.size, obs_dim))
        obs_mean = jnp.asarray(flat_obs.mean(0), jnp.float32)
        obs_std = jnp.asarray(flat_obs.std(0) + OBS_STD_EPS, jnp.float32)
    else:
        obs_mean, obs_std = jnp.zeros(obs_dim), jnp.ones(obs_dim)

    actor = Actor(action_dim, config.hidden_size, config.num_layers, config.orthogonal_init)
    critic = Critic(config.hidden_size, config.num_layers, config.orthogonal_init)
    target_entropy = -config.target_entropy_scale * action_dim
    actor_tx, q_tx = optax.adam(config.policy_lr), optax.adam(config.q_lr)
    alpha_tx, alpha_prime_tx = optax.adam(config.alpha_lr), optax.adam(config.alpha_prime_lr)
    n = config.num_sampled_actions

    def normalize_obs(obs):
        return (obs.reshape((obs.shape[0], obs_dim)) - obs_mean) / obs_std

    def q_values(q_params, obs, action):
        """Both critics at (obs, action) with any leading batch shape: shape (2, *batch)."""
        return jax.vmap(critic.apply, in_axes=(0, None, None))(q_params, obs, action)

    def sample_policy(actor_params, obs, key, num: int):
        """``num`` policy actions per observation: (B, num, |A|) and log-densities (B, num)."""
        mean, log_std = actor.apply(actor_params, obs)
        rep = lambda x: jnp.broadcast_to(x[:, None], (x.shape[0], num, x.shape[1]))  # noqa: E731
        return tanh_gaussian_sample(key, rep(mean), rep(log_std))

    def get_alpha(log_alpha):
        return jnp.exp(log_alpha) if config.autotune else jnp.asarray(config.alpha, jnp.float32)

    def init(key) -> TrainState:
        key, actor_key, q_key = jax.random.split(key, 3)
        dummy_obs, dummy_action = jnp.zeros((1, obs_dim)), jnp.zeros((1, action_dim))
        actor_params = actor.init(actor_key, dummy_obs)
        q_params = jax.vmap(critic.init, in_axes=(0, None, None))(jax.random.split(q_key, 2), dummy_obs, dummy_action)
        log_alpha = jnp.log(jnp.asarray(config.alpha, jnp.float32))
        log_alpha_prime = jnp.asarray(config.init_log_alpha_prime, jnp.float32)
        return TrainState(actor_params, q_params, q_params, log_alpha, log_alpha_prime, actor_tx.init(actor_params),
                          q_tx.init(q_params), alpha_tx.init(log_alpha), alpha_prime_tx.init(log_alpha_prime), key)

    def critic_loss_fn(q_params, state: TrainState, batch, key):
        obs, action, reward, next_obs, terminated = batch
        next_key, random_key, current_key, next_policy_key = jax.random.split(key, 4)
        alpha = get_alpha(state.log_alpha)

        # TD TARGET: clipped double-Q at a' ~ π(·|s'), or the max over N samples (max backup)
        if config.max_target_backup:
            next_actions, next_logp = sample_policy(state.actor_params, next_obs, next_key, n)
            next_q = q_values(state.target_q_params, next_obs[:, None], next_actions).min(axis=0)  # (B, N)
            best = jnp.argmax(next_q, axis=-1)[:, None]
            next_q = jnp.take_along_axis(next_q, best, -1)[:, 0]
            next_logp = jnp.take_along_axis(next_logp, best, -1)[:, 0]
        else:
            next_actions, next_logp = sample_policy(state.actor_params, next_obs, next_key, 1)
            next_q = q_values(state.target_q_params, next_obs, next_actions[:, 0]).min(axis=0)
            next_logp = next_logp[:, 0]
        if config.backup_entropy:
            next_q = next_q - alpha * next_logp
        target = jax.lax.stop_gradient(reward + config.gamma * (1.0 - terminated) * next_q)
        q_data = q_values(q_params, obs, action)                                     # (2, B)
        td_loss = ((q_data - target) ** 2).mean(axis=1)                              # per critic

        # CQL(H) REGULARIZER: soft maximum over sampled actions minus Q at the dataset action
        random_actions = jax.random.uniform(random_key, (obs.shape[0], n, action_dim), minval=-1.0, maxval=1.0)
        current_actions, current_logp = sample_policy(state.actor_params, obs, current_key, n)
        next_policy_actions, next_policy_logp = sample_policy(state.actor_params, next_obs, next_policy_key, n)
        current_actions, current_logp, next_policy_actions, next_policy_logp = jax.lax.stop_gradient(
            (current_actions, current_logp, next_policy_actions, next_policy_logp))
        q_random = q_values(q_params, obs[:, None], random_actions)                  # (2, B, N)
        q_current = q_values(q_params, obs[:, None], current_actions)
        q_next = q_values(q_params, obs[:, None], next_policy_actions)
        soft_max = jax.vmap(lambda qr, qc, qn, qd: cql_logsumexp(
            qr, qc, current_logp, qn, next_policy_logp, qd, action_dim, config.cql_temp, config.importance_sample))(
            q_random, q_current, q_next, q_data)                                     # (2, B)
        gap = (soft_max - q_data).mean(axis=1)                                       # per critic
        if config.lagrange:
            alpha_prime = jnp.clip(jnp.exp(state.log_alpha_prime), 0.0, MAX_ALPHA_PRIME)
            cql_loss = jax.lax.stop_gradient(alpha_prime) * config.cql_alpha * (gap - config.target_action_gap)
        else:
            alpha_prime = jnp.float32(1.0)
            cql_loss = config.cql_alpha * gap
        loss = (td_loss + cql_loss).sum()
        aux = {"td_loss": td_loss.mean(), "cql_loss": cql_loss.mean(), "cql_gap": gap.mean(),
               "q_data": q_data.mean(), "q_random": q_random.mean(), "q_policy": q_current.mean(),
               "target_q": target.mean(), "alpha_prime": alpha_prime}
        return loss, (aux, gap)

    def actor_loss_fn(actor_params, state: TrainState, obs, key):
        mean, log_std = actor.apply(actor_params, obs)
        action, logp = tanh_gaussian_sample(key, mean, log_std)
        q = q_values(state.q_params, obs, action).min(axis=0)
        loss = (jax.lax.stop_gradient(get_alpha(state.log_alpha)) * logp - q).mean()
        return loss, logp

    def alpha_loss_fn(log_alpha, logp):
        # SAC's temperature loss on log α (Haarnoja et al. 2018, eq. 18, as in CORL)
        return -(log_alpha * jax.lax.stop_gradient(logp + target_entropy)).mean()

    def update(state: TrainState, _iteration, data: data_lib.Dataset):
        # SAMPLE A BATCH from the dataset argument (never from the closed-over `dataset`)
        key, sample_key, actor_key, critic_key = jax.random.split(state.key, 4)
        batch = data_lib.sample_batch(data, sample_key, config.batch_size)
        obs, next_obs = normalize_obs(batch.observations), normalize_obs(batch.next_observations)
        action = jnp.clip((batch.actions.reshape((-1, action_dim)) - mid) / half, -1.0, 1.0)
        reward = config.reward_scale * batch.rewards + config.reward_bias
        batch = (obs, action, reward, next_obs, batch.terminations)

        # POLICY AND TEMPERATURE LOSSES (with the critics before this step's update, as CORL)
        (actor_loss, logp), actor_grads = jax.value_and_grad(actor_loss_fn, has_aux=True)(
            state.actor_params, state, obs, actor_key)
        alpha_loss, alpha_grad = jax.value_and_grad(alpha_loss_fn)(state.log_alpha, logp)

        # CRITIC LOSS: TD error + CQL(H) regularizer
        (q_loss, (aux, gap)), q_grads = jax.value_and_grad(critic_loss_fn, has_aux=True)(
            state.q_params, state, batch, critic_key)

        # LAGRANGE MULTIPLIER α' (dual gradient ascent on α' · (gap − τ), averaged over both critics)
        if config.lagrange:
            alpha_prime_loss, alpha_prime_grad = jax.value_and_grad(lagrange_alpha_prime_loss)(
                state.log_alpha_prime, gap, config.target_action_gap)
            alpha_prime_update, alpha_prime_opt = alpha_prime_tx.update(alpha_prime_grad, state.alpha_prime_opt)
            log_alpha_prime = optax.apply_updates(state.log_alpha_prime, alpha_prime_update)
        else:
            alpha_prime_loss, alpha_prime_opt, log_alpha_prime = jnp.float32(0.0), state.alpha_prime_opt, state.log_alpha_prime

        # APPLY UPDATES
        actor_updates, actor_opt = actor_tx.update(actor_grads, state.actor_opt)
        actor_params = optax.apply_updates(state.actor_params, actor_updates)
        q_updates, q_opt = q_tx.update(q_grads, state.q_opt)
        q_params = optax.apply_updates(state.q_params, q_updates)
        if config.autotune:
            alpha_update, alpha_opt = alpha_tx.update(alpha_grad, state.alpha_opt)
            log_alpha = optax.apply_updates(state.log_alpha, alpha_update)
        else:
            alpha_opt, log_alpha = state.alpha_opt, state.log_alpha

        # UPDATE TARGET CRITICS
        target_q_params = optax.incremental_update(q_params, state.target_q_params, config.tau)

        new_state = TrainState(actor_params, q_params, target_q_params, log_alpha, log_alpha_prime, actor_opt,
                               q_opt, alpha_opt, alpha_prime_opt, key)
        metrics = {"q_loss": q_loss, "actor_loss": actor_loss, "alpha_loss": alpha_loss,
                   "alpha_prime_loss": alpha_prime_loss, "entropy": -logp.mean(), "alpha": get_alpha(log_alpha), **aux}
        return new_state, metrics

    def act(state: TrainState, obs, key):
        """Deterministic action: tanh of the policy mean, mapped to the env's bounds."""
        mean, _ = actor.apply(state.actor_params, normalize_obs(obs))
        return (mid + half * jnp.tanh(mean)).reshape((obs.shape[0],) + action_shape)

    return Trainer(init=init, update=update, act=act, num_updates=config.num_updates, env_steps_per_update=0,
                   env=env, env_params=env_params, data=dataset)


if __name__ == "__main__":
    from jaxrl.cli import main

    main(Config, make_train, algorithm="cql", offline=True)
