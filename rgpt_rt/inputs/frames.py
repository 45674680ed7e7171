"""Frames: numpy HxWx3 uint8 (RGB, or BGR with bgr=True), PIL images, file paths and encoded bytes."""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from ..errors import FrameError

Frame = Any  # np.ndarray | PIL.Image.Image | str | os.PathLike | bytes


def _decode(data: bytes, what: str) -> np.ndarray:
    try:
        with Image.open(io.BytesIO(data)) as im:
            im.verify()  # container checks (PNG chunk CRCs) that a plain decode skips
        with Image.open(io.BytesIO(data)) as im:
            im.load()  # forces a full decode, so truncated files fail here and not later
            return np.asarray(im.convert("RGB"))
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise FrameError(f"cannot decode image {what}: {exc}") from None


def load_frame(frame: Frame, bgr: bool = False) -> np.ndarray:
    """Return the frame as a C-contiguous uint8 [H, W, 3] RGB array.

    numpy input must be uint8 with shape [H, W, 3]; `bgr=True` swaps OpenCV's channel order.
    PIL images are converted to RGB; paths and bytes are decoded with PIL.
    """
    if isinstance(frame, Image.Image):
        arr = np.asarray(frame.convert("RGB"))
    elif isinstance(frame, (bytes, bytearray, memoryview)):
        arr = _decode(bytes(frame), f"from {len(frame)} bytes")
    elif isinstance(frame, (str, os.PathLike)):
        path = Path(frame)
        if not path.is_file():
            raise FrameError(f"image file not found: {path}")
        arr = _decode(path.read_bytes(), str(path))
    elif isinstance(frame, np.ndarray):
        if frame.ndim != 3 or frame.shape[2] != 3:
            raise FrameError(
                f"frame must be an HxWx3 array, got shape {frame.shape}"
                + (" (RGBA? drop the alpha channel: frame[..., :3])" if frame.ndim == 3 and frame.shape[2] == 4 else "")
            )
        if frame.dtype != np.uint8:
            raise FrameError(f"frame must be uint8 (0..255), got dtype {frame.dtype}")
        arr = frame[..., ::-1] if bgr else frame
    else:
        raise FrameError(
            f"unsupported frame type {type(frame).__name__}: pass an HxWx3 uint8 numpy array, "
            "a PIL image, a file path or encoded image bytes"
        )
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise FrameError(f"frame is empty (shape {arr.shape})")
    return np.ascontiguousarray(arr)
