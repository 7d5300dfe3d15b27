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
