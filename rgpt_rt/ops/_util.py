"""Small helpers shared by the op wrappers."""

from __future__ import annotations

from typing import Any

import numpy as np

NUMPY_DTYPES = {np.dtype(np.float32): "f32", np.dtype(np.float16): "f16", np.dtype(np.uint8): "u8"}


def torch_op(name: str):
    """torch.ops.rgpt.<name>, registering the custom ops on first use (torch is imported only here)."""
    from ._torch_ops import register

    register()
    import torch

    return getattr(torch.ops.rgpt, name)


def is_torch(x: Any) -> bool:
    return type(x).__module__.startswith("torch") and hasattr(x, "data_ptr")


def as_numpy_input(x: np.ndarray, name: str) -> np.ndarray:
    """Positive strides are passed through as they are; negative ones (reversed views) are copied."""
    if not isinstance(x, np.ndarray):
        raise TypeError(f"{name} must be a numpy array or a torch tensor, got {type(x).__name__}")
    if any(s < 0 for s in x.strides):
        x = np.ascontiguousarray(x)
    return x


def dtype_code(x: np.ndarray, name: str, allowed: tuple[str, ...]) -> str:
    code = NUMPY_DTYPES.get(x.dtype)
    if code not in allowed:
        raise ValueError(f"{name} has dtype {x.dtype}; expected one of {', '.join(allowed)}")
    return code


SMALL_WORK = 2_000_000


def auto_threads(threads: int, work: int) -> int:
    """Small problems run on one thread: waking a thread pool costs more than it saves there, and torch's own
    OpenMP pool may be spinning on the other cores."""
    return 1 if threads == 0 and work < SMALL_WORK else threads
