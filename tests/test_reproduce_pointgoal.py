"""The ``safe-pointgoal`` reproduce entry: scoring by hand, argument checks, and a --quick run of one
agent file whose single program holds unconstrained PPO, PPO-Lag and the cost-limit sweep."""
import json

import numpy as np
import pytest

from scripts import reproduce_pointgoal as rp


def test_final_value_is_the_mean_of_the_last_tenth_of_the_iterations_with_episodes():
    curve = np.array([np.nan, 1.0, np.nan, 2.0] + [3.0] * 17 + [np.nan, 5.0])   # 20 finite values
    assert rp.final_value(curve) == pytest.approx(4.0)          # last 2 finite: 3 and 5
    assert np.isnan(rp.final_value(np.full(5, np.nan)))
    assert rp.final_value(np.array([7.0])) == 7.0


def test_smooth_ignores_iterations_without_episodes():
    out = rp.smooth(np.array([np.nan, 2.0, np.nan, 4.0]), window=2)
    np.testing.assert_allclose(out, [np.nan, 2.0, 2.0, 4.0])


def test_the_sweep_rides_in_the_ppo_lag_program_of_level_1_only():
    runs = rp.runs_of(rp.AGENTS[:2], level=1, sweep=True)
    assert [(r.agent.label, r.limit) for r in runs] == [("PPO", 25.0), ("PPO-Lag", 10.0), ("PPO-Lag", 25.0),
                                                        ("PPO-Lag", 50.0)]
    assert [r.label for r in runs] == ["PPO", "PPO-Lag (d = 10)", "PPO-Lag", "PPO-Lag (d = 50)"]
    assert len(rp.runs_of(rp.AGENTS[:2], level=2, sweep=True)) == 2
    assert len(rp.runs_of(rp.AGENTS[:2], level=1, sweep=False)) == 2


def test_agents_with_a_setting_get_their_own_program_and_config():
    """A setting (shape or mode fields) cannot be vmapped, so an agent with one gets a program of its own."""
    from agents.safe import cpo

    by_label = {a.label: a for a in rp.AGENTS}
    other = rp.Agent("CPO (per-step c)", "agents.safe.cpo", setting=(("constraint_units", "per_step"),))
    programs = {a.program for a in (by_label["PPO"], by_label["PPO-Lag"], by_label["CPO"], other)}
    assert len(programs) == 3                                  # PPO and PPO-Lag share ppo_lag.py's program
    config = rp.base_config(cpo, 1, False, 10_000, dict(by_label["CPO"].setting))
    assert (config.num_envs, config.constraint_units, config.env) == (32, "episode", "PointGoal1-v0")
    assert rp.base_config(cpo, 2, False, 10_000).num_envs == cpo.Config().num_envs


@pytest.mark.parametrize("argv", [["--agents", "PPO,Nope"], ["--agents", "PPO,PPO"], ["--levels", "3"],
                                  ["--levels", "x"], ["--seeds", "0"], ["--total-timesteps", "0"]])
def test_bad_arguments_are_refused(argv):
    with pytest.raises(SystemExit):
        rp.parse_args(argv)


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("safe-pointgoal")
    assert rp.main(["--quick", "--agents", "PPO,PPO-Lag", "--levels", "1", "--out", str(out), "--quiet"]) == 0
    return out


def test_quick_run_writes_the_table_plot_and_curves(quick_run):
    text = (quick_run / "safe-pointgoal.md").read_text()
    assert text.startswith("# Reproduction `safe-pointgoal`") and "--quick smoke test" in text
    for part in ("- Command: `python scripts/reproduce.py safe-pointgoal --quick", "- Machine:", "- Versions:",
                 "## Level 1, cost limit 25", "| PPO | ", "| PPO-Lag | ", "13 / 25.8 |",
                 "## Cost-limit sweep: PPO-Lag on level 1, trained in the same program", "## Findings",
                 "| `agents/safe/ppo_lag.py` | 1 | 8 | 2,048 |", "![return and cost curves](safe-pointgoal.png)"):
        assert part in text, part
    assert (quick_run / "safe-pointgoal.png").stat().st_size > 10_000
    data = json.loads((quick_run / "safe-pointgoal.json").read_text())
    [curves] = data["curves"]   # one program for the whole level
    assert curves["runs"] == ["PPO", "PPO-Lag (d = 10)", "PPO-Lag", "PPO-Lag (d = 50)"]
    assert np.asarray(curves["metrics"]["episode_cost"], dtype=float).shape[:2] == (4, 2)
    rows = data["rows"]
    assert len(rows) == 4 * 2 and {r["limit"] for r in rows} == {10.0, 25.0, 50.0}
    for r in rows:
        if r["cost"] is not None:
            assert r["cost_ratio"] == pytest.approx(r["cost"] / r["limit"])
    assert all(r["final_lambda"] == 0.0 for r in rows if r["agent"] == "PPO")
