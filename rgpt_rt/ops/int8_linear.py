"""rgpt_rt.ops.int8_linear: weight-only int8 linear layer (kernels/int8_linear*.{cu,cpp})."""

from __future__ import annotations

from typing import Any

import numpy as np

from .._native import cpu
from ._util import as_numpy_input, dtype_code, torch_op, uses_torch


def quantize_weight(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """float [N, K] -> int8 [N, K], scale f32 [N]: symmetric per output channel, scale = max|w[n]| / 127."""
    w = np.asarray(w, np.float32)
    scale = np.abs(w).max(axis=1) / 127.0
    scale[scale == 0] = 1.0
    return np.clip(np.rint(w / scale[:, None]), -127, 127).astype(np.int8), scale.astype(np.float32)


def int8_linear(x: Any, weight: Any, scale: Any, threads: int = 0):
    """y [M, N] = x [M, K] @ (weight [N, K] int8 * scale [N, 1]).T with fp32 accumulation, in x's dtype.

    numpy in -> numpy out; torch in -> torch out (CPU or CUDA, `torch.ops.rgpt.int8_linear`).
    """
    if uses_torch(x=x, weight=weight, scale=scale):
        return torch_op("int8_linear")(x, weight, scale)
    xa = as_numpy_input(x, "x")
    dtype_code(xa, "x", ("f32", "f16"))
    q = np.asarray(weight)
    if q.dtype != np.int8:
        raise ValueError(f"weight must be int8, got {q.dtype}")
    s = np.asarray(scale, np.float32)
    if xa.ndim != 2 or q.ndim != 2:
        raise ValueError(f"int8_linear expects x [M, K] and weight [N, K], got {xa.shape} and {q.shape}")
    if xa.ndim == 2 and xa.shape[1] > 1 and xa.strides[1] != xa.itemsize:
        xa = np.ascontiguousarray(xa)
    y = np.empty((xa.shape[0], q.shape[0]), xa.dtype)
    cpu().int8_linear(xa, np.ascontiguousarray(q), np.ascontiguousarray(s), y, threads=threads)
    return y
