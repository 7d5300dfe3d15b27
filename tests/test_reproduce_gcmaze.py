"""scripts/reproduce_gcmaze.py (the ``gc-pointmaze`` entry) without training: rollouts of a scripted
policy, the table and figure from given cells, and the command-line checks."""
from __future__ import annotations

import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from envs.goal_conditioned.point_maze import GOAL_RADIUS, TASKS, cell_center
from jaxrl import envs
from scripts import reproduce_gcmaze as gcmaze


def _scripted_trainer(layout: str, policy: str):
    """A stand-in for a trained agent: the env's oracle, or a policy that never moves."""
    env, params = envs.make(gcmaze.env_id(layout))

    def act(state, obs, key):
        if policy == "oracle":
            return env.oracle_action(obs["achieved_goal"], obs["desired_goal"], params)
        return jnp.zeros(obs["achieved_goal"].shape)

    return types.SimpleNamespace(env=env, env_params=params, act=act)


@pytest.fixture(scope="module")
def oracle_rollouts():
    return gcmaze.rollout_paths(_scripted_trainer("umaze", "oracle"), None, jax.random.PRNGKey(0))


def test_rollouts_of_the_oracle_start_at_each_task_and_end_at_its_goal(oracle_rollouts):
    assert [r["task"] for r in oracle_rollouts] == [1, 2, 3, 4, 5]
    for roll, (start, goal) in zip(oracle_rollouts, TASKS["umaze"]):
        path = np.asarray(roll["path"])
        assert np.abs(path[0] - np.asarray(cell_center(start))).max() <= 0.5          # starts in the task's cell
        assert np.abs(np.asarray(roll["goal"]) - np.asarray(cell_center(goal))).max() <= 0.5
        assert roll["success"]
        # the episode terminates on success, so the path stops at the first position within the radius
        distances = np.linalg.norm(path - np.asarray(roll["goal"]), axis=1)
        assert distances[-1] <= GOAL_RADIUS + 1e-3 and np.all(distances[:-1] > GOAL_RADIUS - 1e-3)


def test_rollouts_of_a_policy_that_never_moves_last_the_time_limit():
    rolls = gcmaze.rollout_paths(_scripted_trainer("open", "still"), None, jax.random.PRNGKey(0))
    for roll in rolls:
        path = np.asarray(roll["path"])
        assert not roll["success"]
        assert len(path) == 150 + 1                      # reset + the open maze's 150 steps (D4RL's limit)
        assert np.all(path == path[0])


def _cell(agent, layout, kind, successes, rollouts):
    runs = [{"seed": s, "task_success": [x] * 5, "success": x} for s, x in enumerate(successes)]
    runs[0]["rollouts"] = rollouts
    return {"agent": agent, "layout": layout, "kind": kind, "seeds": len(successes), "quick": False,
            "env_params": {} if kind else {"max_steps_in_episode": 50}, "overrides": {"num_updates": 10},
            "updates": 10, "env_steps": None if kind else 800, "dataset_size": 1000 if kind else None, "runs": runs,
            "compile_s": 1.0, "train_s": 2.0, "report_s": 0.5}


def test_table_findings_and_figure_from_given_cells(tmp_path, oracle_rollouts):
    cells = [_cell("gciql", "umaze", "navigate", [1.0, 0.8, 0.9], oracle_rollouts),
             _cell("crl", "umaze", None, [0.0, 0.0, 0.0], oracle_rollouts)]
    randoms = {gcmaze.random_key("umaze", {}): [0.0] * 5,
               gcmaze.random_key("umaze", {"max_steps_in_episode": 50}): [0.2, 0.0, 0.0, 0.0, 0.0]}
    lines = gcmaze.table_lines("umaze", cells, randoms)
    assert lines[2] == "| random policy | - | 0.00 | 0.0 / 0.0 / 0.0 / 0.0 / 0.0 | env: the layout's defaults |"
    assert lines[3].startswith("| random policy | - | 0.04 | 0.2 / 0.0") and "max_steps_in_episode=50" in lines[3]
    assert lines[4].startswith("| GCIQL | navigate (1,000) | 0.90 [")
    assert "| CRL | online | 0.00" in lines[5] and "800 env steps, max_steps_in_episode=50" in lines[5]
    found = "\n".join(gcmaze.findings("umaze", cells, randoms))
    assert "best GCIQL (navigate) (0.90)" in found and "at or near zero: CRL" in found
    png = gcmaze.write_plot(tmp_path / "maze.png", {"umaze": (cells, randoms), "open": ([], randoms)})
    assert png.exists() and png.stat().st_size > 10_000


def test_random_policy_success_is_per_env_setting():
    default = gcmaze.random_success("open", {})
    short = gcmaze.random_success("open", {"max_steps_in_episode": 1})
    # One step moves at most 0.5·√2 ≈ 0.71 cells; every open-maze task needs more than 0.95 (starts and
    # goals 2+ cells apart, each within 0.4 of its cell centre, success radius 0.25): impossible.
    assert len(default) == len(short) == 5 and max(short) == 0.0


def test_command_line_errors_name_what_is_allowed():
    with pytest.raises(SystemExit):
        gcmaze.parse_args(["--layouts", "umaze,corridor"])
    with pytest.raises(SystemExit):
        gcmaze.parse_args(["--kinds", "expert"])
    with pytest.raises(SystemExit):
        gcmaze.parse_args(["--quick"])                   # a smoke run must not write into scripts/results
    args = gcmaze.parse_args(["--layouts", "open,umaze", "--agents", "gciql,crl"])
    assert args.seeds == 3 and args.kinds == ["navigate"]
    assert [(c.agent, c.layout, c.kind) for c in gcmaze.select_cases(args)] == [
        ("crl", "open", None), ("gciql", "open", "navigate"), ("crl", "umaze", None), ("gciql", "umaze", "navigate")]


def test_case_settings_apply_only_the_fields_an_agent_has():
    _, overrides = gcmaze.case_settings(gcmaze.Case("gcbc", "open", "navigate"), quick=False)
    assert overrides == {k: v for k, v in gcmaze.OFFLINE_OVERRIDES.items() if k != "tau"}  # GCBC has no target net
    env_params, overrides = gcmaze.case_settings(gcmaze.Case("crl", "open", None), quick=False)
    assert env_params == gcmaze.OPEN_SHORT_HORIZON and overrides["total_timesteps"] == 20 * 16 * 50
