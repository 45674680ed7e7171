"""COCO-format instance annotations (COCO, LVIS, the synthetic world) -> task-guided samples, on the fly.

Each image with at least one usable annotation is one sample slot; `get(i, rng)` draws one task for it:
  category  "What category name best describes ... <region>? Answer ... using {vocabulary} category names."
            with the true name among a sampled vocabulary (or COCO-80 when the categories are COCO's 80)
  refer     'From the provided masks denoted by <region>, <region> and <region>, which one fits "..."?'
            with distractor regions from the same image; the answer is "Region [k]". The expression is the
            annotation's `expression` / `sentences` (RefCOCO style), else "the {category}" when that category
            is unique among the regions shown
  brief     "Provide a short description of <region>." when the annotation has a `caption`
  detail    "Describe in detail the object located at <region> in the image." when it has a `description`
The draw depends only on (seed, epoch, slot), so a resumed run sees the same samples.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

from ..prompts import COCO80, category_instruction, refer_instruction, task_instruction
from .data import DataError, Sample, check_region

TASKS = ("category", "refer", "brief", "detail")


class CocoSource:
    def __init__(
        self,
        path: str | Path,
        image_root: str | Path | None = None,
        tasks: tuple[str, ...] = TASKS,
        vocab_size: tuple[int, int] = (3, 10),
        max_refer_regions: int = 4,
    ):
        self.path = Path(path)
        try:
            d = json.loads(self.path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise DataError(f"cannot read COCO annotations {self.path}: {exc}") from None
        for key in ("images", "annotations", "categories"):
            if not isinstance(d.get(key), list):
                raise DataError(f"{self.path}: a COCO instances file needs a '{key}' list")
        self.root = Path(image_root) if image_root else self.path.parent
        self.names = {c["id"]: c["name"] for c in d["categories"]}
        self.coco80 = sorted(self.names.values()) == sorted(COCO80)
        self.tasks, self.vocab_size, self.max_refer = tasks, vocab_size, max_refer_regions
        by_image: dict[Any, list[dict]] = {}
        self.num_bad = 0
        self.bad: list[str] = []
        for a in d["annotations"]:
            where = f"{self.path}: annotation {a.get('id', '?')}"
            try:
                if a.get("iscrowd", 0) or a.get("category_id") not in self.names:
                    raise DataError(f"{where}: crowd region or unknown category_id {a.get('category_id')!r}")
                a = {**a, "_region": check_region(a, where)}
            except DataError as exc:
                self.num_bad += 1
                if len(self.bad) < 20:
                    self.bad.append(str(exc))
                continue
            by_image.setdefault(a.get("image_id"), []).append(a)
        self.images = [(im, by_image[im["id"]]) for im in d["images"] if im.get("id") in by_image]

    def __len__(self) -> int:
        return len(self.images)

    def get(self, i: int, rng: random.Random) -> Sample:
        image, anns = self.images[i]
        where = f"{self.path}: image {image['id']}"
        target = rng.choice(anns)
        tasks = [t for t in self.tasks if self._can(t, target, anns)]
        task = rng.choice(tasks) if tasks else "category"
        if task == "refer":
            regions, turn = self._refer(target, anns, rng)
        else:
            regions, turn = [target], self._single(task, target, rng)
        return Sample(self.root / image["file_name"], [a["_region"] for a in regions], [turn], where)

    def _can(self, task: str, a: dict, anns: list[dict]) -> bool:
        if task == "brief":
            return bool(a.get("caption"))
        if task == "detail":
            return bool(a.get("description"))
        if task == "refer":
            return len(anns) > 1
        return True

    def _single(self, task: str, a: dict, rng: random.Random) -> tuple[str, str]:
        name = self.names[a["category_id"]]
        if task == "brief":
            return task_instruction("brief"), a["caption"]
        if task == "detail":
            return task_instruction("detail"), a["description"]
        if self.coco80 and rng.random() < 0.5:
            return category_instruction(None), name
        others = sorted(set(self.names.values()) - {name})
        k = min(len(others), rng.randint(*self.vocab_size) - 1)
        vocab = [name, *rng.sample(others, k)]
        rng.shuffle(vocab)
        return category_instruction(vocab), name

    def _refer(self, target: dict, anns: list[dict], rng: random.Random) -> tuple[list[dict], tuple[str, str]]:
        others = [a for a in anns if a is not target]
        shown = [target, *rng.sample(others, min(len(others), rng.randint(1, self.max_refer - 1)))]
        rng.shuffle(shown)
        k = shown.index(target)
        sentences = target.get("sentences") or ([target["expression"]] if target.get("expression") else [])
        if sentences:
            expression = rng.choice(sentences)
            expression = expression.get("sent", "") if isinstance(expression, dict) else str(expression)
        else:
            name = self.names[target["category_id"]]
            if sum(self.names[a["category_id"]] == name for a in shown) > 1:
                shown = [a for a in shown if a is target or self.names[a["category_id"]] != name]
                k = shown.index(target)
            expression = f"the {name}"
        if len(shown) == 1:  # every distractor had the target's category: ask for its category instead
            return shown, self._single("category", target, rng)
        return shown, (refer_instruction(len(shown), expression), f"Region [{k + 1}]")
