"""PETS: Probabilistic Ensembles with Trajectory Sampling (Chua et al. 2018, "Deep Reinforcement
Learning in a Handful of Trials using Probabilistic Dynamics Models").

Model-predictive control with a learned probabilistic ensemble (``jaxrl.dynamics``), end to end in
one compiled program:

* every env step, each env plans an action sequence by the cross-entropy method (CEM, Botev et al.
  2013) over ``horizon`` steps — or by MPPI's reward-weighted average (Williams et al. 2017) with
  ``planner="mppi"`` — scoring every candidate by the mean predicted return of ``num_particles``
  particles propagated through the ensemble with TS∞ (or TS1) trajectory sampling (paper
  Sec. 4.2–4.3), and executes the first action; the next plan starts from the shifted previous one (warm start);
* the model learns Δs and the reward (the paper gives the planner the true reward function; here
  it is learned too, so any env works unchanged);
* transitions go to a fixed-capacity on-device buffer (``jaxrl.replay``) whose unfilled slots are
  masked out of every statistic; every ``train_every`` env steps the ensemble is retrained (Gaussian
  NLL with learned log-variance bounds, held-out validation, early stopping inside the program) in a
  ``lax.cond``; the first ``random_steps`` env steps use uniform random actions.

Defaults: the paper's cart-pole setting in its code (``handful-of-trials``,
``dmbrl/config/cartpole.py`` and ``default.py``): an ensemble of 5 members with 3 hidden layers of
500 swish units, Adam at 1e-3, minibatches of 32, log-variance bounds initialized at (−10, 0.5) with
penalty 0.01; CEM with population 400, 40 elites, 5 iterations, smoothing α = 0.1, planning
horizon 25, 20 particles with TS∞; one random episode (200 steps) first and the model retrained
once per 200-step episode. Two departures: weight decay is one decoupled coefficient, 5e-5
(mbrl-lib's PETS configs; the paper's code adds per-layer L2 terms of 1e-4 to 5e-4 to the loss), and
training runs until early stopping (MBPO's rule, Janner et al. 2019: 20% held out, stop after 5
epochs without 1% improvement, at most 50 epochs) instead of the paper's fixed 5 epochs.
``total_timesteps`` 3 000 is 15 Pendulum episodes (the paper runs 50 cart-pole episodes). Planning is
the expensive part: one env step evaluates population × particles × horizon × iterations = 1e6
model steps by default, so on a CPU use small settings (``tests/test_pets.py``: population 100,
5 particles, horizon 25, 2 iterations, 2 hidden layers of 64).

Measured on 2 CPU cores with small settings (2 hidden layers of 64, population 100, 10 elites,
2 iterations, horizon 25, 5 particles): Pendulum-v1 returns -125, -120, -379 in the 5th episode
(1 000 env steps, seeds 0-2; random play scores about -1200, see ``tests/test_pets.py``);
CartPoleSwingUp-v0 (envs/model_based/cartpole_swingup.py) climbs slowly: 10th-episode returns 49.9 and 16.3
(2 seeds, 2 000 steps) where hanging still scores 3.7 and CEM with the true dynamics scores 177.

Run:  python agents/model_based/pets.py --env Pendulum-v1 --num-seeds 2
"""
from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxrl import dynamics, envs, replay
from jaxrl.config import require, require_positive, require_unit_interval
from jaxrl.trainer import Trainer
from jaxrl.wrappers import EpisodeStatistics, FlattenObservation, episode_metrics

PLANNERS = ("cem", "mppi")
PROPAGATIONS = ("tsinf", "ts1")


