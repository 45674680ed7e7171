"""A test double of the part of cuda-python's `cuda.bindings.runtime` that rgpt_rt uses, on host memory.

"Device memory" is host memory: cudaMalloc returns the address of a numpy buffer this module keeps alive, and
every copy or kernel checks that the device side of it lies inside one live allocation (what
compute-sanitizer would report on a GPU). Streams are queues: asynchronous work (copies, memsets, TensorRT
executions) runs in order when the stream is synchronised, so a caller that reads a result before
synchronising sees stale memory, as it could on a GPU. Every function returns cuda-python's tuple
(error, *values).
"""

from __future__ import annotations

import ctypes
import enum
from collections.abc import Callable
from types import SimpleNamespace

import numpy as np


class cudaError_t(enum.IntEnum):  # noqa: N801 - cuda-python's names
    cudaSuccess = 0
    cudaErrorInvalidValue = 1
    cudaErrorMemoryAllocation = 2
    cudaErrorInvalidDevicePointer = 17
    cudaErrorInvalidResourceHandle = 400


class cudaMemcpyKind(enum.IntEnum):  # noqa: N801
    cudaMemcpyHostToHost = 0
    cudaMemcpyHostToDevice = 1
    cudaMemcpyDeviceToHost = 2
    cudaMemcpyDeviceToDevice = 3
    cudaMemcpyDefault = 4


class cudaStream_t:  # noqa: N801
    """A stream handle: int(stream) is the cudaStream_t value, as in cuda-python."""

    def __init__(self, value: int):
        self._value = value

    def __int__(self) -> int:
        return self._value

    def getPtr(self) -> int:  # noqa: N802
        return self._value


class DeviceError(AssertionError):
    """A memory access outside every live allocation: on a GPU, a crash or silent corruption."""


class Device:
    """The state of the one fake GPU: allocations and streams."""

    def __init__(self, major: int = 9, minor: int = 0, name: bytes = b"rgpt_rt test double GPU"):
        self.props = SimpleNamespace(major=major, minor=minor, name=name, totalGlobalMem=1 << 34)
        self.allocs: dict[int, np.ndarray] = {}
        self.streams: dict[int, list[Callable[[], None]]] = {0: []}
        self.pinned: dict[int, np.ndarray] = {}
        self.events, self.recorded = 0, {}
        self.launches = 0

    # ---- memory --------------------------------------------------------------------------------------------

    def check_range(self, ptr: int, nbytes: int, what: str) -> None:
        """Raise DeviceError unless [ptr, ptr + nbytes) lies inside one live allocation."""
        if nbytes == 0:
            return
        for base, buf in self.allocs.items():
            if base <= ptr < base + buf.nbytes:
                if ptr + nbytes > base + buf.nbytes:
                    raise DeviceError(
                        f"{what}: {nbytes} bytes at offset {ptr - base} overrun an allocation of {buf.nbytes} bytes"
                    )
                return
        raise DeviceError(f"{what}: address {ptr:#x} is not inside any live device allocation")

    def is_device(self, ptr: int) -> bool:
        return any(base <= ptr < base + buf.nbytes for base, buf in self.allocs.items())

    def view(self, ptr: int, nbytes: int, what: str) -> np.ndarray:
        """uint8 view of device memory (bounds-checked)."""
        self.check_range(ptr, nbytes, what)
        if nbytes == 0:
            return np.empty(0, np.uint8)
        return np.ctypeslib.as_array((ctypes.c_uint8 * nbytes).from_address(ptr))

    # ---- streams -------------------------------------------------------------------------------------------

    def enqueue(self, stream, work: Callable[[], None]) -> cudaError_t:
        key = int(stream)
        if key not in self.streams:
            return cudaError_t.cudaErrorInvalidResourceHandle
        self.streams[key].append(work)
        return cudaError_t.cudaSuccess

    def flush(self, stream=None) -> None:
        keys = list(self.streams) if stream is None else [int(stream)]
        for key in keys:
            queue = self.streams[key]
            while queue:
                queue.pop(0)()


DEVICE = Device()


def reset(device: Device | None = None) -> Device:
    global DEVICE
    DEVICE = device or Device()
    return DEVICE


def _copy(dst: int, src: int, count: int, kind) -> None:
    kind = cudaMemcpyKind(int(kind))
    dev = DEVICE
    if kind in (cudaMemcpyKind.cudaMemcpyHostToDevice, cudaMemcpyKind.cudaMemcpyDeviceToDevice):
        dev.check_range(int(dst), count, "cudaMemcpy destination")
    if kind in (cudaMemcpyKind.cudaMemcpyDeviceToHost, cudaMemcpyKind.cudaMemcpyDeviceToDevice):
        dev.check_range(int(src), count, "cudaMemcpy source")
    if kind == cudaMemcpyKind.cudaMemcpyHostToDevice and dev.is_device(int(src)):
        raise DeviceError("cudaMemcpyHostToDevice from a device address")
    if kind == cudaMemcpyKind.cudaMemcpyDeviceToHost and dev.is_device(int(dst)):
        raise DeviceError("cudaMemcpyDeviceToHost to a device address")
    if count:
        ctypes.memmove(int(dst), int(src), count)


