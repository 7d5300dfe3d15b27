"""scripts/reproduce.py: the entry registry, its errors, and a --quick run that writes the table and plot."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from scripts import reproduce  # noqa: E402

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_list_runs_as_a_script():
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "reproduce.py"), "--list"],
                          capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    for name in ("gymnax-classic", "minatar-breakout"):
        assert name in proc.stdout
    assert "ppo/CartPole-v1" in proc.stdout


def test_unknown_entry_is_a_clear_error():
    with pytest.raises(SystemExit) as err:
        reproduce.main(["no-such-entry"])
    message = str(err.value)
    assert "unknown entry 'no-such-entry'" in message
    assert "gymnax-classic" in message and "minatar-breakout" in message


def test_unknown_case_is_a_clear_error():
    with pytest.raises(SystemExit) as err:
        reproduce.main(["gymnax-classic", "--quick", "--cases", "Breakout-MinAtar"])
    assert "matches no case" in str(err.value) and "CartPole-v1" in str(err.value)


def test_every_case_has_a_reference_and_a_valid_config():
    references = reproduce.load_references()
    assert references["online"]["gymnax-readme-ppo"]["values"]["CartPole-v1"] == 500
    for entry in reproduce.ENTRIES.values():
        for case in entry.cases:
            value, ref_set = reproduce.reference_for(case, references)
            assert value is not None and ref_set["source"]
            # Every case's config must pass the agent's validation, full and quick (no compiling).
            for quick in (False, True):
                config, defaults, module = reproduce.build_config(case, quick)
                module.make_train(config)
                assert config.env == case.env


def test_quick_run_writes_table_and_plot(tmp_path):
    out = tmp_path / "runs"
    results = tmp_path / "results"
    assert reproduce.main(["gymnax-classic", "--quick", "--quiet", "--cases", "CartPole-v1",
                           "--out", str(out), "--results", str(results)]) == 0
    table = (results / "gymnax-classic.md").read_text()
    assert (results / "gymnax-classic.png").read_bytes().startswith(PNG_MAGIC)
    # The table: command, machine, versions, our numbers beside the reference, hyperparameters.
    assert "python scripts/reproduce.py gymnax-classic --quick" in table
    for needle in ("CPU", "jax 0.", "flax", "optax", "gymnax", "## Differences from the reference",
                   "| reference |", "| CartPole-v1 | ppo | 1,024 |", "| 500 |", "Budgets and hyperparameters"):
        assert needle in table, needle
    summary = json.loads((out / "ppo-CartPole-v1" / "summary.json").read_text())
    assert summary["eval_return"]["n"] == 2
    # Running the same command again reuses the finished case instead of retraining it.
    assert reproduce.main(["gymnax-classic", "--quick", "--quiet", "--cases", "CartPole-v1",
                           "--out", str(out), "--results", str(results)]) == 0
    assert "reused a finished run" in (results / "gymnax-classic.md").read_text()


# ----------------------------------------------------------------------------------------------
# The offline entry (scripts/reproduce_offline.py)
# ----------------------------------------------------------------------------------------------
def test_offline_entry_is_listed_and_checks_its_cases():
    assert "offline-gymnax" in reproduce.list_entries()
    with pytest.raises(SystemExit) as err:
        reproduce.main(["offline-gymnax", "--quick", "--cases", "Pendulum-v1,no-such-agent"])
    assert "no-such-agent" in str(err.value) and "td3_bc" in str(err.value)


def test_offline_quick_run_writes_table_and_plot(tmp_path):
    out, results = tmp_path / "runs", tmp_path / "results"
    # bc runs on both action spaces; td3_bc is continuous-only, so its CartPole cell must read n/a
    assert reproduce.main(["offline-gymnax", "--quick", "--quiet", "--cases", "CartPole-v1,random,bc,td3_bc",
                           "--out", str(out), "--results", str(results)]) == 0
    text = (results / "offline-gymnax.md").read_text()
    assert "| CartPole-v1 | random |" in text and "n/a" in text
    assert (results / "offline-gymnax.png").read_bytes().startswith(PNG_MAGIC)
    summary = json.loads((out / "CartPole-v1" / "random" / "bc" / "summary.json").read_text())
    assert summary["updates_per_run"] == 4 and "normalized_score" in summary
