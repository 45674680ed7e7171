"""Evaluation items from the dataset formats (rgpt_rt.data.formats): the world, COCO, RefCOCOg, Visual Genome.

Expected layouts (any directory names; pass the files):
    COCO val2017   --coco-instances annotations/instances_val2017.json --images val2017/
    RefCOCOg       --refs refs.json --instances refcocog/instances.json --images train2014/
                   (refs.json: refcocog's refs(umd).p converted to JSON once; pickle is never opened)
    Visual Genome  --vg-regions region_descriptions.json --images VG_100K/ [--vg-image-pattern "{image_id}.jpg"]
    the world      --world DIR [--split test]   (written by python -m rgpt_rt.data.world)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..data.formats import DatasetError, read_coco_instances, read_refs, read_tasks, read_vg_regions
from ..inputs import Box
from ..prompts import COCO80

TASKS = ("category", "brief", "detail", "refer", "reasoning", "refcocog_caption", "vg_caption")
MAX_REFER_REGIONS = 6


@dataclass
class Item:
    task: str
    image: Path
    regions: list[Any]  # masks (bool [H, W]), COCO RLE dicts or Boxes, in prompt order
    answer: Any  # category name | caption | region index or None | reasoning answer
    references: list[str] = field(default_factory=list)  # captions: every reference text
    question: str = ""  # refer: the expression; reasoning: the instruction with <region> placeholders
    kind: str = ""  # reasoning: yes_no | open
    held_out: bool = False
    key: str = ""


@dataclass
class Dataset:
    name: str
    items: list[Item]
    categories: list[str] = field(default_factory=list)

    @property
    def vocabulary(self) -> list[str] | None:
        """What classify and the category prompt are given (None: COCO-80, named as such in the prompt)."""
        return None if sorted(self.categories) == sorted(COCO80) else self.categories


def _limit_images(items: list[Item], limit: int | None) -> list[Item]:
    if not limit:
        return items
    keep = list(dict.fromkeys(it.image for it in items))[:limit]
    allowed = set(keep)
    return [it for it in items if it.image in allowed]


def coco_category_items(instances_path: str | Path, images: str | Path) -> Dataset:
    coco = read_coco_instances(instances_path)
    root = Path(images)
    items = []
    for ann in coco.anns.values():
        if ann.get("iscrowd", 0):
            continue  # crowd regions are not classified (COCO convention)
        im = coco.images[ann["image_id"]]
        items.append(
            Item(
                "category",
                root / im["file_name"],
                [_lazy(coco, ann)],
                coco.categories[ann["category_id"]],
                held_out=bool(ann.get("held_out", False)),
                key=f"ann{ann['id']}",
            )
        )
    return Dataset("coco", items, coco.names)


class _lazy:
    """A COCO annotation's mask, decoded when the evaluation reaches its image."""

    def __init__(self, coco, ann):
        self.coco, self.ann = coco, ann

    def __call__(self) -> np.ndarray:
        return self.coco.mask(self.ann)


def refcocog_items(refs_path: str | Path, instances_path: str | Path, images: str | Path, seed: int = 0) -> Dataset:
    """Referring (the ref's object among up to 6 of its image's instances) and region captions (all its sentences)."""
    coco = read_coco_instances(instances_path)
    refs = read_refs(refs_path)
    root = Path(images)
    rng = np.random.default_rng(seed)
    items = []
    for r in refs:
        if r["ann_id"] not in coco.anns or not r["sentences"]:
            continue
        target = coco.anns[r["ann_id"]]
        im = coco.images[target["image_id"]]
        path = root / im["file_name"]
        others = [a for a in coco.anns_by_image[target["image_id"]] if a is not target and not a.get("iscrowd", 0)]
        items.append(
            Item(
                "refcocog_caption",
                path,
                [_lazy(coco, target)],
                r["sentences"][0],
                references=r["sentences"],
                key=f"ref{r.get('ref_id', r['ann_id'])}",
            )
        )
        if others:
            pick = rng.permutation(len(others))[: MAX_REFER_REGIONS - 1]
            shown = [target] + [others[j] for j in pick]
            order = rng.permutation(len(shown))
            shown = [shown[j] for j in order]
            items.append(
                Item(
                    "refer",
                    path,
                    [_lazy(coco, a) for a in shown],
                    shown.index(target),
                    question=r["sentences"][0],
                    key=f"ref{r.get('ref_id', r['ann_id'])}",
                )
            )
    return Dataset("refcocog", items, coco.names)


def vg_items(regions_path: str | Path, images: str | Path, pattern: str = "{image_id}.jpg") -> Dataset:
    """Region captions from Visual Genome region descriptions; the image file is `pattern` formatted with the
    image id (VG_100K/{image_id}.jpg; the world's: {image_id:06d}.png)."""
    root = Path(images)
    items = [
        Item(
            "vg_caption",
            root / pattern.format(image_id=r["image_id"]),
            [Box(*r["box"])],
            r["phrase"],
            references=[r["phrase"]],
            key=f"region{r['region_id']}",
        )
        for r in read_vg_regions(regions_path)
    ]
    return Dataset("vg", items)


def world_items(root: str | Path, split: str = "test") -> Dataset:
    """The world's split: category (and mAP) from its COCO instances, the other tasks from its tasks file."""
    root = Path(root)
    ds = coco_category_items(root / "annotations" / f"instances_{split}.json", root / split)
    for n, t in enumerate(read_tasks(root / f"tasks_{split}.jsonl")):
        task = t["task"]
        if task == "category":
            continue  # from the instances, above
        regions = [r["segmentation"] for r in t["regions"]]
        question = t["conversations"][0]["value"]
        item = Item(
            task,
            root / t["image"],
            regions,
            t["answer"],
            held_out=bool(t.get("held_out")),
            key=t.get("id", f"{split}-{n}"),
        )
        if task in ("brief", "detail"):
            item.references = [t["answer"]]
        elif task == "refer":
            item.answer, item.question = t.get("target_index"), t["expression"]
        elif task == "reasoning":
            item.question, item.kind = question, t.get("kind", "open")
        else:
            raise DatasetError(f"{root}/tasks_{split}.jsonl: unknown task '{task}' in line {n + 1}")
        ds.items.append(item)
    ds.name = f"world/{split}"
    return ds


def select(ds: Dataset, tasks: list[str] | None, limit_images: int | None) -> Dataset:
    items = [it for it in ds.items if not tasks or it.task in tasks]
    return Dataset(ds.name, _limit_images(items, limit_images), ds.categories)
