"""The two-stage caption job (RegionGPT section 3.3), its shard store and its two engines.

    per image:  stage 1  global caption of the whole image (a zero-region prompt)
                stage 2  each region's close-up crop, prompted with the global caption as context
                         (`In the context of the entire image, {caption}, describe [the {class} in] the close-up
                         region in detail.`), all of the image's crops decoded together
                filters  each answer kept, or dropped with the first reason (filters.py)
    per shard:  OUT/part-{h}.meta.json  every region id of the shard with "kept" or its drop reason
                OUT/part-{h}.jsonl      the kept regions in the training format (+ provenance)
                both written to a temporary name and os.replace'd, meta first: a shard file exists only with its
                meta, and a region is done exactly when a shard file's meta names it. {h} hashes the shard's
                region ids, so a retried batch (a worker killed after writing) rewrites the same files.
    engines:    run_local (in-process) and run_ray (Ray Data: rows -> actor pool of captioners -> shards); the
                records depend only on the rows and the captioner, never on the engine or the batching of rows.

A restart reads the metas, drops the regions already done, and captions the rest; OUT/report.json is rebuilt
from all metas at the end of every run.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...errors import RgptError
from ...prompts import task_instruction
from .captioners import Captioner, CaptionerError, EndpointCaptioner, GenSettings, RuntimeCaptioner
from .filters import FILTERS, FilterConfig, reject_reason
from .source import crop_box, load_image


class DatagenError(RgptError, RuntimeError):
    """The caption job cannot run: its engine did not start, or the output directory is not usable."""


GLOBAL_PROMPT = "Describe the image in detail."
REGION_PROMPT = "In the context of the entire image, {caption}, describe the close-up region in detail."
REGION_PROMPT_CLASS = (
    "In the context of the entire image, {caption}, describe the {name} in the close-up region in detail."
)
TRAIN_INSTRUCTION = task_instruction("detail")  # the human turn of every written sample: `... <region> ...`
GLOBAL_FILTERS = ("empty", "truncated", "repetition")  # what is checked (and reported) on stage 1's caption


@dataclass(frozen=True)
class CaptionerSpec:
    """How to build a captioner in any process (Ray actors build their own): kind "runtime" or "endpoint"."""

    kind: str
    model: str  # checkpoint / engine directory, or the endpoint's model name
    url: str | None = None
    backend: str = "auto"
    device: str = "cpu"
    precision: str | None = None
    api_key_env: str | None = None
    concurrency: int = 8
    retries: int = 3

    def build(self, gen: GenSettings, batch_size: int) -> Captioner:
        if self.kind == "runtime":
            return RuntimeCaptioner(self.model, gen, self.backend, self.device, self.precision, batch_size)
        if self.kind == "endpoint":
            key = os.environ.get(self.api_key_env) if self.api_key_env else None
            return EndpointCaptioner(
                self.url or "", self.model, gen, api_key=key, concurrency=self.concurrency, retries=self.retries
            )
        raise CaptionerError(f"unknown captioner kind {self.kind!r} (runtime or endpoint)")

    def name(self) -> str:
        return f"rgpt_rt:{self.model}" if self.kind == "runtime" else f"endpoint:{self.model}@{self.url}"


@dataclass(frozen=True)
class JobConfig:
    captioner: CaptionerSpec
    gen: GenSettings = field(default_factory=GenSettings)
    filters: FilterConfig = field(default_factory=FilterConfig)
    margin: float = 0.2  # context around the box, as a fraction of its width/height on each side
    min_crop: int = 32  # smallest crop side in pixels (tiny boxes get more context)
    with_class: bool = True  # name the region's class in the stage-2 prompt when the annotation has one
    global_prompt: str = GLOBAL_PROMPT
    batch_size: int = 16  # crops decoded together (1 = one region at a time)
    shard_images: int = 16  # images per shard file (the unit of resumption)

    def __post_init__(self):
        if self.margin < 0 or self.min_crop < 1 or self.batch_size < 1 or self.shard_images < 1:
            raise ValueError("margin >= 0, min_crop >= 1, batch_size >= 1 and shard_images >= 1 are required")

    def provenance(self) -> dict[str, Any]:
        return {
            "captioner": self.captioner.name(),
            "global_prompt": self.global_prompt,
            "region_prompt": REGION_PROMPT_CLASS if self.with_class else REGION_PROMPT,
            "generation": self.gen.to_dict(),
            "margin": self.margin,
            "min_crop": self.min_crop,
        }


def context_clause(caption: str) -> str:
    """A global caption as the clause of the stage-2 prompt: one line, no final full stop."""
    text = re.sub(r"\s+", " ", caption).strip()
    return text.rstrip(" .!?;:,")


def region_prompt(global_caption: str, class_name: str | None) -> str:
    caption = context_clause(global_caption) or "an image"
    if class_name:
        return REGION_PROMPT_CLASS.format(caption=caption, name=class_name)
    return REGION_PROMPT.format(caption=caption)


def _region_entry(r: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"bbox": r["bbox"]}
    if "segmentation" in r:
        out["segmentation"] = r["segmentation"]
    return out


def caption_row(captioner: Captioner, row: dict[str, Any], job: JobConfig) -> list[dict[str, Any]]:
    """One image: stage 1 once, stage 2 for all its regions together. Returns one result per region:
    {id, status ("kept" or a filter name), global_status, record (the training sample, kept ones only)}."""
    img = load_image(row)
    h, w = img.shape[:2]
    g = captioner.caption([img], [job.global_prompt])[0]
    g_status = reject_reason(g.text, g.finish_reason, None, FilterConfig(enabled=GLOBAL_FILTERS, min_words=0))
    crops, prompts, boxes = [], [], []
    for r in row["regions"]:
        x0, y0, x1, y1 = crop_box(r["bbox"], w, h, job.margin, job.min_crop)
        crops.append(img[y0:y1, x0:x1])
        prompts.append(region_prompt(g.text, r["category"] if job.with_class else None))
        boxes.append([x0, y0, x1, y1])
    answers = captioner.caption(crops, prompts) if crops else []
    base = job.provenance()
    out = []
    for r, a, q, box in zip(row["regions"], answers, prompts, boxes):
        name = r["category"] if job.with_class else None
        status = reject_reason(a.text, a.finish_reason, name, job.filters) or "kept"
        result: dict[str, Any] = {"id": r["id"], "status": status, "global_status": g_status or "kept"}
        if status == "kept":
            result["record"] = {
                "id": r["id"],
                "image": row["image"],
                "image_id": row["image_id"],
                "regions": [_region_entry(r)],
                "conversations": [
                    {"from": "human", "value": TRAIN_INSTRUCTION},
                    {"from": "gpt", "value": a.text},
                ],
                "category": r["category"],
                "global_caption": g.text,
                "provenance": {**base, "prompt": q, "crop": box, "finish_reason": a.finish_reason},
            }
        out.append(result)
    return out


# ---- the shard store -----------------------------------------------------------------------------------


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def shard_name(ids: Iterable[str]) -> str:
    return "part-" + hashlib.sha1("\n".join(sorted(ids)).encode()).hexdigest()[:16]


def write_shard(out: Path, results: list[dict[str, Any]], seconds: float, images: int) -> str:
    """Meta first, then the shard (see the module docstring). Returns the shard's file name."""
    name = shard_name(r["id"] for r in results)
    meta = {
        "status": {r["id"]: r["status"] for r in results},
        "global_status": {r["id"]: r["global_status"] for r in results},
        "images": images,
        "seconds": round(seconds, 4),
    }
    _atomic_write(out / f"{name}.meta.json", json.dumps(meta, sort_keys=True) + "\n")
    lines = [json.dumps(r["record"], sort_keys=True) + "\n" for r in results if r["status"] == "kept"]
    _atomic_write(out / f"{name}.jsonl", "".join(lines))
    return f"{name}.jsonl"


