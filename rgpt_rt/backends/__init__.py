"""Backends behind Runtime, one contract (base.Backend): torch (checkpoint directories), onnx and trt
(engine directories from `python -m rgpt_rt.build`)."""

from __future__ import annotations

import logging
from pathlib import Path

from ..engine import is_engine_dir, read_manifest
from .base import Backend

log = logging.getLogger("rgpt_rt")

BACKENDS = ("auto", "torch", "onnx", "trt")


def _trt_usable() -> bool:
    try:
        import tensorrt  # noqa: F401
        from cuda.bindings import runtime as cudart

        err, n = cudart.cudaGetDeviceCount()
        return int(err) == 0 and n > 0
    except Exception:  # noqa: BLE001 - any failure means "not usable here"
        return False


def open_backend(
    path: str | Path,
    backend: str = "auto",
    device: str = "cpu",
    dtype: str | None = None,
    verify: bool = True,
    precision: str | None = None,
    decode: str | None = None,
) -> Backend:
    """Pick and open a backend. auto: trt for a trt engine directory on a usable GPU, else onnx for engine
    directories; torch for checkpoint directories. decode: the torch backend's decode step ("fused",
    "reference" or "compile"; default fused on CUDA, reference on the CPU)."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend '{backend}'; available: {', '.join(BACKENDS)}")
    engine = is_engine_dir(path)
    if backend == "auto":
        if engine:
            built_trt = read_manifest(path, verify=False).backend == "trt"
            backend = "trt" if built_trt and _trt_usable() else "onnx"
        else:
            backend = "torch"
        log.info("backend='auto' chose %s for %s", backend, path)
    if backend == "torch":
        if engine:
            raise ValueError(
                f"{path} is an engine directory; the torch backend loads checkpoint directories "
                "(use backend='onnx' or 'trt' for engines)"
            )
        from .torch_backend import TorchBackend

        return TorchBackend(path, device=device, dtype=dtype, precision=precision, decode=decode)
    if decode is not None:
        raise ValueError(f"decode= selects the torch backend's decode step; the {backend} backend has its own")
    if not engine:
        raise ValueError(
            f"backend='{backend}' needs an engine directory, and {path} has no manifest.json; "
            f"build one with: python -m rgpt_rt.build {path} --out ENGINES"
        )
    if backend == "onnx":
        from .onnx_backend import OnnxBackend

        return OnnxBackend(path, device=device, verify=verify)
    from .trt_backend import TrtBackend

    return TrtBackend(path, verify=verify)


__all__ = ["BACKENDS", "Backend", "open_backend"]
