"""int8_linear benchmark: the native weight-only int8 product against a dense matmul of the same shape in the
model's float dtype (fp32 on the CPU, fp16 on CUDA), as ratios in one run, at Vicuna-7B's projection shapes
and 1, 4, 8 rows (decode of one sequence, and of describe_many's batch).

    python tests/bench/bench_int8_linear.py [--device cpu|cuda] [--rows 1,4,8] [--json FILE]

On CUDA each row also gives the int8 kernel's bandwidth (weight bytes / time) against a device-to-device copy
measured in the same run.
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(__file__))
from common import copy_bandwidth_gbs, emit, time_cpu, time_cuda  # noqa: E402

from rgpt_rt.ops import int8_linear, quantize_weight  # noqa: E402

SHAPES = [(4096, 4096), (12288, 4096), (22016, 4096), (4096, 11008)]  # o_proj, fused qkv, fused gate_up, down


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--rows", default="1,4,8")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    dev = args.device
    on_gpu = dev.startswith("cuda")
    dtype = torch.float16 if on_gpu else torch.float32
    timer = time_cuda if on_gpu else time_cpu
    copy = copy_bandwidth_gbs(1 << 28) if on_gpu else None
    rng = np.random.default_rng(0)
    rows = []
    with torch.inference_mode():
        for n, k in SHAPES:
            q, s = quantize_weight(rng.standard_normal((n, k), dtype=np.float32))
            qt, st = torch.from_numpy(q).to(dev), torch.from_numpy(s).to(dev)
            dense = (qt.float() * st[:, None]).to(dtype)
            for m in [int(r) for r in args.rows.split(",")]:
                x = torch.randn(m, k, device=dev).to(dtype)
                a = timer(lambda x=x, qt=qt, st=st: int8_linear(x, qt, st))
                b = timer(lambda x=x, dense=dense: x @ dense.T)
                row = {"n": n, "k": k, "rows": m, "int8_ms": a, "dense_ms": b, "speedup": b / a}
                if copy:
                    row["GBps"] = n * k / (a * 1e-3) / 1e9
                    row["of_copy"] = row["GBps"] / copy
                rows.append(row)
    title = f"int8_linear, {dev}, dense in {dtype}"
    if copy:
        title += f", copy {copy:.0f} GB/s"
    emit(rows, args.json, title)


if __name__ == "__main__":
    main()
