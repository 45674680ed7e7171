"""python -m rgpt_rt.bench: latency of the runtime, printed as a table and written as JSON.

    python -m rgpt_rt.bench [--model DIR | --random-7b] [--backend auto] [--device cpu|cuda]
                            [--precision fp32|fp16|bf16|int8] [--regions 1,8] [--new-tokens 64]
                            [--decode fused,reference,compile] [--compare-hf] [--soak N] [--json FILE]

Without --model or --random-7b it measures the tiny demo checkpoint. --random-7b builds random weights at
RegionGPT-7B shapes (CLIP ViT-L/14-336, Vicuna-7B) directly on the GPU. Reported: cold and warm start-up to
the first describe, preprocess and vision ms, time to first token, decode ms per token, describe latency,
describe_many for each region count and regions per second, peak memory, and on CUDA the decode's fraction
of the bandwidth floor (weight bytes / ms per token against a device-to-device copy measured in the same
run). --compare-hf runs transformers' LlavaForConditionalGeneration generate at the same shapes (eager and
with a static cache). --decode lists the torch backend's decode steps to compare in the same run (the first
is used for everything else): per mode, ms per token of a describe and of the bare decode step, and on CUDA
the ratio to the floor. --soak N makes N describe calls and reports host and GPU memory growth.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

INSTR = "Describe in detail the object located at <region> in the image."


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def current_rss_mb() -> float:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * resource.getpagesize() / 2**20
    except OSError:
        return rss_mb()


def config_7b():
    from .config import ConnectorConfig, LlamaConfig, ModelConfig, RegionConfig, VisionConfig

    vision = VisionConfig("clip_vision_model", 1024, 4096, 24, 16, 336, 14, "quick_gelu", 1e-5)
    llm = LlamaConfig(
        vocab_size=32000,
        hidden_size=4096,
        intermediate_size=11008,
        num_layers=32,
        num_heads=32,
        num_kv_heads=32,
        head_dim=128,
        rms_norm_eps=1e-5,
        max_position_embeddings=4096,
    )
    return ModelConfig("llava", vision, RegionConfig(image_grid=24), ConnectorConfig("mlp2x_gelu", 1024, 4096), llm)


def random_7b_runtime(device: str, precision: str, tmp: Path):
    """RegionGPT-7B shapes with random weights created on the device (no checkpoint on disk)."""
    import torch

    from .backends.torch_backend import TorchBackend
    from .model.regiongpt import RegionGPT
    from .runtime import Runtime
    from .testing.tokenizer import LLAVA_SPECIALS, train_tokenizer, write_tokenizer
    from .tokenizer import PromptTokenizer

    cfg = config_7b()
    dtype = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32, "int8": torch.float16}[precision]
    with torch.device("meta"):
        model = RegionGPT(cfg)
    model = model.to_empty(device=device).to(dtype)
    gen = torch.Generator(device=device).manual_seed(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name or "layrnorm" in name:
                p.fill_(1.0) if name.endswith("weight") else p.zero_()
            else:
                p.normal_(0.0, 0.02, generator=gen)
    write_tokenizer(tmp, train_tokenizer(LLAVA_SPECIALS, 512), "<s>", "</s>", ["<image>", "<region>"])
    backend = TorchBackend(model=model.eval(), device=device, precision="int8" if precision == "int8" else None)
    return Runtime(backend, PromptTokenizer(tmp, cfg))


def open_runtime(args, tmp: Path):
    from .runtime import Runtime

    if args.random_7b:
        return random_7b_runtime(args.device, args.precision, tmp)
    path = args.model
    if path is None:
        from .cli import demo_checkpoint

        path = demo_checkpoint("llava")
    prec = (
        args.precision if args.backend in ("auto", "torch") and not (Path(path) / "manifest.json").is_file() else None
    )
    decode = args.decode[0] if args.decode and prec is not None else None
    return Runtime.from_pretrained(path, backend=args.backend, device=args.device, precision=prec, decode=decode)


def frames(n: int, h: int = 480, w: int = 640):
    """Distinct frames (so no frame cache hit where a cold number is wanted)."""
    from .cli import SAMPLE_IMAGE
    from .inputs import load_frame

    base = load_frame(SAMPLE_IMAGE)
    reps = np.tile(base, (2, 2, 1))[:h, :w]
    for i in range(n):
        f = reps.copy()
        f[0, 0, 0] = i % 256
        f[0, 1, 0] = i // 256 % 256
        yield f


def boxes(n: int, h: int = 480, w: int = 640):
    rng = np.random.default_rng(0)
    out = []
    for _ in range(n):
        x0, y0 = int(rng.integers(0, w - 64)), int(rng.integers(0, h - 64))
        out.append((x0, y0, int(rng.integers(x0 + 32, w)), int(rng.integers(y0 + 32, h))))
    return out


def sync(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def measure(rt, args) -> dict:
    dev = args.device
    fr = frames(10_000)
    out = {}
    # time to first token and the parts before it, on new frames
    firsts = [rt.generate(next(fr), INSTR, boxes(1)[0], max_new_tokens=1) for _ in range(args.repeats)]
    out["preprocess_ms"] = statistics.median(r.timings.preprocess_ms for r in firsts)
    out["vision_ms"] = statistics.median(r.timings.vision_ms for r in firsts)
    out["prefill_ms"] = statistics.median(r.timings.prefill_ms for r in firsts)
    out["ttft_ms"] = statistics.median(
        r.timings.preprocess_ms + r.timings.vision_ms + r.timings.prefill_ms for r in firsts
    )
    out["prompt_tokens"] = firsts[0].timings.prompt_tokens
    # decode and the whole describe
    runs = []
    for _ in range(args.repeats):
        f = next(fr)
        sync(dev)
        t0 = time.perf_counter()
        r = rt.generate(f, INSTR, boxes(1)[0], max_new_tokens=args.new_tokens, ignore_eos=True)
        sync(dev)
        runs.append(((time.perf_counter() - t0) * 1e3, r))
    out["decode_ms_per_token"] = statistics.median(r.timings.ms_per_token for _, r in runs)
    out[f"describe_ms_{args.new_tokens}tok"] = statistics.median(t for t, _ in runs)
    for n in args.regions:
        rt.describe_many(next(fr), boxes(n), max_new_tokens=2)  # warm-up: captures the batch-n decode graph
        times = []
        for _ in range(max(1, args.repeats // 2)):
            f = next(fr)
            sync(dev)
            t0 = time.perf_counter()
            rt.describe_many(f, boxes(n), max_new_tokens=args.new_tokens, ignore_eos=True)
            sync(dev)
            times.append((time.perf_counter() - t0) * 1e3)
        out[f"describe_many_{n}_ms"] = statistics.median(times)
        out[f"regions_per_s_{n}"] = n / (statistics.median(times) / 1e3)
    out["peak_host_rss_mb"] = rss_mb()
    if dev.startswith("cuda"):
        import torch

        out["peak_gpu_mem_gb"] = torch.cuda.max_memory_allocated() / 1e9
        model = getattr(rt.backend, "model", None)
        if model is not None:
            weight_bytes = decoder_weight_bytes(model.llm)
            copy_gbs = copy_bandwidth_gbs()
            floor_ms = weight_bytes / (copy_gbs * 1e9) * 1e3
            out.update(
                {
                    "decoder_weight_gb": weight_bytes / 1e9,
                    "copy_GBps": copy_gbs,
                    "floor_ms_per_token": floor_ms,
                    "decode_vs_floor": out["decode_ms_per_token"] / floor_ms,
                }
            )
    return out


def step_ms(backend, positions: int, batch: int = 1, reps: int = 50) -> float:
    """The decode step (the captured graph on CUDA, fed from pinned memory) at `positions`, without reading
    the logits back or sampling."""
    import torch

    dev = backend.device
    tok, pos = [0] * batch, [positions] * batch
    with torch.inference_mode():
        for _ in range(3):
            backend._decode(tok, pos)
        sync(dev)
        t0 = time.perf_counter()
        for _ in range(reps):
            backend._decode(tok, pos)
        sync(dev)
    return (time.perf_counter() - t0) * 1e3 / reps


def compare_decode(rt, args, floor_ms: float | None) -> dict:
    """Each --decode mode on the same weights: describe ms per token and the bare step's ms."""
    backend = rt.backend
    if not hasattr(backend, "set_decode"):
        return {"decode_modes_error": f"the {rt.backend_name} backend has one decode step"}
    out = {}
    fr = frames(1000, 479, 641)
    ctx = None
    for mode in args.decode:
        backend.set_decode(mode)
        sync(args.device)
        t0 = time.perf_counter()
        r = rt.generate(next(fr), INSTR, boxes(1)[0], max_new_tokens=4, ignore_eos=True)  # capture / compile
        sync(args.device)
        out[f"first_describe_s_{mode}"] = time.perf_counter() - t0
        if mode == "compile":  # again with torch.compile's in-memory state dropped: its on-disk caches are warm
            import torch

            torch._dynamo.reset()
            backend.set_decode(mode)
            t0 = time.perf_counter()
            rt.generate(next(fr), INSTR, boxes(1)[0], max_new_tokens=4, ignore_eos=True)
            sync(args.device)
            out["first_describe_s_compile_warm_cache"] = time.perf_counter() - t0
        ctx = r.timings.prompt_tokens + args.new_tokens // 2
        per_tok = []
        for _ in range(args.repeats):
            r = rt.generate(next(fr), INSTR, boxes(1)[0], max_new_tokens=args.new_tokens, ignore_eos=True)
            per_tok.append(r.timings.ms_per_token)
        out[f"decode_ms_per_token_{mode}"] = statistics.median(per_tok)
        out[f"step_ms_{mode}"] = step_ms(backend, ctx)
        if floor_ms:
            out[f"step_vs_floor_{mode}"] = out[f"step_ms_{mode}"] / floor_ms
    backend.set_decode(args.decode[0])
    out["step_context_tokens"] = ctx
    return out


