"""region_pool benchmark: the native op against the torch reference composition, as ratios in one run.

    python tests/bench/bench_region_pool.py [--json FILE] [--device cpu|cuda] [--channels 1024]

Reference shape: C=1024 map of 96x96, 24x24 image grid, masks at 336x336, N = 1, 8, 32. Two mask sets:
"objects" (random ellipses covering 1-25% of the image, as a segmenter gives) and "full" (soft masks
non-zero everywhere: the worst case for the op, which skips zero weights). On CUDA it also prints the
achieved bandwidth (map + masks + outputs) against a device-to-device copy measured in the same run.
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(__file__))
from common import copy_bandwidth_gbs, emit, time_cpu, time_cuda  # noqa: E402

from rgpt_rt.model.region import region_pool_composed  # noqa: E402
from rgpt_rt.ops import region_pool  # noqa: E402


def object_masks(n: int, size: int, rng) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size]
    out = np.zeros((n, size, size), np.float32)
    for k in range(n):
        area = rng.uniform(0.01, 0.25) * size * size
        ry = np.sqrt(area / np.pi) * rng.uniform(0.6, 1.6)
        rx = area / (np.pi * ry)
        cy, cx = rng.uniform(0, size, 2)
        out[k] = (((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1).astype(np.float32)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--json", default=None)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--channels", type=int, default=1024)
    ap.add_argument("--dtype", default=None, help="f32 | f16 | bf16 (default: f32 on CPU, f16 on CUDA)")
    args = ap.parse_args()
    dev = args.device
    dtype = {"f32": torch.float32, "f16": torch.float16, "bf16": torch.bfloat16}[
        args.dtype or ("f16" if dev == "cuda" else "f32")
    ]
    rng = np.random.default_rng(0)
    c, hw, grid, s = args.channels, 96, 24, 336
    fmap = torch.randn(c, hw, hw).to(dtype).to(dev)
    rows = []
    copy_gbs = copy_bandwidth_gbs(int(fmap.numel() * fmap.element_size())) if dev == "cuda" else None
    timer = time_cuda if dev == "cuda" else time_cpu
    for kind in ("objects", "full"):
        for n in (1, 8, 32):
            m = object_masks(n, s, rng) if kind == "objects" else rng.uniform(0.05, 1.0, (n, s, s)).astype(np.float32)
            masks = torch.from_numpy(m).to(dev)
            native_ms = timer(lambda: region_pool(fmap, masks, grid))
            ref_ms = timer(lambda: region_pool_composed(fmap, masks, grid))
            row = {
                "device": dev,
                "dtype": str(dtype).split(".")[-1],
                "masks": kind,
                "N": n,
                "native_ms": native_ms,
                "torch_ref_ms": ref_ms,
                "speedup": ref_ms / native_ms,
            }
            if dev == "cuda":
                nbytes = (
                    fmap.numel() * fmap.element_size() + masks.numel() * 4 + (grid * grid + n) * c * fmap.element_size()
                )
                gbs = nbytes / (native_ms * 1e-3) / 1e9
                row.update({"native_GBps": gbs, "copy_GBps": copy_gbs, "frac_of_copy": gbs / copy_gbs})
            rows.append(row)
    emit(rows, args.json, f"region_pool: C={c}, map {hw}x{hw}, grid {grid}x{grid}, masks {s}x{s}")


if __name__ == "__main__":
    main()
