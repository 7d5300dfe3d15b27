"""Decision Transformer (Chen et al. 2021, "Decision Transformer: Reinforcement Learning via Sequence Modeling").

Offline RL as sequence modelling: a causal GPT reads the last ``K`` steps of a trajectory as the token
sequence (R̂_1, s_1, a_1, R̂_2, s_2, a_2, ...), where R̂_t is the return-to-go (the sum of the rewards
still to come in the episode), each token gets a learned embedding of its episode timestep, and the
hidden state of every state token predicts the action taken there (§3, Figure 1, Algorithm 1). The
loss is the mean squared error on tanh outputs for continuous actions and cross-entropy for discrete
ones. At test time the model is conditioned on a target return, and after each step the reward is
subtracted from the return-to-go, with a rolling context of the last ``K`` steps.

Defaults are the paper's OpenAI-Gym hyperparameters (Appendix A, the gym table, and the released gym
code): 3 layers, 1 head, embedding 128, ReLU, context K 20, dropout 0.1, AdamW lr 1e-4, weight decay
1e-4, batch 64, grad-norm clip 0.25, linear learning-rate warmup over 10k updates (the released code's
``warmup_steps``), 100k updates (10 iterations x 10k steps).
Returns-to-go are divided by a scale (the paper: 1000 for MuJoCo returns in the thousands); here the
default scale and target are computed from the dataset: the largest absolute return and the best
return of a complete episode. Short tasks (the tests, classic control) scale the network, K, the
warmup and the budget down (the tests: 2 layers x 32, K 3, lr 1e-3, 50 warmup updates, no dropout,
2000 updates) and say so where they do.

Windows are sampled as in the paper's code: a uniformly random transition starts a window of up to K
steps that stops at its episode's end. Real tokens fill the window from the left and the tail is
masked out of the loss; with causal attention and no position embeddings (only timestep ones) this is
the same computation as the paper's left padding.

Run:  python agents/offline/dt.py --env Pendulum-v1 --dataset PATH --num-seeds 5 --num-updates 100000
"""
from __future__ import annotations

import dataclasses
from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxrl import data as data_lib
from jaxrl import envs
from jaxrl.config import require, require_positive
from jaxrl.trainer import Trainer
from jaxrl.wrappers import EpisodeStatistics


@dataclasses.dataclass(frozen=True)
class Config:
    env: str = "Pendulum-v1"
    """Environment id the dataset was collected on (evaluation runs there)."""
    num_updates: int = 100_000
    """Gradient updates per run (the paper: 10 iterations x 10k)."""
    batch_size: int = 64
    """Windows per minibatch."""
    context_len: int = 20
    """K, the number of timesteps in the context (3K tokens)."""
    num_layers: int = 3
    """Transformer blocks."""
    num_heads: int = 1
    """Attention heads; embed_dim must divide by it."""
    embed_dim: int = 128
    """Token embedding width."""
    dropout: float = 0.1
    """Dropout on embeddings, attention weights and residual branches (training only)."""
    activation: str = "relu"
    """Nonlinearity of the blocks' MLPs: relu (the paper's gym runs) or gelu (GPT-2)."""
    lr: float = 1e-4
    """AdamW learning rate after warmup."""
    weight_decay: float = 1e-4
    """AdamW decoupled weight decay."""
    warmup_steps: int = 10_000
    """Linear learning-rate warmup from lr/warmup_steps to lr over this many updates (0: none)."""
    max_grad_norm: float = 0.25
    """Global gradient-norm clip."""
    target_return: float | None = None
    """Return to condition on at evaluation (default: the dataset's best complete-episode return)."""
    rtg_scale: float | None = None
    """Returns-to-go are divided by this (default: the dataset's largest absolute episode return)."""
    normalize_states: bool = True
    """Standardize observations with the dataset's mean and std (as the paper's gym code does)."""


# ----------------------------------------------------------------------------------------------
# Networks: a GPT over (return-to-go, state, action) tokens
# ----------------------------------------------------------------------------------------------
_init = nn.initializers.normal(0.02)  # GPT-2 initialization


class Dropout(nn.Module):
    """Inverted dropout whose rate may be a traced value (a swept float field), unlike ``nn.Dropout``."""

    rate: float

    @nn.compact
    def __call__(self, x, deterministic: bool):
        if deterministic:
            return x
        keep = jax.random.bernoulli(self.make_rng("dropout"), 1.0 - self.rate, x.shape)
        return jnp.where(keep, x / (1.0 - self.rate), 0.0)


