r"""python -m rgpt_rt.datagen: region captions for COCO-format instances, as training-format JSON Lines shards.

    python -m rgpt_rt.datagen --instances annotations/instances_train2017.json --images train2017 \
        --model llava-1.5-7b-hf --out captions                       # Ray Data, local cluster, 2 actors
    python -m rgpt_rt.datagen ... --ray-address auto --actors 8 --gpus-per-actor 1 --device cuda   # a cluster
    python -m rgpt_rt.datagen ... --no-ray                           # in-process, same output
    python -m rgpt_rt.datagen ... --endpoint http://host:8000/v1 --endpoint-model llava-hf/llava-1.5-7b-hf

Running the same command again resumes: regions already in OUT are skipped. Train on the result with
`python -m rgpt_rt.train --data OUT/part-*.jsonl ...` (OUT/report.json lists the shards and what the filters
dropped).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from ...errors import RgptError
from .captioners import GenSettings
from .filters import FILTERS, FilterConfig
from .pipeline import GLOBAL_PROMPT, CaptionerSpec, JobConfig, build_report, done_ids, pending_rows, run_local, run_ray
from .source import read_rows


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m rgpt_rt.datagen", description=__doc__.split("\n\n")[0])
    ap.add_argument("--instances", required=True, help="COCO-format instances JSON (COCO, LVIS, V3Det, the world)")
    ap.add_argument("--images", required=True, help="directory the instances' file_name entries are relative to")
    ap.add_argument("--out", required=True, help="output directory (shards, metas, report.json); reused to resume")
    ap.add_argument("--limit", type=int, help="caption the first N images (with annotations) only")
    cap = ap.add_argument_group("captioner (one of)")
    cap.add_argument("--model", help="checkpoint or engine directory any rgpt_rt backend loads")
    cap.add_argument("--endpoint", help="OpenAI-compatible API base URL (…/v1) or its /chat/completions URL")
    cap.add_argument("--endpoint-model", help="model name the endpoint serves")
    cap.add_argument("--api-key-env", help="environment variable holding the endpoint's API key")
    cap.add_argument("--endpoint-concurrency", type=int, default=8, help="requests in flight per captioner")
    cap.add_argument("--endpoint-retries", type=int, default=3, help="retries of a failed request (with backoff)")
    cap.add_argument("--backend", default="auto", choices=["auto", "torch", "onnx", "trt"])
    cap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    cap.add_argument("--precision", help="torch backend: fp32 | fp16 | bf16 | int8")
    p = ap.add_argument_group("prompts and generation")
    p.add_argument("--global-prompt", default=GLOBAL_PROMPT, help=f"stage 1 prompt (default: {GLOBAL_PROMPT!r})")
    p.add_argument("--no-class", action="store_true", help="never name the class in the stage-2 prompt")
    p.add_argument("--margin", type=float, default=0.2, help="context around a box, fraction of its size a side")
    p.add_argument("--min-crop", type=int, default=32, help="smallest crop side in pixels")
    p.add_argument("--max-new-tokens", type=int, default=96)
    p.add_argument("--temperature", type=float, default=0.0)
    p.add_argument("--top-p", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=0)
    f = ap.add_argument_group("filters")
    f.add_argument("--filters", default=",".join(FILTERS), help=f"comma-separated subset of {', '.join(FILTERS)}")
    f.add_argument("--min-words", type=int, default=3)
    f.add_argument("--max-words", type=int, default=150)
    e = ap.add_argument_group("engine")
    e.add_argument("--no-ray", action="store_true", help="caption in this process (same output as Ray)")
    e.add_argument("--actors", type=int, default=2, help="captioner actors (one per GPU on a GPU cluster)")
    e.add_argument("--gpus-per-actor", type=float, default=0.0)
    e.add_argument("--cpus-per-actor", type=float, help="default: the cluster's CPUs / (actors + 1)")
    e.add_argument("--ray-address", help="an existing Ray cluster ('auto' or host:port); default: a local one")
    e.add_argument("--ray-cpus", type=int, help="CPUs of the local cluster (default: all)")
    e.add_argument("--object-store-mb", type=int, default=128, help="object store of the local cluster")
    e.add_argument("--batch-size", type=int, default=16, help="crops decoded together (1: one region at a time)")
    e.add_argument("--shard-images", type=int, default=16, help="images per shard (the unit of resumption)")
    e.add_argument("--no-progress", action="store_true")
    return ap


def job_from_args(a: argparse.Namespace) -> JobConfig:
    if bool(a.model) == bool(a.endpoint):
        raise ValueError("give one captioner: --model DIR, or --endpoint URL with --endpoint-model NAME")
    if a.endpoint and not a.endpoint_model:
        raise ValueError("--endpoint needs --endpoint-model (the name of the model the endpoint serves)")
    if a.model:
        spec = CaptionerSpec("runtime", a.model, backend=a.backend, device=a.device, precision=a.precision)
    else:
        spec = CaptionerSpec(
            "endpoint",
            a.endpoint_model,
            url=a.endpoint,
            api_key_env=a.api_key_env,
            concurrency=a.endpoint_concurrency,
            retries=a.endpoint_retries,
        )
    enabled = tuple(x.strip() for x in a.filters.split(",") if x.strip())
    return JobConfig(
        captioner=spec,
        gen=GenSettings(a.max_new_tokens, a.temperature, a.top_p, a.seed),
        filters=FilterConfig(enabled=enabled, min_words=a.min_words, max_words=a.max_words),
        margin=a.margin,
        min_crop=a.min_crop,
        with_class=not a.no_class,
        global_prompt=a.global_prompt,
        batch_size=a.batch_size,
        shard_images=a.shard_images,
    )


class Bar:
    """tqdm over images, with regions/s in its postfix; silent when disabled or tqdm is missing."""

    def __init__(self, total_images: int, enabled: bool):
        self.bar, self.regions, self.images, self.t0 = None, 0, 0, time.perf_counter()
        if enabled:
            try:
                from tqdm import tqdm

                self.bar = tqdm(total=total_images, unit="img", desc="captioning", dynamic_ncols=True)
            except ImportError:
                pass

    def __call__(self, images: int, regions: int) -> None:
        self.images += images
        self.regions += regions
        if self.bar is not None:
            self.bar.update(images)
            self.bar.set_postfix(regions_per_s=f"{self.regions / max(time.perf_counter() - self.t0, 1e-9):.2f}")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def run(a: argparse.Namespace) -> dict:
    job = job_from_args(a)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    for tmp in out.glob(".part-*.tmp"):  # half-written files of a killed run (never read: they are not shards)
        tmp.unlink(missing_ok=True)
    rows = read_rows(a.instances, a.images, a.limit)
    todo = pending_rows(rows, done_ids(out))
    total = sum(len(r["regions"]) for r in rows)
    n_todo = sum(len(r["regions"]) for r in todo)
    print(f"datagen: {total} regions in {len(rows)} images; {total - n_todo} already done, {n_todo} to caption")
    bar = Bar(len(todo), not a.no_progress)
    t0 = time.perf_counter()
    engine = "in-process" if a.no_ray else f"ray ({a.actors} actors)"
    try:
        if not todo:
            pass
        elif a.no_ray:
            run_local(todo, job, out, progress=bar)
        else:
            run_ray(
                todo,
                job,
                out,
                actors=a.actors,
                gpus_per_actor=a.gpus_per_actor,
                cpus_per_actor=a.cpus_per_actor,
                address=a.ray_address,
                num_cpus=a.ray_cpus,
                object_store_mb=a.object_store_mb,
                progress=bar,
            )
    finally:
        bar.close()
    secs = time.perf_counter() - t0
    run_info = {
        "engine": engine,
        "images": bar.images,
        "regions": bar.regions,
        "seconds": round(secs, 3),
        "images_per_s": round(bar.images / secs, 4) if secs > 0 and bar.images else 0.0,
        "regions_per_s": round(bar.regions / secs, 4) if secs > 0 and bar.regions else 0.0,
    }
    report = build_report(out, job, run_info)
    print(
        f"datagen: {bar.images} images, {bar.regions} regions in {secs:.1f} s ({run_info['images_per_s']} images/s, "
        f"{run_info['regions_per_s']} regions/s, {engine}); kept {report['kept']} of {report['regions']}, dropped "
        + json.dumps({k: v for k, v in report["dropped"].items() if v})
    )
    print(f"datagen: {len(report['shards'])} shards and report.json in {out}")
    return report


def main(argv: list[str] | None = None) -> int:
    a = parser().parse_args(argv)
    try:
        run(a)
    except (RgptError, ValueError, OSError) as exc:
        print(f"datagen: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("datagen: interrupted; run the same command again to resume", file=sys.stderr)
        return 130
    return 0
