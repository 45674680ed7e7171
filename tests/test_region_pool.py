"""region_pool (torch reference): hand-computed cases and agreement with torch's own pool + interpolate."""

import pytest
import torch
import torch.nn.functional as F

from rgpt_rt.model.region import bilinear_matrix, pool_matrix, region_pool, region_pool_composed


def test_two_by_two_grid_by_hand():
    # One channel, values 1 2 / 3 4.
    fmap = torch.tensor([[[1.0, 2.0], [3.0, 4.0]]])
    image, regions = region_pool(fmap, torch.ones(1, 2, 2), image_grid=1)
    assert image.tolist() == [[2.5]]  # mean of the four values
    assert regions.tolist() == [[2.5]]  # full mask -> global mean
    image2, _ = region_pool(fmap, torch.ones(1, 2, 2), image_grid=2)
    assert image2.flatten().tolist() == [1.0, 2.0, 3.0, 4.0]  # identity pooling, row-major tokens


def test_one_pixel_mask_picks_that_pixel():
    fmap = torch.arange(2 * 4 * 4, dtype=torch.float32).view(2, 4, 4)
    mask = torch.zeros(1, 4, 4)
    mask[0, 2, 1] = 1.0  # same resolution as the map: bilinear resampling is the identity
    _, regions = region_pool(fmap, mask, image_grid=2)
    torch.testing.assert_close(regions[0], fmap[:, 2, 1], rtol=0, atol=1e-6)


def test_soft_weights_average_by_hand():
    fmap = torch.tensor([[[1.0, 2.0], [3.0, 4.0]]])
    mask = torch.tensor([[[1.0, 0.0], [0.0, 0.5]]])
    _, regions = region_pool(fmap, mask, image_grid=1)
    assert regions.item() == pytest.approx((1.0 * 1 + 4.0 * 0.5) / 1.5, abs=1e-6)


def test_empty_mask_gives_zeros_and_full_mask_the_global_mean():
    fmap = torch.randn(8, 12, 12)
    masks = torch.stack([torch.zeros(48, 48), torch.ones(48, 48)])
    _, regions = region_pool(fmap, masks, image_grid=3)
    assert torch.count_nonzero(regions[0]) == 0
    torch.testing.assert_close(regions[1], fmap.mean(dim=(1, 2)), rtol=1e-5, atol=1e-6)


def test_no_regions():
    image, regions = region_pool(torch.randn(4, 8, 8), torch.zeros(0, 32, 32), image_grid=2)
    assert image.shape == (4, 4) and regions.shape == (0, 4)


@pytest.mark.parametrize(
    "c,h,w,mh,mw,grid",
    [
        (5, 16, 16, 56, 56, 4),
        (3, 23, 17, 40, 33, 5),
        (7, 12, 12, 5, 9, 5),
        (4, 9, 9, 9, 9, 4),
        (2, 96, 96, 336, 336, 24),
    ],
)
def test_agrees_with_adaptive_pool_and_bilinear_interpolate(c, h, w, mh, mw, grid):
    fmap = torch.randn(c, h, w)
    masks = torch.rand(6, mh, mw)
    masks[0] = 0  # empty
    masks[1] = (masks[1] > 0.7).float()  # binary
    masks[2, :, :] = 0
    masks[2, -1, -1] = 1  # one border pixel
    got = region_pool(fmap, masks, grid)
    ref = region_pool_composed(fmap, masks, grid)
    for g, r, name in zip(got, ref, ("image", "regions")):
        err = (g - r).abs().max().item()
        assert err < 1e-5, f"{name}: max abs error {err:.2e}"


@pytest.mark.parametrize("out_size,in_size", [(4, 16), (5, 23), (24, 96), (7, 3), (16, 16)])
def test_resampling_matrices_match_torch(out_size, in_size):
    eye = torch.eye(in_size)[None]  # [1, in, in]: resampling the identity reveals the weights
    ref_pool = F.adaptive_avg_pool1d(eye, out_size)[0].T  # [out, in]
    torch.testing.assert_close(pool_matrix(out_size, in_size), ref_pool, rtol=0, atol=1e-7)
    ref_lin = F.interpolate(eye, size=out_size, mode="linear", align_corners=False)[0].T
    # torch forms the source coordinate in float32, we in float64: they differ by float32 rounding only.
    torch.testing.assert_close(bilinear_matrix(out_size, in_size), ref_lin, rtol=0, atol=2e-6)


def test_half_precision_map_accumulates_in_float32():
    fmap = torch.randn(16, 24, 24)
    masks = torch.rand(3, 96, 96)
    ref = region_pool(fmap, masks, 6)
    for dtype in (torch.float16, torch.bfloat16):
        got = region_pool(fmap.to(dtype), masks, 6)
        assert got[0].dtype == dtype and got[1].dtype == dtype
        rel = max(((g.float() - r).norm() / r.norm()).item() for g, r in zip(got, ref))
        assert rel < 1e-2, rel


