"""rgpt_rt.ops.region_pool: the fused patch merge + mask pooling op (kernels/region_pool*.{cu,cpp})."""

from __future__ import annotations

from typing import Any

import numpy as np

from .._native import cpu
from ._util import DeviceTensor, as_numpy_input, auto_threads, cuda_module, dtype_code, torch_op, uses_torch


def region_pool(feature_map: Any, masks: Any, image_grid: int, eps: float = 1e-8, threads: int = 0):
    """Patch merge and mask pooling of one refined map, reading the map once (fp32 accumulation).

    feature_map [C, H, W]  f32 / f16 / bf16 (bf16 as a torch tensor), channels-first, any positive strides
    masks       [N, Hm, Wm] soft masks in [0, 1] at the vision input size (cast to f32)
    returns     image   [G*G, C] = adaptive average pool of the map to G x G, row-major over the grid
                regions [N, C]   = sum(w_n * f) / (sum(w_n) + eps), w_n = mask n bilinearly resized to H x W
                                   (align_corners=False); an all-zero mask gives zeros
    Outputs have feature_map's dtype. numpy in -> numpy out; torch in -> torch out (CPU or CUDA).
    """
    if uses_torch(feature_map=feature_map, masks=masks):
        return torch_op("region_pool")(feature_map, masks, int(image_grid), float(eps))
    fmap = as_numpy_input(feature_map, "feature_map")
    dtype_code(fmap, "feature_map", ("f32", "f16"))
    m = np.asarray(masks)
    if m.dtype != np.float32:
        m = m.astype(np.float32)
    m = as_numpy_input(m, "masks")
    if fmap.ndim != 3 or m.ndim != 3:
        raise ValueError(
            f"region_pool expects feature_map [C, H, W] and masks [N, Hm, Wm], got {fmap.shape} and {m.shape}"
        )
    g = int(image_grid)
    c = fmap.shape[0]
    image = np.empty((max(g, 0) ** 2, c), fmap.dtype)
    regions = np.empty((m.shape[0], c), fmap.dtype)
    work = fmap.size * max(1, m.shape[0])
    cpu().region_pool(fmap, m, image, regions, g, float(eps), threads=auto_threads(threads, work))
    return image, regions


def region_pool_workspace_bytes(n: int, h: int, w: int, c: int) -> int:
    """Bytes of device workspace region_pool_device needs for n masks over a [c, h, w] map (0 = none)."""
    return int(cuda_module().region_pool_workspace_bytes(int(n), int(h), int(w), int(c)))


def region_pool_device(
    feature_map: DeviceTensor,
    masks: DeviceTensor,
    image: DeviceTensor,
    regions: DeviceTensor,
    image_grid: int,
    eps: float,
    workspace: DeviceTensor,
    stream: int,
) -> None:
    """region_pool on device memory the caller holds as raw pointers (the trt backend's CUDA allocations),
    enqueued on the CUDA stream `stream`: the formula and shapes of `region_pool`, writing `image` [G*G, C]
    and `regions` [N, C] in place. `workspace` is a u8 allocation of at least region_pool_workspace_bytes()
    bytes. Every description is validated (shapes, dtypes, extents) before anything is launched."""
    if workspace.dtype != "u8":
        raise ValueError(f"workspace must be described as u8 bytes, got {workspace.dtype}")
    cuda_module().region_pool(
        feature_map,
        masks,
        image,
        regions,
        int(image_grid),
        float(eps),
        workspace=workspace.ptr,
        workspace_bytes=workspace.extent,
        stream=int(stream),
    )
