"""Files shipped with the package.

SAMPLE_IMAGE: a 320x240 RGB drawing (PNG) of a red car on a road, a tree and the sun.
SAMPLE_BOX: the red car in it, (x0, y0, x1, y1) in pixels.
NANO_MODEL: the nano RegionGPT trained on the synthetic world (llava layout; nano/MODEL_CARD.md says how).
SCENES_DIR: four scenes of the synthetic world's test split (128x128 PNG) and scenes.json, their objects:
    [{"name", "file", "source", "width", "height",
      "objects": [{"category", "color", "size", "pattern", "caption", "box": [x0, y0, x1, y1],
                   "segmentation": COCO RLE}]}]
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_HERE = Path(__file__).resolve().parent
SAMPLE_IMAGE: Path = _HERE / "sample.png"
SAMPLE_BOX: tuple[int, int, int, int] = (128, 128, 232, 198)
NANO_MODEL: Path = _HERE / "nano"
SCENES_DIR: Path = _HERE / "scenes"
DEMO_SCENE = "scene_c"  # the demo's scene: a large purple pentagon, a medium white circle, a large blue cross
DEMO_OBJECT = 2  # the large blue cross


@dataclass(frozen=True)
class Scene:
    name: str
    image: Path
    objects: list[dict[str, Any]]


def scenes() -> list[Scene]:
    """The shipped scenes, in scenes.json's order."""
    rows = json.loads((SCENES_DIR / "scenes.json").read_text())
    return [Scene(r["name"], SCENES_DIR / r["file"], r["objects"]) for r in rows]


def scene(name: str) -> Scene:
    found = {s.name: s for s in scenes()}
    if name not in found:
        raise KeyError(f"no shipped scene '{name}'; shipped: {', '.join(found)}")
    return found[name]


__all__ = [
    "DEMO_OBJECT",
    "DEMO_SCENE",
    "NANO_MODEL",
    "SAMPLE_BOX",
    "SAMPLE_IMAGE",
    "SCENES_DIR",
    "Scene",
    "scene",
    "scenes",
]