def test_bad_shapes_are_clear_errors():
    with pytest.raises(ValueError, match=r"feature_map must be \[C, H, W\]"):
        region_pool(torch.randn(1, 4, 8, 8), torch.zeros(1, 8, 8), 2)
    with pytest.raises(ValueError, match=r"masks must be \[N, Hm, Wm\]"):
        region_pool(torch.randn(4, 8, 8), torch.zeros(8, 8), 2)


# ---- the native op (rgpt_rt.ops.region_pool, C++ CPU twin) against the float64 numpy reference ----------

import numpy as np  # noqa: E402
from _reference import assert_close, region_pool_ref  # noqa: E402

from rgpt_rt import _native  # noqa: E402
from rgpt_rt.ops import region_pool as native_region_pool  # noqa: E402

CASES = [  # C, H, W, Hm, Wm, G, N
    (19, 23, 17, 56, 40, 5, 3),
    (8, 16, 16, 56, 56, 4, 1),
    (5, 9, 13, 9, 13, 4, 0),
    (16, 96, 96, 336, 336, 24, 8),
    (3, 20, 20, 70, 70, 5, 64),
    (7, 11, 11, 5, 5, 11, 2),  # masks smaller than the map: upsampling
    (4, 6, 6, 30, 30, 8, 2),  # grid larger than the map: overlapping windows
]


