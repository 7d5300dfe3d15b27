"""Atomic file writes: a reader never sees a half-written result file."""
from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any


@contextlib.contextmanager
def open_atomic(path: str | os.PathLike, mode: str = "w"):
    """Open a temporary file beside ``path``; on success it is fsynced and renamed onto ``path``.

    On any error the temporary file is removed and ``path`` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` to ``path`` atomically (temporary file in the same folder + ``os.replace``)."""
    with open_atomic(path) as f:
        f.write(text)
    return Path(path)


def save_figure_atomic(fig, path: str | os.PathLike, dpi: int = 120) -> Path:
    """Save a matplotlib figure as PNG atomically."""
    with open_atomic(path, "wb") as f:
        fig.savefig(f, format="png", dpi=dpi)
    return Path(path)


def to_jsonable(value: Any) -> Any:
    """Plain JSON types: numpy/jax scalars and arrays become numbers and lists; NaN/inf become null."""
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if hasattr(value, "tolist"):
        return to_jsonable(value.tolist())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_json_atomic(path: str | os.PathLike, obj: Any, indent: int | None = 2) -> Path:
    return write_text_atomic(path, json.dumps(to_jsonable(obj), indent=indent, allow_nan=False) + "\n")


def write_jsonl_atomic(path: str | os.PathLike, rows: list[dict]) -> Path:
    return write_text_atomic(path, "".join(json.dumps(to_jsonable(r), allow_nan=False) + "\n" for r in rows))


def read_jsonl(path: str | os.PathLike) -> list[dict]:
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]
