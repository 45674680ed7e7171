"""rgpt_rt.ops.rms_norm: the decoder's RMSNorm, optionally fused with the residual add before it
(kernels/rms_norm*.{cu,cpp})."""

from __future__ import annotations

from typing import Any

import numpy as np

from .._native import cpu
from ._util import as_numpy_input, dtype_code, torch_op, uses_torch


def rms_norm(x: Any, weight: Any, eps: float = 1e-6, residual: Any = None, threads: int = 0):
    """y = weight * (h / sqrt(mean(h^2) + eps)) over the last axis, h = x (+ residual).

    Returns y, or (y, h) when `residual` is given (h being the new residual stream). x [..., D]; numpy in ->
    numpy out (f32, f16); torch in -> torch out (CPU or CUDA; f32, f16, bf16) through `torch.ops.rgpt.rms_norm`
    / `torch.ops.rgpt.rms_norm_residual`.
    """
    if uses_torch(x=x, weight=weight, residual=residual):
        if residual is None:
            return torch_op("rms_norm")(x, weight, eps)
        return torch_op("rms_norm_residual")(x, residual, weight, eps)
    xa = as_numpy_input(x, "x")
    dtype_code(xa, "x", ("f32", "f16"))
    if xa.ndim < 1:
        raise ValueError("x must have at least one dimension")
    shape = xa.shape
    x2 = np.ascontiguousarray(xa.reshape(-1, shape[-1]) if xa.ndim != 2 else xa)
    w = np.ascontiguousarray(np.asarray(weight, xa.dtype))
    y = np.empty(x2.shape, xa.dtype)
    if residual is None:
        cpu().rms_norm(x2, w, y, None, None, eps, threads=threads)
        return y.reshape(shape)
    r = np.asarray(residual)
    if r.shape != shape or r.dtype != xa.dtype:
        raise ValueError(f"residual must match x ({shape}, {xa.dtype}), got {r.shape}, {r.dtype}")
    h = np.empty_like(y)
    cpu().rms_norm(x2, w, y, np.ascontiguousarray(r.reshape(x2.shape)), h, eps, threads=threads)
    return y.reshape(shape), h.reshape(shape)
