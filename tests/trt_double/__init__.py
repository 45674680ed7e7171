"""Test doubles of TensorRT and cuda-python (tests only; never part of the package).

install(monkeypatch) puts fake `tensorrt` and `cuda.bindings.runtime` modules into sys.modules, so that
build_engine/trt_builder.py and rgpt_rt/backends/trt_backend.py run unchanged on a machine without either,
and serves rgpt_rt's CUDA-module calls (rgpt_rt._native.cuda()) on host memory, in stream order.
"""

from __future__ import annotations

import sys
from types import ModuleType

from . import cudart
from . import tensorrt as tensorrt_double


class HostOps:
    """rgpt_rt._C_cuda as the trt backend sees it, served on the double's host "device" memory.

    Every call first runs the work queued on the double's streams (a native op runs in stream order after
    the copies and engine executions before it), then checks that each tensor description lies inside one
    live allocation, then calls rgpt_rt._C with the same arguments: the CPU module takes the CUDA module's
    call form, so a caller passing the wrong form fails here exactly as it would on a GPU.
    """

    def __init__(self, device: cudart.Device):
        from rgpt_rt import _native

        self.device, self.cpu = device, _native.cpu()

    def _check(self, desc, what: str) -> None:
        if isinstance(desc, tuple) and len(desc) == 5 and isinstance(desc[1], str):
            ptr, dtype, shape, _, extent = desc  # the op stays inside `extent`: it must lie inside the allocation
            size = {"f32": 4, "f16": 2, "bf16": 2, "u8": 1, "i8": 1, "i64": 8}.get(dtype, 1)
            if all(d > 0 for d in shape):
                self.device.check_range(int(ptr), int(extent) * size, what)

    def __getattr__(self, name: str):
        fn = getattr(self.cpu, name)

        def call(*args, **kwargs):
            self.device.flush()
            for i, a in enumerate(args):
                self._check(a, f"{name} argument {i}")
            if kwargs.get("workspace_bytes"):
                self.device.check_range(int(kwargs["workspace"]), int(kwargs["workspace_bytes"]), f"{name} workspace")
            self.device.launches += 1
            return fn(*args, **kwargs)

        return call


def install(monkeypatch, device: cudart.Device | None = None) -> cudart.Device:
    """Make `import tensorrt` and `from cuda.bindings import runtime` give the doubles (undone by monkeypatch)."""
    dev = cudart.reset(device)
    cuda_pkg, bindings = ModuleType("cuda"), ModuleType("cuda.bindings")
    cuda_pkg.__path__, bindings.__path__ = [], []
    cuda_pkg.bindings, bindings.runtime = bindings, cudart
    for name, mod in (
        ("cuda", cuda_pkg),
        ("cuda.bindings", bindings),
        ("cuda.bindings.runtime", cudart),
        ("tensorrt", tensorrt_double),
    ):
        monkeypatch.setitem(sys.modules, name, mod)
    from rgpt_rt import _native

    host = HostOps(dev)
    monkeypatch.setattr(_native, "cuda", lambda: host)
    return dev
