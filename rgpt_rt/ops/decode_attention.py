"""rgpt_rt.ops.decode_attention: one query token per row against that row's KV cache, reading only the slots
inside its causal window (kernels/decode_attention*.{cu,cpp})."""

from __future__ import annotations

from typing import Any

import numpy as np

from .._native import cpu
from ._util import as_numpy_input, auto_threads, dtype_code, positions, torch_op, uses_torch


def decode_attention(q: Any, k_cache: Any, v_cache: Any, pos: Any, scale: float, shared: Any = None, threads: int = 0):
    """q [B, H, D], caches [Bc, Hkv, S, D], pos [B] int64 -> out [B, H, D]: softmax(scale q.k) v over the cache
    slots 0..pos[b] of row b; query head h reads kv head h // (H / Hkv). shared [B] int64 (optional): slots
    [0, shared[b]) of row b are read from row 0 (rows holding copies of one prefix; see the kernel header).

    numpy in -> numpy out; torch in -> torch out (CPU or CUDA) through `torch.ops.rgpt.decode_attention`.
    """
    if uses_torch(q=q, k_cache=k_cache, v_cache=v_cache, pos=pos, shared=shared):
        return torch_op("decode_attention")(q, k_cache, v_cache, pos, float(scale), shared)
    qa = as_numpy_input(q, "q")
    dtype_code(qa, "q", ("f32", "f16"))
    kc, vc = as_numpy_input(k_cache, "k_cache"), as_numpy_input(v_cache, "v_cache")
    dtype_code(kc, "k_cache", ("f32", "f16"))
    out = np.empty(qa.shape, qa.dtype)
    p = positions(pos)
    work = int(p.clip(0).sum() + p.size) * qa.shape[1] * qa.shape[-1] if qa.ndim == 3 else 0
    sh = None if shared is None else positions(shared, "shared")
    cpu().decode_attention(qa, kc, vc, p, out, float(scale), sh, threads=auto_threads(threads, work))
    return out
