"""scripts/reproduce_mb_distractors.py (the ``mb-distractors`` entry) without training: the findings, the
table rewritten from a stored JSON (``--no-train``) and the command-line checks."""
from __future__ import annotations

import json

import numpy as np
import pytest

from scripts import reproduce_mb_distractors as md


def _result(n, loss, returns, base):
    return {"env": md.env_id(n), "model_loss": loss, "seconds": 12.0, "distractors": n, "returns": list(returns),
            "base_mse": list(base), "distractor_mse": [0.5, 0.6], "curve": [[-1000.0, -500.0], [-900.0, -400.0]]}


RESULTS = [_result(0, "mle", (-400.0, -300.0), (0.01, 0.02)), _result(0, "vagram", (-130.0, -120.0), (0.002, 0.003)),
           _result(10, "mle", (-1600.0, -1700.0), (0.002, 0.001)), _result(10, "vagram", (-1700.0, -800.0), (0.01, 0.01))]


def test_findings_name_the_better_loss_and_whether_the_gap_beats_the_spread():
    arrays = [{**r, **{k: np.asarray(r[k]) for k in ("returns", "base_mse", "distractor_mse")}} for r in RESULTS]
    found = "\n".join(md.findings(arrays))
    assert "- 0 distractors: VaGraM returns 225 more (MLE -350, VaGraM -125); larger than the spread" in found
    assert "- 10 distractors: VaGraM returns 400 more (MLE -1650, VaGraM -1250); not larger than the spread" in found
    assert "(std 71 / 636)" in found                                   # sample std, ddof 1
    assert "- Return lost against no distractors: MLE 1300 at 10; VaGraM 1125 at 10." in found
    assert "not comparable across the two losses" in found


def test_no_train_rewrites_the_table_and_figure_from_the_json(tmp_path):
    (tmp_path / f"{md.NAME}.json").write_text(json.dumps({
        "command": "python scripts/reproduce.py mb-distractors", "seeds": 2, "total_timesteps": 5000,
        "elapsed_s": 90.0, "results": RESULTS}))
    assert md.main([md.NAME, "--no-train", "--out", str(tmp_path), "--quiet"]) == 0
    text = (tmp_path / f"{md.NAME}.md").read_text()
    assert "| 10 | vagram | -1250.0 ± 636.4 | 0.0100 ± 0.0000 |" in text
    assert "## Findings" in text and md.CLAIM in text
    assert (tmp_path / f"{md.NAME}.png").stat().st_size > 10_000


def test_no_train_without_a_stored_run_says_what_to_do(tmp_path):
    with pytest.raises(SystemExit, match="run without --no-train first"):
        md.main(["--no-train", "--out", str(tmp_path)])


@pytest.mark.parametrize("argv, message", [(["--distractors", "0,7"], "registered counts are 0"),
                                           (["--distractors", "a"], "comma-separated integers"),
                                           (["--seeds", "0"], "--seeds must be >= 1")])
def test_bad_arguments_are_refused(argv, message, capsys):
    with pytest.raises(SystemExit):
        md.parse_args(argv)
    assert message in capsys.readouterr().err


def test_only_the_default_settings_write_to_the_committed_results():
    assert md._default_settings(md.parse_args([]))
    for argv in (["--seeds", "2"], ["--distractors", "0,20"], ["--total-timesteps", "3000"], ["--quick"]):
        assert not md._default_settings(md.parse_args(argv)), argv
