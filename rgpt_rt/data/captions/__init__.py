"""The VLM-assisted region-caption pipeline (RegionGPT section 3.3) behind `python -m rgpt_rt.datagen`.

source.py      COCO-format instances -> rows (one per image, a stable id per region), crops
captioners.py  any model the runtime loads, or an OpenAI-compatible chat endpoint
filters.py     quality filters (empty, truncated, repetition, class not mentioned, length)
pipeline.py    the two stages, the atomic resumable shard store, the in-process and Ray Data engines
"""

from .captioners import Answer, CaptionerError, EndpointCaptioner, GenSettings, RuntimeCaptioner
from .filters import FILTERS, FilterConfig, reject_reason
from .pipeline import (
    GLOBAL_PROMPT,
    REGION_PROMPT,
    REGION_PROMPT_CLASS,
    CaptionerSpec,
    JobConfig,
    build_report,
    caption_row,
    done_ids,
    pending_rows,
    read_records,
    region_prompt,
    run_local,
    run_ray,
)
from .source import crop_box, read_rows

__all__ = [
    "FILTERS",
    "GLOBAL_PROMPT",
    "REGION_PROMPT",
    "REGION_PROMPT_CLASS",
    "Answer",
    "CaptionerError",
    "CaptionerSpec",
    "EndpointCaptioner",
    "FilterConfig",
    "GenSettings",
    "JobConfig",
    "RuntimeCaptioner",
    "build_report",
    "caption_row",
    "crop_box",
    "done_ids",
    "pending_rows",
    "read_records",
    "read_rows",
    "region_prompt",
    "reject_reason",
    "run_local",
    "run_ray",
]
