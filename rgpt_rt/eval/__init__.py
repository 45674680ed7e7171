"""Evaluation: `python -m rgpt_rt.eval MODEL --world DIR` (or COCO / RefCOCOg / Visual Genome files).

Metrics as the papers report them (rgpt_rt/eval/metrics.py); items from the dataset formats
(rgpt_rt/eval/datasets.py); the run over a model, frame by frame (rgpt_rt/eval/run.py).
"""

from .datasets import Dataset, Item, coco_category_items, refcocog_items, vg_items, world_items
from .run import compute_metrics, evaluate, markdown_table, write_results

__all__ = [
    "Dataset",
    "Item",
    "coco_category_items",
    "compute_metrics",
    "evaluate",
    "markdown_table",
    "refcocog_items",
    "vg_items",
    "world_items",
    "write_results",
]