@dataclasses.dataclass(frozen=True)
class Config:
    env: str = "Pendulum-v1"
    """Environment id (gymnax or this project's envs/); must have a Box action space."""
    total_timesteps: int = 3_000
    """Env steps per run (over all parallel envs)."""
    num_envs: int = 1
    """Parallel envs per run; each iteration plans and steps every env once."""
    random_steps: int = 200
    """Env steps of uniform random actions before the first model is trained (PETS: one episode)."""
    train_every: int = 200
    """Retrain the ensemble every this many env steps (PETS: once per 200-step episode)."""
    buffer_size: int = 1_000_000
    """Transitions the model's buffer holds (capped to total_timesteps)."""
    # --- the ensemble ---
    ensemble_size: int = 5
    """Members E of the probabilistic ensemble."""
    hidden_size: int = 500
    """Width of each member's hidden layers."""
    num_layers: int = 3
    """Hidden layers per member (swish activations)."""
    model_lr: float = 1e-3
    """Adam learning rate of the ensemble."""
    model_weight_decay: float = 5e-5
    """Decoupled weight decay on the members' weight matrices."""
    model_batch_size: int = 32
    """Minibatch per member and gradient step."""
    max_epochs: int = 50
    """Most training epochs per retraining (an epoch is one pass over the training split, in expectation)."""
    patience: int = 5
    """Early stopping: epochs without a relative ``min_delta`` improvement of the validation MSE."""
    min_delta: float = 0.01
    """Relative validation improvement that resets the patience counter."""
    holdout_ratio: float = 0.2
    """Fraction of the buffer's slots held out for validation."""
    logvar_penalty: float = 0.01
    """Weight of Σ max_logvar − Σ min_logvar in the model loss."""
    # --- the planner ---
    planner: str = "cem"
    """``cem`` (the paper) or ``mppi``."""
    horizon: int = 25
    """Planning horizon in env steps."""
    population: int = 400
    """Candidate action sequences per planning iteration."""
    num_elites: int = 40
    """CEM: best candidates that refit the sampling distribution."""
    iterations: int = 5
    """Refinement iterations of the sampling distribution per env step."""
    cem_alpha: float = 0.1
    """CEM: weight of the old distribution when refitting (mean and variance)."""
    mppi_temperature: float = 1.0
    """MPPI: λ of the weights exp((R − max R)/λ), in units of the predicted return."""
    mppi_noise: float = 0.5
    """MPPI: std of the sampling noise as a fraction of the action half-range (fixed, not refit)."""
    num_particles: int = 20
    """Particles per candidate (a multiple of ensemble_size)."""
    propagation: str = "tsinf"
    """Trajectory sampling: ``tsinf`` (each particle keeps one member for the whole horizon, the paper's
    best) or ``ts1`` (each particle re-draws its member every step)."""

    @property
    def num_updates(self) -> int:
        return self.total_timesteps // self.num_envs

    @property
    def buffer_capacity(self) -> int:
        return max(1, min(self.buffer_size, self.num_updates * self.num_envs))


class TrainState(NamedTuple):
    model: dynamics.ModelParams
    model_opt: optax.OptState
    norm: dynamics.Normalizer
    buffer: replay.ReplayBuffer      # of dynamics.ModelData
    holdout_u: jax.Array             # (capacity,) fixed per slot: held out when < holdout_ratio
    env_state: object
    obs: jax.Array                   # (num_envs, obs_dim)
    plan: jax.Array                  # (num_envs, horizon, action_dim): warm start of the next plan
    key: jax.Array


def make_env(config: Config, env=None, env_params=None):
    if env is None:
        env, env_params = envs.make(config.env)
    env_params = env.default_params if env_params is None else env_params
    envs.require_action_space(config.env, env, env_params, "continuous", "PETS")
    flat = FlattenObservation(env) if len(env.observation_space(env_params).shape) > 1 else env
    return env, env_params, EpisodeStatistics(flat)


