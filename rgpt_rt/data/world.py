"""Generate a split of the synthetic world, written as the files real datasets use.

    python -m rgpt_rt.data.world --out world --split train --images 2000 --seed 0
    python -m rgpt_rt.data.world --out world --split test --images 200 --seed 1

Layout of OUT (COCO's, so one set of readers serves the world and real data):
    {split}/000001.png ...                        the images (RGB PNG, --size square, 128 by default), named by
                                                  image id (Visual Genome-style files name no image file)
    annotations/instances_{split}.json            COCO instances: RLE segmentations (compressed, COCO's
                                                  column-major convention), visible area and box, category names;
                                                  each annotation also has attributes, `caption` (brief),
                                                  `description` (detail) and `sentences` (its refs)
    annotations/captions_{split}.json             COCO captions: two global captions per image
    annotations/refs_{split}.json                 RefCOCOg-style refs as JSON (refcocog's refs(umd).p fields:
                                                  ref_id, ann_id, image_id, category_id, split, file_name,
                                                  sent_ids, sentences [{sent_id, sent, raw, tokens}])
    annotations/region_descriptions_{split}.json  Visual Genome-style: [{id, regions: [{region_id, image_id,
                                                  phrase, x, y, width, height}]}]
    tasks_{split}.jsonl                           ground truth for every task in the training format (one
                                                  question per line: image, regions, conversations) plus
                                                  `task` (detail | brief | category | refer | reasoning),
                                                  `kind` (reasoning: yes_no | open), `answer`, `held_out`

Determinism: image i of a split depends only on (seed, split, i); same arguments give the same bytes. The
test split also draws colour+shape pairs that the train split never contains (scene.HELD_OUT); their
annotations and tasks carry `held_out: true`.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from ..inputs import rle_encode
from ..prompts import REGION, category_instruction, refer_instruction, task_instruction
from . import language as L
from .scene import COLORS, HELD_OUT, PATTERNS, SHAPES, SIZES, Scene, sample_scene

SPLITS = {"train": 0, "test": 1}
REASONING_PER_IMAGE = 4


def scene_rng(seed: int, split: str, index: int) -> np.random.Generator:
    return np.random.default_rng([int(seed), SPLITS[split], int(index)])


def _region(ann: dict) -> dict:
    return {"segmentation": ann["segmentation"], "ann_id": ann["id"]}


def _task(image: dict, task: str, anns: list[dict], question: str, answer: str, **extra) -> dict:
    return {
        "image": image["path"],
        "image_id": image["id"],
        "task": task,
        "regions": [_region(a) for a in anns],
        "conversations": [{"from": "human", "value": question}, {"from": "gpt", "value": answer}],
        "answer": answer,
        "held_out": any(a["held_out"] for a in anns),
        **extra,  # refer: held_out is the target's
    }


def scene_records(scene: Scene, image: dict, first_ann_id: int, rng: np.random.Generator) -> dict:
    """Annotations, captions, refs, region descriptions and tasks of one scene."""
    anns, regions, refs, tasks = [], [], [], []
    vocab = list(SHAPES)
    for i, o in enumerate(scene.objects):
        x0, y0, x1, y1 = o.bbox
        fx0, fy0, fx1, fy1 = o.full_bbox
        sentences = L.referring_expressions(scene, i)
        ann = {
            "id": first_ann_id + i,
            "image_id": image["id"],
            "category_id": SHAPES.index(o.shape) + 1,
            "segmentation": rle_encode(o.mask),
            "area": o.area,
            "bbox": [x0, y0, x1 - x0, y1 - y0],
            "iscrowd": 0,
            "attributes": {"color": o.color, "size": o.size, "pattern": o.pattern, "shape": o.shape},
            "amodal_bbox": [fx0, fy0, fx1 - fx0, fy1 - fy0],
            "depth": i,  # draw order: higher is in front
            "held_out": o.held_out,
            "caption": L.brief(o),
            "description": L.detail(scene, i),
            "sentences": sentences,
        }
        anns.append(ann)
        regions.append(
            {
                "region_id": ann["id"],
                "image_id": image["id"],
                "phrase": L.region_phrase(scene, o),
                "x": x0,
                "y": y0,
                "width": x1 - x0,
                "height": y1 - y0,
            }
        )
        if sentences:
            refs.append({"ann_id": ann["id"], "sentences": sentences})
    for a in anns:
        tasks.append(_task(image, "detail", [a], task_instruction("detail"), a["description"]))
        tasks.append(_task(image, "brief", [a], task_instruction("brief"), a["caption"]))
        name = SHAPES[a["category_id"] - 1]
        tasks.append(_task(image, "category", [a], category_instruction(vocab), name))
    for ref in refs:
        target = next(a for a in anns if a["id"] == ref["ann_id"])
        others = [a for a in anns if a is not target]
        expression = ref["sentences"][int(rng.integers(len(ref["sentences"])))]
        if others:  # "Region [k]" among 2..6 masks
            shown = [target] + [
                others[j] for j in rng.permutation(len(others))[: int(rng.integers(1, len(others) + 1))]
            ]
            order = rng.permutation(len(shown))
            shown = [shown[j] for j in order]
            k = shown.index(target)
            tasks.append(
                _task(
                    image,
                    "refer",
                    shown,
                    refer_instruction(len(shown), expression),
                    f"Region [{k + 1}]",
                    expression=expression,
                    target_index=k,
                    held_out=target["held_out"],
                )
            )
        if len(others) >= 2 and rng.random() < 0.3:  # the target is not among the masks
            shown = [others[j] for j in rng.permutation(len(others))[: int(rng.integers(2, len(others) + 1))]]
            tasks.append(
                _task(
                    image,
                    "refer",
                    shown,
                    refer_instruction(len(shown), expression),
                    L.NO_MATCH,
                    expression=expression,
                    target_index=None,
                    held_out=target["held_out"],
                )
            )
    tasks += _reasoning(scene, image, anns, rng)
    return {"annotations": anns, "regions": regions, "refs": refs, "tasks": tasks}


def _reasoning(scene: Scene, image: dict, anns: list[dict], rng: np.random.Generator) -> list[dict]:
    n = len(scene.objects)
    if n < 2:
        return []
    out, seen = [], set()
    kinds = [("yes_no", k) for k in L.YES_NO] + [("open", k) for k in L.OPEN]
    want = None  # the yes/no answer the next yes/no question should have: "Yes" and "No" come equally often
    for _ in range(12 * REASONING_PER_IMAGE):
        if len(out) == REASONING_PER_IMAGE:
            break
        if want is None:
            want = "Yes" if rng.random() < 0.5 else "No"
        i, j = (int(v) for v in rng.choice(n, size=2, replace=False))
        kind, name = kinds[int(rng.integers(len(kinds)))]
        a, b = scene.objects[i], scene.objects[j]
        answer = L.yes_no_answer(name, a, b) if kind == "yes_no" else L.open_answer(name, a, b)
        if answer is None or (i, j, name) in seen or (kind == "yes_no" and answer != want):
            continue
        seen.add((i, j, name))
        question = (L.YES_NO if kind == "yes_no" else L.OPEN)[name]
        assert question.count(REGION) == 2
        out.append(_task(image, "reasoning", [anns[i], anns[j]], question, answer, kind=kind, question_type=name))
        want = None if kind == "yes_no" else want
    return out


def generate_split(out: str | Path, split: str, images: int, seed: int, size: int = 128) -> dict:
    """Write `images` scenes of `split` under `out` (layout in the module docstring); returns a summary."""
    if split not in SPLITS:
        raise ValueError(f"unknown split '{split}'; use one of {', '.join(SPLITS)}")
    if images < 1 or size < 64:
        raise ValueError(f"need at least one image of at least 64 pixels (got images={images}, size={size})")
    out = Path(out)
    (out / split).mkdir(parents=True, exist_ok=True)
    (out / "annotations").mkdir(parents=True, exist_ok=True)
    coco_images, annotations, captions, vg, refs, tasks = [], [], [], [], [], []
    next_ann, next_sent = 1, 1
    for idx in range(images):
        rng = scene_rng(seed, split, idx)
        scene = sample_scene(rng, split, size=size)
        file_name = f"{idx + 1:06d}.png"
        Image.fromarray(scene.image).save(out / split / file_name, format="PNG", optimize=False)
        image = {
            "id": idx + 1,
            "file_name": file_name,
            "width": size,
            "height": size,
            "background": scene.background,
            "texture": scene.texture,
        }
        coco_images.append(image)
        rec = scene_records(scene, {**image, "path": f"{split}/{file_name}"}, next_ann, rng)
        next_ann += len(rec["annotations"])
        annotations += rec["annotations"]
        for c, text in enumerate(L.global_caption(scene)):
            captions.append({"id": 2 * idx + c + 1, "image_id": image["id"], "caption": text})
        vg.append({"id": image["id"], "regions": rec["regions"]})
        for r in rec["refs"]:
            ann = next(a for a in rec["annotations"] if a["id"] == r["ann_id"])
            sents = []
            for s in r["sentences"]:
                sents.append({"sent_id": next_sent, "sent": s, "raw": s, "tokens": s.split()})
                next_sent += 1
            refs.append(
                {
                    "ref_id": len(refs) + 1,
                    "ann_id": ann["id"],
                    "image_id": image["id"],
                    "category_id": ann["category_id"],
                    "split": split,
                    "file_name": file_name,
                    "sent_ids": [s["sent_id"] for s in sents],
                    "sentences": sents,
                }
            )
        tasks += rec["tasks"]
    categories = [{"id": k + 1, "name": s, "supercategory": "shape"} for k, s in enumerate(SHAPES)]
    info = {
        "description": "rgpt_rt synthetic world",
        "version": "1",
        "split": split,
        "seed": seed,
        "size": size,
        "colors": list(COLORS),
        "sizes": list(SIZES),
        "patterns": list(PATTERNS),
        "held_out": [list(p) for p in HELD_OUT],
    }
    _dump(
        out / "annotations" / f"instances_{split}.json",
        {"info": info, "images": coco_images, "annotations": annotations, "categories": categories},
    )
    _dump(
        out / "annotations" / f"captions_{split}.json", {"info": info, "images": coco_images, "annotations": captions}
    )
    _dump(out / "annotations" / f"refs_{split}.json", refs)
    _dump(out / "annotations" / f"region_descriptions_{split}.json", vg)
    for k, t in enumerate(tasks):
        t["id"] = f"{split}-{k:07d}"
    with open(out / f"tasks_{split}.jsonl", "w", encoding="utf-8") as f:
        for t in tasks:
            f.write(json.dumps(t, separators=(",", ":")) + "\n")
    counts: dict[str, int] = {}
    for t in tasks:
        counts[t["task"]] = counts.get(t["task"], 0) + 1
    return {
        "images": images,
        "objects": len(annotations),
        "refs": len(refs),
        "tasks": counts,
        "held_out_objects": sum(a["held_out"] for a in annotations),
    }


def _dump(path: Path, obj) -> None:
    path.write_text(json.dumps(obj, separators=(",", ":")), encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m rgpt_rt.data.world", description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, help="output directory (COCO layout, see the module docstring)")
    ap.add_argument("--split", required=True, choices=sorted(SPLITS))
    ap.add_argument("--images", type=int, required=True, help="number of images")
    ap.add_argument("--seed", type=int, default=None, help="default: 0 for train, 1 for test")
    ap.add_argument("--size", type=int, default=128, help="image side in pixels (default 128)")
    args = ap.parse_args(argv)
    seed = args.seed if args.seed is not None else SPLITS[args.split]
    try:
        summary = generate_split(args.out, args.split, args.images, seed, args.size)
    except (ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
