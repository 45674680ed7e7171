"""Timing helpers for the benchmarks: warm-up, repeats, median; CUDA timings with events."""

from __future__ import annotations

import json
import platform
import statistics
import time


def time_cpu(fn, repeats: int = 20, warmup: int = 3) -> float:
    """Median wall time of fn() in milliseconds."""
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(samples)


def time_cuda(fn, repeats: int = 50, warmup: int = 5) -> float:
    """Median GPU time of fn() in milliseconds (CUDA events on the current stream, L2 flushed between runs)."""
    import torch

    flush = torch.empty(256 * 1024 * 1024 // 4, dtype=torch.float32, device="cuda")
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(repeats):
        flush.zero_()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        samples.append(start.elapsed_time(end))
    return statistics.median(samples)


def copy_bandwidth_gbs(nbytes: int) -> float:
    """Device-to-device copy bandwidth (read + write bytes / time) for a buffer of nbytes."""
    import torch

    src = torch.empty(nbytes // 4, dtype=torch.float32, device="cuda")
    dst = torch.empty_like(src)
    ms = time_cuda(lambda: dst.copy_(src))
    return 2 * src.numel() * 4 / (ms * 1e-3) / 1e9


def machine() -> dict:
    info = {"cpu": platform.processor() or platform.machine(), "python": platform.python_version()}
    try:
        import os

        info["cores"] = os.cpu_count()
        import torch

        info["torch"] = torch.__version__
        info["torch_threads"] = torch.get_num_threads()
        if torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name()
    except ImportError:
        pass
    return info


def emit(rows: list[dict], path: str | None, title: str) -> None:
    print(f"\n{title}  ({json.dumps(machine())})")
    if rows:
        keys = list(rows[0])
        widths = [max(len(k), *(len(_fmt(r.get(k))) for r in rows)) for k in keys]
        print("  ".join(k.ljust(w) for k, w in zip(keys, widths)))
        for r in rows:
            print("  ".join(_fmt(r.get(k)).ljust(w) for k, w in zip(keys, widths)))
    if path:
        with open(path, "w") as f:
            json.dump({"machine": machine(), "rows": rows}, f, indent=2)


def _fmt(v) -> str:
    return f"{v:.3f}" if isinstance(v, float) else str(v)
