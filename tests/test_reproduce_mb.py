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


def _cell(agent, label, model_based, reach, total, finals=(-150.0, -160.0)):
    return {"agent": agent, "label": label, "model_based": model_based, "total_env_steps": total,
            "first_reach": {"threshold": -200.0, "mean": reach, "per_seed": [reach, reach]}, "finals": list(finals),
            "steps": [100, 200], "curves": [[-900.0, -150.0], [-700.0, -190.0]]}


def test_table_gives_the_ratio_to_sac_and_bounds_when_a_run_never_reaches_it(tmp_path):
    cells = [_cell("model_based.mbpo", "MBPO", True, 2_000, 5_000), _cell("model_based.pets", "PETS", True, None, 3_000),
             _cell("online.sac", "SAC", False, 8_000, 15_000)]
    lines = mb.table_lines(cells, -200.0)
    assert "| MBPO | yes | 2,000 | 2,000, 2,000 | 4.0 |" in lines[2]
    assert "| PETS | yes | not reached |" in lines[3] and "≤ 2.67 (never reached)" in lines[3]
    found = "\n".join(mb.findings(cells))
    assert "MBPO: 2,000 env steps vs SAC's 8,000 (4.0×): several times fewer samples." in found
    assert "PETS did not reach the threshold within 3,000 env steps" in found
    assert mb.write_plot(tmp_path / "curves.png", cells, -200.0).stat().st_size > 10_000


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
