"""P3O: Penalized Proximal Policy Optimization (Zhang, Shen, Yang, Chen, Yuan, Wang & Tao 2022,
"Penalized Proximal Policy Optimization for Safe Reinforcement Learning", IJCAI, arXiv:2205.11814).

The constrained policy update max J_r s.t. J_c ≤ d is replaced by one unconstrained minimization with
an *exact* penalty (the ReLU of the constraint, which the paper proves exact for a finite κ larger
than the optimal multiplier), and PPO's clipping stands in for the trust region:

    L(θ) = L^CLIP_R(θ) + κ · max(0, L^CLIP_C(θ))                     (the P3O objective, Algorithm 1)
    L^CLIP_R(θ) = −E[min(ρ Â, clip(ρ, 1 − ε, 1 + ε) Â)]              (PPO, Schulman et al. 2017, eq. 7)
    L^CLIP_C(θ) =  E[max(ρ Â^C, clip(ρ, 1 − ε, 1 + ε) Â^C)] + (Ĵ_c − d)  (the clipped cost surrogate)

with ρ = π_θ(a|s)/π_θk(a|s) and the pessimistic (max) clipping for the cost, which is minimized
(``p3o_policy_loss``). There is no multiplier to learn: while the constraint holds with margin the
ReLU is flat and P3O is PPO on the reward; once Ĵ_c + E[ρ Â^C] exceeds d the cost surrogate enters
with weight κ. Ĵ_c is the mean (undiscounted) cost of the episodes that *completed* during the
rollout; when none did, the previous estimate is kept (0 before the first episode ends). Reward and
cost critics are trained on GAE(λ) targets (Schulman et al. 2016, eq. 16), bootstrapping through
truncation only, and the epochs stop early on the KL, as PPO-Lag.

Defaults are OmniSafe's ``P3O.yaml`` (Ji et al. 2023, "OmniSafe"): κ = 20, clip 0.2, cost limit 25,
lr 3e-4 (annealed), γ = cost γ = 0.99, GAE λ 0.95 for reward and cost, KL early stop 0.02, grad-norm
clip 40, critic L2 0.001, no entropy bonus, tanh 64x64, both advantages standardized over the
rollout. As OmniSafe, the violation enters as Ĵ_c − d, not the paper's (1 − γ)(J_C − d): with
standardized advantages the surrogate has no natural scale, and unscaled the ReLU switches on as
soon as the episode cost is above the limit. The rollout shape (4 envs x 128 steps, 4 epochs x 4
minibatches) is ``agents/online/ppo.py``'s, not OmniSafe's 32 768-step epochs.

Metrics per iteration (over the episodes completed in that iteration's rollout, NaN if none):
``episode_return``, ``episode_cost``, ``over_limit`` (fraction of those episodes whose cost
exceeds the limit), ``episodes``, ``lambda`` (P3O has no multiplier; its analogue is the weight the
update put on the cost surrogate: κ times the fraction of the applied minibatch steps whose ReLU
was active, so κ when the penalty was on throughout and 0 when it was off), ``penalty_active``
(that fraction), ``violation`` (the Ĵ_c − d used), and ``epochs`` (epochs applied before the KL
early stop; the losses are averaged over those).

Run:  python agents/safe/p3o.py --env SafeCartPole-v0 --num-seeds 8
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
    kappa: float = 20.0
    """κ: weight of the exact (ReLU) penalty on the clipped cost surrogate (0: unconstrained PPO)."""
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
    clip_eps: float = 0.2
    """ε: clipping range of the probability ratio, in both surrogates."""
    ent_coef: float = 0.0
    """Entropy bonus coefficient."""
    vf_coef: float = 0.5
    """Weight of the (reward + cost) value losses."""
    critic_norm_coef: float = 0.001
    """L2 penalty on the critics' weights."""
    target_kl: float = 0.02
    """Stop the epochs of an iteration once the mean approximate KL of an epoch exceeds this."""
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


def sample_action(key, actor_out, log_std, discrete: bool):
    if discrete:
        return jax.random.categorical(key, actor_out)
    return actor_out + jnp.exp(log_std) * jax.random.normal(key, actor_out.shape)


# ----------------------------------------------------------------------------------------------
# Advantages, the cost estimate and the P3O loss
# ----------------------------------------------------------------------------------------------
class Transition(NamedTuple):
    obs: jax.Array
    action: jax.Array
    log_prob: jax.Array
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


class CostEstimate(NamedTuple):
    episode_cost: jax.Array     # Ĵ_c: mean cost of the completed episodes of the latest rollout that had one


