"""A seeded random tabular constrained MDP (CMDP) as a gymnax env, with its arrays in ``EnvParams``.

The CMDP (Altman 1999, "Constrained Markov Decision Processes") has ``num_states`` states and
``num_actions`` actions; its arrays are drawn from one seed:

* transitions P(·|s, a) ~ Dirichlet(``concentration`` · 1) over next states,
* rewards r(s, a) and costs c(s, a) ~ Uniform[0, 1],
* initial distribution μ0 ~ Dirichlet(1),
* discount ``gamma`` (kept in the params; the exact solver ``jaxrl.cmdp`` reads it).

Observation: the one-hot state (float32, shape (S,)). Action: Discrete(A). Reward r(s, a) (scalar);
``info["cost"]`` = c(s, a). Nothing terminates; every episode is truncated after
``max_steps_in_episode`` = H steps, so learners bootstrap through the time limit.

How the LP's numbers relate to what an agent's episodes measure. ``jaxrl.cmdp.solve`` works with
the infinite-horizon discounted values V_r = E[Σ_{t≥0} γ^t r_t] and V_c = E[Σ_t γ^t c_t] from μ0.
An episode of this env reports undiscounted sums over H steps (``EpisodeStatistics``). They agree
in two exact ways: (1) the γ-discounted sum of an episode, Σ_{t<H} γ^t r_t, has expectation
``jaxrl.cmdp.evaluate(..., horizon=H)``, within γ^H/(1−γ) of V_r (rewards in [0, 1]); (2) with
``geometric=True`` the env also terminates each step with probability 1 − γ (then the learner
should use discount 1): the undiscounted episode return has expectation V_r up to the same
truncation error, i.e. the average episode return/cost of an agent is directly comparable with the
LP value/cost (and its cost limit). Because the params are a pytree, ``jax.vmap`` over a batch of
``generate(key, ...)`` params runs many random CMDPs at once.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct
from gymnax.environments import environment, spaces


@struct.dataclass
class TabularCMDPState(environment.EnvState):
    state: jax.Array


@struct.dataclass
class TabularCMDPParams(environment.EnvParams):
    # Defaults are None only because the base class's field has a default; ``generate`` fills them.
    transitions: jax.Array = None   # (S, A, S): P(s' | s, a)
    rewards: jax.Array = None       # (S, A) in [0, 1]
    costs: jax.Array = None         # (S, A) in [0, 1]
    initial: jax.Array = None       # (S,): μ0
    gamma: float = 0.9
    max_steps_in_episode: int = 100


def generate(key: jax.Array, num_states: int, num_actions: int, concentration: float = 1.0,
             gamma: float = 0.9, max_steps_in_episode: int = 100) -> TabularCMDPParams:
    """Draw a random CMDP (see the module docstring) from ``key``."""
    k_p, k_r, k_c, k_0 = jax.random.split(key, 4)
    transitions = jax.random.dirichlet(k_p, jnp.full((num_states,), concentration), (num_states, num_actions))
    rewards = jax.random.uniform(k_r, (num_states, num_actions))
    costs = jax.random.uniform(k_c, (num_states, num_actions))
    initial = jax.random.dirichlet(k_0, jnp.ones(num_states))
    return TabularCMDPParams(transitions=transitions.astype(jnp.float32), rewards=rewards, costs=costs,
                             initial=initial.astype(jnp.float32), gamma=gamma,
                             max_steps_in_episode=max_steps_in_episode)


class TabularCMDP(environment.Environment[TabularCMDPState, TabularCMDPParams]):
    """A random tabular CMDP; ``seed`` fixes its arrays (``default_params``)."""

    def __init__(self, num_states: int = 5, num_actions: int = 3, seed: int = 0, concentration: float = 1.0,
                 gamma: float = 0.9, max_steps_in_episode: int = 100, geometric: bool = False):
        super().__init__()
        if int(num_states) < 1 or int(num_actions) < 1:
            raise ValueError(f"num_states and num_actions must be >= 1, got {num_states}, {num_actions}")
        if not concentration > 0:
            raise ValueError(f"concentration must be > 0, got {concentration}")
        if not 0 <= gamma < 1:
            raise ValueError(f"gamma must be in [0, 1), got {gamma}")
        self.num_states, self._num_actions = int(num_states), int(num_actions)
        self.geometric = bool(geometric)
        self._params = generate(jax.random.PRNGKey(seed), self.num_states, self._num_actions, concentration,
                                gamma, max_steps_in_episode)

    @property
    def name(self) -> str:
        return "TabularCMDP-v0"

    @property
    def default_params(self) -> TabularCMDPParams:
        return self._params

    @property
    def num_actions(self) -> int:
        return self._num_actions

    def action_space(self, params=None):
        return spaces.Discrete(self._num_actions)

    def observation_space(self, params=None):
        return spaces.Box(0.0, 1.0, (self.num_states,), jnp.float32)

    def get_obs(self, state: TabularCMDPState, params=None, key=None):
        return jax.nn.one_hot(state.state, self.num_states, dtype=jnp.float32)

    def reset_env(self, key, params: TabularCMDPParams):
        s = jax.random.categorical(key, jnp.log(params.initial))
        state = TabularCMDPState(time=0, state=s)
        return self.get_obs(state), state

    def step_env(self, key, state: TabularCMDPState, action, params: TabularCMDPParams):
        k_next, k_stop = jax.random.split(key)
        a = jnp.asarray(action, jnp.int32).reshape(())
        reward = params.rewards[state.state, a]
        cost = params.costs[state.state, a]
        next_s = jax.random.categorical(k_next, jnp.log(params.transitions[state.state, a]))
        terminated = jax.random.bernoulli(k_stop, 1.0 - params.gamma) if self.geometric else jnp.array(False)
        new_state = TabularCMDPState(time=state.time + 1, state=next_s)
        return self.get_obs(new_state), new_state, reward.astype(jnp.float32), terminated, {"cost": cost}

    def is_terminated(self, state, params):
        return jnp.array(False)
