"""image_aspect_ratio "resize" (SpatialRGPT's releases) in the native preprocess ops, CPU twin.

Frames: a Pillow-exact bicubic stretch of W x H to S x S. The reference is Pillow itself, as two single-axis
Image.resize calls in the order Pillow >= 13 runs its two passes (each single-axis resize is one pass, the
same in every Pillow version), and - where the installed Pillow is 13 or newer - one plain Image.resize call.
Masks: OpenCV's INTER_NEAREST stretch (SpatialRGPT's process_regions), against a float64 numpy re-derivation of
OpenCV's source index and, where OpenCV is installed, cv2.resize itself.
"""

import numpy as np
import PIL
import pytest
from PIL import Image

from rgpt_rt.config import CLIP_MEAN, CLIP_STD, SIGLIP_MEAN, SIGLIP_STD
from rgpt_rt.ops import preprocess_frame, preprocess_masks

# (H, W, S): non-square both ways, odd sizes, one axis already S, up and down in each axis, the release's 384,
# and shapes where Pillow >= 13 runs the vertical pass first (the height shrinks > 2x more than the width).
CASES = [
    (360, 640, 384),
    (640, 360, 384),
    (23, 17, 70),
    (17, 900, 56),
    (900, 17, 56),
    (384, 500, 384),
    (500, 384, 384),
    (170, 128, 103),
    (641, 361, 70),
    (1, 1, 5),
    (2, 333, 3),
]
PILLOW_13 = int(PIL.__version__.split(".")[0]) >= 13


def vertical_first(h: int, w: int, s: int) -> bool:
    return h - s > 0 and h - s > 2 * (w - s)


def pillow_stretch(frame: np.ndarray, s: int) -> np.ndarray:
    """uint8 [S, S, 3]: Pillow's two bicubic passes, one Image.resize call per axis, in Pillow 13's order."""
    h, w, _ = frame.shape
    im = Image.fromarray(frame)
    if vertical_first(h, w, s):
        return np.asarray(im.resize((w, s), Image.BICUBIC).resize((s, s), Image.BICUBIC))
    return np.asarray(im.resize((s, h), Image.BICUBIC).resize((s, s), Image.BICUBIC))


def normalised(levels: np.ndarray, mean, std) -> np.ndarray:
    f = levels.astype(np.float32) / 255.0
    return ((f - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)).transpose(2, 0, 1)


@pytest.mark.parametrize("h,w,s", CASES, ids=[f"{h}x{w}to{s}" for h, w, s in CASES])
def test_frame_stretch_equals_pillow(h, w, s):
    frame = np.random.default_rng(h * 1000 + w).integers(0, 256, (h, w, 3), dtype=np.uint8)
    out = preprocess_frame(frame, s, SIGLIP_MEAN, SIGLIP_STD, mode="resize")
    assert out.shape == (3, s, s)
    np.testing.assert_array_equal(out, normalised(pillow_stretch(frame, s), SIGLIP_MEAN, SIGLIP_STD))
    if PILLOW_13:  # the installed Pillow's own single call gives the same bytes
        direct = np.asarray(Image.fromarray(frame).resize((s, s), Image.BICUBIC))
        np.testing.assert_array_equal(out, normalised(direct, SIGLIP_MEAN, SIGLIP_STD))


def test_frame_stretch_ignores_fill_and_differs_from_pad():
    frame = np.random.default_rng(3).integers(0, 256, (36, 64, 3), dtype=np.uint8)
    a = preprocess_frame(frame, 56, CLIP_MEAN, CLIP_STD, mode="resize")
    b = preprocess_frame(frame, 56, CLIP_MEAN, CLIP_STD, fill=(1, 2, 3), mode="resize")
    np.testing.assert_array_equal(a, b)
    pad = preprocess_frame(frame, 56, CLIP_MEAN, CLIP_STD)  # the default stays the padded square
    assert np.abs(pad - a).max() > 0.5