def update_cost_estimate(state: CostEstimate, episode_costs, completed) -> CostEstimate:
    """Ĵ_c from the episodes completed in this rollout; the previous estimate when none completed."""
    mean_cost, any_done = constraints.completed_mean(episode_costs, completed)
    return CostEstimate(jnp.where(any_done, mean_cost, state.episode_cost))


def p3o_policy_loss(log_prob, old_log_prob, reward_adv, cost_adv, violation, kappa, clip_eps):
    """The P3O objective (Zhang et al. 2022, Algorithm 1): L^CLIP_R + κ · max(0, L^CLIP_C).

    L^CLIP_R = −mean(min(ρ A, clip(ρ) A)) (PPO's clipped surrogate), L^CLIP_C = mean(max(ρ A^C,
    clip(ρ) A^C)) + (Ĵ_c − d), ρ = exp(log π_θ − log π_θk). Returns (loss, reward part, cost part
    L^CLIP_C, whether the ReLU is active).
    """
    ratio = jnp.exp(log_prob - old_log_prob)
    clipped = jnp.clip(ratio, 1.0 - clip_eps, 1.0 + clip_eps)
    reward_loss = -jnp.minimum(ratio * reward_adv, clipped * reward_adv).mean()
    cost_surrogate = jnp.maximum(ratio * cost_adv, clipped * cost_adv).mean() + violation
    return reward_loss + kappa * jax.nn.relu(cost_surrogate), reward_loss, cost_surrogate, cost_surrogate > 0


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
    constraint: CostEstimate
    env_state: object
    obs: jax.Array
    key: jax.Array


def make_env(config: Config, env=None, env_params=None):
    """The env of ``config.env``, or ``env``/``env_params`` when given (e.g. one CMDP of a batch whose
    arrays are traced, ``scripts/reproduce_safe.py``), wrapped for training."""
    if env is None:
        env, env_params = envs.make(config.env)
    env_params = env.default_params if env_params is None else env_params
    envs.require_cost(config.env, env, env_params, "P3O")
    discrete = envs.is_discrete(env, env_params)
    flat = FlattenObservation(env) if len(env.observation_space(env_params).shape) > 1 else env
    wrapped = EpisodeStatistics(flat)
    if not discrete:
        wrapped = ClipAction(wrapped)
    return env, env_params, wrapped, discrete


def validate(config: Config) -> None:
    require_positive(config, "lr", "total_timesteps", "num_envs", "num_steps", "update_epochs", "num_minibatches",
                     "hidden_size", "max_grad_norm", "clip_eps", "target_kl")
    require_unit_interval(config, "gamma", "cost_gamma", "gae_lambda", "cost_gae_lambda")
    require(config.cost_limit >= 0, f"cost_limit must be >= 0, got {config.cost_limit}")
    for name in ("kappa", "ent_coef", "vf_coef", "critic_norm_coef"):
        require(getattr(config, name) >= 0, f"{name} must be >= 0, got {getattr(config, name)}")
    require(config.activation in ("tanh", "relu"), f"activation must be 'tanh' or 'relu', got {config.activation!r}")
    require_divides("num_envs * num_steps", config.batch_size, "num_minibatches", config.num_minibatches)
    require(config.num_updates >= 1, f"total_timesteps={config.total_timesteps} is less than one rollout "
            f"(num_envs * num_steps = {config.batch_size})")


