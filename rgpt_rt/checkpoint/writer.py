"""Write a RegionGPT module as a checkpoint of either layout (configs + safetensors, optionally sharded)."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from ..config import ModelConfig
from ..model.regiongpt import RegionGPT
from .layouts import llava_config_json, routes, to_theirs, vila_config_jsons
from .loader import INDEX


def _write_json(path: Path, d: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(d, indent=2, sort_keys=True) + "\n")


def shard_plan(sizes: list[tuple[str, int]], max_shard_bytes: int) -> list[list[str]]:
    """Tensor names (in order, with their byte sizes) -> shards: a new shard starts where the next tensor would
    take the current one past max_shard_bytes."""
    shards: list[list[str]] = [[]]
    size = 0
    for n, nbytes in sizes:
        if shards[-1] and size + nbytes > max_shard_bytes:
            shards.append([])
            size = 0
        shards[-1].append(n)
        size += nbytes
    return shards


def _save_group(folder: Path, tensors: dict[str, torch.Tensor], max_shard_bytes: int | None) -> None:
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    names = sorted(tensors)
    if not max_shard_bytes:
        save_file({n: tensors[n] for n in names}, str(folder / "model.safetensors"), metadata={"format": "pt"})
        return
    shards = shard_plan([(n, tensors[n].numel() * tensors[n].element_size()) for n in names], max_shard_bytes)
    weight_map = {}
    for i, shard in enumerate(shards):
        fname = f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
        save_file({n: tensors[n] for n in shard}, str(folder / fname), metadata={"format": "pt"})
        weight_map.update({n: fname for n in shard})
    total = sum(t.numel() * t.element_size() for t in tensors.values())
    _write_json(folder / INDEX, {"metadata": {"total_size": total}, "weight_map": weight_map})


def save_checkpoint(
    model: RegionGPT,
    path: str | Path,
    max_shard_bytes: int | dict[str, int] | None = None,
    dtype: torch.dtype | None = None,
) -> None:
    """Write `model` in its config's layout under `path` (weights and configs; tokenizer files are separate).
    max_shard_bytes: shard every file group at this size, or {group: size} to shard only those groups (vila:
    {"llm": n} shards llm/ alone, as SpatialRGPT's releases are)."""
    path = Path(path)
    cfg: ModelConfig = model.cfg
    table = routes(cfg)
    per_group: dict[str, dict[str, torch.Tensor]] = {}
    for key, t in model.state_dict().items():
        group, name = to_theirs(key, table)
        t = t.detach().to("cpu")
        if dtype is not None and t.is_floating_point():
            t = t.to(dtype)
        per_group.setdefault(group, {})[name] = t.contiguous().clone()
    for group, tensors in per_group.items():
        limit = max_shard_bytes.get(group) if isinstance(max_shard_bytes, dict) else max_shard_bytes
        _save_group(path / group if group else path, tensors, limit)
    if cfg.layout == "llava":
        _write_json(path / "config.json", llava_config_json(cfg))
    else:
        for rel, d in vila_config_jsons(cfg).items():
            _write_json(path / rel, d)
