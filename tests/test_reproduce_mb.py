"""scripts/reproduce_mb.py (the ``mb-sample-efficiency`` entry) without training: steps to the
threshold, the ratio to SAC, the figure and the command-line checks."""
from __future__ import annotations

import numpy as np
import pytest

from scripts import reproduce_mb as mb


def test_first_reach_uses_the_seed_mean_and_each_seed():
    steps = np.array([100, 200, 300, 400])
    curves = np.array([[np.nan, -900.0, -150.0, -120.0],      # seed 0 reaches -200 at 300
                       [np.nan, -400.0, -300.0, -190.0]])     # seed 1 at 400; the mean (-225, -155) at 400
    assert mb.first_reach(steps, curves) == {"threshold": -200.0, "mean": 400, "per_seed": [300, 400]}
    assert mb.first_reach(steps, curves, threshold=-100.0)["mean"] is None


def _cell(agent, label, model_based, reach, total, finals=(-150.0, -160.0), per_seed=None):
    per_seed = [reach, reach] if per_seed is None else per_seed
    return {"agent": agent, "label": label, "model_based": model_based, "total_env_steps": total,
            "first_reach": {"threshold": -200.0, "mean": reach, "per_seed": per_seed}, "finals": list(finals),
            "steps": [100, 200], "curves": [[-900.0, -150.0], [-700.0, -190.0]]}


def test_seed_median_counts_a_seed_that_never_reaches_as_latest():
    assert mb.seed_median([300, None, 100]) == 300
    assert mb.seed_median([300, None, None]) is None
    assert mb.seed_median([100, 300]) == 200 and mb.seed_median([100, None]) is None


def test_table_gives_the_ratio_to_sac_and_bounds_when_a_run_never_reaches_it(tmp_path):
    cells = [_cell("model_based.mbpo", "MBPO", True, 2_000, 5_000), _cell("model_based.pets", "PETS", True, None, 3_000),
             _cell("online.sac", "SAC", False, 8_000, 15_000)]
    lines = mb.table_lines(cells, "Pendulum-v1", -200.0)
    assert "| MBPO | yes | 2,000 | 2,000, 2,000 | 2,000 | 4.0 |" in lines[2]
    assert "| PETS | yes | not reached |" in lines[3] and "≤ 2.67 (never reached)" in lines[3]
    found = "\n".join(mb.findings(cells, "Pendulum-v1"))
    assert "MBPO: 2,000 env steps vs SAC's 8,000 (4.0× fewer): several times fewer samples." in found
    assert "PETS: most seeds did not reach the threshold within 3,000 env steps" in found
    assert "holds for 1 of the 2 model-based agents" in found     # PETS, which never reached it, counts
    assert mb.write_plot(tmp_path / "curves.png", {"Pendulum-v1": cells}, {"Pendulum-v1": -200.0}).stat().st_size > 10_000


def test_ratios_use_the_seed_median_not_the_seed_mean_curve():
    # one DQN seed dips late: its mean curve crosses at 190k, the seed median is 120k
    cells = [_cell("model_based.muzero", "MuZero", True, 165_000, 200_000, per_seed=[37_000, 24_000, 36_000]),
             _cell("online.dqn", "DQN", False, 190_000, 500_000, per_seed=[160_000, 120_000, 100_000])]
    lines = mb.table_lines(cells, "CartPole-v1", 475.0)
    assert "× fewer than DQN (medians)" in lines[0]
    assert "| MuZero | yes | 36,000 | 37,000, 24,000, 36,000 | 165,000 | 3.3 |" in lines[2]
    found = "\n".join(mb.findings(cells, "CartPole-v1"))
    assert "MuZero: 36,000 env steps vs DQN's 120,000 (3.3× fewer): several times fewer samples." in found
    assert "Caveat: the curve is the training episodes' return" in found


def test_report_reach_keeps_the_exact_training_time_value_and_marks_a_recomputed_one():
    cell = _cell("online.sac", "SAC", False, 4_600, 15_000)
    assert mb.report_reach(cell, -200.0) is cell["first_reach"]
    other = mb.report_reach(cell, -160.0)
    assert other["approximate"] and other["per_seed"] == [200, None] and other["mean"] is None
    lines = mb.table_lines([{**cell, "first_reach": other}], "Pendulum-v1", -160.0)
    assert "| SAC | no | ≈ not reached |" in lines[2] and lines[-1].startswith("≈: -160 is not the threshold")


def test_every_case_names_only_fields_its_agent_has():
    for case in mb.available_cases():
        mb.case_config(case, quick=False)
        mb.case_config(case, quick=True)


def test_command_line_errors():
    with pytest.raises(SystemExit):
        mb.parse_args(["--agents", "dreamer"])
    with pytest.raises(SystemExit):
        mb.parse_args(["--quick"])
    assert mb.parse_args(["--agents", "mbpo,sac"]).agents == ["mbpo", "sac"]
    for bad in (["--envs", "Hopper-v4"], ["--threshold", "-200"], ["--threshold", "Acrobot-v1=-100"],
                ["--threshold", "CartPole-v1=high"], ["--agents", "sac", "--envs", "CartPole-v1"]):
        with pytest.raises(SystemExit):
            mb.parse_args(bad)
    args = mb.parse_args(["--envs", "CartPole-v1", "--threshold", "CartPole-v1=400"])
    assert args.envs == ["CartPole-v1"] and args.thresholds == {"Pendulum-v1": -200.0, "CartPole-v1": 400.0}


def test_a_baseline_that_was_not_run_is_named_by_its_label():
    cells = [_cell("model_based.muzero", "MuZero", True, 30_000, 200_000)]
    assert "× fewer than DQN (medians)" in mb.table_lines(cells, "CartPole-v1", 475.0)[0]
    assert mb.findings(cells, "CartPole-v1")[0].startswith("- DQN did not reach the threshold in most seeds")


def test_a_model_free_agent_far_behind_sac_prints_how_many_times_more_and_the_claim_line():
    cells = [_cell("model_based.mbpo", "MBPO", True, 2_000, 5_000), _cell("model_based.pets", "PETS", True, 1_000, 3_000),
             _cell("online.sac", "SAC", False, 8_000, 15_000), _cell("online.ppo", "PPO", False, 400_000, 10**6)]
    lines = mb.table_lines(cells, "Pendulum-v1", -200.0)
    assert "| 0.02 (50× more) |" in lines[5]
    found = "\n".join(mb.findings(cells, "Pendulum-v1"))
    assert "- PPO (model-free): 400,000 env steps vs SAC's 8,000 (50.0× more)." in found
    assert ("need 4.0× fewer to 8.0× fewer env steps than SAC, and the slowest of them 200.0× fewer than PPO; "
            "'several times fewer' (3× or more) than SAC holds for 2 of the 2 model-based agents.") in found
