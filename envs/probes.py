"""Probe environments: tiny tasks with a known answer, used as unit tests of every agent.

After Andy Jones' "Debugging RL, Without the Agonizing Pain" (2021) and rejax's probe envs.
Each probe isolates one thing an agent must get right:

===============  ===========================================================  ==================
kind             task                                                         what it checks
===============  ===========================================================  ==================
``constant``     obs 0, reward +1 every step, never terminates; truncated      value learning and
                 after ``max_steps_in_episode``                               truncation bootstrap
``obs_reward``   one step; obs is ±1 at random; reward = obs                  value depends on obs
``two_step``     two steps; obs 0 then 1; reward +1 only at the end           discounting/credit
``action``       one step; reward +1 if the action is "right" (discrete:       policy improvement
                 action 1; continuous: the action is close to +0.5)
``obs_action``   one step; obs ±1; reward +1 if the action matches the obs     obs-conditioned policy
                 (discrete: action 1 when obs=+1, 0 when −1; continuous:
                 a ≈ 0.5·obs)
===============  ===========================================================  ==================

``continuous=True`` gives a Box action space of shape (1,) in [-1, 1]; the continuous reward is
``1 - |a - target|`` so that the optimum is unique and graded.
"""
import jax
import jax.numpy as jnp
from flax import struct
from gymnax.environments import environment, spaces

PROBE_IDS = {
    "constant": "Probe-Constant",
    "obs_reward": "Probe-ObsReward",
    "two_step": "Probe-TwoStep",
    "action": "Probe-Action",
    "obs_action": "Probe-ObsAction",
}


@struct.dataclass
class ProbeState(environment.EnvState):
    obs: jax.Array


@struct.dataclass
class ProbeParams(environment.EnvParams):
    max_steps_in_episode: int = 10


class ProbeEnv(environment.Environment[ProbeState, ProbeParams]):
    """One probe task; ``kind`` picks which (see the module docstring)."""

    def __init__(self, kind: str = "constant", continuous: bool = False):
        super().__init__()
        if kind not in PROBE_IDS:
            raise ValueError(f"unknown probe kind {kind!r}; allowed: {sorted(PROBE_IDS)}")
        self.kind = kind
        self.continuous = bool(continuous)

    @property
    def name(self) -> str:
        return PROBE_IDS[self.kind] + ("-Continuous" if self.continuous else "")

    @property
    def default_params(self) -> ProbeParams:
        return ProbeParams(max_steps_in_episode=10 if self.kind == "constant" else 100)

    @property
    def num_actions(self) -> int:
        return 2

    def action_space(self, params: ProbeParams | None = None):
        if self.continuous:
            return spaces.Box(-1.0, 1.0, (1,), jnp.float32)
        return spaces.Discrete(2)

    def observation_space(self, params: ProbeParams | None = None):
        return spaces.Box(-1.0, 1.0, (1,), jnp.float32)

    def _first_obs(self, key):
        if self.kind in ("obs_reward", "obs_action"):
            return jnp.where(jax.random.bernoulli(key), 1.0, -1.0)
        return jnp.array(0.0)

    def reset_env(self, key, params):
        obs = self._first_obs(key)
        state = ProbeState(obs=obs, time=0)
        return obs[None].astype(jnp.float32), state

    def _action_reward(self, action, target_discrete, target_continuous):
        if self.continuous:
            a = jnp.reshape(action, ()).astype(jnp.float32)
            return 1.0 - jnp.abs(a - target_continuous)
        return (jnp.reshape(action, ()) == target_discrete).astype(jnp.float32)

    def step_env(self, key, state, action, params):
        time = state.time + 1
        kind = self.kind
        if kind == "constant":
            reward, terminated, obs = jnp.array(1.0), jnp.array(False), state.obs
        elif kind == "obs_reward":
            reward, terminated, obs = state.obs, jnp.array(True), state.obs
        elif kind == "two_step":
            terminated = time >= 2
            reward = jnp.where(terminated, 1.0, 0.0)
            obs = jnp.array(1.0)
        elif kind == "action":
            reward, terminated, obs = self._action_reward(action, 1, 0.5), jnp.array(True), state.obs
        else:  # obs_action
            target_d = (state.obs > 0).astype(jnp.int32)
            reward = self._action_reward(action, target_d, 0.5 * state.obs)
            terminated, obs = jnp.array(True), state.obs
        new_state = ProbeState(obs=obs, time=time)
        return (obs[None].astype(jnp.float32), new_state, reward.astype(jnp.float32),
                terminated, {})

    def is_terminated(self, state, params):
        if self.kind == "constant":
            return jnp.array(False)
        return state.time >= (2 if self.kind == "two_step" else 1)