def completed_metas(out: Path) -> dict[str, dict[str, Any]]:
    """{shard file name: meta} of every shard whose file exists (a meta without its shard is ignored)."""
    metas = {}
    for m in sorted(out.glob("part-*.meta.json")):
        shard = m.name[: -len(".meta.json")] + ".jsonl"
        if (out / shard).is_file():
            metas[shard] = json.loads(m.read_text(encoding="utf-8"))
    return metas


def done_ids(out: Path) -> set[str]:
    done: set[str] = set()
    for meta in completed_metas(out).values():
        done.update(meta["status"])
    return done


def pending_rows(rows: list[dict[str, Any]], done: set[str]) -> list[dict[str, Any]]:
    """The rows with the regions not yet done (rows with none left are dropped)."""
    out = []
    for row in rows:
        regions = [r for r in row["regions"] if r["id"] not in done]
        if regions:
            out.append({**row, "regions": regions})
    return out


def read_records(out: Path) -> list[dict[str, Any]]:
    """Every written training record of OUT, sorted by region id."""
    recs = []
    for shard in completed_metas(out):
        with open(out / shard, encoding="utf-8") as f:
            recs += [json.loads(line) for line in f if line.strip()]
    return sorted(recs, key=lambda r: r["id"])


def build_report(out: Path, job: JobConfig, run: dict[str, Any]) -> dict[str, Any]:
    metas = completed_metas(out)
    dropped = {k: 0 for k in FILTERS}
    global_flagged = {k: 0 for k in GLOBAL_FILTERS}
    kept = total = images = 0
    for meta in metas.values():
        images += meta["images"]
        for status in meta["status"].values():
            total += 1
            if status == "kept":
                kept += 1
            else:
                dropped[status] = dropped.get(status, 0) + 1
        # stage 1 is per image: count each image's flag once (its regions all carry it)
        per_image = {rid.rsplit(":", 1)[0]: s for rid, s in meta["global_status"].items()}
        for s in per_image.values():
            if s != "kept":
                global_flagged[s] = global_flagged.get(s, 0) + 1
    report = {
        "regions": total,
        "kept": kept,
        "dropped": dropped,
        "global_captions_flagged": global_flagged,
        "shards": sorted(s for s, m in metas.items() if any(v == "kept" for v in m["status"].values())),
        "filters": job.filters.to_dict(),
        **job.provenance(),
        "with_class": job.with_class,
        "last_run": run,
    }
    _atomic_write(out / "report.json", json.dumps(report, indent=2, sort_keys=True) + "\n")
    return report


