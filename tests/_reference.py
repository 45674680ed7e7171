"""Test helper, not a test module: float64 numpy references for the native ops (no torch), written plainly."""

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


def rms_norm_ref(x, weight, eps: float):
    """x [..., D] -> weight * x / sqrt(mean(x^2) + eps), float64."""
    x = np.asarray(x, np.float64)
    return np.asarray(weight, np.float64) * x / np.sqrt((x * x).mean(-1, keepdims=True) + eps)


def rope_ref(x, pos, inv_freq):
    """x [B, Hx, D] rotated at pos[b] (rotate-half convention), float64 angles."""
    x = np.asarray(x, np.float64)
    half = x.shape[-1] // 2
    angle = np.asarray(pos, np.float64)[:, None] * np.asarray(inv_freq, np.float64)[None]  # [B, D/2]
    c, s = np.cos(angle)[:, None], np.sin(angle)[:, None]
    x1, x2 = x[..., :half], x[..., half:]
    return np.concatenate([x1 * c - x2 * s, x2 * c + x1 * s], axis=-1)


def decode_attention_ref(q, k_cache, v_cache, pos, scale: float):
    """q [B, H, D], caches [Bc, Hkv, S, D] -> [B, H, D]: head h reads kv head h // (H / Hkv), slots 0..pos[b]."""
    q = np.asarray(q, np.float64)
    b_, h_, _ = q.shape
    group = h_ // k_cache.shape[1]
    out = np.zeros(q.shape)
    for b in range(b_):
        n = int(pos[b]) + 1
        for h in range(h_):
            k = np.asarray(k_cache[b, h // group, :n], np.float64)
            v = np.asarray(v_cache[b, h // group, :n], np.float64)
            z = scale * (k @ q[b, h])
            p = np.exp(z - z.max())
            out[b, h] = (p / p.sum()) @ v
    return out
