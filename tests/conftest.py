"""Shared test setup: a private compilation cache and helpers to run an agent's CLI in-process."""
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# One persistent XLA cache for the whole session (and across sessions in CI's home), so
# programs compiled by one test module are reused by later ones.
os.environ.setdefault("JAXRL_CACHE_DIR", str(Path(tempfile.gettempdir()) / "jaxrl-test-xla-cache"))

# The longest modules first: ``pytest -n 2 --dist loadfile`` hands out whole modules in collection
# order, so a long module collected last would leave the other worker idle at the end (longest-
# processing-time-first scheduling). Durations measured in CI (.ci/run, 2 cores); the rest keep
# their order after these.
LONGEST_MODULES = (
    "test_offline_dt.py", "test_notebooks.py", "test_mbpo.py", "test_coplanner.py", "test_vagram.py",
    "test_offline_cql.py", "test_offline_prdc.py",
    "test_pets.py", "test_cli.py", "test_sac_her.py", "test_ppo_lag.py", "test_gciql.py", "test_offline_iql.py",
    "test_offline_rebrac.py", "test_hilp.py", "test_hiql.py",
)


def pytest_collection_modifyitems(session, config, items):
    rank = {name: i for i, name in enumerate(LONGEST_MODULES)}
    items.sort(key=lambda item: rank.get(Path(str(item.fspath)).name, len(rank)))  # stable: the rest keep their order
