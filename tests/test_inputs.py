"""Frames, regions (mask, box, polygon, COCO RLE) and preprocessing."""

import io

import numpy as np
import pytest
from PIL import Image

from rgpt_rt.config import VisionConfig
from rgpt_rt.errors import MaskError
from rgpt_rt.inputs import (
    Box,
    Polygon,
    load_frame,
    preprocess_frame,
    preprocess_masks,
    rle_decode,
    rle_encode,
    to_masks,
)
from rgpt_rt.inputs.preprocess import preprocess_frame_pil
from rgpt_rt.testing import tiny_config

RNG = np.random.default_rng(0)


def _frame(h=30, w=40):
    return RNG.integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_frame_sources_agree(tmp_path):
    f = _frame()
    path = tmp_path / "f.png"
    Image.fromarray(f).save(path)
    for src in (f, Image.fromarray(f), path, str(path), path.read_bytes()):
        np.testing.assert_array_equal(load_frame(src), f)
    np.testing.assert_array_equal(load_frame(np.ascontiguousarray(f[..., ::-1]), bgr=True), f)
    grey = Image.fromarray(f[..., 0])
    assert load_frame(grey).shape == (30, 40, 3)


# ---- COCO RLE ------------------------------------------------------------------------------------------


def test_rle_hand_made_uncompressed():
    # 3x2 mask (h=3, w=2); column-major order: col0 = [0, 1, 1], col1 = [1, 0, 0] -> runs 1 zero, 3 ones, 2 zeros.
    m = rle_decode({"size": [3, 2], "counts": [1, 3, 2]})
    np.testing.assert_array_equal(m, np.array([[0, 1], [1, 0], [1, 0]], bool))
    # A mask starting with ones has a leading zero-length run.
    np.testing.assert_array_equal(rle_decode({"size": [2, 2], "counts": [0, 2, 2]}), np.array([[1, 0], [1, 0]], bool))


def test_rle_hand_made_compressed():
    # Counts [1, 3, 2, 4] in COCO's string form: a value in [0, 16) is one char chr(48 + v), and from the
    # fourth count on the value stored is the difference to the count two places back (4 - 3 = 1).
    m = np.array([[0, 0], [1, 1], [1, 1], [1, 1], [0, 1]], bool)  # column-major runs: 1 zero, 3 ones, 2 zeros, 4 ones
    assert rle_encode(m, compressed=False)["counts"] == [1, 3, 2, 4]
    assert rle_encode(m)["counts"] == "1321"
    np.testing.assert_array_equal(rle_decode({"size": [5, 2], "counts": "1321"}), m)
    # 50 needs two 5-bit groups: low group 18 with the sign bit set forces a continuation -> 'b' then '1'.
    big = np.zeros((10, 10), bool)
    big[:, 5:] = True  # 50 zeros then 50 ones
    assert rle_encode(big)["counts"] == "b1b1"
    np.testing.assert_array_equal(rle_decode({"size": [10, 10], "counts": b"b1b1"}), big)  # bytes accepted


@pytest.mark.parametrize("seed", range(5))
def test_rle_roundtrip_random(seed):
    r = np.random.default_rng(seed)
    m = r.random((r.integers(1, 40), r.integers(1, 40))) > 0.6
    for compressed in (True, False):
        np.testing.assert_array_equal(rle_decode(rle_encode(m, compressed=compressed)), m)


@pytest.mark.parametrize(
    "bad,msg",
    [
        ({"size": [2, 2], "counts": [1, 2]}, "cover 3 pixels"),
        ({"size": [2, 2], "counts": "1 "}, "invalid character"),
        ({"size": [2, 2], "counts": "1\x7f"}, "invalid character"),
        ({"counts": [4]}, "must be a dict"),
        ({"size": "x", "counts": [4]}, "'size' must be"),
    ],
)
def test_rle_errors(bad, msg):
    with pytest.raises(MaskError, match=msg):
        rle_decode(bad)


# ---- regions ---------------------------------------------------------------------------------------------


