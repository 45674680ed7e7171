"""python -m rgpt_rt.bench: latency of the runtime, printed as a table and written as JSON.

    python -m rgpt_rt.bench [--model DIR | --random-7b] [--backend auto] [--device cpu|cuda]
                            [--precision fp32|fp16|bf16|int8] [--regions 1,8] [--new-tokens 64]
                            [--decode fused,reference,compile] [--compare-hf | --hf-only]
                            [--soak N [--soak-seconds S] [--soak-only]] [--json FILE]

Without --model or --random-7b it measures the tiny demo checkpoint. --random-7b builds random weights at
RegionGPT-7B shapes (CLIP ViT-L/14-336, Vicuna-7B) directly on the GPU. Reported: cold and warm start-up to
the first describe, preprocess and vision ms, time to first token, decode ms per token, describe latency,
describe_many for each region count and regions per second, peak memory, and on CUDA the decode's fraction
of the bandwidth floor (weight bytes / ms per token against a device-to-device copy measured in the same
run). --compare-hf then times transformers' LlavaForConditionalGeneration generate at the same shapes (eager
and with a static cache, both without transformers' automatic torch.compile) in the same run; --hf-only
times only transformers (nothing of the runtime is measured, and with --random-7b its weights are not
built), for a separate process with its own time limit. --decode lists the torch backend's decode steps to
compare in the same run (the first is used for everything else): per mode, ms per token of a describe and of
the bare decode step, and on CUDA the ratio to the floor. --soak N makes N describe calls (at most
--soak-seconds of them when given) and reports host and GPU memory growth.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from .hf import compare_hf
from .measure import boxes, compare_decode, frames, measure, soak, sync
from .models import hf_inputs, open_runtime


def build_parser() -> argparse.ArgumentParser:
    """The command line (tests/test_gpu_script.py parses the GPU scripts' bench commands with it)."""
    ap = argparse.ArgumentParser(prog="python -m rgpt_rt.bench", description=__doc__.split("\n\n")[0])
    src = ap.add_mutually_exclusive_group()
    src.add_argument("--model", default=None, help="checkpoint or engine directory (default: the tiny demo model)")
    src.add_argument("--random-7b", action="store_true", help="random weights at RegionGPT-7B shapes (GPU)")
    ap.add_argument("--backend", default="auto")
    ap.add_argument("--device", default=None)
    ap.add_argument("--precision", default=None, choices=[None, "fp32", "fp16", "bf16", "int8"])
    ap.add_argument("--regions", default="1,8")
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=5)
    hf = ap.add_mutually_exclusive_group()
    hf.add_argument("--compare-hf", action="store_true", help="time transformers after the runtime (same run)")
    hf.add_argument("--hf-only", action="store_true", help="time only transformers at the model's shapes")
    ap.add_argument("--decode", default=None, help="torch backend decode steps to compare, e.g. fused,reference")
    ap.add_argument("--soak", type=int, default=0, help="make N describe calls and report memory growth")
    ap.add_argument("--soak-seconds", type=float, default=0.0, help="with --soak: stop the soak after S seconds")
    ap.add_argument("--soak-only", action="store_true", help="with --soak: skip the latency measurements")
    ap.add_argument("--json", default=None)
    return ap


