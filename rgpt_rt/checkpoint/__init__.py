"""Checkpoint layouts (llava, vila): reading and writing RegionGPT weights as safetensors."""

from .loader import load_model, resolve_dtype, weight_files
from .writer import save_checkpoint

__all__ = ["load_model", "resolve_dtype", "save_checkpoint", "weight_files"]
