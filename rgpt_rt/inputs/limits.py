"""Size limits on untrusted input, each with a default and an environment variable that raises it."""

from __future__ import annotations

import os


def limit_from_env(name: str, default: int, unit: str) -> int:
    """The positive integer in environment variable `name`, or `default` when it is unset."""
    raw = os.environ.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise ValueError(f"{name} must be a positive integer ({unit}), got {raw!r}")
    return value