def test_frame_stretch_bgr_strided_half_and_torch():
    rng = np.random.default_rng(9)
    big = rng.integers(0, 256, (300, 500, 4), dtype=np.uint8)
    frame = big[10:250:2, 3:450:3, :3]  # non-contiguous in every axis, 120 x 149
    ref = preprocess_frame(np.ascontiguousarray(frame), 70, SIGLIP_MEAN, SIGLIP_STD, mode="resize")
    np.testing.assert_array_equal(preprocess_frame(frame, 70, SIGLIP_MEAN, SIGLIP_STD, mode="resize"), ref)
    bgr = np.ascontiguousarray(frame[..., ::-1])
    np.testing.assert_array_equal(preprocess_frame(bgr, 70, SIGLIP_MEAN, SIGLIP_STD, bgr=True, mode="resize"), ref)
    half = preprocess_frame(frame, 70, SIGLIP_MEAN, SIGLIP_STD, out_dtype="f16", mode="resize")
    np.testing.assert_array_equal(half, ref.astype(np.float16))
    torch = pytest.importorskip("torch")
    got = preprocess_frame(torch.from_numpy(np.ascontiguousarray(frame)), 70, SIGLIP_MEAN, SIGLIP_STD, mode="resize")
    np.testing.assert_array_equal(got.numpy(), ref)


def nearest_ref(m: np.ndarray, s: int) -> np.ndarray:
    """float64 re-derivation of OpenCV's INTER_NEAREST: src = min(floor(dst * (1 / (S / n))), n - 1)."""
    n, h, w = m.shape

    def idx(size):
        inv = np.float64(1.0) / (np.float64(s) / np.float64(size))
        return np.minimum(np.floor(np.arange(s, dtype=np.float64) * inv).astype(np.int64), size - 1)

    return np.clip(m.astype(np.float64)[:, idx(h)][:, :, idx(w)], 0.0, 1.0)


@pytest.mark.parametrize("h,w,s", CASES, ids=[f"{h}x{w}to{s}" for h, w, s in CASES])
def test_masks_stretch_is_opencv_nearest(h, w, s):
    rng = np.random.default_rng(h + 7 * w)
    masks = np.zeros((5, h, w), np.float32)
    masks[0] = rng.random((h, w)) > 0.5  # binary
    masks[1] = rng.random((h, w))  # soft
    masks[2, h // 2, w // 2] = 1.0  # one pixel
    masks[3, :, 0] = masks[3, :, -1] = masks[3, 0, :] = masks[3, -1, :] = 1.0  # the border
    masks[4] = 1.5 * rng.random((h, w)) - 0.25  # out of range: clamped
    out = preprocess_masks(masks, s, mode="resize")
    assert out.shape == (5, s, s) and out.dtype == np.float32
    np.testing.assert_array_equal(out, nearest_ref(masks, s).astype(np.float32))
    try:
        import cv2
    except ImportError:
        return
    for k in (0, 2, 3):  # SpatialRGPT resizes uint8 0/1 masks with cv2
        want = cv2.resize(masks[k].astype(np.uint8), (s, s), interpolation=cv2.INTER_NEAREST)
        np.testing.assert_array_equal(out[k], want.astype(np.float32))


def test_masks_stretch_keeps_a_one_pixel_region_when_it_is_sampled():
    """A single pixel survives the downscale only where a sample lands on it (nearest neighbour keeps masks
    binary and never spreads them): here 384 -> 27 samples every 384/27-th pixel."""
    m = np.zeros((2, 384, 384), np.float32)
    m[0, 0, 0] = 1.0  # sampled: output (0, 0) reads source (0, 0)
    m[1, 1, 1] = 1.0  # between samples: gone
    out = preprocess_masks(m, 27, mode="resize")
    assert out[0].sum() == 1.0 and out[0, 0, 0] == 1.0 and out[1].sum() == 0.0


def test_masks_stretch_torch_and_empty_and_bad_mode():
    torch = pytest.importorskip("torch")
    m = (np.random.default_rng(2).random((3, 45, 80)) > 0.4).astype(np.float32)
    got = preprocess_masks(torch.from_numpy(m), 70, mode="resize").numpy()
    np.testing.assert_array_equal(got, preprocess_masks(m, 70, mode="resize"))
    torch.library.opcheck(torch.ops.rgpt.preprocess_masks.default, (torch.from_numpy(m), 70, True))
    assert preprocess_masks(np.zeros((0, 5, 9), np.float32), 70, mode="resize").shape == (0, 70, 70)
    with pytest.raises(ValueError, match="mode must be one of pad, resize"):
        preprocess_masks(m, 70, mode="square")
    with pytest.raises(ValueError, match="mode must be one of pad, resize"):
        preprocess_frame(np.zeros((4, 4, 3), np.uint8), 8, SIGLIP_MEAN, SIGLIP_STD, mode="crop")