class CausalSelfAttention(nn.Module):
    """Multi-head self-attention where token t attends to tokens 0..t only."""

    embed_dim: int
    num_heads: int
    dropout: float

    @nn.compact
    def __call__(self, x, deterministic: bool):
        batch, length, _ = x.shape
        head_dim = self.embed_dim // self.num_heads
        qkv = nn.Dense(3 * self.embed_dim, kernel_init=_init)(x).reshape(batch, length, 3, self.num_heads, head_dim)
        q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]
        logits = jnp.einsum("bthd,bshd->bhts", q, k) / jnp.sqrt(head_dim).astype(x.dtype)
        causal = jnp.tril(jnp.ones((length, length), bool))
        logits = jnp.where(causal, logits, jnp.finfo(logits.dtype).min)
        weights = Dropout(self.dropout)(jax.nn.softmax(logits, axis=-1), deterministic=deterministic)
        out = jnp.einsum("bhts,bshd->bthd", weights, v).reshape(batch, length, self.embed_dim)
        return Dropout(self.dropout)(nn.Dense(self.embed_dim, kernel_init=_init)(out), deterministic=deterministic)


class Block(nn.Module):
    """A pre-LayerNorm GPT-2 block: x + attn(ln(x)), then x + mlp(ln(x)) with a 4x wide MLP."""

    embed_dim: int
    num_heads: int
    dropout: float
    activation: str

    @nn.compact
    def __call__(self, x, deterministic: bool):
        x = x + CausalSelfAttention(self.embed_dim, self.num_heads, self.dropout)(nn.LayerNorm()(x), deterministic)
        act = nn.relu if self.activation == "relu" else nn.gelu
        h = nn.Dense(4 * self.embed_dim, kernel_init=_init)(nn.LayerNorm()(x))
        h = nn.Dense(self.embed_dim, kernel_init=_init)(act(h))
        return x + Dropout(self.dropout)(h, deterministic=deterministic)


class DecisionTransformer(nn.Module):
    """Predicts, from the hidden state of each state token, the action taken at that step.

    Inputs have a batch and a time axis: ``rtg`` (B, T) scaled returns-to-go, ``states`` (B, T, obs),
    ``actions`` (B, T) int or (B, T, A) in [-1, 1], ``timesteps`` (B, T) int. Returns logits (B, T, n)
    for discrete actions, or tanh outputs (B, T, A) in [-1, 1] for continuous ones.
    """

    action_dim: int
    discrete: bool
    max_timestep: int
    embed_dim: int = 128
    num_layers: int = 3
    num_heads: int = 1
    dropout: float = 0.1
    activation: str = "relu"

    @nn.compact
    def __call__(self, rtg, states, actions, timesteps, deterministic: bool = True):
        batch, length = rtg.shape
        time = nn.Embed(self.max_timestep + 1, self.embed_dim, embedding_init=_init)(
            jnp.clip(timesteps, 0, self.max_timestep))
        r = nn.Dense(self.embed_dim, kernel_init=_init)(rtg[..., None]) + time
        s = nn.Dense(self.embed_dim, kernel_init=_init)(states) + time
        if self.discrete:
            a = nn.Embed(self.action_dim, self.embed_dim, embedding_init=_init)(actions) + time
        else:
            a = nn.Dense(self.embed_dim, kernel_init=_init)(actions) + time
        # Interleave into (R_1, s_1, a_1, R_2, s_2, a_2, ...): (B, 3T, D).
        x = jnp.stack([r, s, a], axis=2).reshape(batch, 3 * length, self.embed_dim)
        x = Dropout(self.dropout)(nn.LayerNorm()(x), deterministic=deterministic)
        for _ in range(self.num_layers):
            x = Block(self.embed_dim, self.num_heads, self.dropout, self.activation)(x, deterministic)
        x = nn.LayerNorm()(x)
        state_tokens = x.reshape(batch, length, 3, self.embed_dim)[:, :, 1]
        out = nn.Dense(self.action_dim, kernel_init=_init)(state_tokens)
        return out if self.discrete else jnp.tanh(out)


# ----------------------------------------------------------------------------------------------
# Episode bookkeeping: returns-to-go, timesteps, where each episode ends
# ----------------------------------------------------------------------------------------------
EXTRAS = ("dt_returns_to_go", "dt_timesteps", "dt_episode_end")


