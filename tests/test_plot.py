"""Tests for jaxrl.plotting and scripts/plot.py using small fake run folders."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from jaxrl.plotting import PlotError  # noqa: E402
from scripts.plot import main, plot_runs  # noqa: E402

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _write_run(path: Path, algorithm: str, env: str, sweeps: list[dict], seeds: int = 3,
               steps: int = 8, offset: float = 0.0) -> Path:
    path.mkdir(parents=True)
    (path / "config.json").write_text(json.dumps({"algorithm": algorithm, "env": env}))
    rng = np.random.default_rng(0)
    lines = []
    run = 0
    for sweep in sweeps:
        for seed in range(seeds):
            for update in range(1, steps + 1):
                lines.append({
                    "run": run, "seed": seed, "sweep": sweep, "update": update,
                    "env_steps": 512 * update,
                    "episode_return": offset + 10.0 * update + float(rng.normal()),
                    "loss": 1.0 / update,
                })
            run += 1
    (path / "metrics.jsonl").write_text("\n".join(json.dumps(l) for l in lines) + "\n")
    return path


@pytest.fixture
def two_runs(tmp_path):
    a = _write_run(tmp_path / "ppo", "ppo", "CartPole-v1", [{"lr": 0.001}, {"lr": 0.0003}])
    b = _write_run(tmp_path / "dqn", "dqn", "CartPole-v1", [{}], offset=5.0)
    return a, b


def _check_png(path: Path) -> None:
    assert path.is_file()
    data = path.read_bytes()
    assert len(data) > 1000 and data.startswith(PNG_MAGIC)


def test_plot_runs_writes_png(two_runs, tmp_path):
    out = tmp_path / "figs" / "curves.png"
    result = plot_runs(list(two_runs), "episode_return", "env_steps", out, title="test")
    assert Path(result) == out
    _check_png(out)
    # No temp files left behind by the atomic write.
    assert [p.name for p in out.parent.iterdir()] == ["curves.png"]


def test_plot_runs_default_out_single_dir(two_runs):
    result = plot_runs([two_runs[0]], metric="loss", x="update")
    assert Path(result) == two_runs[0] / "curves.png"
    _check_png(Path(result))


def test_main_prints_path(two_runs, tmp_path, capsys):
    out = tmp_path / "cli.png"
    assert main([str(d) for d in two_runs] + ["--out", str(out), "--metric", "loss"]) == 0
    assert capsys.readouterr().out.strip() == str(out)
    _check_png(out)


def test_unknown_metric_lists_available(two_runs, tmp_path):
    with pytest.raises(PlotError) as exc:
        plot_runs(list(two_runs), "no_such_metric", "env_steps", tmp_path / "x.png")
    msg = str(exc.value)
    assert "no_such_metric" in msg
    for key in ("episode_return", "loss", "env_steps", "update"):
        assert key in msg
    assert not (tmp_path / "x.png").exists()


def test_missing_folder_and_metrics(tmp_path):
    with pytest.raises(PlotError, match="not found"):
        plot_runs([tmp_path / "nope"], out=tmp_path / "x.png")
    with pytest.raises(SystemExit, match="error: run folder not found"):
        main([str(tmp_path / "nope")])
    (tmp_path / "empty").mkdir()
    with pytest.raises(PlotError, match="metrics.jsonl"):
        plot_runs([tmp_path / "empty"], out=tmp_path / "x.png")
