"""rgpt_rt.ops.preprocess_frame / preprocess_masks (kernels/preprocess_frame*.{cu,cpp})."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .._native import cpu
from ._util import as_numpy_input, auto_threads, torch_op, uses_torch

ASPECT_MODES = ("pad", "resize")


def _resize_flag(mode: str) -> bool:
    if mode not in ASPECT_MODES:
        raise ValueError(f"mode must be one of {', '.join(ASPECT_MODES)} (image_aspect_ratio), got {mode!r}")
    return mode == "resize"


def default_fill(mean: Sequence[float]) -> tuple[int, int, int]:
    """LLaVA's pad colour: the mean colour in 0..255, truncated."""
    return tuple(int(m * 255) for m in mean)  # type: ignore[return-value]


def preprocess_frame(
    frame: Any,
    size: int,
    mean: Sequence[float],
    std: Sequence[float],
    fill: Sequence[int] | None = None,
    bgr: bool = False,
    out_dtype: str = "f32",
    threads: int = 0,
    mode: str = "pad",
):
    """uint8 [H, W, 3] RGB (BGR with bgr=True) -> [3, S, S], then (v / 255 - mean) / std. out_dtype "f32" or
    "f16". mode "pad" (LLaVA's expand2square): pad to square with `fill` (default: the mean colour), then
    Pillow-exact bicubic resize to S; mode "resize" (SpatialRGPT's releases): Pillow-exact bicubic stretch of
    W x H to S x S, each axis on its own (`fill` unused). numpy in -> numpy out; torch in -> torch out (CPU or
    CUDA)."""
    fill = default_fill(mean) if fill is None else tuple(int(v) for v in fill)
    resize = _resize_flag(mode)
    if uses_torch(frame=frame):
        return torch_op("preprocess_frame")(
            frame,
            int(size),
            [float(v) for v in mean],
            [float(v) for v in std],
            list(fill),
            bool(bgr),
            out_dtype,
            resize,
        )
    f = as_numpy_input(frame, "frame")
    if f.dtype != np.uint8:
        raise ValueError(f"frame must be uint8, got {f.dtype}")
    if out_dtype not in ("f32", "f16"):
        raise ValueError(f"out_dtype must be 'f32' or 'f16', got {out_dtype!r}")
    out = np.empty((3, int(size), int(size)), np.float32 if out_dtype == "f32" else np.float16)
    cpu().preprocess_frame(
        f, out, bool(bgr), list(fill), [float(v) for v in mean], [float(v) for v in std], resize, threads=threads
    )
    return out


def preprocess_masks(masks: Any, size: int, threads: int = 0, mode: str = "pad"):
    """float [N, H, W] in [0, 1] -> f32 [N, S, S], clamped to [0, 1]. mode "pad": the frame's pad (fill 0) and
    Pillow's bilinear resize; mode "resize": OpenCV's INTER_NEAREST stretch to S x S, as SpatialRGPT resizes its
    masks (source index min(floor(i * (1 / (S / H))), H - 1) per axis)."""
    resize = _resize_flag(mode)
    if uses_torch(masks=masks):
        return torch_op("preprocess_masks")(masks, int(size), resize)
    m = np.asarray(masks)
    if m.dtype != np.float32:
        m = m.astype(np.float32)
    m = as_numpy_input(m, "masks")
    if m.ndim != 3:
        raise ValueError(f"masks must be [N, H, W], got shape {m.shape}")
    out = np.empty((m.shape[0], int(size), int(size)), np.float32)
    cpu().preprocess_masks(m, out, resize, threads=auto_threads(threads, m.size))
    return out
