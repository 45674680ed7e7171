"""COCO run-length encoding: decode (compressed string or uncompressed counts) and encode.

A COCO RLE {"size": [h, w], "counts": ...} lists alternating run lengths of 0s and 1s over the mask in
column-major order, starting with 0s. The compressed form packs each count (after the first two, as the
difference to the count two places back) into 5-bit groups with a continuation bit, offset by 48 into
printable ASCII.
"""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np

from ..errors import MaskError
from . import frames


def _decode_counts(s: str) -> list[int]:
    counts: list[int] = []
    i, n = 0, len(s)
    while i < n:
        x, k, more = 0, 0, True
        while more:
            if i >= n:
                raise MaskError("RLE counts string ends in the middle of a number")
            c = ord(s[i]) - 48
            if not 0 <= c < 64:
                raise MaskError(f"RLE counts string has an invalid character {s[i]!r} at {i}")
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            i += 1
            k += 1
            if not more and (c & 0x10):
                x |= -1 << (5 * k)  # sign-extend
        if len(counts) > 2:
            x += counts[-2]
        counts.append(x)
    return counts


def _encode_counts(counts: list[int]) -> str:
    out = []
    for i, x in enumerate(counts):
        if i > 2:
            x -= counts[i - 2]
        more = True
        while more:
            c = x & 0x1F
            x >>= 5
            more = not ((c & 0x10) == 0 and x == 0 or (c & 0x10) != 0 and x == -1)
            if more:
                c |= 0x20
            out.append(chr(c + 48))
    return "".join(out)


def _size(rle: dict) -> tuple[int, int]:
    size = rle["size"]
    if (
        not isinstance(size, (list, tuple, np.ndarray))
        or len(size) != 2
        or not all(isinstance(v, numbers.Integral) and not isinstance(v, (bool, np.bool_)) for v in size)
    ):
        raise MaskError(f"RLE 'size' must be [h, w], two integers, got {size!r}")
    h, w = int(size[0]), int(size[1])
    if h < 1 or w < 1:
        raise MaskError(f"RLE 'size' must be positive, got [{h}, {w}]")
    return h, w


def _counts(raw: Any) -> list[int]:
    if isinstance(raw, bytes):
        raw = raw.decode("ascii", errors="replace")
    if isinstance(raw, str):
        return _decode_counts(raw)
    if isinstance(raw, np.ndarray) and raw.ndim == 1 and raw.dtype.kind in "iu":
        return raw.tolist()
    if isinstance(raw, (list, tuple)) and all(
        isinstance(c, numbers.Integral) and not isinstance(c, (bool, np.bool_)) for c in raw
    ):
        return [int(c) for c in raw]
    shown = type(raw).__name__ if not isinstance(raw, (list, tuple)) else f"a list holding {raw[:4]!r}"
    raise MaskError(f"RLE 'counts' must be a compressed string or a list of integer run lengths, got {shown}")


def rle_decode(rle: dict, shape: tuple[int, int] | None = None) -> np.ndarray:
    """COCO RLE dict -> bool mask [h, w].

    The declared size is checked before anything is allocated: against `shape` (the frame's (h, w)) when given,
    and always against the frame size limit (rgpt_rt.inputs.frames.MAX_FRAME_PIXELS).
    """
    if not isinstance(rle, dict) or "size" not in rle or "counts" not in rle:
        raise MaskError("an RLE must be a dict with 'size' [h, w] and 'counts'")
    h, w = _size(rle)
    if shape is not None and (h, w) != tuple(shape):
        raise MaskError(f"RLE size {w}x{h} (WxH) differs from the frame's {shape[1]}x{shape[0]}")
    if h * w > frames.MAX_FRAME_PIXELS:
        raise MaskError(
            f"RLE size {w}x{h} (WxH) = {h * w} pixels is over the frame size limit of "
            f"{frames.MAX_FRAME_PIXELS} pixels; {frames.LIMIT_HELP}"
        )
    counts = _counts(rle["counts"])
    if any(c < 0 for c in counts):
        raise MaskError("RLE has a negative run length (corrupt counts)")
    if sum(counts) != h * w:
        raise MaskError(f"RLE runs cover {sum(counts)} pixels but its size {h}x{w} has {h * w}")
    values = np.zeros(len(counts), dtype=bool)
    values[1::2] = True
    flat = np.repeat(values, counts)
    return flat.reshape(w, h).T.copy()  # column-major


def rle_encode(mask: np.ndarray, compressed: bool = True) -> dict:
    """bool/0-1 mask [h, w] -> COCO RLE dict (compressed string counts by default)."""
    m = np.asarray(mask).astype(bool)
    h, w = m.shape
    flat = m.T.reshape(-1)
    change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    bounds = np.concatenate([[0], change, [flat.size]])
    counts = np.diff(bounds).tolist()
    if flat.size and flat[0]:
        counts = [0] + counts
    return {"size": [h, w], "counts": _encode_counts(counts) if compressed else counts}
