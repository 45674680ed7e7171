"""Readers of the dataset formats the world is written in, which are also those of the real datasets.

- COCO instances (COCO val2017 `annotations/instances_val2017.json`, RefCOCOg's `instances.json`, the world's
  `annotations/instances_{split}.json`): segmentations as polygons or RLE (compressed or not)
- RefCOCOg-style refs as JSON: a list of {ref_id, ann_id, image_id, category_id, split, sentences: [{sent}]}
- Visual Genome region descriptions (`region_descriptions.json`): [{id, regions: [{phrase, x, y, width, height}]}]
- COCO captions (`captions_*.json`) and the world's tasks (`tasks_{split}.jsonl`, the training format)

Pickle files (refcocog's `refs(umd).p`) are never opened: unpickling runs code from the file. Convert such a
file to JSON once, with a tool you trust, and pass the JSON.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import RgptError
from ..inputs import Polygon, rle_decode
from ..inputs.regions import polygon_mask

PICKLE_SUFFIXES = (".p", ".pkl", ".pickle")


class DatasetError(RgptError, ValueError):
    """A dataset file is missing, in pickle format, or not in the expected layout; the message names which."""


def _refuse_pickle(path: Path) -> None:
    head = b""
    if path.is_file():
        with open(path, "rb") as f:
            head = f.read(2)
    if path.suffix.lower() in PICKLE_SUFFIXES or (len(head) == 2 and head[0] == 0x80 and head[1] <= 5):
        raise DatasetError(
            f"{path} is a pickle file; rgpt_rt does not open pickle files (loading one runs code from it). "
            "Convert it to JSON once with a tool you trust, e.g. for refcocog's refs(umd).p: "
            "json.dump(pickle.load(open('refs(umd).p', 'rb')), open('refs.json', 'w')), and pass the JSON file"
        )


def read_json(path: str | Path) -> Any:
    path = Path(path)
    _refuse_pickle(path)
    if not path.is_file():
        raise DatasetError(f"dataset file not found: {path}")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DatasetError(f"{path} is not a JSON file: {exc}") from None


def _need(d: Any, keys: tuple[str, ...], what: str) -> None:
    if not isinstance(d, dict):
        raise DatasetError(f"{what} must be a JSON object")
    missing = [k for k in keys if k not in d]
    if missing:
        raise DatasetError(f"{what} lacks {', '.join(missing)}")


def ann_mask(ann: dict, h: int, w: int) -> np.ndarray:
    """A COCO annotation's segmentation (polygons, RLE or uncompressed RLE) -> bool [h, w]."""
    seg = ann.get("segmentation")
    if isinstance(seg, dict):
        m = rle_decode(seg)
        if m.shape != (h, w):
            raise DatasetError(
                f"annotation {ann.get('id')}: RLE size {list(m.shape)} differs from the image's {[h, w]}"
            )
        return m
    if isinstance(seg, list) and seg:
        m = np.zeros((h, w), dtype=bool)
        for poly in seg:
            m |= polygon_mask(Polygon(poly), h, w)
        return m
    if "bbox" in ann:  # no segmentation: the box
        x, y, bw, bh = (float(v) for v in ann["bbox"])
        cols, rows = np.arange(w) + 0.5, np.arange(h) + 0.5
        return ((rows > y) & (rows < y + bh))[:, None] & ((cols > x) & (cols < x + bw))[None, :]
    raise DatasetError(f"annotation {ann.get('id')} has neither a segmentation nor a bbox")


@dataclass
class CocoInstances:
    path: Path
    images: dict[int, dict]
    categories: dict[int, str]  # id -> name, in file order
    anns_by_image: dict[int, list[dict]] = field(default_factory=dict)
    anns: dict[int, dict] = field(default_factory=dict)

    @property
    def names(self) -> list[str]:
        return list(self.categories.values())

    def mask(self, ann: dict) -> np.ndarray:
        im = self.images[ann["image_id"]]
        return ann_mask(ann, int(im["height"]), int(im["width"]))


def read_coco_instances(path: str | Path) -> CocoInstances:
    d = read_json(path)
    _need(d, ("images", "annotations", "categories"), f"{path} (COCO instances)")
    images = {}
    for im in d["images"]:
        _need(im, ("id", "file_name", "width", "height"), f"{path}: an image entry")
        images[im["id"]] = im
    cats = {}
    for c in d["categories"]:
        _need(c, ("id", "name"), f"{path}: a category entry")
        cats[c["id"]] = c["name"]
    out = CocoInstances(Path(path), images, cats)
    for a in d["annotations"]:
        _need(a, ("id", "image_id", "category_id"), f"{path}: an annotation")
        if a["image_id"] not in images or a["category_id"] not in cats:
            raise DatasetError(f"{path}: annotation {a['id']} names an unknown image or category")
        out.anns[a["id"]] = a
        out.anns_by_image.setdefault(a["image_id"], []).append(a)
    return out


def read_refs(path: str | Path) -> list[dict]:
    """RefCOCOg-style refs (JSON): each with ann_id, image_id and sentences (list of {sent} or strings)."""
    refs = read_json(path)
    if not isinstance(refs, list):
        raise DatasetError(f"{path}: refs must be a JSON list of ref objects")
    out = []
    for r in refs:
        _need(r, ("ann_id", "image_id", "sentences"), f"{path}: a ref")
        sents = [s["sent"] if isinstance(s, dict) else str(s) for s in r["sentences"]]
        out.append({**r, "sentences": [s for s in sents if s.strip()]})
    return out


def read_vg_regions(path: str | Path) -> list[dict]:
    """Visual Genome region descriptions -> a flat list of {image_id, region_id, phrase, box (x0, y0, x1, y1)}."""
    d = read_json(path)
    if not isinstance(d, list):
        raise DatasetError(f"{path}: region descriptions must be a JSON list of {{id, regions}}")
    out = []
    for entry in d:
        _need(entry, ("regions",), f"{path}: an image entry")
        for r in entry["regions"]:
            _need(r, ("phrase", "x", "y", "width", "height"), f"{path}: a region")
            x, y, w, h = (float(r[k]) for k in ("x", "y", "width", "height"))
            image_id = r.get("image_id", entry.get("id", entry.get("image_id")))
            out.append(
                {
                    "image_id": image_id,
                    "region_id": r.get("region_id", r.get("id")),
                    "phrase": r["phrase"],
                    "box": (x, y, x + w, y + h),
                }
            )
    return out


def read_captions(path: str | Path) -> dict[int, list[str]]:
    d = read_json(path)
    _need(d, ("annotations",), f"{path} (COCO captions)")
    out: dict[int, list[str]] = {}
    for a in d["annotations"]:
        _need(a, ("image_id", "caption"), f"{path}: a caption")
        out.setdefault(a["image_id"], []).append(a["caption"])
    return out


def read_tasks(path: str | Path) -> list[dict]:
    """The world's tasks file (JSON Lines in the training format, with `task` and `answer`)."""
    path = Path(path)
    _refuse_pickle(path)
    if not path.is_file():
        raise DatasetError(f"tasks file not found: {path}")
    out = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                t = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DatasetError(f"{path}:{n}: not valid JSON ({exc})") from None
            _need(t, ("image", "task", "regions", "conversations", "answer"), f"{path}:{n}")
            out.append(t)
    return out
