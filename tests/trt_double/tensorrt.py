"""A test double of the part of the TensorRT 10 Python API that rgpt_rt's builder and trt backend use.

Building: Builder / OnnxParser / IBuilderConfig / IOptimizationProfile record the ONNX graph and the shape
profiles and check them the way TensorRT does (every dynamic input needs min <= opt <= max in every profile,
static dimensions must match); the "serialized engine" is this double's own format: a header (tensors,
profiles) followed by the ONNX bytes. Running: the engine's execution context runs that graph with ONNX
Runtime on host memory at the addresses given with set_tensor_address, enqueued on the stream passed to
execute_async_v3 (see cudart.py), after TensorRT's checks: set_input_shape refuses (returns False) a shape
outside the active optimisation profile, every I/O tensor needs an address, and every read and write must lie
inside a live allocation.
"""

from __future__ import annotations

import enum
import json
import struct
from pathlib import Path

import numpy as np

from . import cudart

__version__ = "10.8.0.43"

MAGIC = b"RGPT-TRT-DOUBLE\x00"


class Logger:
    INTERNAL_ERROR, ERROR, WARNING, INFO, VERBOSE = range(5)

    def __init__(self, min_severity: int = 2):
        self.min_severity = min_severity
        self.messages: list[str] = []

    def log(self, severity: int, msg: str) -> None:
        self.messages.append(msg)


class DataType(enum.IntEnum):
    FLOAT = 0
    HALF = 1
    INT8 = 2
    INT32 = 3
    BOOL = 4
    UINT8 = 5
    BF16 = 7
    INT64 = 8


class TensorIOMode(enum.IntEnum):
    NONE = 0
    INPUT = 1
    OUTPUT = 2


class NetworkDefinitionCreationFlag(enum.IntEnum):
    STRONGLY_TYPED = 1


_ONNX_TO_TRT = {1: DataType.FLOAT, 10: DataType.HALF, 3: DataType.INT8, 6: DataType.INT32, 7: DataType.INT64,
                9: DataType.BOOL, 2: DataType.UINT8, 16: DataType.BF16}  # fmt: skip
_NUMPY = {DataType.FLOAT: np.float32, DataType.HALF: np.float16, DataType.INT8: np.int8, DataType.INT32: np.int32,
          DataType.INT64: np.int64, DataType.BOOL: np.bool_, DataType.UINT8: np.uint8}  # fmt: skip


def nptype(dtype: DataType):
    """TensorRT's own helper: the numpy type of a DataType."""
    return _NUMPY[DataType(dtype)]


# ---- building ------------------------------------------------------------------------------------------------


class ITensor:
    def __init__(self, name: str, shape: tuple[int, ...], dtype: DataType):
        self.name, self.shape, self.dtype = name, shape, dtype


class INetworkDefinition:
    def __init__(self, flags: int):
        self.flags = flags
        self.onnx: bytes | None = None
        self.inputs: list[ITensor] = []
        self.outputs: list[ITensor] = []

    @property
    def num_inputs(self) -> int:
        return len(self.inputs)

    @property
    def num_outputs(self) -> int:
        return len(self.outputs)

    def get_input(self, i: int) -> ITensor:
        return self.inputs[i]

    def get_output(self, i: int) -> ITensor:
        return self.outputs[i]


class OnnxParser:
    def __init__(self, network: INetworkDefinition, logger: Logger):
        self.network, self.logger = network, logger
        self.errors: list[str] = []

    @property
    def num_errors(self) -> int:
        return len(self.errors)

    def get_error(self, i: int) -> str:
        return self.errors[i]

    def parse_from_file(self, path: str) -> bool:
        try:
            return self.parse(Path(path).read_bytes())
        except OSError as exc:
            self.errors.append(str(exc))
            return False

    def parse(self, model: bytes, path: str | None = None) -> bool:
        import onnx

        try:
            proto = onnx.load_from_string(model)
            onnx.checker.check_model(proto)
        except Exception as exc:  # noqa: BLE001 - TensorRT reports parse failures as errors, not exceptions
            self.errors.append(f"ONNX parse error: {exc}")
            return False

        def tensors(values, skip=()):
            out = []
            for v in values:
                if v.name in skip:
                    continue
                dims = tuple(d.dim_value if d.HasField("dim_value") else -1 for d in v.type.tensor_type.shape.dim)
                out.append(ITensor(v.name, dims, _ONNX_TO_TRT[v.type.tensor_type.elem_type]))
            return out

        initializers = {i.name for i in proto.graph.initializer}
        self.network.inputs = tensors(proto.graph.input, initializers)
        self.network.outputs = tensors(proto.graph.output)
        self.network.onnx = model
        return True


