"""float64 numpy references for the native ops (no torch): the definitions, written plainly."""

from __future__ import annotations

import math

import numpy as np


def linear_weights(out_size: int, in_size: int) -> np.ndarray:
    """[out, in] 1-D linear resampling, align_corners=False (half-pixel centres, clamped at the edges)."""
    m = np.zeros((out_size, in_size))
    scale = in_size / out_size
    for i in range(out_size):
        src = max((i + 0.5) * scale - 0.5, 0.0)
        i0 = min(int(math.floor(src)), in_size - 1)
        i1 = min(i0 + 1, in_size - 1)
        m[i, i0] += 1.0 - (src - i0)
        m[i, i1] += src - i0
    return m


def pool_weights(out_size: int, in_size: int) -> np.ndarray:
    """[out, in] adaptive average pooling windows [floor(i*in/out), ceil((i+1)*in/out))."""
    m = np.zeros((out_size, in_size))
    for i in range(out_size):
        lo, hi = (i * in_size) // out_size, -((-(i + 1) * in_size) // out_size)
        m[i, lo:hi] = 1.0 / (hi - lo)
    return m


def region_pool_ref(fmap: np.ndarray, masks: np.ndarray, grid: int, eps: float = 1e-8):
    """fmap [C, H, W], masks [N, Hm, Wm] -> image [G*G, C], regions [N, C], all in float64."""
    f = np.asarray(fmap, np.float64)
    m = np.asarray(masks, np.float64)
    c, h, w = f.shape
    image = np.einsum("ih,chw,jw->ijc", pool_weights(grid, h), f, pool_weights(grid, w)).reshape(grid * grid, c)
    if m.shape[0] == 0:
        return image, np.zeros((0, c))
    wts = np.einsum("yh,nhw,xw->nyx", linear_weights(h, m.shape[1]), m, linear_weights(w, m.shape[2]))
    regions = np.einsum("nyx,cyx->nc", wts, f) / (wts.sum(axis=(1, 2)) + eps)[:, None]
    return image, regions


def assert_close(got, ref, atol: float, rtol: float, name: str) -> None:
    """Elementwise |got - ref| <= atol + rtol * |ref|, plus a normalised-error bound; readable failures."""
    got = np.asarray(got, np.float64)
    ref = np.asarray(ref, np.float64)
    assert got.shape == ref.shape, f"{name}: shape {got.shape} != {ref.shape}"
    err = np.abs(got - ref)
    bad = np.argwhere(err > atol + rtol * np.abs(ref))
    if bad.size:
        first = ", ".join(f"{tuple(i)}: got {got[tuple(i)]:.6g} want {ref[tuple(i)]:.6g}" for i in bad[:5])
        raise AssertionError(f"{name}: {len(bad)} of {got.size} elements out of tolerance; first: {first}")
    denom = np.linalg.norm(ref)
    if denom > 0:
        nerr = np.linalg.norm(got - ref) / denom
        assert nerr < 10 * rtol + atol, f"{name}: normalised error {nerr:.3g}"
