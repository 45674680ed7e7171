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