class IOptimizationProfile:
    def __init__(self):
        self.shapes: dict[str, tuple[tuple[int, ...], ...]] = {}

    def set_shape(self, name: str, min, opt, max) -> None:  # noqa: A002 - TensorRT's parameter names
        self.shapes[name] = (tuple(int(d) for d in min), tuple(int(d) for d in opt), tuple(int(d) for d in max))

    def get_shape(self, name: str):
        return [list(s) for s in self.shapes[name]]


class IBuilderConfig:
    def __init__(self):
        self.profiles: list[IOptimizationProfile] = []

    def add_optimization_profile(self, profile: IOptimizationProfile) -> int:
        self.profiles.append(profile)
        return len(self.profiles) - 1

    @property
    def num_optimization_profiles(self) -> int:
        return len(self.profiles)


class Builder:
    def __init__(self, logger: Logger):
        self.logger = logger

    def create_network(self, flags: int = 0) -> INetworkDefinition:
        return INetworkDefinition(flags)

    def create_builder_config(self) -> IBuilderConfig:
        return IBuilderConfig()

    def create_optimization_profile(self) -> IOptimizationProfile:
        return IOptimizationProfile()

    def _profile_error(self, network: INetworkDefinition, config: IBuilderConfig) -> str | None:
        dynamic = [t for t in network.inputs if -1 in t.shape]
        if dynamic and not config.profiles:
            return "network has dynamic inputs but no optimization profile"
        for k, prof in enumerate(config.profiles):
            for name in prof.shapes:
                if name not in {t.name for t in network.inputs}:
                    return f"profile {k} names {name}, which is not an input of the network"
            for t in network.inputs:
                if t.name not in prof.shapes:
                    if -1 in t.shape:
                        return f"profile {k} has no shape for the dynamic input {t.name}"
                    continue
                lo, opt, hi = prof.shapes[t.name]
                if not (len(lo) == len(opt) == len(hi) == len(t.shape)):
                    return f"profile {k}: rank of {t.name}'s shapes differs from the network's {t.shape}"
                for d, a, b, c in zip(t.shape, lo, opt, hi):
                    if not 0 <= a <= b <= c:
                        return f"profile {k}: {t.name} needs 0 <= min <= opt <= max, got {lo}, {opt}, {hi}"
                    if d != -1 and not a == b == c == d:
                        return f"profile {k}: {t.name} has static dimension {d}, profile gives {lo}..{hi}"
        return None

    def build_serialized_network(self, network: INetworkDefinition, config: IBuilderConfig) -> bytes | None:
        if network.onnx is None:
            self.logger.log(Logger.ERROR, "empty network")
            return None
        error = self._profile_error(network, config)
        if error is not None:
            self.logger.log(Logger.ERROR, error)
            return None
        header = {
            "version": __version__,
            "strongly_typed": bool(network.flags & (1 << int(NetworkDefinitionCreationFlag.STRONGLY_TYPED))),
            "inputs": [[t.name, list(t.shape), int(t.dtype)] for t in network.inputs],
            "outputs": [[t.name, list(t.shape), int(t.dtype)] for t in network.outputs],
            "profiles": [{n: [list(s) for s in shapes] for n, shapes in p.shapes.items()} for p in config.profiles]
            or [{}],
        }
        head = json.dumps(header).encode()
        return MAGIC + struct.pack("<I", len(head)) + head + network.onnx


# ---- running -------------------------------------------------------------------------------------------------


class Runtime:
    def __init__(self, logger: Logger):
        self.logger = logger

    def deserialize_cuda_engine(self, blob: bytes) -> ICudaEngine | None:
        blob = bytes(blob)
        if not blob.startswith(MAGIC):
            self.logger.log(Logger.ERROR, "not a serialized engine")
            return None
        (n,) = struct.unpack_from("<I", blob, len(MAGIC))
        start = len(MAGIC) + 4
        header = json.loads(blob[start : start + n])
        if header["version"] != __version__:
            self.logger.log(Logger.ERROR, f"engine built with TensorRT {header['version']}")
            return None
        return ICudaEngine(header, blob[start + n :])


class ICudaEngine:
    def __init__(self, header: dict, onnx_bytes: bytes):
        import onnxruntime as ort

        self.header = header
        self.session = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
        self.tensors: dict[str, tuple[TensorIOMode, tuple[int, ...], DataType]] = {}
        for mode, key in ((TensorIOMode.INPUT, "inputs"), (TensorIOMode.OUTPUT, "outputs")):
            for name, shape, dtype in header[key]:
                self.tensors[name] = (mode, tuple(shape), DataType(dtype))
        self.names = list(self.tensors)
        self.profiles = header["profiles"]

    @property
    def num_io_tensors(self) -> int:
        return len(self.names)

    @property
    def num_optimization_profiles(self) -> int:
        return len(self.profiles)

    def get_tensor_name(self, i: int) -> str:
        return self.names[i]

    def get_tensor_mode(self, name: str) -> TensorIOMode:
        return self.tensors[name][0] if name in self.tensors else TensorIOMode.NONE

    def get_tensor_shape(self, name: str) -> tuple[int, ...]:
        return self.tensors[name][1]

    def get_tensor_dtype(self, name: str) -> DataType:
        return self.tensors[name][2]

    def get_tensor_profile_shape(self, name: str, profile_index: int):
        return [list(s) for s in self.profiles[profile_index][name]]

    def create_execution_context(self) -> IExecutionContext:
        return IExecutionContext(self)


