"""preprocess_frame benchmark: the native op against Pillow (pad + bicubic resize + normalise), same run.

    python tests/bench/bench_preprocess_frame.py [--json FILE]

A 1920x1080 RGB frame to 336x336 (CLIP) and 384x384 (SigLIP); masks (N = 1, 8) with the same geometry.
On a CUDA machine the GPU op is timed too (frame already on the device).
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
from common import emit, time_cpu  # noqa: E402

from rgpt_rt.config import CLIP_MEAN, CLIP_STD, VisionConfig  # noqa: E402
from rgpt_rt.inputs.preprocess import preprocess_frame_pil, preprocess_masks_pil  # noqa: E402
from rgpt_rt.ops import preprocess_frame, preprocess_masks  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, (1080, 1920, 3), dtype=np.uint8)
    rows = []
    for size in (336, 384):
        cfg = VisionConfig("clip_vision_model", 8, 8, 1, 1, size, 14, "quick_gelu", 1e-5)
        nat = time_cpu(lambda: preprocess_frame(frame, size, CLIP_MEAN, CLIP_STD), repeats=10)
        pil = time_cpu(lambda: preprocess_frame_pil(frame, cfg), repeats=10)
        row = {"op": "frame", "size": size, "N": "", "native_ms": nat, "pil_ms": pil, "speedup": pil / nat}
        try:
            import torch

            if torch.cuda.is_available():
                import sys as _s

                _s.path.insert(0, os.path.dirname(__file__))
                from common import time_cuda

                fr = torch.from_numpy(frame).cuda()
                row["cuda_ms"] = time_cuda(lambda: preprocess_frame(fr, size, CLIP_MEAN, CLIP_STD))
        except ImportError:
            pass
        rows.append(row)
    for n in (1, 8):
        masks = (rng.random((n, 1080, 1920)) > 0.5).astype(np.float32)
        nat = time_cpu(lambda: preprocess_masks(masks, 336), repeats=5)
        pil = time_cpu(lambda: preprocess_masks_pil(masks, 336), repeats=5)
        rows.append({"op": "masks", "size": 336, "N": n, "native_ms": nat, "pil_ms": pil, "speedup": pil / nat})
    emit(rows, args.json, "preprocess_frame: 1920x1080 frame")


if __name__ == "__main__":
    main()
