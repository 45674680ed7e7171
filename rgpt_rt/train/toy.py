"""A seeded toy dataset in the training format (and as COCO instances) for tests and benchmarks.

Images of coloured rectangles on grey; every rectangle is a region with its mask (RLE), polygon and box.
Questions: its colour as a category (vocabulary listed), which region is "the <colour> box" (refer), and a
brief caption. The answers depend on the regions' pixels, so a model can only lower the loss by using them.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
from PIL import Image

from ..inputs import rle_encode
from ..prompts import category_instruction, refer_instruction, task_instruction

COLOURS = {"red": (220, 30, 30), "green": (30, 200, 60), "blue": (40, 60, 230), "yellow": (230, 220, 40)}


def _scene(rng: random.Random, h: int, w: int, n: int):
    img = np.full((h, w, 3), 128, np.uint8)
    shapes = []
    names = rng.sample(sorted(COLOURS), n)
    for k, name in enumerate(names):
        x0 = k * w // n + rng.randint(0, 2)
        x1 = (k + 1) * w // n - rng.randint(1, 3)
        y0, y1 = rng.randint(0, h // 3), rng.randint(2 * h // 3, h)
        img[y0:y1, x0:x1] = COLOURS[name]
        mask = np.zeros((h, w), bool)
        mask[y0:y1, x0:x1] = True
        shapes.append((name, (x0, y0, x1, y1), mask))
    return img, shapes


def write_toy_dataset(folder: str | Path, n: int = 32, seed: int = 0, size: tuple[int, int] = (48, 64)) -> Path:
    """Write n samples (PNG images + train.jsonl) and instances.json (COCO format) under folder."""
    folder = Path(folder)
    (folder / "images").mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    h, w = size
    lines, images, anns = [], [], []
    vocab = sorted(COLOURS)
    for i in range(n):
        img, shapes = _scene(rng, h, w, rng.randint(2, 3))
        name = f"images/{i:05d}.png"
        Image.fromarray(img).save(folder / name)
        regions = []
        for colour, (x0, y0, x1, y1), mask in shapes:
            poly = [float(v) for v in (x0, y0, x1, y0, x1, y1, x0, y1)]
            regions.append({"rle": rle_encode(mask), "polygon": [poly], "box": [x0, y0, x1, y1]})
            anns.append(
                {
                    "id": len(anns) + 1,
                    "image_id": i,
                    "category_id": vocab.index(colour) + 1,
                    "segmentation": [poly],
                    "bbox": [x0, y0, x1 - x0, y1 - y0],
                    "area": int(mask.sum()),
                    "iscrowd": 0,
                    "caption": f"a {colour} box",
                }
            )
        images.append({"id": i, "file_name": name, "height": h, "width": w})
        task = ("category", "refer", "brief")[i % 3]
        t = rng.randrange(len(shapes))
        if task == "category":
            q, a, regs = category_instruction(vocab), shapes[t][0], [regions[t]]
        elif task == "brief":
            q, a, regs = task_instruction("brief"), f"a {shapes[t][0]} box", [regions[t]]
        else:
            q, a, regs = refer_instruction(len(shapes), f"the {shapes[t][0]} box"), f"Region [{t + 1}]", regions
        conv = [{"from": "human", "value": "<image>\n" + q}, {"from": "gpt", "value": a}]
        lines.append(json.dumps({"id": i, "image": name, "regions": regs, "conversations": conv}))
    (folder / "train.jsonl").write_text("\n".join(lines) + "\n")
    cats = [{"id": k + 1, "name": c} for k, c in enumerate(vocab)]
    (folder / "instances.json").write_text(json.dumps({"images": images, "annotations": anns, "categories": cats}))
    return folder / "train.jsonl"