class IExecutionContext:
    def __init__(self, engine: ICudaEngine):
        self.engine = engine
        self.active_optimization_profile = 0
        self.shapes: dict[str, tuple[int, ...]] = {}
        self.addresses: dict[str, int] = {}

    def set_optimization_profile_async(self, profile_index: int, stream_handle: int) -> bool:
        if not 0 <= profile_index < self.engine.num_optimization_profiles:
            return False
        if profile_index != self.active_optimization_profile:
            self.shapes = {}  # input shapes must be set again for the new profile
        self.active_optimization_profile = profile_index
        return True

    def set_input_shape(self, name: str, shape) -> bool:
        if self.engine.get_tensor_mode(name) != TensorIOMode.INPUT:
            return False
        shape = tuple(int(d) for d in shape)
        static = self.engine.get_tensor_shape(name)
        if len(shape) != len(static) or any(s != -1 and s != d for s, d in zip(static, shape)):
            return False
        if -1 in static:
            prof = self.engine.profiles[self.active_optimization_profile].get(name)
            if prof is None:
                return False
            lo, _, hi = prof
            if any(not a <= d <= b for a, d, b in zip(lo, shape, hi)):
                return False
        self.shapes[name] = shape
        return True

    def set_tensor_address(self, name: str, memory: int) -> bool:
        if name not in self.engine.tensors:
            return False
        self.addresses[name] = int(memory)
        return True

    def get_tensor_shape(self, name: str) -> tuple[int, ...]:
        """An input's shape as set; an output's shape for the inputs' current shapes (-1s while unknown)."""
        eng = self.engine
        if eng.get_tensor_mode(name) == TensorIOMode.INPUT:
            return self._input_shape(name) or eng.get_tensor_shape(name)
        if -1 not in eng.get_tensor_shape(name) or self.infer_shapes():
            return eng.get_tensor_shape(name)
        feeds = {n: np.zeros(self._input_shape(n), nptype(eng.get_tensor_dtype(n))) for n in eng.names
                 if eng.get_tensor_mode(n) == TensorIOMode.INPUT}  # fmt: skip
        return tuple(eng.session.run([name], feeds)[0].shape)

    def get_tensor_address(self, name: str) -> int:
        return self.addresses.get(name, 0)

    def _input_shape(self, name: str) -> tuple[int, ...] | None:
        static = self.engine.get_tensor_shape(name)
        return static if -1 not in static else self.shapes.get(name)

    def infer_shapes(self) -> list[str]:
        """Names of the inputs whose shape is still unknown (TensorRT's all_input_dimensions_specified)."""
        return [n for n in self.engine.names if self.engine.get_tensor_mode(n) == TensorIOMode.INPUT
                and self._input_shape(n) is None]  # fmt: skip

    @property
    def all_input_dimensions_specified(self) -> bool:
        return not self.infer_shapes()

    def execute_async_v3(self, stream_handle: int) -> bool:
        eng, dev = self.engine, cudart.DEVICE
        if self.infer_shapes():
            return False
        inputs = {}
        for name in eng.names:
            if name not in self.addresses:
                return False  # TensorRT: "address is not set for tensor <name>"
            if eng.get_tensor_mode(name) == TensorIOMode.INPUT:
                inputs[name] = (self._input_shape(name), self.addresses[name])
        outputs = {n: self.addresses[n] for n in eng.names if eng.get_tensor_mode(n) == TensorIOMode.OUTPUT}

        def run() -> None:  # addresses and shapes as they were at enqueue time
            feeds = {}
            for name, (shape, ptr) in inputs.items():
                dt = np.dtype(nptype(eng.get_tensor_dtype(name)))
                nbytes = int(np.prod(shape)) * dt.itemsize
                feeds[name] = dev.view(ptr, nbytes, f"input {name}").view(dt).reshape(shape).copy()
            results = eng.session.run(list(outputs), feeds)
            for (name, ptr), value in zip(outputs.items(), results):
                value = np.ascontiguousarray(value, nptype(eng.get_tensor_dtype(name)))
                dev.view(ptr, value.nbytes, f"output {name}")[:] = value.reshape(-1).view(np.uint8)
            dev.launches += 1

        return dev.enqueue(stream_handle, run) == cudart.cudaError_t.cudaSuccess