# ---- engines -------------------------------------------------------------------------------------------

Progress = Callable[[int, int], None]  # (images, regions) just finished


def _chunks(rows: list, n: int) -> Iterable[list]:
    for lo in range(0, len(rows), n):
        yield rows[lo : lo + n]


def caption_shard(captioner: Captioner, rows: list[dict[str, Any]], job: JobConfig, out: Path) -> dict[str, Any]:
    t0 = time.perf_counter()
    results = [res for row in rows for res in caption_row(captioner, row, job)]
    shard = write_shard(out, results, time.perf_counter() - t0, len(rows))
    return {"shard": shard, "images": len(rows), "regions": len(results)}


def run_local(rows: list[dict[str, Any]], job: JobConfig, out: Path, progress: Progress | None = None) -> None:
    """In-process engine: one captioner, shards of job.shard_images images, written as they finish."""
    captioner = job.captioner.build(job.gen, job.batch_size)
    for chunk in _chunks(rows, job.shard_images):
        s = caption_shard(captioner, chunk, job, out)
        if progress:
            progress(s["images"], s["regions"])


FAULT_ENV = "RGPT_DATAGEN_FAULT"  # tests: "kill-worker-after-shard:MARKER" SIGKILLs one worker once, post-write


class CaptionWorker:
    """A Ray Data actor: builds its captioner once, then captions batches of rows into shards."""

    def __init__(self, job: JobConfig, out: str, threads: int | None = None):
        if threads:
            import torch

            torch.set_num_threads(threads)
        self.job, self.out = job, Path(out)
        self.captioner = job.captioner.build(job.gen, job.batch_size)

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        import numpy as np

        rows = [json.loads(s) for s in batch["row"]]
        s = caption_shard(self.captioner, rows, self.job, self.out)
        fault = os.environ.get(FAULT_ENV, "")
        if fault.startswith("kill-worker-after-shard:"):
            marker = Path(fault.split(":", 1)[1])
            try:
                fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)  # once per job, whichever worker
            except FileExistsError:
                fd = None
            if fd is not None:
                os.close(fd)
                os.kill(os.getpid(), 9)
        return {k: np.array([v]) for k, v in s.items()}


def ray_init(address: str | None, num_cpus: int | None, object_store_mb: int) -> None:
    import ray

    if ray.is_initialized():
        return
    if address:
        ray.init(address=address, log_to_driver=False)
        return
    ray.init(
        num_cpus=num_cpus or os.cpu_count() or 1,
        object_store_memory=object_store_mb * 2**20,
        include_dashboard=False,
        log_to_driver=False,
        configure_logging=False,
    )


def run_ray(
    rows: list[dict[str, Any]],
    job: JobConfig,
    out: Path,
    actors: int = 2,
    gpus_per_actor: float = 0.0,
    cpus_per_actor: float | None = None,
    address: str | None = None,
    num_cpus: int | None = None,
    object_store_mb: int = 128,
    progress: Progress | None = None,
) -> None:
    """Ray Data engine: rows -> map_batches over an actor pool of `actors` captioners (num_gpus per actor where
    there are GPUs) -> shards written by the actors. ray.init() starts a local cluster unless `address` names
    one (then the same command runs on the cluster; OUT must be on storage every node sees). cpus_per_actor
    defaults to the cluster's CPUs shared by the actors and one more share for Ray Data's own tasks, so the
    pool always fits (a pool that takes every CPU starves the rest of the pipeline)."""
    import ray

    try:
        ray_init(address, num_cpus, object_store_mb)
    except Exception as exc:  # noqa: BLE001 - ray raises bare Exceptions (node start-up timeouts) and its own types
        raise DatagenError(
            f"Ray did not start ({type(exc).__name__}: {exc}); on a busy machine retry, or caption in this process "
            "with --no-ray (same output)"
        ) from None
    if cpus_per_actor is None:
        cpus_per_actor = round(float(ray.cluster_resources().get("CPU", 1)) / (actors + 1), 3)
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.print_on_execution_start = False
    items = [{"row": json.dumps(r, sort_keys=True)} for r in rows]
    ds = ray.data.from_items(items, override_num_blocks=max(1, min(len(items), 4 * actors)))
    ds = ds.map_batches(
        CaptionWorker,  # Ray Data restarts a killed actor and retries its batch (max_restarts=-1 by default)
        fn_constructor_kwargs={
            "job": job,
            "out": str(out),
            "threads": None if gpus_per_actor else max(1, int(cpus_per_actor)),
        },
        batch_size=job.shard_images,
        batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=actors),
        num_cpus=cpus_per_actor,
        num_gpus=gpus_per_actor or None,
    )
    for s in ds.iter_rows():
        if progress:
            progress(int(s["images"]), int(s["regions"]))