def episode_arrays(rewards, terminations, truncations) -> dict[str, np.ndarray]:
    """Host-side (numpy): per-transition return-to-go, timestep in its episode, and the index of its
    episode's last transition, for a dataset in stream order (episodes end where a flag is set; the
    last transition always ends one)."""
    rewards = np.asarray(rewards, np.float64)
    n = rewards.shape[0]
    done = (np.asarray(terminations) + np.asarray(truncations)) > 0
    done[-1] = True
    idx = np.arange(n)
    end = np.minimum.accumulate(np.where(done, idx, n - 1)[::-1])[::-1]
    start = np.concatenate([[0], np.maximum.accumulate(np.where(done, idx + 1, 0))[:-1]])
    csum = np.concatenate([[0.0], np.cumsum(rewards)])
    return {
        "dt_returns_to_go": (csum[end + 1] - csum[idx]).astype(np.float32),
        "dt_timesteps": (idx - start).astype(np.int32),
        "dt_episode_end": end.astype(np.int32),
    }


def episode_arrays_device(data: data_lib.Dataset) -> dict[str, jax.Array]:
    """The same as ``episode_arrays`` with jnp parallel scans, for a ``data`` argument that lacks the
    precomputed extras (e.g. the raw dataset of a runner that does not pass ``trainer.data``)."""
    n = data.rewards.shape[0]
    done = ((data.terminations + data.truncations) > 0).at[-1].set(True)
    idx = jnp.arange(n, dtype=jnp.int32)
    end = jax.lax.associative_scan(jnp.minimum, jnp.where(done, idx, n - 1), reverse=True)
    start = jnp.concatenate([jnp.zeros(1, jnp.int32),
                             jax.lax.associative_scan(jnp.maximum, jnp.where(done, idx + 1, 0))[:-1]])

    def segment_sum(right, left):
        # Reversed order: ``right`` covers later indices, ``left`` the earlier ones; a done in
        # ``left`` closes the episode before ``right`` begins.
        (sum_r, done_r), (sum_l, done_l) = right, left
        return sum_l + jnp.where(done_l, 0.0, sum_r), done_l | done_r

    rtg, _ = jax.lax.associative_scan(segment_sum, (data.rewards[::-1], done[::-1]))
    return {"dt_returns_to_go": rtg[::-1], "dt_timesteps": idx - start, "dt_episode_end": end}


def with_episode_arrays(dataset: data_lib.Dataset) -> data_lib.Dataset:
    """``dataset`` with the DT's episode arrays (``EXTRAS``) added to its extras (host-side, once)."""
    arrays = episode_arrays(dataset.rewards, dataset.terminations, dataset.truncations)
    return dataset.replace(extras={**dataset.extras, **{k: jnp.asarray(v) for k, v in arrays.items()}})


def episode_returns(arrays: dict[str, np.ndarray], terminations, max_steps: int) -> tuple[np.ndarray, np.ndarray]:
    """(returns of all episodes, mask of the complete ones: terminated, or cut at the env's time limit).

    The cut-off tail of each collection stream is not complete: its return is not an episode's.
    """
    first = np.flatnonzero(arrays["dt_timesteps"] == 0)
    end = arrays["dt_episode_end"][first]
    complete = (np.asarray(terminations)[end] > 0) | (end - first + 1 >= max_steps)
    return arrays["dt_returns_to_go"][first].astype(np.float64), complete


# ----------------------------------------------------------------------------------------------
# Training
# ----------------------------------------------------------------------------------------------
class TrainState(NamedTuple):
    params: dict
    opt_state: optax.OptState
    key: jax.Array


def validate(config: Config) -> None:
    require_positive(config, "num_updates", "batch_size", "context_len", "num_layers", "num_heads", "embed_dim",
                     "lr", "max_grad_norm")
    require(config.warmup_steps >= 0, f"warmup_steps must be >= 0, got {config.warmup_steps}")
    require(config.weight_decay >= 0, f"weight_decay must be >= 0, got {config.weight_decay}")
    require((config.dropout >= 0) & (config.dropout < 1), f"dropout must be in [0, 1), got {config.dropout}")
    require(config.embed_dim % config.num_heads == 0,
            f"embed_dim={config.embed_dim} must be divisible by num_heads={config.num_heads}")
    require(config.activation in ("relu", "gelu"), f"activation must be 'relu' or 'gelu', got {config.activation!r}")
    if config.rtg_scale is not None:
        require(config.rtg_scale > 0, f"rtg_scale must be > 0, got {config.rtg_scale}")
    if config.target_return is not None:
        require(jnp.isfinite(config.target_return), f"target_return must be finite, got {config.target_return}")


