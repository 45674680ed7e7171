"""Lazy access to the native modules rgpt_rt._C (CPU, always built) and rgpt_rt._C_cuda (optional)."""

from __future__ import annotations

import importlib
import importlib.machinery
import sys
from pathlib import Path
from types import ModuleType

_cache: dict[str, ModuleType | None] = {}

_DEV_BUILD = "pip install --no-build-isolation -e ."


def _built_module(package_dir: Path) -> Path | None:
    """The compiled rgpt_rt._C file inside `package_dir`, or None."""
    try:
        for f in package_dir.iterdir():
            if f.name.startswith("_C.") and any(f.name.endswith(s) for s in importlib.machinery.EXTENSION_SUFFIXES):
                return f
    except OSError:
        pass
    return None


def _shadowed_copy(here: Path) -> Path | None:
    """A built rgpt_rt package elsewhere on sys.path that the package at `here` hides, or None."""
    for entry in sys.path:
        try:
            cand = (Path(entry or ".") / "rgpt_rt").resolve()
        except OSError:
            continue
        if cand != here and _built_module(cand) is not None:
            return cand
    return None


def missing_module_message(exc: BaseException | None = None) -> str:
    """Why rgpt_rt._C cannot be imported, and what to do, for the package this file belongs to."""
    here = Path(__file__).resolve().parent
    built = _built_module(here)
    if built is not None:  # the file is there but does not load: wrong Python, missing library, ...
        return (
            f"rgpt_rt's native module {built} failed to load ({exc}); rebuild it for this Python with "
            "`pip install .` from the checkout"
        )
    source_tree = (here.parent / "pyproject.toml").is_file() and (here.parent / "csrc").is_dir()
    if source_tree:
        other = _shadowed_copy(here)
        if other is not None:
            return (
                f"rgpt_rt was imported from the source tree at {here}, which is not built, and it shadows the "
                f"installed copy at {other} (the checkout root comes first on sys.path under `python -m` or "
                f"`python -c` run from it). Run from another directory (the README's `pytest -q tests` works from "
                f"the checkout root), or build in place for development: `{_DEV_BUILD}`"
            )
        return (
            f"rgpt_rt was imported from the source tree at {here}, which is not built: install it with "
            f"`pip install .` and run from another directory, or build in place for development: `{_DEV_BUILD}`"
        )
    return (
        f"rgpt_rt's native module rgpt_rt._C is missing from {here}: the package was not built. "
        "Install it with `pip install .` from a checkout (this compiles the C++ core with CMake)."
    )


def cpu() -> ModuleType:
    """Return rgpt_rt._C, or raise ImportError saying why it is missing and how to build it."""
    if "_C" not in _cache:
        try:
            _cache["_C"] = importlib.import_module("rgpt_rt._C")
        except ImportError as exc:
            raise ImportError(missing_module_message(exc)) from exc
    return _cache["_C"]  # type: ignore[return-value]


def cuda() -> ModuleType | None:
    """Return rgpt_rt._C_cuda, or None when the package was built without CUDA."""
    if "_C_cuda" not in _cache:
        try:
            _cache["_C_cuda"] = importlib.import_module("rgpt_rt._C_cuda")
        except ImportError:
            _cache["_C_cuda"] = None
    return _cache["_C_cuda"]
