"""rgpt_rt.ops.preprocess_frame / preprocess_masks (C++ CPU twin) against Pillow, the reference."""

import numpy as np
import pytest
from PIL import Image

from rgpt_rt import _native
from rgpt_rt.config import CLIP_MEAN, CLIP_STD, SIGLIP_MEAN, SIGLIP_STD
from rgpt_rt.ops import preprocess_frame, preprocess_masks
from rgpt_rt.ops.preprocess_frame import default_fill

SIZES = [(1080, 1920), (240, 320), (333, 127), (56, 56), (40, 30), (1, 1), (17, 900), (336, 336)]


def pil_uint8(frame: np.ndarray, size: int, fill) -> np.ndarray:
    """Pillow: pad to square (frame centred) then bicubic resize: [S, S, 3] uint8."""
    h, w, _ = frame.shape
    side = max(h, w)
    canvas = Image.new("RGB", (side, side), tuple(fill))
    canvas.paste(Image.fromarray(frame), ((side - w) // 2, (side - h) // 2))
    return np.asarray(canvas.resize((size, size), Image.BICUBIC))


def to_uint8(out: np.ndarray, mean, std) -> np.ndarray:
    """Invert the normalisation: back to 0..255 levels (float)."""
    return (out.astype(np.float64) * np.asarray(std)[:, None, None] + np.asarray(mean)[:, None, None]) * 255.0


@pytest.mark.parametrize("hw", SIZES, ids=[f"{h}x{w}" for h, w in SIZES])
@pytest.mark.parametrize("size", [336, 56])
def test_frame_equals_pillow(hw, size):
    rng = np.random.default_rng(hw[0] * 7 + hw[1])
    frame = rng.integers(0, 256, (*hw, 3), dtype=np.uint8)
    out = preprocess_frame(frame, size, CLIP_MEAN, CLIP_STD)
    ref = pil_uint8(frame, size, default_fill(CLIP_MEAN))
    levels = to_uint8(out, CLIP_MEAN, CLIP_STD)
    # Bit-exact in practice; the contract is "within one 8-bit step".
    assert np.abs(levels - ref.transpose(2, 0, 1)).max() < 1.0 + 1e-3
    exact = (ref.astype(np.float32) / 255.0 - np.asarray(CLIP_MEAN, np.float32)) / np.asarray(CLIP_STD, np.float32)
    np.testing.assert_array_equal(out, exact.transpose(2, 0, 1))


def test_frame_bgr_strided_and_half_output():
    rng = np.random.default_rng(5)
    big = rng.integers(0, 256, (300, 500, 4), dtype=np.uint8)
    frame = big[10:250:2, 3:450:3, :3]  # non-contiguous in every axis
    ref = preprocess_frame(np.ascontiguousarray(frame), 56, SIGLIP_MEAN, SIGLIP_STD)
    bgr = np.ascontiguousarray(frame[..., ::-1])
    np.testing.assert_array_equal(preprocess_frame(frame, 56, SIGLIP_MEAN, SIGLIP_STD), ref)
    np.testing.assert_array_equal(preprocess_frame(bgr, 56, SIGLIP_MEAN, SIGLIP_STD, bgr=True), ref)
    half = preprocess_frame(frame, 56, SIGLIP_MEAN, SIGLIP_STD, out_dtype="f16")
    assert half.dtype == np.float16
    np.testing.assert_array_equal(half, ref.astype(np.float16))


def test_frame_torch_tensor_input():
    torch = pytest.importorskip("torch")
    frame = np.random.default_rng(6).integers(0, 256, (70, 90, 3), dtype=np.uint8)
    out = preprocess_frame(torch.from_numpy(frame), 56, CLIP_MEAN, CLIP_STD)
    np.testing.assert_array_equal(out.numpy(), preprocess_frame(frame, 56, CLIP_MEAN, CLIP_STD))
    torch.library.opcheck(
        torch.ops.rgpt.preprocess_frame.default,
        (torch.from_numpy(frame), 56, list(CLIP_MEAN), list(CLIP_STD), [1, 2, 3], False, "f32"),
    )


@pytest.mark.parametrize("hw", [(240, 320), (333, 127), (56, 56), (20, 10)])
def test_masks_equal_pillow(hw):
    rng = np.random.default_rng(hw[0])
    masks = rng.random((3, *hw)).astype(np.float32)
    masks[0] = masks[0] > 0.5
    out = preprocess_masks(masks, 56)
    h, w = hw
    side = max(h, w)
    for k in range(3):
        canvas = Image.new("F", (side, side), 0.0)
        canvas.paste(Image.fromarray(masks[k], mode="F"), ((side - w) // 2, (side - h) // 2))
        ref = np.clip(np.asarray(canvas.resize((56, 56), Image.BILINEAR)), 0, 1)
        np.testing.assert_array_equal(out[k], ref)
    assert preprocess_masks(np.zeros((0, 5, 5), np.float32), 56).shape == (0, 56, 56)


def test_guard_bands_and_errors():
    frame = np.random.default_rng(7).integers(0, 256, (30, 40, 3), dtype=np.uint8)
    buf = np.full((5, 56, 56), 99.0, np.float32)
    _native.cpu().preprocess_frame(frame, buf[1:4], False, [1, 2, 3], list(CLIP_MEAN), list(CLIP_STD))
    assert (buf[0] == 99.0).all() and (buf[4] == 99.0).all()
    c = _native.cpu()
    with pytest.raises(ValueError, match=r"frame must be \[H, W, 3\]"):
        c.preprocess_frame(frame[..., :2], np.zeros((3, 8, 8), np.float32), False, [0, 0, 0], [0, 0, 0], [1, 1, 1])
    with pytest.raises(ValueError, match=r"output must be \[3, S, S\]"):
        c.preprocess_frame(frame, np.zeros((3, 8, 9), np.float32), False, [0, 0, 0], [0, 0, 0], [1, 1, 1])
    with pytest.raises(ValueError, match="std must be > 0"):
        c.preprocess_frame(frame, np.zeros((3, 8, 8), np.float32), False, [0, 0, 0], [0, 0, 0], [1, 0, 1])
    with pytest.raises(ValueError, match="fill colour must be 0..255"):
        c.preprocess_frame(frame, np.zeros((3, 8, 8), np.float32), False, [0, 300, 0], [0, 0, 0], [1, 1, 1])
    with pytest.raises(ValueError, match="frame must be uint8"):
        preprocess_frame(frame.astype(np.float32), 8, CLIP_MEAN, CLIP_STD)
    with pytest.raises(ValueError, match=r"output must be \[N, S, S\] with N = 2"):
        c.preprocess_masks(np.zeros((2, 5, 5), np.float32), np.zeros((3, 8, 8), np.float32))
