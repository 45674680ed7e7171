r"""python -m rgpt_rt.eval MODEL DATA... : evaluate a checkpoint or engine directory on a dataset.

    python -m rgpt_rt.eval ckpt --world world --split test --out eval_out
    python -m rgpt_rt.eval engine_dir --backend onnx \
        --coco-instances annotations/instances_val2017.json --images val2017
    python -m rgpt_rt.eval ckpt --refs refs.json --instances refcocog/instances.json --images train2014
    python -m rgpt_rt.eval ckpt --vg-regions region_descriptions.json --images VG_100K

Writes OUT/results.json (metrics, predictions) and OUT/results.md (a markdown table), and prints the table.
"""

from __future__ import annotations

import argparse
import sys

from ..data.formats import DatasetError
from ..errors import RgptError
from .datasets import TASKS, coco_category_items, refcocog_items, select, vg_items, world_items
from .run import evaluate, markdown_table, write_results


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m rgpt_rt.eval", description=__doc__.split("\n\n")[0])
    ap.add_argument("model", help="checkpoint directory (torch backend) or engine directory (onnx, trt)")
    ap.add_argument("--backend", default="auto", choices=["auto", "torch", "onnx", "trt"])
    ap.add_argument("--precision", default=None, help="torch backend: fp32 | fp16 | bf16 | int8")
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    data = ap.add_argument_group("data (one of)")
    data.add_argument("--world", help="a synthetic world directory (python -m rgpt_rt.data.world)")
    data.add_argument("--split", default="test", help="the world's split (default test)")
    data.add_argument("--coco-instances", help="COCO instances JSON (category accuracy and mAP)")
    data.add_argument("--refs", help="RefCOCOg refs as JSON (with --instances): referring and region captions")
    data.add_argument("--instances", help="the COCO instances JSON the refs point into")
    data.add_argument("--vg-regions", help="Visual Genome region_descriptions.json (region captions)")
    data.add_argument(
        "--vg-image-pattern", default="{image_id}.jpg", help="VG image file name from its id (default {image_id}.jpg)"
    )
    data.add_argument("--images", help="image directory of the COCO / RefCOCOg / VG files")
    ap.add_argument("--tasks", default="", help=f"comma-separated subset of {', '.join(TASKS)} (default: all present)")
    ap.add_argument("--limit", type=int, default=None, help="evaluate only the first N images")
    ap.add_argument("--out", default="eval_out", help="output directory (default eval_out)")
    ap.add_argument("--max-new-tokens", type=int, default=None, help="override the per-task answer length limit")
    ap.add_argument("--batch-size", type=int, default=16, help="regions decoded together by describe_many")
    ap.add_argument("--no-map", action="store_true", help="skip the likelihood scoring behind mAP")
    ap.add_argument("--tokenizer", default="auto", choices=["auto", "ptb", "simple"], help="caption tokenizer")
    ap.add_argument("--no-meteor", action="store_true", help="skip METEOR (about 10 s of Java start-up per task)")
    ap.add_argument("--quiet", action="store_true", help="no progress bar")
    return ap.parse_args(argv)


def load_dataset(args: argparse.Namespace):
    if args.world:
        return world_items(args.world, args.split)
    if args.coco_instances:
        if not args.images:
            raise DatasetError("--coco-instances needs --images")
        return coco_category_items(args.coco_instances, args.images)
    if args.refs:
        if not (args.instances and args.images):
            raise DatasetError("--refs needs --instances and --images")
        return refcocog_items(args.refs, args.instances, args.images)
    if args.vg_regions:
        if not args.images:
            raise DatasetError("--vg-regions needs --images")
        return vg_items(args.vg_regions, args.images, args.vg_image_pattern)
    raise DatasetError("give a dataset: --world, --coco-instances, --refs or --vg-regions")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    unknown = [t for t in tasks if t not in TASKS]
    if unknown:
        print(f"error: unknown task(s) {', '.join(unknown)}; known: {', '.join(TASKS)}", file=sys.stderr)
        return 2
    try:
        ds = select(load_dataset(args), tasks, args.limit)
        from ..runtime import Runtime

        rt = Runtime.from_pretrained(args.model, backend=args.backend, device=args.device, precision=args.precision)
        result = evaluate(
            rt,
            ds,
            max_new_tokens=args.max_new_tokens,
            batch_size=args.batch_size,
            use_score=not args.no_map,
            progress=not args.quiet,
            tokenizer=args.tokenizer,
            meteor=not args.no_meteor,
        )
    except (RgptError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    header = {
        "model": str(args.model),
        "backend": rt.backend_name,
        "precision": args.precision or "default",
        "dataset": ds.name,
    }
    js, md = write_results(result, args.out, header)
    print(markdown_table(result, header))
    print(f"wrote {js} and {md}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