def _masks(rng, n, hm, wm):
    m = rng.random((n, hm, wm)).astype(np.float32)
    if n >= 4:
        m[0] = 0  # empty
        m[1] = 1  # full
        m[2] = 0
        m[2, hm // 2, wm // 3] = 1  # one pixel
        m[3] = 0
        m[3, :, -1] = 1  # right border column
    return m


@pytest.mark.parametrize("case", CASES, ids=[f"C{c[0]}_{c[1]}x{c[2]}_m{c[3]}x{c[4]}_G{c[5]}_N{c[6]}" for c in CASES])
def test_native_matches_float64_reference(case):
    c, h, w, hm, wm, g, n = case
    rng = np.random.default_rng(sum(case))
    fmap = rng.standard_normal((c, h, w)).astype(np.float32)
    masks = _masks(rng, n, hm, wm)
    image, regions = native_region_pool(fmap, masks, g)
    ref_image, ref_regions = region_pool_ref(fmap, masks, g)
    assert image.dtype == np.float32 and image.shape == (g * g, c) and regions.shape == (n, c)
    assert_close(image, ref_image, atol=1e-5, rtol=1e-5, name="image")
    assert_close(regions, ref_regions, atol=1e-5, rtol=1e-5, name="regions")
    if n >= 4:
        assert not regions[0].any()  # empty mask -> exact zeros


def test_native_half_precision_maps():
    rng = np.random.default_rng(1)
    fmap = rng.standard_normal((12, 23, 17)).astype(np.float16)
    masks = _masks(rng, 5, 40, 33)
    image, regions = native_region_pool(fmap, masks, 6)
    assert image.dtype == np.float16
    ref_image, ref_regions = region_pool_ref(fmap.astype(np.float64), masks, 6)
    assert_close(image, ref_image, atol=2e-3, rtol=1e-3, name="image f16")
    assert_close(regions, ref_regions, atol=2e-3, rtol=1e-3, name="regions f16")
    t = torch.from_numpy(fmap.astype(np.float32)).bfloat16()
    bi, br = native_region_pool(t, torch.from_numpy(masks), 6)
    assert bi.dtype == torch.bfloat16
    ref_bi, ref_br = region_pool_ref(t.float().numpy(), masks, 6)
    assert_close(bi.float().numpy(), ref_bi, atol=1e-2, rtol=8e-3, name="image bf16")
    assert_close(br.float().numpy(), ref_br, atol=1e-2, rtol=8e-3, name="regions bf16")


def test_native_non_contiguous_inputs():
    rng = np.random.default_rng(2)
    base = rng.standard_normal((23, 11, 34)).astype(np.float32)  # [H, C, 2W]
    fmap = base.transpose(1, 0, 2)[:, :, ::2]  # [C, H, W] with every stride unusual
    masks_base = rng.random((6, 60, 50)).astype(np.float32)
    masks = masks_base[::2, 1::2, :]  # [3, 30, 50]
    assert not fmap.flags.c_contiguous and not masks.flags.c_contiguous
    got = native_region_pool(fmap, masks, 5)
    ref = region_pool_ref(np.ascontiguousarray(fmap), np.ascontiguousarray(masks), 5)
    for x, r, name in zip(got, ref, ("image", "regions")):
        assert_close(x, r, atol=1e-5, rtol=1e-5, name=name)
    rev = native_region_pool(fmap[:, ::-1], masks, 5)  # negative strides are copied, not rejected
    assert_close(rev[0], region_pool_ref(np.ascontiguousarray(fmap[:, ::-1]), masks, 5)[0], 1e-5, 1e-5, "reversed")


def test_native_guard_bands_are_untouched():
    rng = np.random.default_rng(3)
    c, g, n, pad = 13, 4, 5, 7
    fmap = rng.standard_normal((c, 15, 15)).astype(np.float32)
    masks = rng.random((n, 30, 30)).astype(np.float32)
    img_buf = np.full(((g * g + 2 * pad), c), 1234.5, np.float32)
    reg_buf = np.full(((n + 2 * pad), c), -777.0, np.float32)
    image, regions = img_buf[pad:-pad], reg_buf[pad:-pad]
    _native.cpu().region_pool(fmap, masks, image, regions, g, 1e-8)
    assert (img_buf[:pad] == 1234.5).all() and (img_buf[-pad:] == 1234.5).all()
    assert (reg_buf[:pad] == -777.0).all() and (reg_buf[-pad:] == -777.0).all()
    assert_close(image, region_pool_ref(fmap, masks, g)[0], 1e-5, 1e-5, "image in guarded buffer")


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_native_thread_count_does_not_change_results(threads):
    rng = np.random.default_rng(4)
    fmap = rng.standard_normal((17, 20, 20)).astype(np.float32)
    masks = rng.random((3, 40, 40)).astype(np.float32)
    one = native_region_pool(fmap, masks, 5, threads=1)
    many = native_region_pool(fmap, masks, 5, threads=threads)
    for a, b in zip(one, many):
        np.testing.assert_array_equal(a, b)


def test_native_invalid_inputs_are_clear_errors():
    f = np.zeros((4, 8, 8), np.float32)
    m = np.zeros((2, 16, 16), np.float32)
    with pytest.raises(ValueError, match=r"expects feature_map \[C, H, W\]"):
        native_region_pool(f[0], m, 2)
    with pytest.raises(ValueError, match="feature_map has dtype float64"):
        native_region_pool(f.astype(np.float64), m, 2)
    with pytest.raises(ValueError, match=r"image_grid must be in \[1, 4096\]"):
        native_region_pool(f, m, 0)
    with pytest.raises(ValueError, match="feature_map must be non-empty"):
        native_region_pool(np.zeros((4, 0, 8), np.float32), m, 2)
    c = _native.cpu()
    img, reg = np.zeros((4, 4), np.float32), np.zeros((2, 4), np.float32)
    with pytest.raises(ValueError, match=r"image output must be \[4, 4\]"):
        c.region_pool(f, m, np.zeros((5, 4), np.float32), reg, 2, 1e-8)
    with pytest.raises(ValueError, match="must be row-major contiguous"):
        c.region_pool(f, m, np.zeros((4, 8), np.float32)[:, ::2], reg, 2, 1e-8)
    with pytest.raises(ValueError, match="image and regions outputs must have the same dtype"):
        c.region_pool(f, m, img.astype(np.float16), reg, 2, 1e-8)
    with pytest.raises(ValueError, match=r"feature_map has an element type no op takes \(buffer format 'd'\)"):
        c.region_pool(f.astype(np.float64), m, img, reg, 2, 1e-8)
    with pytest.raises(ValueError, match="unknown dtype 'f64'"):
        c.region_pool((f.ctypes.data, "f64", [4, 8, 8], [64, 8, 1], 256), m, img, reg, 2, 1e-8)
    with pytest.raises(ValueError, match="reaches element 256 but its buffer holds 256"):
        c.region_pool((f.ctypes.data, "f32", [4, 8, 9], [64, 8, 1], 256), m, img, reg, 2, 1e-8)
    with pytest.raises(TypeError):
        c.region_pool(f, m, img, reg, 2, 1e-8, 0)  # threads, workspace and stream are keyword-only
    with pytest.raises(TypeError):
        c.region_pool(f, "f32", m, img, reg, "f32", 2, 1e-8, 0)  # the old call form with dtype strings
    ro = np.zeros((4, 4), np.float32)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match=r"image output \(an output\) is read-only"):
        c.region_pool(f, m, ro, reg, 2, 1e-8)


def test_torch_custom_op_registration_and_model_default():
    fmap = torch.randn(6, 12, 12)
    masks = torch.rand(2, 28, 28)
    image, regions = native_region_pool(fmap, masks, 3)
    ref = region_pool(fmap, masks, 3)
    torch.testing.assert_close(image, ref[0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(regions, ref[1], rtol=1e-5, atol=1e-5)
    torch.library.opcheck(torch.ops.rgpt.region_pool.default, (fmap, masks, 3, 1e-8))
    from rgpt_rt.testing import make_tiny_model

    model = make_tiny_model("llava")
    assert model.native_ops
    with torch.no_grad():
        refined = model.encode_image(torch.randn(1, 3, 56, 56))[0]
        native = model.pool(refined, masks)
        model.native_ops = False
        reference = model.pool(refined, masks)
    for a, b in zip(native, reference):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