def make_train(config: Config, network: nn.Module | None = None, env=None, env_params=None) -> Trainer:
    """Build the P3O trainer. ``network`` replaces ``ActorCritics`` (same four outputs).
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
        return TrainState(params, tx.init(params), CostEstimate(jnp.float32(0.0)), env_state, obs, key)

    def critic_l2(params):
        leaves = [x for path, x in jax.tree_util.tree_leaves_with_path(params)
                  if any("critic" in str(getattr(p, "key", "")) for p in path) and x.ndim == 2]
        return sum((x**2).sum() for x in leaves)

    def value_loss(pred, old, target):
        """PPO2's clipped value loss."""
        clipped = old + jnp.clip(pred - old, -config.clip_eps, config.clip_eps)
        return 0.5 * jnp.maximum((pred - target) ** 2, (clipped - target) ** 2).mean()

    def loss_fn(params, batch: Transition, reward_adv, cost_adv, targets, cost_targets, violation):
        """P3O objective (``p3o_policy_loss``) + both critics + critic L2 − entropy. The advantages
        come standardized over the rollout."""
        actor_out, log_std, value, cost_value = network.apply(params, batch.obs)
        log_prob, entropy = log_prob_and_entropy(actor_out, log_std, batch.action, discrete)
        policy_loss, reward_loss, cost_surrogate, active = p3o_policy_loss(
            log_prob, batch.log_prob, reward_adv, cost_adv, violation, config.kappa, config.clip_eps)
        v_loss = value_loss(value, batch.value, targets)
        c_loss = value_loss(cost_value, batch.cost_value, cost_targets)
        entropy = entropy.mean()
        total = (policy_loss + config.vf_coef * (v_loss + c_loss) + config.critic_norm_coef * critic_l2(params)
                 - config.ent_coef * entropy)
        log_ratio = log_prob - batch.log_prob
        approx_kl = ((jnp.exp(log_ratio) - 1) - log_ratio).mean()
        return total, {"policy_loss": policy_loss, "reward_loss": reward_loss, "cost_surrogate": cost_surrogate,
                       "penalty_active": active.astype(jnp.float32), "value_loss": v_loss, "cost_value_loss": c_loss,
                       "entropy": entropy, "approx_kl": approx_kl}

    def collect(state: TrainState):
        def env_step(carry, _):
            params, env_state, obs, key = carry
            key, act_key, step_key = jax.random.split(key, 3)
            actor_out, log_std, value, cost_value = network.apply(params, obs)
            action = sample_action(act_key, actor_out, log_std, discrete)
            log_prob, _ = log_prob_and_entropy(actor_out, log_std, action, discrete)
            next_obs, env_state, reward, terminated, truncated, info = vec_env.step(step_key, env_state, action, env_params)
            done = jnp.logical_or(terminated, truncated)
            _, _, next_value, next_cost_value = network.apply(params, info["final_observation"])
            transition = Transition(obs, action, log_prob, value, cost_value, reward,
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

        # ESTIMATE J_c from the episodes completed in this rollout (kept from before when none did)
        constraint = update_cost_estimate(state.constraint, stats["episode_cost"], stats["episode_done"])
        violation = constraint.episode_cost - config.cost_limit

        # CALCULATE ADVANTAGES (both standardized over the rollout)
        reward_adv, targets = gae(traj.reward, traj.value, traj.next_value, traj.terminated, traj.done,
                                  config.gamma, config.gae_lambda)
        cost_adv, cost_targets = gae(traj.cost, traj.cost_value, traj.next_cost_value, traj.terminated, traj.done,
                                     config.cost_gamma, config.cost_gae_lambda)
        data = (traj, standardize(reward_adv), standardize(cost_adv), targets, cost_targets)
        flat = jax.tree.map(lambda x: x.reshape((config.batch_size,) + x.shape[2:]), data)

        # UPDATE NETWORK (epochs stop once an epoch's mean KL exceeds target_kl)
        def update_epoch(carry, _):
            params, opt_state, key, stopped = carry
            key, perm_key = jax.random.split(key)
            perm = jax.random.permutation(perm_key, config.batch_size)
            shuffled = jax.tree.map(lambda x: x[perm].reshape((config.num_minibatches, minibatch_size) + x.shape[1:]), flat)

            def update_minibatch(carry, minibatch):
                params, opt_state = carry
                grads, aux = jax.grad(loss_fn, has_aux=True)(params, *minibatch, violation)
                updates, opt_state = tx.update(grads, opt_state, params)
                return (optax.apply_updates(params, updates), opt_state), aux

            (new_params, new_opt_state), aux = jax.lax.scan(update_minibatch, (params, opt_state), shuffled)
            keep = lambda new, old: jax.tree.map(lambda a, b: jnp.where(stopped, b, a), new, old)  # noqa: E731
            params, opt_state = keep(new_params, params), keep(new_opt_state, opt_state)
            ran = ~stopped
            stopped = stopped | (aux["approx_kl"].mean() > config.target_kl)
            return (params, opt_state, key, stopped), (aux, ran)

        (params, opt_state, key, _), (aux, ran) = jax.lax.scan(
            update_epoch, (state.params, state.opt_state, key, jnp.bool_(False)), None, config.update_epochs)
        # losses averaged over the epochs that were applied (the first always is)
        metrics = {k: (v.mean(-1) * ran).sum() / ran.sum() for k, v in aux.items()}
        metrics["epochs"] = ran.sum().astype(jnp.float32)
        metrics.update(completed_episode_metrics(stats, config.cost_limit))
        metrics["lambda"] = config.kappa * metrics["penalty_active"]
        metrics["violation"] = violation
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

    main(Config, make_train, algorithm="p3o")