def parse_args(argv: list[str] | None = None, cuda_available: bool | None = None) -> argparse.Namespace:
    """Parse and check the command line (a bad combination exits with argparse's usage error). The device
    defaults to CUDA when `cuda_available` (asked of torch when None)."""
    ap = build_parser()
    args = ap.parse_args(argv)
    args.regions = [int(x) for x in args.regions.split(",") if x]
    if args.device is None:
        if cuda_available is None:
            try:
                import torch

                cuda_available = torch.cuda.is_available()
            except ImportError:
                cuda_available = False
        args.device = "cuda" if cuda_available else "cpu"
    if args.precision is None:
        args.precision = "fp16" if args.device.startswith("cuda") else "fp32"
    args.decode = [m for m in (args.decode or "").split(",") if m]
    if args.random_7b and not args.device.startswith("cuda"):
        ap.error("--random-7b needs a CUDA GPU (7B parameters)")
    if args.hf_only and (args.soak or args.decode or args.soak_only):
        ap.error("--hf-only times transformers alone: no --soak, --soak-only or --decode")
    if args.hf_only and args.precision == "int8":
        ap.error("--hf-only: transformers has no int8 counterpart of the runtime's int8 path (use fp16 or bf16)")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.hf_only:
        return hf_only(args)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        rt = open_runtime(args, Path(tmp))
        if args.decode and hasattr(rt.backend, "set_decode"):
            rt.backend.set_decode(args.decode[0])
        rt.describe(next(frames(1)), boxes(1)[0], max_new_tokens=4)
        sync(args.device)
        cold = (time.perf_counter() - t0) * 1e3
        t1 = time.perf_counter()
        rt2 = open_runtime(args, Path(tmp)) if not args.random_7b else rt
        if args.decode and hasattr(rt2.backend, "set_decode"):
            rt2.backend.set_decode(args.decode[0])
        rt2.describe(next(frames(1)), boxes(1)[0], max_new_tokens=4)
        sync(args.device)
        warm = (time.perf_counter() - t1) * 1e3
        del rt2
        result = {
            "model": "random-7b" if args.random_7b else str(args.model or "tiny demo"),
            "backend": rt.backend_name,
            "device": args.device,
            "precision": args.precision,
            "new_tokens": args.new_tokens,
            "startup_cold_ms": cold,
            "startup_warm_ms": warm,
        }
        if args.device.startswith("cuda"):
            import torch

            result["gpu"] = torch.cuda.get_device_name()

        def save():  # after every phase, so a run stopped by a time limit keeps what it measured
            if args.json:
                Path(args.json).write_text(json.dumps(result, indent=2) + "\n")

        save()
        if not args.soak_only:
            result.update(measure(rt, args))
            if hasattr(rt.backend, "decode"):
                result["decode"] = rt.backend.decode
            save()
            if len(args.decode) > 1:
                result.update(compare_decode(rt, args, result.get("floor_ms_per_token")))
                save()
            if args.compare_hf:
                dtype = getattr(rt.backend, "dtype", None)
                result.update(compare_hf(rt.cfg, rt.tokenizer, dtype, args.device, args.new_tokens))
                save()
        if args.soak:
            result.update(soak(rt, args.soak, args.device, args.new_tokens, args.soak_seconds))
            save()
    _print(result)
    return 0


def hf_only(args) -> int:
    """--hf-only: transformers at the model's shapes, nothing of the runtime measured; exit status 1 when a
    comparison failed (its `hf_*_error` says how)."""
    result = {
        "model": "random-7b" if args.random_7b else str(args.model or "tiny demo"),
        "device": args.device,
        "precision": args.precision,
        "new_tokens": args.new_tokens,
    }
    if args.device.startswith("cuda"):
        import torch

        result["gpu"] = torch.cuda.get_device_name()

    def save():  # before and after, so a run stopped by a time limit still says what it was
        if args.json:
            Path(args.json).write_text(json.dumps(result, indent=2) + "\n")

    save()
    with tempfile.TemporaryDirectory() as tmp:
        cfg, tokenizer, dtype = hf_inputs(args, Path(tmp))
        result.update(compare_hf(cfg, tokenizer, dtype, args.device, args.new_tokens))
    save()
    _print(result)
    return 1 if any(k.endswith("_error") for k in result) else 0


def _print(result: dict) -> None:
    width = max(len(k) for k in result)
    for k, v in result.items():
        print(f"{k.ljust(width)}  {v:.3f}" if isinstance(v, float) else f"{k.ljust(width)}  {v}")
