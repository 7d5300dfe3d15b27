"""FOCOPS: First Order Constrained Optimization in Policy Space (Zhang, Vuong & Ross 2020,
NeurIPS, arXiv:2002.06506).

Two stages per iteration. (1) In the *non-parameterized* policy space, the update that maximizes the
reward advantage under the cost constraint and a KL trust region has the closed form
π*(a|s) ∝ π_θk(a|s) exp((A_r(s,a) − ν A_c(s,a)) / λ) (Theorem 1). (2) The policy is projected back
onto the network by minimizing E_s[KL(π_θ ‖ π*)[s]], whose sample estimate (Corollary 1, with the
per-state acceptance indicator of the practical algorithm, Algorithm 1) is the loss

    L(θ) = 1/N Σ_i [ KL(π_θ ‖ π_θk)[s_i] − (1/λ) · π_θ(a_i|s_i)/π_θk(a_i|s_i) · (Â_i − ν Â^C_i) ]
                   · 1{ KL(π_θ ‖ π_θk)[s_i] ≤ η }

(``focops_policy_loss``). The temperature λ is fixed; the cost multiplier ν takes one projected
gradient step per iteration, before the policy update, from the estimated constraint violation:
ν ← clip(ν + α_ν (Ĵ_c − d), 0, ν_max), the paper's "ν ← proj_ν[ν − α(b − Ĵ_C(π_θk))]" (the
gradient of Corollary 2 with E_{π*}[A] ≈ 0; ``nu_update``), with Ĵ_c the mean cost of the episodes
that *completed* during the rollout (ν is left unchanged when none did). The epochs over a rollout
stop once the mean KL(π_θ ‖ π_θk) over the whole batch exceeds δ (Algorithm 1's early stop, checked
after each epoch). Reward and cost critics are trained on GAE(λ) targets (Schulman et al. 2016,
eq. 16), bootstrapping through truncation only.

Defaults are those of the authors' code (github.com/ymzhang01/focops, ``focops_main.py``; OmniSafe's
``FOCOPS.yaml`` agrees on λ and η): λ = 1.5, η = 0.02 (per-state indicator), δ = 0.02 (early
stop), ν0 = 0, ν lr α_ν = 0.01 (plain gradient step), ν_max = 2, lr 3e-4 (Adam, linearly
annealed), γ = cost γ = 0.99, GAE λ 0.95 for reward and cost, critic L2 1e-3, grad-norm clip 40,
tanh 64x64, both advantages standardized over the rollout, no entropy bonus; cost limit 25
(OmniSafe's ``FOCOPS.yaml``).
Differences, on purpose: the rollout shape (4 envs x 128 steps, 4 epochs x 4 minibatches) is
``agents/online/ppo.py``'s rather than the authors' 2048-step batches of 64-sample minibatches for
10 epochs; one Adam optimizer trains actor and critics on the summed loss (the authors use three);
and Ĵ_c is the *undiscounted* episode cost, the quantity this project's ``cost_limit`` bounds (the
authors' code discounts it by cost γ).

Metrics per iteration (over the episodes completed in that iteration's rollout, NaN if none):
``episode_return``, ``episode_cost``, ``over_limit`` (fraction of those episodes whose cost
exceeds the limit), ``episodes``, ``lambda`` (the cost multiplier ν used for the update: FOCOPS's λ
is a fixed temperature, ν is the penalty on the cost advantage), ``epochs`` (epochs applied before
the KL early stop), ``kl`` (mean KL(π_θ ‖ π_θk) after the last applied epoch) and ``accepted``
(fraction of samples whose indicator was 1, averaged over the applied minibatch steps).

Run:  python agents/safe/focops.py --env SafeCartPole-v0 --num-seeds 8
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

from jaxrl import constraints, envs
from jaxrl.config import require, require_divides, require_positive, require_unit_interval
from jaxrl.initializers import orthogonal
from jaxrl.trainer import Trainer
from jaxrl.wrappers import ClipAction, EpisodeStatistics, FlattenObservation, VectorEnv


@dataclasses.dataclass(frozen=True)
class Config:
    env: str = "SafeCartPole-v0"
    """Environment id (gymnax or this project's envs/); the cost is read from info["cost"]."""
    total_timesteps: int = 500_000
    """Env steps per run (over all parallel envs)."""
    cost_limit: float = 25.0
    """d: the limit on the expected (undiscounted) episode cost."""
    focops_lambda: float = 1.5
    """λ: the fixed temperature of the optimal update policy π* ∝ π_k exp((A − ν A_c)/λ)."""
    focops_eta: float = 0.02
    """η: a sample enters the loss only while KL(π_θ ‖ π_θk) at its state is at most η."""
    nu_init: float = 0.0
    """Initial cost multiplier ν0."""
    nu_lr: float = 0.01
    """α_ν: step size of ν's projected gradient step (0 with nu_init 0: no constraint, ν stays 0)."""
    nu_max: float = 2.0
    """ν is projected onto [0, nu_max]."""
    lr: float = 3e-4
    """Adam learning rate of actor and critics (start value when annealed)."""
    anneal_lr: bool = True
    """Decay the learning rate linearly to 0 over training."""
    num_envs: int = 4
    """Parallel envs per run."""
    num_steps: int = 128
    """Steps per env per rollout."""
    update_epochs: int = 4
    """Passes over each rollout (fewer when the KL early stop triggers)."""
    num_minibatches: int = 4
    """Minibatches per epoch; num_envs * num_steps must divide by it."""
    gamma: float = 0.99
    """Discount factor of the reward."""
    cost_gamma: float = 0.99
    """Discount factor of the cost."""
    gae_lambda: float = 0.95
    """GAE λ of the reward advantage."""
    cost_gae_lambda: float = 0.95
    """GAE λ of the cost advantage."""
    target_kl: float = 0.02
    """δ: stop the epochs of an iteration once the batch-mean KL(π_θ ‖ π_θk) exceeds this."""
    ent_coef: float = 0.0
    """Entropy bonus coefficient."""
    vf_coef: float = 0.5
    """Weight of the (reward + cost) value losses."""
    critic_norm_coef: float = 0.001
    """L2 penalty on the critics' weights."""
    max_grad_norm: float = 40.0
    """Global gradient-norm clip."""
    hidden_size: int = 64
    """Width of the two hidden layers of actor and critics."""
    activation: str = "tanh"
    """Hidden activation: tanh or relu."""

    @property
    def batch_size(self) -> int:
        return self.num_envs * self.num_steps

    @property
    def num_updates(self) -> int:
        return self.total_timesteps // self.batch_size


# ----------------------------------------------------------------------------------------------
# Networks
# ----------------------------------------------------------------------------------------------
class ActorCritics(nn.Module):
    """Actor (logits or Gaussian mean), reward critic and cost critic: three separate MLPs."""

    action_dim: int
    discrete: bool
    hidden_size: int = 64
    activation: str = "tanh"

    @nn.compact
    def __call__(self, obs):
        act = nn.tanh if self.activation == "tanh" else nn.relu

        def mlp(x, out_dim, out_scale, name):
            for i in range(2):
                x = act(nn.Dense(self.hidden_size, kernel_init=orthogonal(np.sqrt(2)), bias_init=constant(0.0),
                                 name=f"{name}_{i}")(x))
            return nn.Dense(out_dim, kernel_init=orthogonal(out_scale), bias_init=constant(0.0), name=f"{name}_out")(x)

        actor_out = mlp(obs, self.action_dim, 0.01, "actor")
        value = mlp(obs, 1, 1.0, "critic")[..., 0]
        cost_value = mlp(obs, 1, 1.0, "cost_critic")[..., 0]
        log_std = self.param("log_std", constant(0.0), (self.action_dim,)) if not self.discrete else None
        return actor_out, log_std, value, cost_value


def policy_logits(config: Config, params, obs):
    """The actor's action logits for a batch of observations (discrete actions), from trained params.

    Reads the policy off a run without rebuilding its Trainer (e.g. the per-state table of a tabular
    CMDP policy in ``scripts/reproduce_safe.py``).
    """
    num_actions = params["params"]["actor_out"]["kernel"].shape[-1]
    return ActorCritics(num_actions, True, config.hidden_size, config.activation).apply(params, obs)[0]


def log_prob_and_entropy(actor_out, log_std, action, discrete: bool):
    """Log-probability of ``action`` and the policy entropy (categorical or diagonal Gaussian)."""
    if discrete:
        logp_all = jax.nn.log_softmax(actor_out)
        logp = jnp.take_along_axis(logp_all, action[..., None].astype(jnp.int32), axis=-1)[..., 0]
        entropy = -(jnp.exp(logp_all) * logp_all).sum(-1)
        return logp, entropy
    std = jnp.exp(log_std)
    logp = (-0.5 * ((action - actor_out) / std) ** 2 - log_std - 0.5 * jnp.log(2 * jnp.pi)).sum(-1)
    entropy = jnp.broadcast_to((log_std + 0.5 * jnp.log(2 * jnp.pi * jnp.e)).sum(-1), logp.shape)
    return logp, entropy


def policy_kl(actor_out, log_std, old_actor_out, old_log_std, discrete: bool):
    """KL(π_new ‖ π_old)[s] per state: categorical over logits, or diagonal Gaussians (summed over dims)."""
    if discrete:
        logp, old_logp = jax.nn.log_softmax(actor_out), jax.nn.log_softmax(old_actor_out)
        return (jnp.exp(logp) * (logp - old_logp)).sum(-1)
    var, old_var = jnp.exp(2 * log_std), jnp.exp(2 * old_log_std)
    per_dim = old_log_std - log_std + (var + (actor_out - old_actor_out) ** 2) / (2 * old_var) - 0.5
    return per_dim.sum(-1)


def sample_action(key, actor_out, log_std, discrete: bool):
    if discrete:
        return jax.random.categorical(key, actor_out)
    return actor_out + jnp.exp(log_std) * jax.random.normal(key, actor_out.shape)


# ----------------------------------------------------------------------------------------------
# Advantages, the multiplier and the FOCOPS loss
# ----------------------------------------------------------------------------------------------
class Transition(NamedTuple):
    obs: jax.Array
    action: jax.Array
    log_prob: jax.Array
    actor_out: jax.Array        # π_θk's logits / Gaussian mean at obs (for the per-state KL)
    log_std: jax.Array          # π_θk's Gaussian log-std, broadcast to actor_out (zeros when discrete)
    value: jax.Array
    cost_value: jax.Array
    reward: jax.Array
    cost: jax.Array
    terminated: jax.Array
    done: jax.Array             # terminated or truncated: the episode ends after this step
    next_value: jax.Array       # V(s_{t+1}) of the pre-reset next state (info["final_observation"])
    next_cost_value: jax.Array  # V_c(s_{t+1}) of the same state


def gae(signal, value, next_value, terminated, done, gamma, gae_lambda):
    """GAE(λ) of any per-step signal (reward or cost) over (time, env) arrays (Schulman et al. 2016, eq. 16).

    δ_t = x_t + γ (1 − terminated_t) V(s'_t) − V(s_t), bootstrapping through truncation (s'_t is the
    true next state) but not through termination; A_t = δ_t + γλ (1 − done_t) A_{t+1}.
    Returns (advantages, value targets = advantages + values).
    """

    def backward(next_adv, xs):
        x, v, nv, term, d = xs
        delta = x + gamma * (1.0 - term) * nv - v
        adv = delta + gamma * gae_lambda * (1.0 - d) * next_adv
        return adv, adv

    _, advantages = jax.lax.scan(backward, jnp.zeros_like(value[0]), (signal, value, next_value, terminated, done),
                                 reverse=True)
    return advantages, advantages + value


def standardize(x):
    return (x - x.mean()) / (x.std() + 1e-8)


class NuState(NamedTuple):
    nu: jax.Array               # the cost multiplier ν ∈ [0, ν_max]


def nu_update(state: NuState, episode_costs, completed, limit, lr, nu_max) -> NuState:
    """ν ← clip(ν + α_ν (Ĵ_c − d), 0, ν_max) (Zhang et al. 2020, Algorithm 1).

    The dual step of Corollary 2 with E_{π*}[A] ≈ 0: ν ← proj_[0, ν_max][ν − α (d − Ĵ_c)].
    Ĵ_c is the mean cost of the completed episodes only; without one, ν stays where it is.
    """
    mean_cost, any_done = constraints.completed_mean(episode_costs, completed)
    nu = jnp.clip(state.nu + lr * (mean_cost - limit), 0.0, nu_max)
    return NuState(jnp.where(any_done, nu, state.nu))


def focops_policy_loss(log_prob, old_log_prob, kl, reward_adv, cost_adv, nu, temperature, eta):
    """The FOCOPS projection loss (Zhang et al. 2020, Corollary 1 with the indicator of Algorithm 1).

    mean_i [ (KL_i − (1/λ) ρ_i (A_i − ν A^C_i)) · 1{KL_i ≤ η} ], ρ_i = π_θ(a_i|s_i) / π_θk(a_i|s_i),
    KL_i = KL(π_θ ‖ π_θk)[s_i]; the indicator is not differentiated. Returns (loss, accepted fraction).
    """
    ratio = jnp.exp(log_prob - old_log_prob)
    accept = jax.lax.stop_gradient(kl <= eta).astype(jnp.float32)
    per_sample = (kl - ratio * (reward_adv - nu * cost_adv) / temperature) * accept
    return per_sample.mean(), accept.mean()


def completed_episode_metrics(info, cost_limit) -> dict:
    """Means over the episodes that ended during the rollout (``info`` is (time, env)-batched)."""
    done = info["episode_done"]
    n = done.sum()

    def mean(x):
        return jnp.where(n > 0, jnp.where(done, x.astype(jnp.float32), 0.0).sum() / jnp.maximum(n, 1), jnp.nan)

    return {
        "episode_return": mean(info["episode_return"]),
        "episode_cost": mean(info["episode_cost"]),
        "episode_length": mean(info["episode_length"]),
        "over_limit": mean(info["episode_cost"] > cost_limit),
        "episodes": n.astype(jnp.float32),
    }


# ----------------------------------------------------------------------------------------------
# Training
# ----------------------------------------------------------------------------------------------
class TrainState(NamedTuple):
    params: dict
    opt_state: optax.OptState
    constraint: NuState
    env_state: object
    obs: jax.Array
    key: jax.Array


def make_env(config: Config, env=None, env_params=None):
    """The env of ``config.env``, or ``env``/``env_params`` when given (e.g. one CMDP of a batch whose
    arrays are traced, ``scripts/reproduce_safe.py``), wrapped for training."""
    if env is None:
        env, env_params = envs.make(config.env)
    env_params = env.default_params if env_params is None else env_params
    envs.require_cost(config.env, env, env_params, "FOCOPS")
    discrete = envs.is_discrete(env, env_params)
    flat = FlattenObservation(env) if len(env.observation_space(env_params).shape) > 1 else env
    wrapped = EpisodeStatistics(flat)
    if not discrete:
        wrapped = ClipAction(wrapped)
    return env, env_params, wrapped, discrete


def validate(config: Config) -> None:
    require_positive(config, "lr", "total_timesteps", "num_envs", "num_steps", "update_epochs", "num_minibatches",
                     "hidden_size", "max_grad_norm", "target_kl", "focops_lambda", "focops_eta")
    require_unit_interval(config, "gamma", "cost_gamma", "gae_lambda", "cost_gae_lambda")
    require(config.cost_limit >= 0, f"cost_limit must be >= 0, got {config.cost_limit}")
    for name in ("nu_init", "nu_lr", "nu_max", "ent_coef", "vf_coef", "critic_norm_coef"):
        require(getattr(config, name) >= 0, f"{name} must be >= 0, got {getattr(config, name)}")
    require(config.nu_init <= config.nu_max, f"nu_init must be <= nu_max, got nu_init={config.nu_init} and "
            f"nu_max={config.nu_max}")
    require(config.activation in ("tanh", "relu"), f"activation must be 'tanh' or 'relu', got {config.activation!r}")
    require_divides("num_envs * num_steps", config.batch_size, "num_minibatches", config.num_minibatches)
    require(config.num_updates >= 1, f"total_timesteps={config.total_timesteps} is less than one rollout "
            f"(num_envs * num_steps = {config.batch_size})")


def make_train(config: Config, network: nn.Module | None = None, env=None, env_params=None) -> Trainer:
    """Build the FOCOPS trainer. ``network`` replaces ``ActorCritics`` (same four outputs).
    ``env``/``env_params`` replace the env of ``config.env`` when given."""
    validate(config)
    env, env_params, wrapped, discrete = make_env(config, env, env_params)
    obs_shape = (int(np.prod(env.observation_space(env_params).shape)),)
    action_space = env.action_space(env_params)
    action_dim = action_space.n if discrete else int(np.prod(action_space.shape))
    if network is None:
        network = ActorCritics(action_dim, discrete, config.hidden_size, config.activation)
    minibatch_size = config.batch_size // config.num_minibatches

    def lr_schedule(count):
        frac = 1.0 - (count // (config.num_minibatches * config.update_epochs)) / config.num_updates
        return config.lr * frac if config.anneal_lr else config.lr

    tx = optax.chain(optax.clip_by_global_norm(config.max_grad_norm), optax.adam(lr_schedule, eps=1e-5))
    vec_env = VectorEnv(wrapped, config.num_envs)

    def init(key) -> TrainState:
        key, net_key, env_key = jax.random.split(key, 3)
        params = network.init(net_key, jnp.zeros(obs_shape))
        obs, env_state = vec_env.reset(env_key, env_params)
        nu = jnp.clip(jnp.asarray(config.nu_init, jnp.float32), 0.0, config.nu_max)
        return TrainState(params, tx.init(params), NuState(nu), env_state, obs, key)

    def critic_l2(params):
        leaves = [x for path, x in jax.tree_util.tree_leaves_with_path(params)
                  if any("critic" in str(getattr(p, "key", "")) for p in path) and x.ndim == 2]
        return sum((x**2).sum() for x in leaves)

    def batch_kl(params, batch: Transition):
        actor_out, log_std = network.apply(params, batch.obs)[:2]
        return policy_kl(actor_out, log_std, batch.actor_out, batch.log_std, discrete)

    def loss_fn(params, batch: Transition, reward_adv, cost_adv, targets, cost_targets, nu):
        """FOCOPS projection loss (``focops_policy_loss``) + MSE of both critics + critic L2 − entropy.
        The advantages come standardized over the rollout."""
        actor_out, log_std, value, cost_value = network.apply(params, batch.obs)
        log_prob, entropy = log_prob_and_entropy(actor_out, log_std, batch.action, discrete)
        kl = policy_kl(actor_out, log_std, batch.actor_out, batch.log_std, discrete)
        policy_loss, accepted = focops_policy_loss(log_prob, batch.log_prob, kl, reward_adv, cost_adv, nu,
                                                   config.focops_lambda, config.focops_eta)
        v_loss = 0.5 * ((value - targets) ** 2).mean()
        c_loss = 0.5 * ((cost_value - cost_targets) ** 2).mean()
        entropy = entropy.mean()
        total = (policy_loss + config.vf_coef * (v_loss + c_loss) + config.critic_norm_coef * critic_l2(params)
                 - config.ent_coef * entropy)
        return total, {"policy_loss": policy_loss, "value_loss": v_loss, "cost_value_loss": c_loss,
                       "entropy": entropy, "accepted": accepted}

    def collect(state: TrainState):
        def env_step(carry, _):
            params, env_state, obs, key = carry
            key, act_key, step_key = jax.random.split(key, 3)
            actor_out, log_std, value, cost_value = network.apply(params, obs)
            action = sample_action(act_key, actor_out, log_std, discrete)
            log_prob, _ = log_prob_and_entropy(actor_out, log_std, action, discrete)
            old_log_std = jnp.zeros_like(actor_out) if discrete else jnp.broadcast_to(log_std, actor_out.shape)
            next_obs, env_state, reward, terminated, truncated, info = vec_env.step(step_key, env_state, action, env_params)
            done = jnp.logical_or(terminated, truncated)
            _, _, next_value, next_cost_value = network.apply(params, info["final_observation"])
            transition = Transition(obs, action, log_prob, actor_out, old_log_std, value, cost_value, reward,
                                    jnp.asarray(info["cost"], jnp.float32), terminated.astype(jnp.float32),
                                    done.astype(jnp.float32), next_value, next_cost_value)
            stats = {k: info[k] for k in ("episode_done", "episode_return", "episode_cost", "episode_length")}
            return (params, env_state, next_obs, key), (transition, stats)

        (_, env_state, obs, key), (traj, stats) = jax.lax.scan(
            env_step, (state.params, state.env_state, state.obs, state.key), None, config.num_steps)
        return traj, stats, env_state, obs, key

    def update(state: TrainState, _iteration):
        # COLLECT TRAJECTORIES
        traj, stats, env_state, obs, key = collect(state)

        # UPDATE ν from the episodes completed in this rollout (before the policy update, Algorithm 1)
        constraint = nu_update(state.constraint, stats["episode_cost"], stats["episode_done"], config.cost_limit,
                               config.nu_lr, config.nu_max)
        nu = constraint.nu

        # CALCULATE ADVANTAGES
        reward_adv, targets = gae(traj.reward, traj.value, traj.next_value, traj.terminated, traj.done,
                                  config.gamma, config.gae_lambda)
        cost_adv, cost_targets = gae(traj.cost, traj.cost_value, traj.next_cost_value, traj.terminated, traj.done,
                                     config.cost_gamma, config.cost_gae_lambda)
        # both advantages standardized over the whole rollout (the authors' code)
        data = (traj, standardize(reward_adv), standardize(cost_adv), targets, cost_targets)
        flat = jax.tree.map(lambda x: x.reshape((config.batch_size,) + x.shape[2:]), data)

        # UPDATE NETWORK (epochs stop once the batch-mean KL(π_θ ‖ π_θk) after an epoch exceeds δ)
        def update_epoch(carry, _):
            params, opt_state, key, stopped = carry
            key, perm_key = jax.random.split(key)
            perm = jax.random.permutation(perm_key, config.batch_size)
            shuffled = jax.tree.map(lambda x: x[perm].reshape((config.num_minibatches, minibatch_size) + x.shape[1:]), flat)

            def update_minibatch(carry, minibatch):
                params, opt_state = carry
                grads, aux = jax.grad(loss_fn, has_aux=True)(params, *minibatch, nu)
                updates, opt_state = tx.update(grads, opt_state, params)
                return (optax.apply_updates(params, updates), opt_state), aux

            (new_params, new_opt_state), aux = jax.lax.scan(update_minibatch, (params, opt_state), shuffled)
            keep = lambda new, old: jax.tree.map(lambda a, b: jnp.where(stopped, b, a), new, old)  # noqa: E731
            params, opt_state = keep(new_params, params), keep(new_opt_state, opt_state)
            ran = ~stopped
            kl = batch_kl(params, flat[0]).mean()
            stopped = stopped | (kl > config.target_kl)
            return (params, opt_state, key, stopped), ({**aux, "kl": jnp.broadcast_to(kl, aux["accepted"].shape)}, ran)

        (params, opt_state, key, _), (aux, ran) = jax.lax.scan(
            update_epoch, (state.params, state.opt_state, key, jnp.bool_(False)), None, config.update_epochs)
        # losses averaged over the epochs that were applied (the first always is)
        metrics = {k: (v.mean(-1) * ran).sum() / ran.sum() for k, v in aux.items() if k != "kl"}
        metrics["kl"] = aux["kl"][ran.sum() - 1, 0]
        metrics["epochs"] = ran.sum().astype(jnp.float32)
        metrics.update(completed_episode_metrics(stats, config.cost_limit))
        metrics["lambda"] = nu
        metrics["step_cost"] = traj.cost.mean()
        return TrainState(params, opt_state, constraint, env_state, obs, key), metrics

    def act(state: TrainState, obs, key):
        """Greedy action: argmax of the logits, or the Gaussian mean clipped to the action bounds."""
        obs = obs.reshape((obs.shape[0], -1))
        actor_out = network.apply(state.params, obs)[0]
        if discrete:
            return jnp.argmax(actor_out, axis=-1)
        return jnp.clip(actor_out, action_space.low, action_space.high)

    return Trainer(init=init, update=update, act=act, num_updates=config.num_updates,
                   env_steps_per_update=config.batch_size, env=env, env_params=env_params)


if __name__ == "__main__":
    from jaxrl.cli import main

    main(Config, make_train, algorithm="focops")
