"""python -m rgpt_rt.datagen.bench: the caption pipeline's throughput in three modes, in one run, on the
synthetic world (generated here unless --world is given):

    sequential   in-process, one region at a time (each crop its own prefill and decode)
    batched      in-process, an image's crops decoded together (Runtime.ask_many)
    ray          Ray Data, a local cluster with --actors CPU actors, batched

Prints a table and one JSON line (also written to --json). Wall time includes model loading (and, for ray, the
cluster's start); `worker_s_per_region` is the captioning time inside the workers per region, start-up excluded.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

from ..data.captions.captioners import GenSettings
from ..data.captions.filters import FilterConfig
from ..data.captions.pipeline import (
    CaptionerSpec,
    JobConfig,
    build_report,
    completed_metas,
    read_records,
    run_local,
    run_ray,
)
from ..data.captions.source import read_rows


def default_model(tmp: Path) -> str:
    try:
        from ..assets import NANO_MODEL

        if Path(NANO_MODEL).is_dir():
            return str(NANO_MODEL)
    except ImportError:
        pass
    from ..testing import make_tiny_checkpoint

    return str(make_tiny_checkpoint(tmp / "tiny", layout="llava", seed=0))


def measure(name: str, rows: list, job: JobConfig, out: Path, **ray_kw) -> dict:
    t0 = time.perf_counter()
    if ray_kw:
        run_ray(rows, job, out, **ray_kw)
    else:
        run_local(rows, job, out)
    wall = time.perf_counter() - t0
    metas = completed_metas(out)
    regions = sum(len(m["status"]) for m in metas.values())
    images = sum(m["images"] for m in metas.values())
    report = build_report(out, job, {"engine": name, "seconds": wall})
    return {
        "mode": name,
        "images": images,
        "regions": regions,
        "wall_s": round(wall, 2),
        "images_per_s": round(images / wall, 3),
        "regions_per_s": round(regions / wall, 3),
        "worker_s_per_region": round(sum(m["seconds"] for m in metas.values()) / max(regions, 1), 4),
        "kept": report["kept"],
        "dropped": {k: v for k, v in report["dropped"].items() if v},
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m rgpt_rt.datagen.bench", description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", help="captioner checkpoint (default: the nano model, else a tiny random one)")
    ap.add_argument("--world", help="a world directory with a train split (default: generate --images here)")
    ap.add_argument("--images", type=int, default=16)
    ap.add_argument("--actors", type=int, default=2)
    ap.add_argument("--ray-cpus", type=int, default=3, help="logical CPUs of the local cluster (actors + 1)")
    ap.add_argument("--max-new-tokens", type=int, default=48)
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--modes", default="sequential,batched,ray")
    ap.add_argument("--threads", type=int, default=1, help="torch threads of every captioner (each Ray actor too)")
    ap.add_argument("--json", help="also write the results here")
    a = ap.parse_args(argv)
    import torch

    torch.set_num_threads(a.threads)  # the in-process modes; Ray actors get the same through cpus_per_actor
    tmp = Path(tempfile.mkdtemp(prefix="datagen-bench-"))
    try:
        world = Path(a.world) if a.world else tmp / "world"
        if not a.world:
            from ..data.world import main as world_main

            world_main(["--out", str(world), "--split", "train", "--images", str(a.images)])
        rows = read_rows(world / "annotations" / "instances_train.json", world / "train", a.images)
        model = a.model or default_model(tmp)
        spec = CaptionerSpec("runtime", model, backend="torch", device=a.device)
        gen = GenSettings(max_new_tokens=a.max_new_tokens)
        results = []
        modes = [m.strip() for m in a.modes.split(",") if m.strip()]
        for mode in modes:
            job = JobConfig(spec, gen, FilterConfig(), batch_size=1 if mode == "sequential" else 16, shard_images=4)
            out = tmp / mode
            out.mkdir()
            kw = {"actors": a.actors, "num_cpus": a.ray_cpus, "cpus_per_actor": a.threads} if mode == "ray" else {}
            if mode == "ray" and a.device == "cuda":
                kw["gpus_per_actor"] = 1.0 / a.actors
            results.append(measure(mode, rows, job, out, **kw))
            print(json.dumps(results[-1]), flush=True)
        ref = read_records(tmp / modes[0])
        for r in results:
            r["same_records_as_" + modes[0]] = read_records(tmp / r["mode"]) == ref
        machine = f"{platform.machine()}, {os.cpu_count()} CPUs, {a.device}"
        print(f"\ncaption pipeline on the synthetic world ({len(rows)} images), model {model}, {machine}")
        print(f"{'mode':<11} {'wall s':>7} {'img/s':>7} {'reg/s':>7} {'worker s/reg':>13} {'kept':>5}  dropped")
        for r in results:
            print(
                f"{r['mode']:<11} {r['wall_s']:>7} {r['images_per_s']:>7} {r['regions_per_s']:>7} "
                f"{r['worker_s_per_region']:>13} {r['kept']:>5}  {r['dropped']}"
            )
        summary = {"model": model, "machine": machine, "max_new_tokens": a.max_new_tokens, "results": results}
        print(json.dumps(summary))
        if a.json:
            Path(a.json).write_text(json.dumps(summary, indent=2) + "\n")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
