"""Regions -> soft masks at frame size.

Accepted, alone or in a list:
- masks [H, W] or stacks [N, H, W]: bool; uint8 (0/1, or 0..255 scaled by 1/255 when any value exceeds 1);
  float in [0, 1]
- `Box(x0, y0, x1, y1)` or a plain 4-tuple of numbers, in pixel coordinates (x to the right, y down)
- `Polygon([(x, y), ...])`, at least 3 vertices, pixel coordinates
- COCO RLE dicts {"size": [h, w], "counts": str | list}

Geometry convention (shared by boxes and polygons, so equivalent regions give identical masks): pixel (r, c)
covers [c, c+1) x [r, r+1) and belongs to a shape when its centre (c + 0.5, r + 0.5) lies inside. A box
(x0, y0, x1, y1) with integer corners is therefore exactly the mask rows y0..y1-1, columns x0..x1-1.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import MaskError
from .limits import limit_from_env
from .rle import rle_decode


@dataclass(frozen=True)
class Box:
    x0: float
    y0: float
    x1: float
    y1: float

    def __post_init__(self):
        for name in ("x0", "y0", "x1", "y1"):
            v = getattr(self, name)
            if isinstance(v, (bool, np.bool_)) or not isinstance(v, numbers.Real):
                raise MaskError(f"box coordinate {name} must be a number (pixels), got {v!r}")


@dataclass(frozen=True)
class Polygon:
    points: tuple[tuple[float, float], ...]

    def __init__(self, points: Sequence[Sequence[float]]):
        if isinstance(points, (str, bytes)):
            raise MaskError(f"a polygon must be a list of (x, y) points, got {type(points).__name__}")
        try:
            pts = np.asarray(points, dtype=np.float64)
        except (TypeError, ValueError) as exc:  # non-numeric coordinates, ragged point lists
            raise MaskError(f"a polygon must be a list of (x, y) points of numbers: {exc}") from None
        if pts.ndim == 1 and pts.size % 2 == 0:  # flat [x0, y0, x1, y1, ...] as in COCO
            pts = pts.reshape(-1, 2)
        if pts.ndim != 2 or pts.shape[1] != 2:
            raise MaskError(f"a polygon must be a list of (x, y) points, got array of shape {pts.shape}")
        if len(pts) < 3:
            raise MaskError(f"a polygon needs at least 3 points, got {len(pts)}")
        if not np.isfinite(pts).all():
            raise MaskError("a polygon has a non-finite coordinate")
        object.__setattr__(self, "points", tuple(map(tuple, pts.tolist())))


def box_mask(box: Box, h: int, w: int) -> np.ndarray:
    x0, y0, x1, y1 = (float(v) for v in (box.x0, box.y0, box.x1, box.y1))
    if not all(np.isfinite([x0, y0, x1, y1])):
        raise MaskError(f"box {box} has a non-finite coordinate")
    if x1 <= x0 or y1 <= y0:
        raise MaskError(f"box (x0={x0}, y0={y0}, x1={x1}, y1={y1}) is empty or inverted: need x1 > x0 and y1 > y0")
    if x1 <= 0 or y1 <= 0 or x0 >= w or y0 >= h:
        raise MaskError(f"box (x0={x0}, y0={y0}, x1={x1}, y1={y1}) lies outside the {w}x{h} frame")
    cols = (np.arange(w) + 0.5 > x0) & (np.arange(w) + 0.5 < x1)
    rows = (np.arange(h) + 0.5 > y0) & (np.arange(h) + 0.5 < y1)
    return rows[:, None] & cols[None, :]


def polygon_mask(poly: Polygon, h: int, w: int) -> np.ndarray:
    """Even-odd fill, sampled at pixel centres, one scanline per row."""
    pts = np.asarray(poly.points)
    x0, y0 = pts[:, 0], pts[:, 1]
    x1, y1 = np.roll(x0, -1), np.roll(y0, -1)
    mask = np.zeros((h, w), dtype=bool)
    centres_x = np.arange(w) + 0.5
    lo_r = max(int(np.floor(pts[:, 1].min())), 0)
    hi_r = min(int(np.ceil(pts[:, 1].max())), h)
    for r in range(lo_r, hi_r):
        yc = r + 0.5
        crosses = (y0 <= yc) != (y1 <= yc)  # edge spans the scanline (half-open: no double count at vertices)
        if not crosses.any():
            continue
        t = (yc - y0[crosses]) / (y1[crosses] - y0[crosses])
        xs = np.sort(x0[crosses] + t * (x1[crosses] - x0[crosses]))
        inside = np.searchsorted(xs, centres_x, side="right") % 2 == 1
        mask[r] = inside
    return mask


def _array_masks(arr: np.ndarray, h: int, w: int) -> np.ndarray:
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3:
        raise MaskError(f"masks must be [H, W] or [N, H, W], got shape {arr.shape}")
    if arr.shape[1:] != (h, w):
        raise MaskError(f"mask size {arr.shape[2]}x{arr.shape[1]} (WxH) differs from the frame's {w}x{h}")
    if arr.dtype == bool:
        return arr.astype(np.float32)
    if arr.dtype == np.uint8:
        out = arr.astype(np.float32)
        return out / 255.0 if arr.size and arr.max() > 1 else out
    if np.issubdtype(arr.dtype, np.floating):
        out = arr.astype(np.float32)
        if not np.isfinite(out).all():
            raise MaskError("a float mask contains NaN or infinity")
        if out.size and (out.min() < 0.0 or out.max() > 1.0):
            raise MaskError(f"float masks must lie in [0, 1], got values in [{out.min():g}, {out.max():g}]")
        return out
    raise MaskError(f"mask dtype {arr.dtype} is not supported (use bool, uint8 or float in [0, 1])")


def _is_box_tuple(x: Any) -> bool:
    """A 4-sequence of scalars is a box (x0, y0, x1, y1); Box() then checks that they are numbers. A sequence of
    four regions (arrays, dicts, Boxes, Polygons, sequences) is not."""
    return (
        isinstance(x, (tuple, list))
        and len(x) == 4
        and not any(
            isinstance(v, (np.ndarray, dict, list, tuple, Box, Polygon))
            or (hasattr(v, "__array__") and not isinstance(v, np.generic))  # torch tensors are masks
            for v in x
        )
    )


def _one(region: Any, h: int, w: int) -> np.ndarray:
    """One region (or one stack of masks) -> float32 [k, H, W]."""
    if isinstance(region, Box):
        return box_mask(region, h, w)[None].astype(np.float32)
    if _is_box_tuple(region):
        return box_mask(Box(*region), h, w)[None].astype(np.float32)
    if isinstance(region, Polygon):
        return polygon_mask(region, h, w)[None].astype(np.float32)
    if isinstance(region, dict):
        return rle_decode(region, shape=(h, w))[None].astype(np.float32)  # size checked before decoding
    if isinstance(region, np.ndarray):
        return _array_masks(region, h, w)
    if hasattr(region, "__array__") and hasattr(region, "shape"):  # torch tensors and the like
        return _array_masks(np.asarray(region), h, w)
    raise MaskError(
        f"unsupported region type {type(region).__name__}: pass a mask array, a Box, a (x0, y0, x1, y1) "
        "tuple, a Polygon or a COCO RLE dict"
    )


# The float32 masks of one call at frame size (N x H x W x 4 bytes) may take at most this many bytes: 4 GiB by
# default (about 500 regions of a 1920x1080 frame, 3500 of 640x480). Raise it with the environment variable
# RGPT_MAX_MASK_BYTES or by setting rgpt_rt.inputs.regions.MAX_MASK_BYTES.
MAX_MASK_BYTES = limit_from_env("RGPT_MAX_MASK_BYTES", 4 << 30, "bytes")


def check_mask_bytes(n: int, h: int, w: int) -> None:
    need = n * h * w * 4
    if need > MAX_MASK_BYTES:
        raise MaskError(
            f"{n} regions on a {w}x{h} frame need {need} bytes of float32 masks, over the limit of "
            f"{MAX_MASK_BYTES} bytes; pass fewer regions per call, or raise the limit with the environment "
            "variable RGPT_MAX_MASK_BYTES or rgpt_rt.inputs.regions.MAX_MASK_BYTES"
        )


def to_masks(regions: Any, frame_hw: tuple[int, int], allow_empty: bool = False) -> np.ndarray:
    """Any accepted region input -> float32 [N, H, W] in [0, 1] at frame size (N may be 0 for None / [])."""
    h, w = frame_hw
    if regions is None:
        return np.zeros((0, h, w), np.float32)
    if isinstance(regions, (list, tuple)) and not _is_box_tuple(regions):
        # Each region becomes a float32 mask at frame size: a short list of boxes can ask for gigabytes. Count
        # first (a 3-D array is a stack of masks), allocate after.
        n = sum(r.shape[0] if isinstance(r, np.ndarray) and r.ndim == 3 else 1 for r in regions)
        check_mask_bytes(n, h, w)
        parts = [_one(r, h, w) for r in regions]
        masks = np.concatenate(parts) if parts else np.zeros((0, h, w), np.float32)
    else:
        masks = _one(regions, h, w)
    if not allow_empty:
        empty = [i for i in range(len(masks)) if not masks[i].any()]
        if empty:
            raise MaskError(
                f"region {', '.join(map(str, empty))} (0-based) is empty: its mask has no pixel inside the "
                "frame. Pass allow_empty_masks=True to describe an empty region anyway (it pools to zeros)"
            )
    return masks