def make_train(config: Config, dataset: data_lib.Dataset, env=None, env_params=None) -> Trainer:
    """Build the DT trainer on ``dataset``; ``Trainer.data`` is the dataset plus the DT's episode
    arrays in ``extras`` (pass it to the trainer: ``trainer(key, trainer.data)``). ``env``/``env_params``
    replace ``config.env`` when given (an env that needs constructor arguments, e.g.
    ``envs.make("Probe-ObsAction", continuous=True)``)."""
    validate(config)
    if env is None:
        env, env_params = data_lib.env_for(config.env, dataset)
    env_params = env.default_params if env_params is None else env_params
    data_lib.check_compatible(dataset, config.env, env, env_params, "dt")
    discrete = envs.is_discrete(env, env_params)
    obs_dim = int(np.prod(env.observation_space(env_params).shape))
    action_space = env.action_space(env_params)
    action_dim = int(action_space.n) if discrete else int(np.prod(action_space.shape))
    max_steps = int(env_params.max_steps_in_episode)
    K = config.context_len

    # HOST-SIDE STATISTICS (small constants; the arrays go into data.extras, never into closures)
    arrays = episode_arrays(dataset.rewards, dataset.terminations, dataset.truncations)
    returns, complete = episode_returns(arrays, dataset.terminations, max_steps)
    reference = returns[complete] if complete.any() else returns
    target_return = float(reference.max()) if config.target_return is None else config.target_return
    rtg_scale = (max(float(np.abs(reference).max()), 1e-6) if config.rtg_scale is None else config.rtg_scale)
    observations = np.asarray(dataset.observations, np.float64).reshape(dataset.size, -1)
    if config.normalize_states:
        obs_mean = observations.mean(0).astype(np.float32)
        obs_std = (observations.std(0) + 1e-6).astype(np.float32)
    else:
        obs_mean, obs_std = np.zeros(obs_dim, np.float32), np.ones(obs_dim, np.float32)
    if discrete:
        low = high = None
    else:
        low, high = envs.action_bounds(env, env_params)
    augmented = dataset.replace(extras={**dataset.extras, **{k: jnp.asarray(v) for k, v in arrays.items()}})

    network = DecisionTransformer(action_dim, discrete, max_steps, config.embed_dim, config.num_layers,
                                  config.num_heads, config.dropout, config.activation)

    def lr_schedule(count):
        warmup = jnp.minimum((count + 1) / max(config.warmup_steps, 1), 1.0)
        return config.lr * warmup

    tx = optax.chain(optax.clip_by_global_norm(config.max_grad_norm),
                     optax.adamw(lr_schedule, weight_decay=config.weight_decay))

    def normalize_obs(obs):
        return (obs.reshape(obs.shape[:-len(env.observation_space(env_params).shape)] + (obs_dim,)) - obs_mean) / obs_std

    def to_unit(actions):  # env action -> model space ([-1, 1] for Box actions)
        return actions if discrete else 2.0 * (actions - low) / (high - low) - 1.0

    def from_unit(out):  # model output -> env action
        return jnp.argmax(out, -1) if discrete else low + 0.5 * (out + 1.0) * (high - low)

    def empty_actions(batch, length):
        return jnp.zeros((batch, length), jnp.int32) if discrete else jnp.zeros((batch, length, action_dim))

    def init(key) -> TrainState:
        key, net_key = jax.random.split(key)
        params = network.init(net_key, jnp.zeros((1, K)), jnp.zeros((1, K, obs_dim)), empty_actions(1, K),
                              jnp.zeros((1, K), jnp.int32))
        return TrainState(params, tx.init(params), key)

    def loss_fn(params, rtg, states, actions, timesteps, valid, dropout_key):
        out = network.apply(params, rtg, states, actions, timesteps, deterministic=False,
                            rngs={"dropout": dropout_key})
        weight = valid / jnp.maximum(valid.sum(), 1.0)
        if discrete:
            log_probs = jax.nn.log_softmax(out)
            nll = -jnp.take_along_axis(log_probs, actions[..., None], axis=-1)[..., 0]
            accuracy = (jnp.argmax(out, -1) == actions).astype(jnp.float32)
            return (nll * weight).sum(), {"action_accuracy": (accuracy * weight).sum()}
        mse = ((out - actions) ** 2).mean(-1)
        return (mse * weight).sum(), {}

    def update(state: TrainState, iteration, data: data_lib.Dataset):
        # SAMPLE WINDOWS: a uniformly random start, up to K steps, cut at the episode's end
        extras = data.extras if all(k in data.extras for k in EXTRAS) else episode_arrays_device(data)
        n = data.rewards.shape[0]
        key, sample_key, dropout_key = jax.random.split(state.key, 3)
        starts = jax.random.randint(sample_key, (config.batch_size,), 0, n)
        raw = starts[:, None] + jnp.arange(K)
        valid = raw <= extras["dt_episode_end"][starts][:, None]
        idx = jnp.minimum(raw, n - 1)
        mask = valid.astype(jnp.float32)
        states = normalize_obs(data.observations[idx]) * mask[..., None]
        actions = to_unit(data.actions[idx])
        actions = jnp.where(valid, actions, 0) if discrete else actions * mask[..., None]
        rtg = extras["dt_returns_to_go"][idx] / rtg_scale * mask
        timesteps = jnp.where(valid, extras["dt_timesteps"][idx], 0)

        # UPDATE NETWORK
        (loss, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(
            state.params, rtg, states, actions, timesteps, mask, dropout_key)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        metrics = {"action_loss": loss, "grad_norm": optax.global_norm(grads),
                   "lr": lr_schedule(iteration), **aux}
        return TrainState(params, opt_state, key), metrics

    def act(state: TrainState, obs, key):
        """The action for a context of just ``obs`` at timestep 0, conditioned on the target return."""
        batch = obs.shape[0]
        out = network.apply(state.params, jnp.full((batch, 1), target_return / rtg_scale),
                            normalize_obs(obs)[:, None], empty_actions(batch, 1), jnp.zeros((batch, 1), jnp.int32))
        return from_unit(out[:, 0])

    def evaluate(state: TrainState, key, num_episodes: int) -> dict[str, jax.Array]:
        """Roll ``num_episodes`` episodes in parallel with a rolling K-step context; the return-to-go
        starts at the target and each reward is subtracted from it (the paper's Algorithm 1)."""
        stats_env = EpisodeStatistics(env)
        reset_key, run_key = jax.random.split(key)
        obs, env_state = jax.vmap(stats_env.reset, in_axes=(0, None))(jax.random.split(reset_key, num_episodes),
                                                                       env_params)
        context = {
            "rtg": jnp.zeros((num_episodes, K)),
            "states": jnp.zeros((num_episodes, K, obs_dim)),
            "actions": empty_actions(num_episodes, K),
            "timesteps": jnp.zeros((num_episodes, K), jnp.int32),
        }
        rtg = jnp.full((num_episodes,), target_return, jnp.float32)
        result = {"return": jnp.zeros(num_episodes), "length": jnp.zeros(num_episodes, jnp.int32),
                  "cost": jnp.zeros(num_episodes), "success": jnp.zeros(num_episodes, bool)}

        def body(carry, step):
            obs, env_state, rtg, context, finished, result = carry
            t, step_key = step
            # Once the context is full, drop its oldest step; the newest step sits at position p.
            context = jax.tree.map(lambda x: jnp.where(t >= K, jnp.roll(x, -1, axis=1), x), context)
            p = jnp.minimum(t, K - 1)
            context = {
                "rtg": context["rtg"].at[:, p].set(rtg / rtg_scale),
                "states": context["states"].at[:, p].set(normalize_obs(obs)),
                "actions": context["actions"].at[:, p].set(0),
                "timesteps": context["timesteps"].at[:, p].set(t),
            }
            out = network.apply(state.params, context["rtg"], context["states"], context["actions"],
                                context["timesteps"])
            out_p = jax.lax.dynamic_index_in_dim(out, p, axis=1, keepdims=False)
            action = from_unit(out_p)
            context["actions"] = context["actions"].at[:, p].set(to_unit(action))
            obs, env_state, reward, _, _, info = jax.vmap(stats_env.step, in_axes=(0, 0, 0, None))(
                jax.random.split(step_key, num_episodes), env_state, action, env_params)
            newly = info["episode_done"] & ~finished
            record = {"return": info["episode_return"], "length": info["episode_length"],
                      "cost": info["episode_cost"], "success": info["episode_success"]}
            result = jax.tree.map(lambda old, new: jnp.where(newly, new, old), result, record)
            return (obs, env_state, rtg - reward, context, finished | newly, result), None

        carry = (obs, env_state, rtg, context, jnp.zeros(num_episodes, bool), result)
        steps = (jnp.arange(max_steps), jax.random.split(run_key, max_steps))
        (*_, result), _ = jax.lax.scan(body, carry, steps)
        return result

    return Trainer(init=init, update=update, act=act, num_updates=config.num_updates, env_steps_per_update=0,
                   env=env, env_params=env_params, data=augmented, evaluate=evaluate)


if __name__ == "__main__":
    from jaxrl.cli import main

    main(Config, make_train, algorithm="dt", offline=True)