def validate(config: Config) -> None:
    require_positive(config, "total_timesteps", "num_envs", "train_every", "buffer_size", "ensemble_size",
                     "hidden_size", "num_layers", "model_lr", "model_batch_size", "max_epochs", "patience",
                     "horizon", "population", "num_elites", "iterations", "num_particles", "mppi_temperature",
                     "mppi_noise")
    require(config.planner in PLANNERS, f"planner must be one of {PLANNERS}, got {config.planner!r}")
    require(config.propagation in PROPAGATIONS,
            f"propagation must be one of {PROPAGATIONS}, got {config.propagation!r}")
    require(config.num_elites <= config.population,
            f"num_elites={config.num_elites} must be at most population={config.population}")
    require(config.num_particles % config.ensemble_size == 0,
            f"num_particles={config.num_particles} must be a multiple of ensemble_size={config.ensemble_size} "
            "(particles are spread evenly over the members)")
    require(config.model_weight_decay >= 0, f"model_weight_decay must be >= 0, got {config.model_weight_decay}")
    require(config.min_delta >= 0, f"min_delta must be >= 0, got {config.min_delta}")
    require(config.logvar_penalty >= 0, f"logvar_penalty must be >= 0, got {config.logvar_penalty}")
    require_unit_interval(config, "cem_alpha")
    require((0 <= config.holdout_ratio) & (config.holdout_ratio < 1),
            f"holdout_ratio must be in [0, 1), got {config.holdout_ratio}")
    require(config.num_updates >= 1, f"total_timesteps={config.total_timesteps} is less than one vector step "
            f"(num_envs = {config.num_envs})")
    require(config.random_steps >= config.num_envs,
            f"random_steps={config.random_steps} must be >= num_envs={config.num_envs}: the first model "
            "needs data to train on")
    require(config.random_steps < config.total_timesteps,
            f"random_steps={config.random_steps} must be below total_timesteps={config.total_timesteps}, "
            "or the agent never plans")


# ----------------------------------------------------------------------------------------------
# The planners: CEM and MPPI over an action sequence, for any score function
# ----------------------------------------------------------------------------------------------
def sample_candidates(key, mean, var, low, high, population: int, cap_variance: bool):
    """``population`` sequences from N(mean, var), truncated at ±2σ and clipped to [low, high]; with
    ``cap_variance`` (CEM) the variance is first capped so that ±2σ stays inside the bounds, as in
    the PETS code (Chua et al. 2018, ``dmbrl/misc/optimizers/cem.py``)."""
    if cap_variance:
        bound = jnp.minimum(mean - low, high - mean) / 2.0
        var = jnp.minimum(var, bound ** 2)
    noise = jax.random.truncated_normal(key, -2.0, 2.0, (population,) + mean.shape)
    return jnp.clip(mean + jnp.sqrt(var) * noise, low, high)


def cem_refit(mean, var, candidates, returns, num_elites: int, alpha):
    """CEM (Botev et al. 2013; Chua et al. 2018, Sec. 4.3): the mean and variance of the
    ``num_elites`` best candidates, blended with the old ones: new = α·old + (1 − α)·elites."""
    _, elite_idx = jax.lax.top_k(returns, num_elites)
    elites = candidates[elite_idx]
    new_mean, new_var = elites.mean(0), elites.var(0)
    return alpha * mean + (1 - alpha) * new_mean, alpha * var + (1 - alpha) * new_var


def mppi_refit(mean, var, candidates, returns, temperature):
    """MPPI (Williams et al. 2017, eq. 11 with the cost −R): the candidates averaged with weights
    ∝ exp((R − max R)/λ); the sampling noise stays fixed."""
    weights = jax.nn.softmax((returns - returns.max()) / temperature)
    return jnp.einsum("n,nha->ha", weights, candidates), var


def optimize_sequence(score, init_mean, low, high, key, config: Config):
    """Maximize ``score(candidates (N, H, A), key) -> (N,)`` over action sequences in [low, high] by
    ``config.planner`` (CEM or MPPI), ``config.iterations`` refinements of a Gaussian starting at
    ``init_mean`` (H, A) with std half of the action half-range (CEM) or ``mppi_noise`` of it (MPPI).
    Returns (the final mean sequence, the best score of the last iteration)."""
    half = 0.5 * (high - low)
    cem = config.planner == "cem"
    init_var = jnp.broadcast_to((half / 2.0) ** 2 if cem else (config.mppi_noise * half) ** 2, init_mean.shape)

    def iteration(carry, key):
        mean, var = carry
        sample_key, score_key = jax.random.split(key)
        candidates = sample_candidates(sample_key, mean, var, low, high, config.population, cem)
        returns = score(candidates, score_key)
        if cem:
            new = cem_refit(mean, var, candidates, returns, config.num_elites, config.cem_alpha)
        else:
            new = mppi_refit(mean, var, candidates, returns, config.mppi_temperature)
        return new, returns.max()

    (mean, _), best = jax.lax.scan(iteration, (init_mean, init_var), jax.random.split(key, config.iterations))
    return mean, best[-1]


