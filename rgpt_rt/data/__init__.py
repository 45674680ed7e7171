"""Datasets: the synthetic world (generated, never downloaded) and readers of the formats it is written in.

    python -m rgpt_rt.data.world --out world --split train --images 2000 --seed 0

The world is written as COCO instances / captions, RefCOCOg-style refs (JSON), Visual Genome region
descriptions and a tasks file in the training format (rgpt_rt/data/world.py describes the layout); the
readers in rgpt_rt/data/formats.py serve the world and the real datasets alike.
"""

from .formats import (
    DatasetError,
    ann_mask,
    read_captions,
    read_coco_instances,
    read_json,
    read_refs,
    read_tasks,
    read_vg_regions,
)

__all__ = [
    "DatasetError",
    "ann_mask",
    "read_captions",
    "read_coco_instances",
    "read_json",
    "read_refs",
    "read_tasks",
    "read_vg_regions",
]