def cudaMalloc(size: int):  # noqa: N802
    if size < 0:
        return (cudaError_t.cudaErrorInvalidValue, 0)
    buf = np.full(max(int(size), 1), 0xA5, np.uint8)  # garbage, not zeros: nothing may rely on fresh memory
    ptr = buf.ctypes.data
    DEVICE.allocs[ptr] = buf
    return (cudaError_t.cudaSuccess, ptr)


def cudaFree(ptr):  # noqa: N802
    if int(ptr) == 0:
        return (cudaError_t.cudaSuccess,)
    if DEVICE.allocs.pop(int(ptr), None) is None:
        return (cudaError_t.cudaErrorInvalidDevicePointer,)
    return (cudaError_t.cudaSuccess,)


def cudaMallocHost(size: int):  # noqa: N802 - pinned host memory: host memory that is not a device allocation
    buf = np.full(max(int(size), 1), 0xA5, np.uint8)
    DEVICE.pinned[buf.ctypes.data] = buf
    return (cudaError_t.cudaSuccess, buf.ctypes.data)


def cudaFreeHost(ptr):  # noqa: N802
    found = DEVICE.pinned.pop(int(ptr), None) is not None
    return (cudaError_t.cudaSuccess if found else cudaError_t.cudaErrorInvalidValue,)


class cudaEvent_t(cudaStream_t):  # noqa: N801
    pass


def cudaEventCreate():  # noqa: N802
    DEVICE.events += 1
    return (cudaError_t.cudaSuccess, cudaEvent_t(DEVICE.events))


def cudaEventRecord(event, stream):  # noqa: N802
    DEVICE.recorded[int(event)] = int(stream)
    return (DEVICE.enqueue(stream, lambda: None),)


def cudaEventSynchronize(event):  # noqa: N802 - waits for the work queued before the event's record
    if int(event) in DEVICE.recorded:
        DEVICE.flush(DEVICE.recorded[int(event)])
    return (cudaError_t.cudaSuccess,)


def cudaEventDestroy(event):  # noqa: N802
    DEVICE.recorded.pop(int(event), None)
    return (cudaError_t.cudaSuccess,)


def cudaMemcpyAsync(dst, src, count, kind, stream):  # noqa: N802
    return (DEVICE.enqueue(stream, lambda: _copy(int(dst), int(src), int(count), kind)),)


def _copy_2d(dst: int, dpitch: int, src: int, spitch: int, width: int, height: int, kind) -> None:
    if width > dpitch or width > spitch:
        raise DeviceError(f"cudaMemcpy2D: width {width} exceeds a pitch ({dpitch}, {spitch})")
    for row in range(height):
        _copy(dst + row * dpitch, src + row * spitch, width, kind)


def cudaMemcpy2DAsync(dst, dpitch, src, spitch, width, height, kind, stream):  # noqa: N802
    args = (int(dst), int(dpitch), int(src), int(spitch), int(width), int(height))
    return (DEVICE.enqueue(stream, lambda: _copy_2d(*args, kind)),)


def cudaMemcpy(dst, src, count, kind):  # noqa: N802
    DEVICE.flush()
    _copy(int(dst), int(src), int(count), kind)
    return (cudaError_t.cudaSuccess,)


def _memset(ptr: int, value: int, count: int) -> None:
    DEVICE.view(ptr, count, "cudaMemset")[:] = value & 0xFF


def cudaMemsetAsync(ptr, value, count, stream):  # noqa: N802
    return (DEVICE.enqueue(stream, lambda: _memset(int(ptr), int(value), int(count))),)


def cudaMemset(ptr, value, count):  # noqa: N802
    DEVICE.flush()
    _memset(int(ptr), int(value), int(count))
    return (cudaError_t.cudaSuccess,)


def cudaStreamCreate():  # noqa: N802
    key = max(DEVICE.streams) + 0x1000
    DEVICE.streams[key] = []
    return (cudaError_t.cudaSuccess, cudaStream_t(key))


def cudaStreamSynchronize(stream):  # noqa: N802
    if int(stream) not in DEVICE.streams:
        return (cudaError_t.cudaErrorInvalidResourceHandle,)
    DEVICE.flush(stream)
    return (cudaError_t.cudaSuccess,)


def cudaStreamDestroy(stream):  # noqa: N802
    if int(stream) == 0 or int(stream) not in DEVICE.streams:
        return (cudaError_t.cudaErrorInvalidResourceHandle,)
    DEVICE.flush(stream)
    del DEVICE.streams[int(stream)]
    return (cudaError_t.cudaSuccess,)


def cudaDeviceSynchronize():  # noqa: N802
    DEVICE.flush()
    return (cudaError_t.cudaSuccess,)


def cudaGetDeviceCount():  # noqa: N802
    return (cudaError_t.cudaSuccess, 1)


def cudaGetDeviceProperties(device: int):  # noqa: N802
    if int(device) != 0:
        return (cudaError_t.cudaErrorInvalidValue, None)
    return (cudaError_t.cudaSuccess, DEVICE.props)


def cudaSetDevice(device: int):  # noqa: N802
    return (cudaError_t.cudaSuccess if int(device) == 0 else cudaError_t.cudaErrorInvalidValue,)