def require_observations(obs, obs_dim: int, env_id: str, algorithm: str) -> None:
    """Raise a clear ``ValueError`` (at trace time, before anything compiles) when ``act`` gets a batch
    whose observations are not this model's: e.g. a checkpoint of one env acting on another env's states."""
    if obs.ndim < 2 or int(np.prod(obs.shape[1:])) != obs_dim:
        raise ValueError(f"{algorithm} act: expected a batch of {env_id} observations, shape (batch, ...) with "
                         f"{obs_dim} numbers each, got shape {tuple(obs.shape)} (observations of another env, "
                         "or an unbatched observation?)")


def make_train(config: Config, env=None, env_params=None) -> Trainer:
    """Build the PETS ``Trainer``; ``env``/``env_params`` replace ``config.env`` when given."""
    validate(config)
    env, env_params, wrapped = make_env(config, env, env_params)
    obs_dim = int(np.prod(env.observation_space(env_params).shape))
    low, high = envs.action_bounds(env, env_params)
    action_shape = tuple(low.shape)
    action_dim = int(np.prod(action_shape))
    low, high = low.reshape(-1), high.reshape(-1)
    ensemble = dynamics.Ensemble(obs_dim, action_dim, config.ensemble_size, config.hidden_size, config.num_layers)
    optimizer = dynamics.make_optimizer(config.model_lr, config.model_weight_decay)
    settings = dynamics.TrainSettings(config.model_batch_size, config.max_epochs, config.patience, config.min_delta,
                                      config.holdout_ratio, config.logvar_penalty)
    capacity = config.buffer_capacity
    H, P = config.horizon, config.num_particles
    mid = 0.5 * (high + low)

    # ------------------------------------------------------------------------------------------
    # Planning
    # ------------------------------------------------------------------------------------------
    def predicted_returns(model, norm, obs, candidates, key):
        """Mean predicted return of each candidate sequence (N, H, A): P particles each."""
        start = jnp.broadcast_to(obs, (candidates.shape[0], P, obs_dim))

        def policy(t, states, _):
            return jnp.broadcast_to(candidates[:, t, None, :], states.shape[:-1] + (action_dim,))

        out = dynamics.rollout(ensemble, model, norm, policy, start, H, key, mode=config.propagation)
        returns = out.rewards.sum(0).mean(-1)
        return jnp.where(jnp.isfinite(returns), returns, -1e6)  # a diverging particle disqualifies

    def plan(model, norm, obs, init_mean, key):
        """Refine the action-sequence distribution from ``init_mean``; returns (mean plan, its predicted return)."""
        score = lambda candidates, k: predicted_returns(model, norm, obs, candidates, k)  # noqa: E731
        return optimize_sequence(score, init_mean, low, high, key, config)

    def plan_all(state: TrainState, obs, key):
        """Plan for every env from its warm start: (first actions, shifted plans, predicted returns)."""
        keys = jax.random.split(key, obs.shape[0])
        plans, best = jax.vmap(plan, in_axes=(None, None, 0, 0, 0))(state.model, state.norm, obs, state.plan, keys)
        shifted = jnp.concatenate([plans[:, 1:], jnp.broadcast_to(mid, plans[:, :1].shape)], axis=1)
        return plans[:, 0], shifted, best

    # ------------------------------------------------------------------------------------------
    # Env interaction
    # ------------------------------------------------------------------------------------------
    def reset_envs(key):
        return jax.vmap(wrapped.reset, in_axes=(0, None))(jax.random.split(key, config.num_envs), env_params)

    def step_envs(key, env_state, action):
        keys = jax.random.split(key, config.num_envs)
        env_action = action.reshape((config.num_envs,) + action_shape)
        return jax.vmap(wrapped.step, in_axes=(0, 0, 0, None))(keys, env_state, env_action, env_params)

    def init(key) -> TrainState:
        key, model_key, env_key, split_key = jax.random.split(key, 4)
        model = ensemble.init(model_key)
        obs, env_state = reset_envs(env_key)
        example = dynamics.ModelData(jnp.zeros(obs_dim), jnp.zeros(action_dim), jnp.float32(0), jnp.zeros(obs_dim))
        return TrainState(model, optimizer.init(model), dynamics.identity_normalizer(ensemble.in_dim, ensemble.out_dim),
                          replay.init(capacity, example), jax.random.uniform(split_key, (capacity,)), env_state,
                          obs.reshape((config.num_envs, obs_dim)),
                          jnp.broadcast_to(mid, (config.num_envs, H, action_dim)), key)

    def train_model(state: TrainState, key):
        model, opt, norm, info = dynamics.train_ensemble(ensemble, optimizer, state.model, state.model_opt,
                                                         state.buffer.data, state.buffer.size, state.holdout_u,
                                                         key, settings)
        metrics = {"model_epochs": info.epochs.astype(jnp.float32), "model_loss": info.train_loss,
                   "model_val_mse": info.val_score}
        return state._replace(model=model, model_opt=opt, norm=norm), metrics

    def skip_training(state: TrainState, key):
        nan = jnp.float32(jnp.nan)
        return state, {"model_epochs": nan, "model_loss": nan, "model_val_mse": nan}

    def update(state: TrainState, iteration):
        key, action_key, step_key, train_key = jax.random.split(state.key, 4)
        # ACT: uniform random actions during warm-up, else MPC with the ensemble. ``iteration`` is
        # an unbatched scan input, so under vmap both conds stay real branches.
        warmup = iteration * config.num_envs < config.random_steps

        def random_actions(state):
            u = jax.random.uniform(action_key, (config.num_envs, action_dim))
            return low + (high - low) * u, state.plan, jnp.full(config.num_envs, jnp.nan)

        action, plan_next, planned = jax.lax.cond(
            warmup, random_actions, lambda s: plan_all(s, s.obs, action_key), state)
        next_obs, env_state, reward, _, _, info = step_envs(step_key, state.env_state, action)
        # STORE: the true next state (pre-reset at an episode's end); a fresh episode restarts its plan
        final_obs = info["final_observation"].reshape((config.num_envs, obs_dim))
        buffer = replay.add(state.buffer, dynamics.ModelData(state.obs, action, reward.astype(jnp.float32), final_obs))
        done = info["episode_done"]
        plan_next = jnp.where(done[:, None, None], jnp.broadcast_to(mid, plan_next.shape), plan_next)
        state = state._replace(buffer=buffer, env_state=env_state, obs=next_obs.reshape((config.num_envs, obs_dim)),
                               plan=plan_next, key=key)
        # LEARN: retrain at the end of warm-up, then every train_every env steps
        before, after = iteration * config.num_envs, (iteration + 1) * config.num_envs
        last_warmup = (before < config.random_steps) & (after >= config.random_steps)
        crossed = after // config.train_every > before // config.train_every
        retrain = last_warmup | ((after > config.random_steps) & crossed)
        state, metrics = jax.lax.cond(retrain, train_model, skip_training, state, train_key)
        metrics["planned_return"] = jnp.nanmean(planned) if config.num_envs > 1 else planned[0]
        metrics.update(episode_metrics(info))
        return state, metrics

    def act(state: TrainState, obs, key):
        """The first action of a fresh plan (CEM/MPPI from the action range's centre) for each observation."""
        require_observations(obs, obs_dim, config.env, "PETS")
        obs = obs.reshape((obs.shape[0], obs_dim))
        keys = jax.random.split(key, obs.shape[0])
        init_mean = jnp.broadcast_to(mid, (H, action_dim))
        plans, _ = jax.vmap(plan, in_axes=(None, None, 0, None, 0))(state.model, state.norm, obs, init_mean, keys)
        return plans[:, 0].reshape((obs.shape[0],) + action_shape)

    return Trainer(init=init, update=update, act=act, num_updates=config.num_updates,
                   env_steps_per_update=config.num_envs, env=env, env_params=env_params)


if __name__ == "__main__":
    from jaxrl.cli import main

    main(Config, make_train, algorithm="pets")
