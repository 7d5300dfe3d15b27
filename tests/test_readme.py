"""The README stays true to the code: the algorithm table, the commands CI runs, the contract."""
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def algorithm_files():
    return sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "agents").glob("*/*.py") if p.name != "__init__.py")


def table_files():
    section = README.split("## Algorithms", 1)[1].split("\n## ", 1)[0]
    return sorted(set(re.findall(r"`(agents/[\w/]+\.py)`", section)))


def test_every_agent_file_is_in_the_algorithm_table():
    missing = set(algorithm_files()) - set(table_files())
    assert not missing, f"agent files missing from the README's algorithm table: {sorted(missing)}"


def test_the_algorithm_table_names_only_existing_files():
    ghosts = [f for f in table_files() if not (ROOT / f).exists()]
    assert not ghosts, f"the README's algorithm table names files that do not exist: {ghosts}"


def test_ci_runs_exactly_the_readme_test_command():
    commands = re.findall(r"```bash\n(.*?)\n```", README, flags=re.S)
    test_command = next(c for c in commands if "pytest" in c)
    ci = (ROOT / ".ci" / "run").read_text()
    assert test_command.strip() in ci.splitlines()


def test_house_rules_hold():
    checker = ROOT.parent / "shared" / "checks" / "contract.py"
    if not checker.exists():
        import pytest
        pytest.skip("../shared/checks/contract.py is not beside this checkout")
    proc = subprocess.run([sys.executable, str(checker), str(ROOT)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout
