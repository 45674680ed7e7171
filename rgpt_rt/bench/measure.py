"""Latency, bandwidth-floor and memory measurements of a Runtime (the numbers `python -m rgpt_rt.bench`
prints)."""

from __future__ import annotations

import resource
import statistics
import time

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


def frames(n: int, h: int = 480, w: int = 640):
    """Distinct frames (so no frame cache hit where a cold number is wanted)."""
    from ..cli import SAMPLE_IMAGE
    from ..inputs import load_frame

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


def soak(rt, n: int, device: str, new_tokens: int = 8, max_seconds: float = 0.0) -> dict:
    """`n` describe calls after 100 warm-up calls (stopping early after `max_seconds` when > 0; `soak_calls`
    says how many were made): growth of the host's resident memory and of the GPU's allocated memory."""
    from ..cli import SAMPLE_IMAGE
    from ..inputs import load_frame

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
    calls = 0
    for i in range(n):
        f = frame if i % 2 else frame[::-1].copy()
        rt.describe(f, box, max_new_tokens=new_tokens)
        calls += 1
        if max_seconds > 0 and time.perf_counter() - t0 > max_seconds:
            break
    sync(device)
    out = {"soak_calls": calls, "soak_s": time.perf_counter() - t0, "soak_rss_growth_mb": current_rss_mb() - rss0}
    if gpu0 is not None:
        import torch

        out["soak_gpu_growth_mb"] = (torch.cuda.memory_allocated() - gpu0) / 2**20
    return out
