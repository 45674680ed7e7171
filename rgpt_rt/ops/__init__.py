"""Native ops, one name through every layer: kernels/<op>.cu + kernels/<op>_cpu.cpp, bound once in
csrc/ops/bind_<op>.h (the same signature in rgpt_rt._C and rgpt_rt._C_cuda), exposed here. Each accepts numpy
arrays (CPU) and torch tensors (CPU and CUDA, on torch's current stream; all on one device); with torch, the ops
are registered as custom ops (`torch.ops.rgpt.<op>`) so CUDA graphs and torch.compile can capture them. Callers
that hold raw CUDA allocations (the trt backend) use the device-pointer entries (`region_pool_device`) with
`DeviceTensor` descriptions. Every backend calls native ops through this package, never a binding.
"""

from ._util import DeviceTensor
from .decode_attention import decode_attention
from .int8_linear import int8_linear, quantize_weight
from .preprocess_frame import preprocess_frame, preprocess_masks
from .region_pool import region_pool, region_pool_device, region_pool_workspace_bytes
from .rms_norm import rms_norm
from .rope_kv_write import rope_kv_write

__all__ = [
    "DeviceTensor",
    "decode_attention",
    "int8_linear",
    "preprocess_frame",
    "preprocess_masks",
    "quantize_weight",
    "region_pool",
    "region_pool_device",
    "region_pool_workspace_bytes",
    "rms_norm",
    "rope_kv_write",
]
