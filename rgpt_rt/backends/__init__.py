"""Backends behind Runtime: torch today; onnx and trt share the same contract (base.Backend)."""

from __future__ import annotations

import logging
from pathlib import Path

from .base import Backend

log = logging.getLogger("rgpt_rt")

BACKENDS = ("auto", "torch")


def open_backend(path: str | Path, backend: str = "auto", device: str = "cpu", dtype: str | None = None) -> Backend:
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend '{backend}'; available: {', '.join(BACKENDS)}")
    if backend == "auto":
        backend = "torch"
        log.info("backend='auto' chose torch on %s (the only backend for checkpoint directories)", device)
    from .torch_backend import TorchBackend

    return TorchBackend(path, device=device, dtype=dtype)


__all__ = ["BACKENDS", "Backend", "open_backend"]
