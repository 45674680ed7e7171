"""Lazy access to the native modules rgpt_rt._C (CPU, always built) and rgpt_rt._C_cuda (optional)."""

from __future__ import annotations

import importlib
from types import ModuleType

_cache: dict[str, ModuleType | None] = {}


def cpu() -> ModuleType:
    """Return rgpt_rt._C, or raise ImportError saying how to build it."""
    if "_C" not in _cache:
        try:
            _cache["_C"] = importlib.import_module("rgpt_rt._C")
        except ImportError as exc:  # pragma: no cover - only on a broken install
            raise ImportError(
                "rgpt_rt's native module rgpt_rt._C is missing: the package was not built. "
                "Install it with `pip install .` from a checkout (this compiles the C++ core with CMake)."
            ) from exc
    return _cache["_C"]  # type: ignore[return-value]


def cuda() -> ModuleType | None:
    """Return rgpt_rt._C_cuda, or None when the package was built without CUDA."""
    if "_C_cuda" not in _cache:
        try:
            _cache["_C_cuda"] = importlib.import_module("rgpt_rt._C_cuda")
        except ImportError:
            _cache["_C_cuda"] = None
    return _cache["_C_cuda"]
