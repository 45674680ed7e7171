"""rgpt_rt.ops.rope_kv_write: rotary embedding of a decode step's q and k fused with the KV-cache write
(kernels/rope_kv_write*.{cu,cpp})."""

from __future__ import annotations

from typing import Any

import numpy as np

from .._native import cpu
from ._util import as_numpy_input, dtype_code, positions, torch_op, uses_torch


def rope_kv_write(q: Any, k: Any, v: Any, pos: Any, inv_freq: Any, k_cache: Any, v_cache: Any, threads: int = 0):
    """q [B, H, D], k, v [B, Hkv, D], pos [B] int64, inv_freq [D/2] f32, caches [Bc, Hkv, S, D] (written in
    place at slot pos[b] of row b: rotated k, and v) -> rotated q [B, H, D].

    numpy in -> numpy out (the caches must be writable contiguous arrays); torch in -> torch out (CPU or CUDA)
    through `torch.ops.rgpt.rope_kv_write`, which declares the caches as mutated.
    """
    if uses_torch(q=q, k=k, v=v, pos=pos, inv_freq=inv_freq, k_cache=k_cache, v_cache=v_cache):
        return torch_op("rope_kv_write")(q, k, v, pos, inv_freq, k_cache, v_cache)
    qa = as_numpy_input(q, "q")
    dtype_code(qa, "q", ("f32", "f16"))
    ka, va = as_numpy_input(k, "k"), as_numpy_input(v, "v")
    for name, arr in (("k_cache", k_cache), ("v_cache", v_cache)):
        if not isinstance(arr, np.ndarray):
            raise TypeError(f"{name} must be a numpy array (written in place)")
    dtype_code(k_cache, "k_cache", ("f32", "f16"))
    out = np.empty(qa.shape, qa.dtype)
    inv = np.ascontiguousarray(inv_freq, np.float32)
    cpu().rope_kv_write(qa, ka, va, positions(pos), inv, out, k_cache, v_cache, threads=threads)
    return out
