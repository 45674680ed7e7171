"""onnx against torch on the CPU: `describe` latency on the tiny checkpoint and on a random ~100M-parameter
config, as ratios measured in one run.

    python tests/bench/bench_backends.py [--json FILE] [--tokens 32]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, os.path.dirname(__file__))
from common import emit, time_cpu  # noqa: E402

from build_engine.builder import build  # noqa: E402
from rgpt_rt import Runtime  # noqa: E402
from rgpt_rt.checkpoint import save_checkpoint  # noqa: E402
from rgpt_rt.cli import SAMPLE_BOX, SAMPLE_IMAGE  # noqa: E402
from rgpt_rt.testing import init_random_, make_tiny_checkpoint, tiny_config  # noqa: E402
from rgpt_rt.testing.tokenizer import LLAVA_SPECIALS, train_tokenizer, write_tokenizer  # noqa: E402


def medium_checkpoint(path: Path) -> Path:
    """~100M parameters: a 12-layer width-512 CLIP-style ViT at 224 px and an 8-layer width-768 LLaMA."""
    from rgpt_rt.model.regiongpt import RegionGPT

    cfg = tiny_config("llava")
    cfg = dataclasses.replace(
        cfg,
        vision=dataclasses.replace(
            cfg.vision,
            hidden_size=512,
            intermediate_size=2048,
            num_layers=12,
            num_heads=8,
            image_size=224,
            patch_size=14,
        ),
        region=dataclasses.replace(cfg.region, image_grid=16),
        connector=dataclasses.replace(cfg.connector, in_features=512, out_features=768),
        llm=dataclasses.replace(
            cfg.llm, hidden_size=768, intermediate_size=2048, num_layers=8, num_heads=12, num_kv_heads=4, head_dim=64
        ),
    )
    model = init_random_(RegionGPT(cfg), seed=0)
    params = sum(p.numel() for p in model.parameters())
    save_checkpoint(model, path)
    write_tokenizer(path, train_tokenizer(LLAVA_SPECIALS, cfg.llm.vocab_size), "<s>", "</s>", ["<image>", "<region>"])
    return path, params


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--json", default=None)
    ap.add_argument("--tokens", type=int, default=32)
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        tiny = make_tiny_checkpoint(tmp / "tiny")
        from rgpt_rt.testing import make_tiny_model

        tiny_params = sum(p.numel() for p in make_tiny_model("llava").parameters())
        medium, medium_params = medium_checkpoint(tmp / "medium")
        for name, ckpt, params in (("tiny", tiny, tiny_params), ("random-100M", medium, medium_params)):
            eng = build(ckpt, tmp / f"{name}-engine", log=lambda s: None)
            rts = {"torch": Runtime.from_pretrained(ckpt), "onnx": Runtime.from_pretrained(eng, backend="onnx")}
            times = {}
            for backend, rt in rts.items():
                # min_new_tokens is not an option: a random model may stop early, so report the tokens made
                res = rt.generate(
                    SAMPLE_IMAGE,
                    "Describe in detail the object located at <region> in the image.",
                    [SAMPLE_BOX],
                    max_new_tokens=args.tokens,
                )
                times[backend] = (
                    time_cpu(
                        lambda rt=rt: rt.describe(SAMPLE_IMAGE, SAMPLE_BOX, max_new_tokens=args.tokens),
                        repeats=5,
                        warmup=1,
                    ),
                    res,
                )
            t_torch, r_torch = times["torch"]
            t_onnx, r_onnx = times["onnx"]
            rows.append(
                {
                    "model": name,
                    "params_M": round(params / 1e6, 2),
                    "tokens": len(r_torch.token_ids),
                    "same_tokens": r_torch.token_ids == r_onnx.token_ids,
                    "torch_ms": t_torch,
                    "onnx_ms": t_onnx,
                    "onnx_speedup": t_torch / t_onnx,
                    "torch_ms_per_tok": r_torch.timings.ms_per_token,
                    "onnx_ms_per_tok": r_onnx.timings.ms_per_token,
                }
            )
    emit(rows, args.json, "describe on the CPU: onnx backend vs torch backend")


if __name__ == "__main__":
    main()