def test_equivalent_regions_give_identical_masks():
    h, w = 30, 40
    rect = np.zeros((h, w), bool)
    rect[5:17, 8:30] = True
    forms = [
        Box(8, 5, 30, 17),
        (8, 5, 30, 17),
        rect,
        rect.astype(np.uint8),
        rect.astype(np.uint8) * 255,
        rect.astype(np.float32),
        Polygon([(8, 5), (30, 5), (30, 17), (8, 17)]),
        Polygon([8, 5, 30, 5, 30, 17, 8, 17]),
        rle_encode(rect),
        rle_encode(rect, compressed=False),
    ]
    for form in forms:
        np.testing.assert_array_equal(to_masks(form, (h, w))[0], rect.astype(np.float32), err_msg=repr(form)[:80])


def test_polygon_triangle_pixel_centres():
    m = Polygon([(0, 0), (4, 0), (0, 4)])
    got = to_masks(m, (4, 4))[0].astype(int)
    # centre (c+.5, r+.5) inside x + y < 4  <=>  c + r <= 2
    ref = np.array([[int(c + r <= 2) for c in range(4)] for r in range(4)])
    np.testing.assert_array_equal(got, ref)


def test_soft_masks_and_stacks():
    h, w = 6, 7
    soft = np.linspace(0, 1, h * w, dtype=np.float32).reshape(h, w)
    stack = np.stack([soft, 1 - soft])
    out = to_masks([stack, (0, 0, 3, 3)], (h, w))
    assert out.shape == (3, h, w)
    np.testing.assert_allclose(out[0], soft)
    assert to_masks(None, (h, w)).shape == (0, h, w)
    assert to_masks([], (h, w)).shape == (0, h, w)


def test_box_partly_outside_is_clipped():
    m = to_masks(Box(-5, -5, 3, 2), (6, 6))[0]
    assert m.sum() == 6 and m[:2, :3].all()


# ---- preprocessing ---------------------------------------------------------------------------------------


def _expand2square(img: Image.Image, fill) -> Image.Image:
    w, h = img.size
    side = max(w, h)
    canvas = Image.new(img.mode, (side, side), fill)
    canvas.paste(img, ((side - w) // 2, (side - h) // 2))
    return canvas


@pytest.mark.parametrize("impl", ["native", "pil"])
@pytest.mark.parametrize("layout", ["llava", "vila"])
@pytest.mark.parametrize("hw", [(30, 40), (50, 20), (56, 56), (300, 200)])
def test_preprocess_frame_matches_transformers_processor(impl, layout, hw):
    transformers = pytest.importorskip("transformers")
    cfg: VisionConfig = tiny_config(layout).vision
    f = _frame(*hw)
    s = cfg.image_size
    proc = transformers.CLIPImageProcessorPil(
        size={"shortest_edge": s},
        crop_size={"height": s, "width": s},
        resample=Image.BICUBIC,
        image_mean=list(cfg.image_mean),
        image_std=list(cfg.image_std),
    )
    padded = _expand2square(Image.fromarray(f), tuple(int(m * 255) for m in cfg.image_mean))
    ref = proc(images=padded, return_tensors="np")["pixel_values"][0]
    got = (preprocess_frame if impl == "native" else preprocess_frame_pil)(f, cfg)
    assert got.shape == (3, s, s) and got.dtype == np.float32
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-5)


def test_preprocess_masks_pads_like_the_frame():
    # A mask covering exactly the frame, padded to square and resized, must cover exactly the frame's
    # footprint in the square image (and be zero in the padding bands).
    h, w, s = 20, 40, 40
    m = preprocess_masks(np.ones((1, h, w), np.float32), s)[0]
    assert m.shape == (s, s)
    np.testing.assert_allclose(m[10:30], 1.0)
    np.testing.assert_allclose(m[:10], 0.0)
    np.testing.assert_allclose(m[30:], 0.0)
    assert preprocess_masks(np.zeros((0, h, w), np.float32), s).shape == (0, s, s)


def test_corrupt_bytes_do_not_decode():
    buf = io.BytesIO()
    Image.fromarray(_frame()).save(buf, format="PNG")
    from rgpt_rt.errors import FrameError

    with pytest.raises(FrameError, match="cannot decode image"):
        load_frame(buf.getvalue()[: len(buf.getvalue()) // 2])