def decoder_weight_bytes(llm) -> int:
    """Bytes of the decoder's weights (parameters, and int8 weights and scales), each storage counted once:
    the fused projections' modules hold views into one concatenated tensor."""
    tensors = list(llm.parameters()) + [b for n, b in llm.named_buffers() if n.endswith((".q", ".scale"))]
    seen: dict[int, int] = {}
    for t in tensors:
        st = t.untyped_storage()
        seen[st.data_ptr()] = st.nbytes()
    return sum(seen.values())


def copy_bandwidth_gbs(nbytes: int = 1 << 30) -> float:
    import torch

    src = torch.empty(nbytes // 2, dtype=torch.float16, device="cuda")
    dst = torch.empty_like(src)
    for _ in range(3):
        dst.copy_(src)
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    reps = 10
    for _ in range(reps):
        dst.copy_(src)
    torch.cuda.synchronize()
    return 2 * nbytes * reps / (time.perf_counter() - t0) / 1e9


def compare_hf(rt, args) -> dict:
    """transformers' LlavaForConditionalGeneration at the same shapes, random weights: eager and static cache."""
    import torch
    import transformers as T

    from .checkpoint.layouts import hf_llama_config, hf_vision_config

    cfg = rt.cfg
    dev = args.device
    dtype = rt.backend.dtype if hasattr(rt.backend, "dtype") else torch.float32
    text = {k: v for k, v in hf_llama_config(cfg.llm).items() if k not in ("architectures", "torch_dtype")}
    vis = {k: v for k, v in hf_vision_config(cfg.vision).items() if k not in ("image_mean", "image_std")}
    n_img = cfg.vision.num_patches
    hf_cfg = T.LlavaConfig(
        vision_config=T.CLIPVisionConfig(**vis),
        text_config=T.LlamaConfig(**text),
        image_token_index=cfg.llm.vocab_size - 1,
        vision_feature_layer=cfg.vision.select_layer,
        vision_feature_select_strategy="default",
        image_seq_length=n_img,
    )
    prev = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:  # built on the device in its dtype: a 7B model initialised on the host would take minutes
        with torch.device(dev):
            model = T.LlavaForConditionalGeneration(hf_cfg).eval()
    finally:
        torch.set_default_dtype(prev)
    prompt = (
        rt.tokenizer.encode_text("USER: ")
        + [cfg.llm.vocab_size - 1] * n_img
        + rt.tokenizer.encode_text("\nDescribe the region. ASSISTANT:")
    )
    ids = torch.tensor([[cfg.llm.bos_token_id, *prompt]], device=dev)
    pixels = torch.randn(1, 3, cfg.vision.image_size, cfg.vision.image_size, device=dev, dtype=dtype)
    out = {}
    for label, kw in (("eager", {}), ("static", {"cache_implementation": "static"})):

        def run(n, kw=kw):
            sync(dev)
            t0 = time.perf_counter()
            with torch.no_grad():
                model.generate(
                    input_ids=ids,
                    pixel_values=pixels,
                    attention_mask=torch.ones_like(ids),
                    do_sample=False,
                    max_new_tokens=n,
                    min_new_tokens=n,
                    pad_token_id=0,
                    **kw,
                )
            sync(dev)
            return (time.perf_counter() - t0) * 1e3

        try:
            run(2)  # warm-up (and compilation for the static cache)
            ttft = statistics.median(run(1) for _ in range(3))
            total = statistics.median(run(args.new_tokens) for _ in range(3))
            out[f"hf_{label}_ttft_ms"] = ttft
            out[f"hf_{label}_ms_per_token"] = (total - ttft) / max(args.new_tokens - 1, 1)
        except Exception as exc:  # report, don't hide: the comparison row says what failed
            out[f"hf_{label}_error"] = f"{type(exc).__name__}: {exc}"[:300]
    return out


def soak(rt, n: int, device: str, new_tokens: int = 8) -> dict:
    from .cli import SAMPLE_IMAGE
    from .inputs import load_frame

    frame = load_frame(SAMPLE_IMAGE)
    box = (128, 128, 232, 198)
    for _ in range(min(100, n)):
        rt.describe(frame, box, max_new_tokens=new_tokens)
    rss0 = current_rss_mb()
    gpu0 = None
    if device.startswith("cuda"):
        import torch

        gpu0 = torch.cuda.memory_allocated()
    t0 = time.perf_counter()
    for i in range(n):
        f = frame if i % 2 else frame[::-1].copy()
        rt.describe(f, box, max_new_tokens=new_tokens)
    out = {"soak_calls": n, "soak_s": time.perf_counter() - t0, "soak_rss_growth_mb": current_rss_mb() - rss0}
    if gpu0 is not None:
        import torch

        out["soak_gpu_growth_mb"] = (torch.cuda.memory_allocated() - gpu0) / 2**20
    return out


def main(argv: list[str] | None = None) -> int:
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
    ap.add_argument("--compare-hf", action="store_true")
    ap.add_argument("--decode", default=None, help="torch backend decode steps to compare, e.g. fused,reference")
    ap.add_argument("--soak", type=int, default=0, help="make N describe calls and report memory growth")
    ap.add_argument("--soak-only", action="store_true", help="with --soak: skip the latency measurements")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    args.regions = [int(x) for x in args.regions.split(",") if x]
    if args.device is None:
        try:
            import torch

            args.device = "cuda" if torch.cuda.is_available() else "cpu"
        except ImportError:
            args.device = "cpu"
    if args.precision is None:
        args.precision = "fp16" if args.device.startswith("cuda") else "fp32"
    args.decode = [m for m in (args.decode or "").split(",") if m]
    if args.random_7b and not args.device.startswith("cuda"):
        ap.error("--random-7b needs a CUDA GPU (7B parameters)")
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
                result.update(compare_hf(rt, args))
                save()
        if args.soak:
            result.update(soak(rt, args.soak, args.device, args.new_tokens))
            save()
    width = max(len(k) for k in result)
    for k, v in result.items():
        print(f"{k.ljust(width)}  {v:.3f}" if isinstance(v, float) else f"{k.ljust(width)}  {v}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
