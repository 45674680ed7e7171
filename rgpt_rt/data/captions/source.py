"""Rows of the caption job: one per image of a COCO-format instances file, each with its regions' stable ids.

A region's id is `{source}:{image_id}:{ann_id}` (source: the instances file's stem), the same on every run over
the same file, so a restarted job can skip what is written. Rows are plain JSON-able dicts: they travel through
Ray's object store unchanged, and the in-process mode sees exactly the same rows.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ..formats import DatasetError, read_coco_instances


def region_id(source: str, image_id: Any, ann_id: Any) -> str:
    return f"{source}:{image_id}:{ann_id}"


def read_rows(instances: str | Path, images: str | Path, limit: int | None = None) -> list[dict[str, Any]]:
    """COCO instances (+ the images directory) -> rows {image_id, image (absolute path), width, height,
    regions: [{id, ann_id, category, bbox [x, y, w, h], segmentation?}]}, images in file order; images without
    annotations are left out (they have no region to caption); `limit` keeps the first images only."""
    coco = read_coco_instances(instances)
    root = Path(images).resolve()
    if not root.is_dir():
        raise DatasetError(f"images directory not found: {images}")
    source = Path(instances).stem
    rows = []
    for image_id, im in coco.images.items():
        anns = coco.anns_by_image.get(image_id, [])
        if not anns:
            continue
        regions = []
        for a in anns:
            if "bbox" not in a:
                raise DatasetError(f"{instances}: annotation {a['id']} has no bbox (the crop needs one)")
            r = {
                "id": region_id(source, image_id, a["id"]),
                "ann_id": a["id"],
                "category": coco.categories[a["category_id"]],
                "bbox": [float(v) for v in a["bbox"]],
            }
            if a.get("segmentation"):
                r["segmentation"] = a["segmentation"]
            regions.append(r)
        rows.append(
            {
                "image_id": image_id,
                "image": str(root / im["file_name"]),
                "width": int(im["width"]),
                "height": int(im["height"]),
                "regions": regions,
            }
        )
        if limit is not None and len(rows) >= limit:
            break
    return rows


def load_image(row: dict[str, Any]) -> np.ndarray:
    """The row's image as RGB uint8 [H, W, 3]; a missing or unreadable file is a DatasetError naming it."""
    path = Path(row["image"])
    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"))
    except (OSError, ValueError) as exc:
        raise DatasetError(f"image {row['image_id']}: cannot read {path} ({exc})") from None


def crop_box(bbox: list[float], width: int, height: int, margin: float, min_size: int) -> tuple[int, int, int, int]:
    """The close-up window of a COCO box [x, y, w, h]: grown by `margin` x its size on every side (context), at
    least `min_size` pixels a side, same aspect ratio as the grown box; moved (not squeezed) to stay inside the
    image where it fits, clipped where it does not. Returns integer (x0, y0, x1, y1), x1/y1 exclusive."""
    x, y, w, h = bbox
    cx, cy = x + w / 2, y + h / 2
    gw, gh = max(w * (1 + 2 * margin), 1.0), max(h * (1 + 2 * margin), 1.0)
    scale = max(1.0, min_size / gw, min_size / gh)
    gw, gh = gw * scale, gh * scale

    def span(c: float, size: float, limit: int) -> tuple[int, int]:
        lo, hi = c - size / 2, c + size / 2
        if hi > limit:
            lo, hi = lo - (hi - limit), limit
        if lo < 0:
            lo, hi = 0, min(limit, hi - lo)
        lo_i, hi_i = int(np.floor(lo)), int(np.ceil(hi))
        return max(0, lo_i), min(limit, max(hi_i, lo_i + 1))

    x0, x1 = span(cx, gw, width)
    y0, y1 = span(cy, gh, height)
    return x0, y0, x1, y1


def row_json(row: dict[str, Any]) -> str:
    return json.dumps(row, sort_keys=True)
