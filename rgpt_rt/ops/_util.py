"""Small helpers shared by the op wrappers."""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

NUMPY_DTYPES = {np.dtype(np.float32): "f32", np.dtype(np.float16): "f16", np.dtype(np.uint8): "u8"}


class DeviceTensor(NamedTuple):
    """Memory the caller allocated itself (a CUDA allocation from cuda-python, say), described for a native op:
    the address, a dtype code ("f32", "f16", "bf16", "u8", "i8", "i64"), the shape, the strides in elements,
    and the extent: how many elements lie between `ptr` and the end of the allocation, which bounds every
    access the op makes. The native bindings take it as it is."""

    ptr: int
    dtype: str
    shape: tuple[int, ...]
    strides: tuple[int, ...]
    extent: int

    @classmethod
    def contiguous(cls, ptr: int, dtype: str, shape: tuple[int, ...], extent: int | None = None) -> DeviceTensor:
        """A row-major tensor at `ptr`; `extent` defaults to its element count (the allocation's end)."""
        shape = tuple(int(d) for d in shape)
        strides, step = [], 1
        for d in reversed(shape):
            strides.insert(0, step)
            step *= max(d, 1)
        numel = int(np.prod(shape)) if shape else 1
        return cls(int(ptr), dtype, shape, tuple(strides), numel if extent is None else int(extent))


def cuda_module():
    """rgpt_rt._C_cuda, or a RuntimeError saying how to get it."""
    from .. import _native

    mod = _native.cuda()
    if mod is None:
        raise RuntimeError(
            "this needs rgpt_rt._C_cuda, and this build has none (no nvcc at build time, or RGPT_CPU_ONLY); "
            "rebuild with a CUDA toolkit"
        )
    return mod


def torch_op(name: str):
    """torch.ops.rgpt.<name>, registering the custom ops on first use (torch is imported only here)."""
    from ._torch_ops import register

    register()
    import torch

    return getattr(torch.ops.rgpt, name)


def is_torch(x: Any) -> bool:
    return type(x).__module__.startswith("torch") and hasattr(x, "data_ptr")


def uses_torch(**tensors: Any) -> bool:
    """Whether an op's tensors (None = absent) are torch tensors (else numpy). Refuses what would give
    uninitialised or wrong outputs: numpy mixed with torch, tensors on different devices, and devices the
    native ops do not run on (a meta tensor, for one)."""
    given = {k: v for k, v in tensors.items() if v is not None}
    torch_names = [k for k, v in given.items() if is_torch(v)]
    if not torch_names:
        return False
    if len(torch_names) != len(given):
        others = ", ".join(k for k in given if k not in torch_names)
        raise TypeError(f"{others} must be torch tensors like {torch_names[0]} (numpy and torch cannot be mixed)")
    first = torch_names[0]
    for name in torch_names:
        dev = given[name].device
        if dev.type not in ("cpu", "cuda"):
            raise ValueError(f"{name} is on device {dev}; native ops run on cpu and cuda tensors")
        if dev != given[first].device:
            raise ValueError(f"{first} and {name} must be on the same device, got {given[first].device} and {dev}")
    return True


def positions(pos: Any, name: str = "pos") -> np.ndarray:
    """Integer positions as int64; floats (2.7 would silently become 2) and booleans are refused."""
    p = np.asarray(pos)
    if p.dtype.kind not in "iu":
        raise ValueError(f"{name} must hold integer positions, got dtype {p.dtype}")
    return np.ascontiguousarray(p, np.int64)


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
