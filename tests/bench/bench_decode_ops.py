"""Decode-op benchmark at one Vicuna-7B layer's shapes (H = Hkv = 32, D = 128, hidden 4096), as ratios in one
run against what the reference model does for the same step:

- decode_attention over a context of `--context` tokens in a cache of `--slots` slots, against
  scaled_dot_product_attention over the whole masked cache (the reference's graph-capturable static step) and
  over exactly the window (what a dynamic step reads);
- rope_kv_write against the reference's rotary + cache index_put;
- rms_norm with the residual add against the reference's add + RMSNorm.

    python tests/bench/bench_decode_ops.py [--device cpu|cuda] [--batch 1,8] [--context 650] [--slots 2048]
                                           [--dtype fp16] [--json FILE]

On CUDA each row also gives the op's bandwidth (bytes it must read and write / time) against a
device-to-device copy measured in the same run.
"""

from __future__ import annotations

import argparse
import math
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(__file__))
from common import copy_bandwidth_gbs, emit, time_cpu, time_cuda  # noqa: E402

from rgpt_rt.model.llama import RMSNorm, apply_rope  # noqa: E402
from rgpt_rt.ops import decode_attention, rms_norm, rope_kv_write  # noqa: E402

H, D, HIDDEN = 32, 128, 4096


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--batch", default="1,8")
    ap.add_argument("--context", type=int, default=650)
    ap.add_argument("--slots", type=int, default=2048)
    ap.add_argument("--dtype", default=None, choices=[None, "fp32", "fp16", "bf16"])
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    dev = args.device
    on_gpu = dev.startswith("cuda")
    dtype = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[
        args.dtype or ("fp16" if on_gpu else "fp32")
    ]
    timer = time_cuda if on_gpu else time_cpu
    copy = copy_bandwidth_gbs(1 << 28) if on_gpu else None
    esz = torch.finfo(dtype).bits // 8
    rows = []
    with torch.inference_mode():
        for b in [int(x) for x in args.batch.split(",")]:
            kc = torch.randn(b, H, args.slots, D, device=dev).to(dtype)
            vc = torch.randn_like(kc)
            q = torch.randn(b, H, 1, D, device=dev).to(dtype)
            pos = torch.full((b,), args.context - 1, device=dev)
            scale = 1 / math.sqrt(D)
            full_mask = (torch.arange(args.slots, device=dev) <= args.context - 1)[None, None, None].expand(b, 1, 1, -1)

            def ours(q=q, kc=kc, vc=vc, pos=pos, scale=scale):
                return decode_attention(q[:, :, 0], kc, vc, pos, scale)

            def sdpa_static(q=q, kc=kc, vc=vc, m=full_mask, scale=scale):
                return F.scaled_dot_product_attention(q, kc, vc, attn_mask=m, scale=scale)

            def sdpa_window(q=q, kc=kc, vc=vc, n=args.context, scale=scale):
                return F.scaled_dot_product_attention(q, kc[:, :, :n], vc[:, :, :n], scale=scale)

            t = {k: timer(fn) for k, fn in (("ours", ours), ("static", sdpa_static), ("window", sdpa_window))}
            nbytes = 2 * b * H * args.context * D * esz
            row = {
                "op": "decode_attention",
                "batch": b,
                "native_ms": t["ours"],
                "ref_ms": t["static"],
                "speedup": t["static"] / t["ours"],
                "window_ref_ms": t["window"],
                "vs_window": t["window"] / t["ours"],
            }
            if copy:
                row["GBps"] = nbytes / (t["ours"] * 1e-3) / 1e9
                row["of_copy"] = row["GBps"] / copy
            rows.append(row)

            k = torch.randn(b, H, D, device=dev).to(dtype)
            v = torch.randn_like(k)
            qd = torch.randn(b, H, D, device=dev).to(dtype)
            inv = 1.0 / (10000 ** (torch.arange(0, D, 2, device=dev).float() / D))

            def rope_ours(qd=qd, k=k, v=v, pos=pos, inv=inv, kc=kc, vc=vc):
                return rope_kv_write(qd, k, v, pos, inv, kc, vc)

            def rope_ref(qd=qd, k=k, v=v, pos=pos, inv=inv, kc=kc, vc=vc, b=b):
                ang = pos[:, None].float() * inv
                ang = torch.cat([ang, ang], -1)[:, None, None]
                cos, sin = ang.cos().to(dtype), ang.sin().to(dtype)
                qr = apply_rope(qd[:, :, None], cos, sin)
                kr = apply_rope(k[:, :, None], cos, sin)
                rows_ = torch.arange(b, device=dev)[:, None]
                kc[rows_, :, pos[:, None]] = kr.transpose(1, 2)
                vc[rows_, :, pos[:, None]] = v[:, :, None].transpose(1, 2)
                return qr

            a, r = timer(rope_ours), timer(rope_ref)
            rows.append({"op": "rope_kv_write", "batch": b, "native_ms": a, "ref_ms": r, "speedup": r / a})

            x = torch.randn(b, HIDDEN, device=dev).to(dtype)
            res = torch.randn_like(x)
            norm = RMSNorm(HIDDEN, 1e-5).to(dev, dtype)

            def norm_ours(x=x, res=res, w=norm.weight):
                return rms_norm(x, w, 1e-5, residual=res)

            def norm_ref(x=x, res=res, norm=norm):
                h = x + res
                return norm(h), h

            a, r = timer(norm_ours), timer(norm_ref)
            rows.append({"op": "rms_norm+add", "batch": b, "native_ms": a, "ref_ms": r, "speedup": r / a})
    title = f"decode ops, {dev}, {dtype}, context {args.context} in {args.slots} slots, H={H} D={D}"
    if copy:
        title += f", copy {copy:.0f} GB/s"
    emit(rows, args.json, title)


if __name__ == "__main__":
    main()
