"""rgpt_rt: an edge inference runtime for region-level vision-language models (RegionGPT family).

`import rgpt_rt` needs only numpy, pillow and tokenizers; torch is imported by the torch backend and the
reference model (`rgpt_rt.model`) only.
"""

from __future__ import annotations

from typing import Any

from . import assets, errors
from ._native import cpu as _cpu
from ._native import cuda as _cuda
from .chat import Chat
from .generation import GenerationConfig, GenerationResult, Timings
from .inputs import Box, Polygon
from .runtime import Runtime

__version__ = "0.1.0"

__all__ = [
    "Box",
    "Chat",
    "GenerationConfig",
    "GenerationResult",
    "Polygon",
    "Runtime",
    "Timings",
    "__version__",
    "assets",
    "build_info",
    "errors",
]


def build_info() -> dict[str, Any]:
    """Say what was built: the CPU module always, the CUDA module when nvcc was found at build time.

    Returns a dict with `version`, `compiler`, `cxx_standard`, `target_arch`, `cuda` (bool),
    `cuda_archs` (list of SM numbers), `cuda_compiler`, and, when CUDA was built, `cuda_runtime`
    (the statically linked runtime's version) and `cuda_devices` (visible GPUs, 0 without a driver).
    """
    cpu_info = dict(_cpu().build_info())
    info: dict[str, Any] = {
        "version": cpu_info["version"],
        "compiler": cpu_info["compiler"],
        "cxx_standard": cpu_info["cxx_standard"],
        "target_arch": cpu_info["target_arch"],
        "cuda": False,
        "cuda_archs": [],
        "cuda_compiler": "",
    }
    mod = _cuda()
    if mod is not None:
        cu = dict(mod.build_info())
        info["cuda"] = True
        info["cuda_archs"] = [int(a) for a in cu["cuda_archs"].split(",") if a]
        info["cuda_compiler"] = cu["cuda_compiler"]
        info["cuda_runtime"] = int(mod.runtime_version())
        info["cuda_devices"] = int(mod.device_count())
    return info
