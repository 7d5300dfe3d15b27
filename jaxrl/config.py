"""Config validation shared by every agent: clear errors, raised before anything compiles."""
from __future__ import annotations

import jax


class ConfigError(ValueError):
    """A hyperparameter or flag that cannot work, with what is allowed instead."""


def require(ok, message: str) -> None:
    """Raise ``ConfigError(message)`` unless ``ok``.

    Checks on values that are being traced (a swept hyperparameter inside ``jax.vmap``) are
    skipped: the CLI validates every grid point with concrete values before compiling.
    """
    if isinstance(ok, jax.core.Tracer):
        return
    if not bool(ok):
        raise ConfigError(message)


def require_positive(config, *names: str) -> None:
    for name in names:
        value = getattr(config, name)
        require(value > 0, f"{name} must be > 0, got {value!r}")


def require_unit_interval(config, *names: str, closed: bool = True) -> None:
    for name in names:
        value = getattr(config, name)
        ok = (0 <= value) & (value <= 1) if closed else (0 < value) & (value < 1)
        require(ok, f"{name} must be in {'[0, 1]' if closed else '(0, 1)'}, got {value!r}")


def require_divides(numerator_name: str, numerator: int, denominator_name: str, denominator: int) -> None:
    require(
        denominator > 0 and numerator % denominator == 0,
        f"{numerator_name}={numerator} must be divisible by {denominator_name}={denominator}",
    )
