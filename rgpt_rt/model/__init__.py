"""The reference RegionGPT model in PyTorch (imports torch; the rest of rgpt_rt does not need it)."""

from .regiongpt import RegionGPT

__all__ = ["RegionGPT"]
