"""Frame and mask preprocessing (DESIGN.md section 1): the native op by default, PIL as the reference.

The checkpoint's `image_aspect_ratio` picks the geometry (ModelConfig.image_aspect_ratio):
"pad" (LLaVA-1.5, RegionGPT):
  frame: pad to square with the mean colour (image centred, LLaVA's expand2square), bicubic resize to S,
         scale 1/255, normalise with the tower's mean/std -> float32 [3, S, S]
  masks: the same pad (fill 0) and a bilinear resize to S, no normalisation -> float32 [N, S, S]
"resize" (SpatialRGPT's releases, VILA):
  frame: bicubic stretch of W x H to S x S (Pillow's Image.resize), then the same scaling and normalisation
  masks: OpenCV INTER_NEAREST stretch to S x S (SpatialRGPT's process_regions / process_masks)
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from ..config import VisionConfig


def pad_offsets(h: int, w: int) -> tuple[int, int, int]:
    """Side of the square and the (top, left) offset of the frame inside it."""
    side = max(h, w)
    return side, (side - h) // 2, (side - w) // 2


def preprocess_frame(frame: np.ndarray, cfg: VisionConfig, mode: str = "pad") -> np.ndarray:
    """uint8 [H, W, 3] RGB -> float32 [3, S, S], normalised (native op, Pillow-exact); mode "pad" | "resize"."""
    from ..ops import preprocess_frame as op

    return op(frame, cfg.image_size, cfg.image_mean, cfg.image_std, mode=mode)


def preprocess_masks(masks: np.ndarray, size: int, mode: str = "pad") -> np.ndarray:
    """float32 [N, H, W] in [0, 1] -> float32 [N, S, S] (native op; "pad": Pillow-exact bilinear, "resize":
    OpenCV-exact nearest neighbour)."""
    from ..ops import preprocess_masks as op

    return op(masks, size, mode=mode)


def preprocess_frame_pil(frame: np.ndarray, cfg: VisionConfig, mode: str = "pad") -> np.ndarray:
    """The reference: uint8 [H, W, 3] RGB -> float32 [3, S, S] with PIL."""
    h, w, _ = frame.shape
    s = cfg.image_size
    if mode == "resize":
        canvas = Image.fromarray(frame)
    else:
        side, top, left = pad_offsets(h, w)
        fill = tuple(int(m * 255) for m in cfg.image_mean)
        canvas = Image.new("RGB", (side, side), fill)
        canvas.paste(Image.fromarray(frame), (left, top))
    resized = np.asarray(canvas.resize((s, s), Image.BICUBIC), dtype=np.float32) / 255.0  # [S, S, 3]
    mean = np.asarray(cfg.image_mean, np.float32)
    std = np.asarray(cfg.image_std, np.float32)
    return np.ascontiguousarray(((resized - mean) / std).transpose(2, 0, 1))


def nearest_indices(in_size: int, out_size: int) -> np.ndarray:
    """OpenCV's INTER_NEAREST source indices: min(floor(i * (1 / (out / in))), in - 1), in float64."""
    inv = 1.0 / (float(out_size) / float(in_size))
    return np.minimum(np.floor(np.arange(out_size, dtype=np.float64) * inv).astype(np.int64), in_size - 1)


def preprocess_masks_pil(masks: np.ndarray, size: int, mode: str = "pad") -> np.ndarray:
    """The reference: float32 [N, H, W] in [0, 1] -> float32 [N, S, S] with PIL (pad, bilinear resize), or
    ("resize") numpy's nearest-neighbour gather with OpenCV's indices."""
    n, h, w = masks.shape
    if mode == "resize":
        out = masks.astype(np.float32)[:, nearest_indices(h, size)][:, :, nearest_indices(w, size)]
        return np.clip(out, 0.0, 1.0)
    side, top, left = pad_offsets(h, w)
    out = np.empty((n, size, size), np.float32)
    for i in range(n):
        canvas = Image.new("F", (side, side), 0.0)
        canvas.paste(Image.fromarray(masks[i].astype(np.float32), mode="F"), (left, top))
        out[i] = np.asarray(canvas.resize((size, size), Image.BILINEAR), dtype=np.float32)
    return np.clip(out, 0.0, 1.0)
