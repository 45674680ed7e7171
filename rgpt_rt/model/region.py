"""Feature refinement and `region_pool`, the torch reference of the native op of the same name.

Refinement raises the patch grid g to 2^k g with stride-2 transposed convolutions. `region_pool` then reads
the refined map once and produces both branches:
  image branch  = patch merge: adaptive average pool [C, H, W] -> [G*G, C]
  region branch = mask pooling: masks bilinearly resized (align_corners=False) to [H, W] as soft weights w;
                  r = sum(w * f) / (sum(w) + eps); an all-zero mask gives a zero vector.
Both resamplings are linear and separable, so they are written here as small matrices (rows of pooling or
interpolation weights) applied along each axis: the same arithmetic the fused kernels perform, and the
form that makes "one read of the map" explicit.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..config import RegionConfig


class LayerNorm2d(nn.Module):
    """LayerNorm over the channel axis of a [B, C, H, W] map (per pixel)."""

    def __init__(self, channels: int, eps: float = 1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mu = x.mean(1, keepdim=True)
        var = (x - mu).pow(2).mean(1, keepdim=True)
        x = (x - mu) / torch.sqrt(var + self.eps)
        return self.weight[:, None, None] * x + self.bias[:, None, None]


class FeatureRefiner(nn.Sequential):
    """[B, C, g, g] -> [B, C, 2^k g, 2^k g]: (ConvT 2x2/2 -> LayerNorm2d -> GELU) x (k-1) -> ConvT -> GELU.

    For k = 2 the parameters are `0.*` (ConvT), `1.*` (LayerNorm2d), `3.*` (ConvT), as in checkpoints. k = 0 (a
    checkpoint without a region extractor) is the identity.
    """

    def __init__(self, channels: int, cfg: RegionConfig):
        if cfg.refine_depth == 0:  # no region extractor (an image-only LLaVA): the identity, no parameters
            super().__init__()
            return
        mods: list[nn.Module] = []
        for _ in range(cfg.refine_depth - 1):
            mods += [nn.ConvTranspose2d(channels, channels, 2, 2), LayerNorm2d(channels), nn.GELU()]
        mods += [nn.ConvTranspose2d(channels, channels, 2, 2), nn.GELU()]
        super().__init__(*mods)


def pool_matrix(out_size: int, in_size: int, dtype=torch.float32, device=None) -> torch.Tensor:
    """[out, in] weights of adaptive average pooling: row i averages in[floor(i*in/out) : ceil((i+1)*in/out)]."""
    m = torch.zeros(out_size, in_size, dtype=dtype, device=device)
    for i in range(out_size):
        lo = (i * in_size) // out_size
        hi = -((-(i + 1) * in_size) // out_size)
        m[i, lo:hi] = 1.0 / (hi - lo)
    return m


def bilinear_matrix(out_size: int, in_size: int, dtype=torch.float32, device=None) -> torch.Tensor:
    """[out, in] weights of 1-D linear resampling with align_corners=False (half-pixel centres, edge clamp)."""
    m = torch.zeros(out_size, in_size, dtype=dtype, device=device)
    scale = in_size / out_size
    for i in range(out_size):
        src = max((i + 0.5) * scale - 0.5, 0.0)
        i0 = min(int(math.floor(src)), in_size - 1)
        i1 = min(i0 + 1, in_size - 1)
        frac = src - i0
        m[i, i0] += 1.0 - frac
        m[i, i1] += frac
    return m


def mask_weights(masks: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Soft masks [N, Hm, Wm] bilinearly resized (align_corners=False) to the map's grid: float32 [N, h, w]."""
    ry = bilinear_matrix(h, masks.shape[1], device=masks.device)
    rx = bilinear_matrix(w, masks.shape[2], device=masks.device)
    return torch.einsum("yh,nhw,xw->nyx", ry, masks.float(), rx)


def region_pool(
    feature_map: torch.Tensor, masks: torch.Tensor, image_grid: int, eps: float = 1e-8
) -> tuple[torch.Tensor, torch.Tensor]:
    """Patch merge and mask pooling of one refined map, accumulated in float32.

    feature_map: [C, H, W] (channels-first, any float dtype)
    masks:       [N, Hm, Wm] soft masks in [0, 1] at the vision input size (N may be 0)
    returns      image tokens [G*G, C] (row-major over the G x G grid) and region vectors [N, C],
                 both in feature_map's dtype.
    """
    if feature_map.dim() != 3:
        raise ValueError(f"feature_map must be [C, H, W], got shape {tuple(feature_map.shape)}")
    if masks.dim() != 3:
        raise ValueError(f"masks must be [N, Hm, Wm], got shape {tuple(masks.shape)}")
    c, h, w = feature_map.shape
    n, hm, wm = masks.shape
    dev = feature_map.device
    f = feature_map.float()
    py, px = pool_matrix(image_grid, h, device=dev), pool_matrix(image_grid, w, device=dev)
    image = torch.einsum("ih,chw,jw->ijc", py, f, px).reshape(image_grid * image_grid, c)
    if n == 0:
        return image.to(feature_map.dtype), f.new_zeros(0, c).to(feature_map.dtype)
    weights = mask_weights(masks, h, w)  # [N, H, W] masks on the map's grid
    total = weights.sum(dim=(1, 2))  # [N]
    regions = torch.einsum("nyx,cyx->nc", weights, f) / (total + eps)[:, None]
    return image.to(feature_map.dtype), regions.to(feature_map.dtype)


def region_pool_composed(
    feature_map: torch.Tensor, masks: torch.Tensor, image_grid: int, eps: float = 1e-8
) -> tuple[torch.Tensor, torch.Tensor]:
    """The same result from torch's own ops (adaptive_avg_pool2d + bilinear interpolate): a second reference."""
    c, h, w = feature_map.shape
    f = feature_map.float()
    image = F.adaptive_avg_pool2d(f[None], image_grid)[0].flatten(1).T  # [G*G, C]
    if masks.shape[0] == 0:
        return image, f.new_zeros(0, c)
    wts = F.interpolate(masks.float()[None], size=(h, w), mode="bilinear", align_corners=False)[0]
    regions = torch.einsum("nhw,chw->nc", wts, f) / (wts.sum(dim=(1, 2)) + eps)[:, None]
    return image, regions
