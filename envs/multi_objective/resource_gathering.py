"""Resource Gathering (Barrett & Narayanan 2008), step for step as MO-Gymnasium 1.3.2's ``resource-gathering-v0``.

A 5x5 grid: the agent starts at home (row 4, column 2), may pick up gold (R1, row 0 column 2)
and a gem (R2, row 1 column 4), and two enemy cells (E1 at row 1 column 2, E2 at row 0 column 3)
guard them; entering an enemy cell kills the agent with probability ``attack_prob`` (0.1).

    row 0:  .  .  R1 E2 .
    row 1:  .  .  E1 .  R2
    row 2:  .  .  .  .  .
    row 3:  .  .  .  .  .
    row 4:  .  .  H  .  .

As in MO-Gymnasium: observation ``[row, column, has_gold, has_gem]`` (int32), actions 0 up
(row - 1), 1 down, 2 left, 3 right; a move off the grid leaves the agent in place (so "down" at
home ends the episode at once). Reward ``[death, gold, gem]`` (float32): ``-1`` in the first entry
on the step an enemy kills the agent; on the step the agent is home (entered or stayed in) it gets
``[0, has_gold, has_gem]``. The episode terminates on a kill or at home; truncation after 100
steps (``max_steps_in_episode``, MO-Gymnasium's ``max_episode_steps``).

Barrett, L. & Narayanan, S. (2008). "Learning All Optimal Policies with Multiple Criteria". ICML.

``pareto_front(gamma)`` is computed from the env's own transitions (``transition``, the function
``step_env`` uses, tabulated for both outcomes of an attack): finite-horizon backward induction
with *sets* of expected return vectors over the 100 states ``(cell, has_gold, has_gem)``, for the
time limit's 100 steps. Every transition has at most one non-terminal outcome (a kill ends the
episode), so the trajectory of an action sequence is deterministic up to its end, and the front
is exactly **the non-dominated expected discounted returns (first reward undiscounted) of all
deterministic policies from the start state** (action sequences; stationary or not). Mixtures of
them (stochastic policies) fill the convex hull below it; they are not listed.

MO-Gymnasium's ``pareto_front`` lists six hand-picked routes discounted as ``gamma ** steps``
(one power of ``gamma`` more than the convention here) and misses the route that fetches both
resources without meeting an enemy (18 steps: return ``[0, gamma**17, gamma**17]``, at
``gamma = 1`` the whole front); ``tests/test_mo_envs_more.py`` checks both.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
from gymnax.environments import environment, spaces

EMPTY, GOLD, GEM, ENEMY, HOME = 0, 1, 2, 3, 4

GRID = np.array([
    [EMPTY, EMPTY, GOLD, ENEMY, EMPTY],
    [EMPTY, EMPTY, ENEMY, EMPTY, GEM],
    [EMPTY, EMPTY, EMPTY, EMPTY, EMPTY],
    [EMPTY, EMPTY, EMPTY, EMPTY, EMPTY],
    [EMPTY, EMPTY, HOME, EMPTY, EMPTY],
], dtype=np.int32)
HOME_POS = (4, 2)

# action -> (d_row, d_col): 0 up, 1 down, 2 left, 3 right (MO-Gymnasium's ``dir``)
MOVES = np.array([[-1, 0], [1, 0], [0, -1], [0, 1]], dtype=np.int32)


@struct.dataclass
class ResourceGatheringState(environment.EnvState):
    pos: jax.Array          # [row, column], int32
    has_gold: jax.Array     # int32 0/1
    has_gem: jax.Array      # int32 0/1
    ended: jax.Array        # bool: the last step killed the agent or brought it home


@struct.dataclass
class ResourceGatheringParams(environment.EnvParams):
    max_steps_in_episode: int = 100
    attack_prob: float = 0.1        # probability that an enemy cell kills the agent


class ResourceGathering(environment.Environment[ResourceGatheringState, ResourceGatheringParams]):
    """Resource Gathering with a vector reward ``[death, gold, gem]`` (see the module docstring)."""

    num_objectives = 3

    @property
    def name(self) -> str:
        return "ResourceGathering-v0"

    @property
    def default_params(self) -> ResourceGatheringParams:
        return ResourceGatheringParams()

    @property
    def num_actions(self) -> int:
        return 4

    def action_space(self, params: ResourceGatheringParams | None = None):
        return spaces.Discrete(4)

    def observation_space(self, params: ResourceGatheringParams | None = None):
        return spaces.Box(0, 5, (4,), jnp.int32)

    @staticmethod
    def _obs(state: ResourceGatheringState):
        return jnp.concatenate([state.pos, jnp.stack([state.has_gold, state.has_gem])]).astype(jnp.int32)

    def reset_env(self, key, params):
        state = ResourceGatheringState(time=0, pos=jnp.array(HOME_POS, jnp.int32),
                                       has_gold=jnp.int32(0), has_gem=jnp.int32(0), ended=jnp.array(False))
        return self._obs(state), state

    def transition(self, state: ResourceGatheringState, action, attacked):
        """One step given whether an enemy would strike (``attacked``, used only on an enemy cell).

        Returns ``(next_state, reward, terminated)``; ``step_env`` draws ``attacked`` and calls it.
        """
        rows, cols = GRID.shape
        target = state.pos + jnp.asarray(MOVES)[jnp.reshape(action, ()).astype(jnp.int32)]
        inside = (target[0] >= 0) & (target[0] < rows) & (target[1] >= 0) & (target[1] < cols)
        pos = jnp.where(inside, target, state.pos)
        cell = jnp.asarray(GRID)[pos[0], pos[1]]
        killed = (cell == ENEMY) & attacked
        home = cell == HOME
        reward = jnp.stack([
            jnp.where(killed, -1.0, 0.0),
            jnp.where(home, state.has_gold, 0).astype(jnp.float32),
            jnp.where(home, state.has_gem, 0).astype(jnp.float32),
        ]).astype(jnp.float32)
        next_state = ResourceGatheringState(
            time=state.time + 1, pos=pos,
            has_gold=jnp.maximum(state.has_gold, (cell == GOLD).astype(jnp.int32)),
            has_gem=jnp.maximum(state.has_gem, (cell == GEM).astype(jnp.int32)),
            ended=killed | home,
        )
        return next_state, reward, killed | home

    def step_env(self, key, state: ResourceGatheringState, action, params):
        attacked = jax.random.uniform(key) < params.attack_prob
        next_state, reward, terminated = self.transition(state, action, attacked)
        return self._obs(next_state), next_state, reward, terminated, {}

    def is_terminated(self, state: ResourceGatheringState, params: ResourceGatheringParams):
        return state.ended

    # ------------------------------------------------------------------------------------------
    # The exact Pareto front, from the env's own transitions
    # ------------------------------------------------------------------------------------------
    def transition_table(self):
        """``transition`` for every state ``(row, column, has_gold, has_gem)``, action and attack outcome.

        Returns numpy arrays indexed ``[state, action, attacked]`` with states numbered
        ``((row * 5 + column) * 2 + has_gold) * 2 + has_gem``: ``next_state (100, 4, 2)``,
        ``reward (100, 4, 2, 3)``, ``terminated (100, 4, 2)``.
        """
        rows, cols = GRID.shape
        index = np.arange(rows * cols * 4)
        pos = np.stack([index // 4 // cols, index // 4 % cols], -1).astype(np.int32)
        states = ResourceGatheringState(time=jnp.zeros(len(index), jnp.int32), pos=jnp.asarray(pos),
                                        has_gold=jnp.asarray(index // 2 % 2, jnp.int32),
                                        has_gem=jnp.asarray(index % 2, jnp.int32),
                                        ended=jnp.zeros(len(index), bool))

        def one(state, action, attacked):
            nxt, reward, terminated = self.transition(state, action, attacked)
            number = ((nxt.pos[0] * cols + nxt.pos[1]) * 2 + nxt.has_gold) * 2 + nxt.has_gem
            return number, reward, terminated

        per_attack = jax.vmap(one, in_axes=(None, None, 0))
        per_action = jax.vmap(per_attack, in_axes=(None, 0, None))
        table = jax.jit(jax.vmap(per_action, in_axes=(0, None, None)))(states, jnp.arange(4), jnp.array([False, True]))
        return tuple(np.asarray(x) for x in table)

    def pareto_front(self, gamma: float, params: ResourceGatheringParams | None = None) -> np.ndarray:
        """Exact front ``(k, 3)`` of expected discounted returns of deterministic policies from the
        start (see the module docstring), sorted by the gem objective, then gold.

        Backward induction over the ``max_steps_in_episode`` steps of an episode: ``V_h(s)`` is the
        set of non-dominated expected returns with ``h`` steps left (``V_0 = {0}``), and
        ``V_h(s) = ND(U_a sum_o P(o) [r(s,a,o) + gamma * (1 - done) * V_{h-1}(s'(s,a,o))])``
        over the attack outcomes ``o`` (a Minkowski sum when both outcomes continue; here a kill
        always ends the episode). Stops early once ``V_h = V_{h-1}`` everywhere (a fixed point).
        """
        if not 0.0 < gamma <= 1.0:
            raise ValueError(f"gamma must be in (0, 1], got {gamma!r}")
        params = self.default_params if params is None else params
        p_attack = float(params.attack_prob)
        if not 0.0 <= p_attack <= 1.0:
            raise ValueError(f"attack_prob must be in [0, 1], got {p_attack!r}")
        next_state, reward, terminated = self.transition_table()
        reward = reward.astype(np.float64)
        probs = (1.0 - p_attack, p_attack)
        num_states = next_state.shape[0]
        values = [np.zeros((1, 3))] * num_states
        for _ in range(int(params.max_steps_in_episode)):
            new_values = [self._backup(s, values, next_state, reward, terminated, probs, gamma)
                          for s in range(num_states)]
            converged = all(a.shape == b.shape and np.array_equal(a, b) for a, b in zip(new_values, values))
            values = new_values
            if converged:
                break
        start = ((HOME_POS[0] * GRID.shape[1] + HOME_POS[1]) * 2 + 0) * 2 + 0
        front = values[start]
        return front[np.lexsort((front[:, 1], front[:, 2]))]

    @staticmethod
    def _backup(s, values, next_state, reward, terminated, probs, gamma):
        """``V_h(s)`` from ``V_{h-1}``: the non-dominated union over actions of the expected
        (over attack outcomes) one-step backups."""
        candidates = []
        for a in range(next_state.shape[1]):
            # outcomes that lead to the same (next state, reward, end) are one outcome
            merged: dict = {}
            for o, p in enumerate(probs):
                if p > 0.0:
                    outcome = (int(next_state[s, a, o]), tuple(reward[s, a, o]), bool(terminated[s, a, o]))
                    merged[outcome] = merged.get(outcome, 0.0) + p
            q = np.zeros((1, 3))
            for (nxt, r, done), p in merged.items():
                future = np.zeros((1, 3)) if done else values[nxt]
                q = (q[:, None, :] + p * (np.asarray(r) + gamma * future)[None, :, :]).reshape(-1, 3)   # Minkowski sum
            candidates.append(q)
        return _pareto_filter(np.round(np.concatenate(candidates), 12))


def _pareto_filter(points: np.ndarray) -> np.ndarray:
    """Non-dominated rows (maximization), each once. (envs/ may not import jaxrl.mo_metrics.)"""
    points = np.unique(points, axis=0)
    geq = np.all(points[:, None] >= points[None], -1)
    gt = np.any(points[:, None] > points[None], -1)
    return points[~np.any(geq & gt, axis=0)]
