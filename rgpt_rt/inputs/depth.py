"""Depth maps for SpatialRGPT's `<depth>` tokens: an [H, W] map of the frame -> the 8-bit 3-channel image that
goes through the vision tower like the frame itself.

SpatialRGPT (its demo, its benchmark evaluation and the README's recipe for the training data) feeds a relative
depth estimate from Depth Anything: a disparity-like map (larger = nearer), min-max normalised per image to
0..255 in float32 and truncated to uint8 (numpy's astype), then repeated over three channels:

    d8 = ((d - d.min()) / (d.max() - d.min()) * 255.0).astype(np.uint8)

Accepted here, all of the frame's height and width:
- float [H, W] (any real dtype; computed in float32 as SpatialRGPT does): normalised as above. A metric depth
  image from a depth camera is larger = farther; convert it with `disparity_from_metric` first so that it reads
  like the estimates the model was trained on.
- uint8 [H, W] or [H, W, 3]: already normalised 8-bit levels (SpatialRGPT's saved depth PNGs), used as they are.
- a file path (.npy: an array as above; an image file: its 8-bit levels, as SpatialRGPT reads its depth PNGs).
A constant map (max == min) normalises to all zeros (SpatialRGPT's formula would divide by zero).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError

Depth = Any  # np.ndarray | str | os.PathLike


def disparity_from_metric(depth: np.ndarray, invalid: float = 0.0) -> np.ndarray:
    """Metric depth (metres or millimetres; larger = farther, 0 or non-finite = no reading) -> 1 / depth, the
    disparity-like order of the relative estimates SpatialRGPT was trained on; pixels without a reading get
    `invalid` (0: as far as the farthest)."""
    d = np.asarray(depth, np.float64)
    ok = np.isfinite(d) & (d > 0)
    out = np.full(d.shape, float(invalid), np.float64)
    out[ok] = 1.0 / d[ok]
    return out.astype(np.float32)


def _read(path: Path) -> np.ndarray:
    if not path.is_file():
        raise InputError(f"depth map file not found: {path}")
    if path.suffix.lower() == ".npy":
        try:
            return np.load(path, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise InputError(f"cannot read depth map {path}: {exc}") from None
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im.load()
            if im.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
                return np.asarray(im, dtype=np.float32)  # 16-bit / float depth PNGs: raw values, normalised below
            return np.asarray(im.convert("RGB"))
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise InputError(f"cannot read depth map {path}: {exc} (give a .npy float array or an image file)") from None


def depth_image(depth: Depth, hw: tuple[int, int]) -> np.ndarray:
    """A depth map of a frame of size hw = (H, W) -> uint8 [H, W, 3] (SpatialRGPT's normalisation)."""
    if isinstance(depth, (str, os.PathLike)):
        depth = _read(Path(depth))
    if not isinstance(depth, np.ndarray):
        if type(depth).__module__.startswith("torch"):
            depth = depth.detach().cpu().numpy()
        else:
            raise InputError(f"depth must be a numpy array [H, W] or a file path, got {type(depth).__name__}")
    h, w = hw
    if depth.ndim == 3 and depth.shape[2] == 1:
        depth = depth[:, :, 0]
    if depth.ndim == 3 and depth.shape[2] == 3 and depth.dtype == np.uint8:
        img = depth
    elif depth.ndim == 2:
        if depth.dtype == np.uint8:
            img = np.repeat(depth[:, :, None], 3, axis=2)
        elif depth.dtype.kind in "fiu" and depth.dtype != np.bool_:
            d = depth.astype(np.float32)
            if not np.isfinite(d).all():
                raise InputError(
                    "depth map has non-finite values (NaN or inf); fill the holes first (for a depth camera, "
                    "rgpt_rt.inputs.disparity_from_metric maps missing readings to a value)"
                )
            lo, hi = d.min(), d.max()
            span = hi - lo
            levels = np.zeros(d.shape, np.uint8) if span == 0 else ((d - lo) / span * 255.0).astype(np.uint8)
            img = np.repeat(levels[:, :, None], 3, axis=2)
        else:
            raise InputError(f"depth map must hold real numbers, got dtype {depth.dtype}")
    else:
        raise InputError(
            f"depth map must be [H, W] (float, or uint8 levels) or [H, W, 3] uint8, got shape {depth.shape} "
            f"and dtype {depth.dtype}"
        )
    if img.shape[:2] != (h, w):
        raise InputError(
            f"depth map is {img.shape[1]}x{img.shape[0]} (WxH) but the frame is {w}x{h}; give the depth of this "
            "frame at its own resolution (resize the depth estimate to the frame first)"
        )
    return np.ascontiguousarray(img)
