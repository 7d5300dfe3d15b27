"""Bit flipping (Andrychowicz et al. 2017, "Hindsight Experience Replay", NeurIPS, Sec. 3.1 and App. A).

States are n-bit vectors s ∈ {0,1}^n, the goal is another n-bit vector g, and action i ∈ {0..n-1}
flips bit i. The initial state and the goal are sampled uniformly and independently at every reset
(so they coincide with probability 2^-n, as in the paper). The reward of a step is
``r = -[s' ≠ g]`` (0 once the new state s' equals the goal, -1 otherwise), computed on the state the
step reaches.

Episodes last exactly ``max_steps_in_episode`` = n steps and then *truncate* (a time limit: agents
bootstrap through it). By default an episode does **not** terminate when the goal is reached, as in
the paper ("the length of each episode was equal to the number of bits"); an episode is a
success if the goal is reached at any step of it: ``info["success"]`` is true at every step whose
new state equals the goal, and ``jaxrl.wrappers.EpisodeStatistics`` ORs it over the episode.
``EnvParams.terminate_on_success=True`` gives the variant that terminates on success (no bootstrap).

The observation is a dict ``{"observation": s, "achieved_goal": s, "desired_goal": g}`` of float32
vectors of shape (n,) with 0/1 entries; ``flat_observation(obs)`` gives a network's input s ⊕ g
(shape (..., 2n)). ``compute_reward(achieved_goal, desired_goal)`` is pure and broadcasts over
leading axes, for hindsight relabeling (``jaxrl.relabel``).

n is a constructor argument (it sets array shapes): ``jaxrl.envs.make("BitFlipping-v0", n=20)``,
or one of the registered ids ``BitFlipping-<n>-v0``.
"""
import jax
import jax.numpy as jnp
from flax import struct
from gymnax.environments import environment, spaces


@struct.dataclass
class BitFlippingState(environment.EnvState):
    bits: jax.Array      # (n,) float32 0/1: the current state s
    goal: jax.Array      # (n,) float32 0/1: the desired goal g


@struct.dataclass
class BitFlippingParams(environment.EnvParams):
    max_steps_in_episode: int = 10
    terminate_on_success: bool = False


def is_success(achieved_goal: jax.Array, desired_goal: jax.Array) -> jax.Array:
    """[achieved == desired] over the last axis (broadcasts over leading axes)."""
    return jnp.all(achieved_goal == desired_goal, axis=-1)


def compute_reward(achieved_goal: jax.Array, desired_goal: jax.Array) -> jax.Array:
    """r = -[achieved ≠ desired] (HER paper, Sec. 3.1), float32, broadcast over leading axes."""
    return is_success(achieved_goal, desired_goal).astype(jnp.float32) - 1.0


def flat_observation(obs: dict) -> jax.Array:
    """The network input s ⊕ g: ``observation`` and ``desired_goal`` concatenated on the last axis."""
    return jnp.concatenate([obs["observation"], obs["desired_goal"]], axis=-1).astype(jnp.float32)


class BitFlipping(environment.Environment[BitFlippingState, BitFlippingParams]):
    """The HER paper's n-bit flipping task (see the module docstring)."""

    def __init__(self, n: int = 10):
        super().__init__()
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"BitFlipping: n (the number of bits) must be an integer >= 1, got {n!r}")
        self.n = n

    # The goal-conditioned interface (pure functions, also usable without an env instance).
    compute_reward = staticmethod(compute_reward)
    is_success = staticmethod(is_success)
    flat_observation = staticmethod(flat_observation)

    def compute_terminated(self, achieved_goal, desired_goal, params: BitFlippingParams) -> jax.Array:
        """Termination a relabeled transition would have had: success, only if the env terminates on it."""
        return jnp.logical_and(is_success(achieved_goal, desired_goal), params.terminate_on_success)

    @property
    def name(self) -> str:
        return f"BitFlipping-{self.n}-v0"

    @property
    def default_params(self) -> BitFlippingParams:
        return BitFlippingParams(max_steps_in_episode=self.n)

    @property
    def num_actions(self) -> int:
        return self.n

    def action_space(self, params: BitFlippingParams | None = None):
        return spaces.Discrete(self.n)

    def observation_space(self, params: BitFlippingParams | None = None):
        bits = spaces.Box(0.0, 1.0, (self.n,), jnp.float32)
        return spaces.Dict({"observation": bits, "achieved_goal": bits, "desired_goal": bits})

    def state_space(self, params: BitFlippingParams | None = None):
        bits = spaces.Box(0.0, 1.0, (self.n,), jnp.float32)
        return spaces.Dict({"bits": bits, "goal": bits, "time": spaces.Discrete(self.n + 1)})

    def _obs(self, state: BitFlippingState) -> dict:
        return {"observation": state.bits, "achieved_goal": state.bits, "desired_goal": state.goal}

    def reset_env(self, key, params: BitFlippingParams):
        state_key, goal_key = jax.random.split(key)
        bits = jax.random.bernoulli(state_key, 0.5, (self.n,)).astype(jnp.float32)
        goal = jax.random.bernoulli(goal_key, 0.5, (self.n,)).astype(jnp.float32)
        state = BitFlippingState(bits=bits, goal=goal, time=0)
        return self._obs(state), state

    def step_env(self, key, state: BitFlippingState, action, params: BitFlippingParams):
        action = jnp.reshape(action, ()).astype(jnp.int32)
        flip = jax.nn.one_hot(action, self.n, dtype=jnp.float32)
        bits = jnp.abs(state.bits - flip)               # flips bit `action`
        new_state = BitFlippingState(bits=bits, goal=state.goal, time=state.time + 1)
        success = is_success(bits, state.goal)
        reward = compute_reward(bits, state.goal)
        terminated = jnp.logical_and(success, params.terminate_on_success)
        return self._obs(new_state), new_state, reward, terminated, {"success": success}

    def is_terminated(self, state: BitFlippingState, params: BitFlippingParams) -> jax.Array:
        return jnp.logical_and(is_success(state.bits, state.goal), params.terminate_on_success)
