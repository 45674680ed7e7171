"""Frames: numpy HxWx3 uint8 (RGB, or BGR with bgr=True), PIL images, file paths and encoded bytes.

Frame size limit: a frame may have at most MAX_FRAME_PIXELS pixels (H x W; default 8192 x 8192 = 67,108,864,
about 200 MB of RGB and 270 MB per full-resolution float mask). Encoded images are checked from their header,
before any pixel is decoded, so a few bytes that declare a huge image allocate nothing. Raise the limit with the
environment variable RGPT_MAX_FRAME_PIXELS (read at import) or by setting rgpt_rt.inputs.frames.MAX_FRAME_PIXELS.
COCO RLE masks that declare a size are held to the same limit (rgpt_rt.inputs.rle).
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from ..errors import FrameError
from .limits import limit_from_env

Frame = Any  # np.ndarray | PIL.Image.Image | str | os.PathLike | bytes

DEFAULT_MAX_FRAME_PIXELS = 8192 * 8192
LIMIT_HELP = (
    "raise the limit with the environment variable RGPT_MAX_FRAME_PIXELS or rgpt_rt.inputs.frames.MAX_FRAME_PIXELS"
)


MAX_FRAME_PIXELS = limit_from_env("RGPT_MAX_FRAME_PIXELS", DEFAULT_MAX_FRAME_PIXELS, "a pixel count")


def check_frame_size(h: int, w: int, what: str = "frame") -> None:
    """Refuse a frame (or a declared size) of more than MAX_FRAME_PIXELS pixels, before it is allocated."""
    limit = MAX_FRAME_PIXELS
    if h * w > limit:
        raise FrameError(f"{what} is {w}x{h} (WxH) = {h * w} pixels, over the limit of {limit} pixels; {LIMIT_HELP}")


def _decode(data: bytes, what: str) -> np.ndarray:
    try:
        with Image.open(io.BytesIO(data)) as im:  # reads the header only
            check_frame_size(im.height, im.width, f"image {what}")
            im.verify()  # container checks (PNG chunk CRCs) that a plain decode skips
        with Image.open(io.BytesIO(data)) as im:
            im.load()  # forces a full decode, so truncated files fail here and not later
            return np.asarray(im.convert("RGB"))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:  # Pillow's ceiling (header)
        raise FrameError(
            f"image {what} is over the frame size limit of {MAX_FRAME_PIXELS} pixels ({exc}); {LIMIT_HELP} "
            "(past Pillow's own ceiling, also PIL.Image.MAX_IMAGE_PIXELS)"
        ) from None
    except UnidentifiedImageError:
        raise FrameError(f"cannot decode image {what}: not an image format Pillow recognises") from None
    except (OSError, SyntaxError, ValueError, MemoryError) as exc:
        raise FrameError(f"cannot decode image {what}: {exc}") from None


def load_frame(frame: Frame, bgr: bool = False) -> np.ndarray:
    """Return the frame as a C-contiguous uint8 [H, W, 3] RGB array.

    numpy input must be uint8 with shape [H, W, 3]; `bgr=True` swaps OpenCV's channel order.
    PIL images are converted to RGB; paths and bytes are decoded with PIL.
    """
    if isinstance(frame, Image.Image):
        check_frame_size(frame.height, frame.width)
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
        check_frame_size(frame.shape[0], frame.shape[1])
        arr = frame[..., ::-1] if bgr else frame
    else:
        raise FrameError(
            f"unsupported frame type {type(frame).__name__}: pass an HxWx3 uint8 numpy array, "
            "a PIL image, a file path or encoded image bytes"
        )
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise FrameError(f"frame is empty (shape {arr.shape})")
    return np.ascontiguousarray(arr)
