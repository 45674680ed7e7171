"""Load a checkpoint of either layout into RegionGPT: safetensors only, single file or sharded.

Every problem with the tensors (missing, unexpected, wrong shape) is collected first and reported by name
in one CheckpointError, before any weight is read.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from ..config import ModelConfig, read_config
from ..errors import CheckpointError
from ..model.regiongpt import RegionGPT
from .layouts import groups, is_ignored, routes, to_ours, to_theirs

DTYPES = {
    "fp32": torch.float32,
    "float32": torch.float32,
    "fp16": torch.float16,
    "float16": torch.float16,
    "bf16": torch.bfloat16,
    "bfloat16": torch.bfloat16,
}
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")
INDEX = "model.safetensors.index.json"


def resolve_dtype(dtype: str | torch.dtype | None) -> torch.dtype:
    if dtype is None:
        return torch.float32
    if isinstance(dtype, torch.dtype):
        if dtype not in DTYPES.values():
            raise ValueError(f"load dtype {dtype} is not supported (use fp32, fp16 or bf16)")
        return dtype
    if dtype not in DTYPES:
        raise ValueError(f"load dtype '{dtype}' is not supported (use fp32, fp16 or bf16)")
    return DTYPES[dtype]


def weight_files(folder: Path) -> list[Path]:
    """The safetensors files of one group: the index's shards, or every *.safetensors file."""
    index = folder / INDEX
    if index.is_file():
        try:
            weight_map = json.loads(index.read_text())["weight_map"]
        except (json.JSONDecodeError, KeyError) as exc:
            raise CheckpointError(f"{index} is not a valid safetensors index: {exc}") from None
        files = sorted({folder / f for f in weight_map.values()})
        absent = [f.name for f in files if not f.is_file()]
        if absent:
            raise CheckpointError(f"{index} names shard files that do not exist: {', '.join(absent)}")
        return files
    files = sorted(folder.glob("*.safetensors"))
    if files:
        return files
    pickles = sorted(p.name for p in folder.iterdir() if p.suffix in PICKLE_SUFFIXES) if folder.is_dir() else []
    if pickles:
        raise CheckpointError(
            f"{folder} holds pickle weights ({', '.join(pickles)}); rgpt_rt loads safetensors only, because "
            "unpickling can run arbitrary code. Convert once, in an environment you trust:\n"
            f'  cd {folder} && python -c "import torch, safetensors.torch as st; '
            f"st.save_file(torch.load('{pickles[0]}', weights_only=True), 'model.safetensors', "
            "metadata={'format': 'pt'})\"\n(then remove the pickle file; a sharded checkpoint converts shard by shard)"
        )
    raise CheckpointError(f"no weights found in {folder} (expected model.safetensors or {INDEX})")


def _scan(path: Path, cfg: ModelConfig) -> tuple[dict[str, tuple[Path, str, tuple[int, ...]]], list[str]]:
    """Map every checkpoint tensor to our key without reading data. Returns (found, unexpected names)."""
    from safetensors import safe_open

    table = routes(cfg)
    found: dict[str, tuple[Path, str, tuple[int, ...]]] = {}
    unexpected: list[str] = []
    for group in groups(cfg):
        folder = path / group if group else path
        for file in weight_files(folder):
            try:
                handle = safe_open(str(file), framework="pt")
            except Exception as exc:  # safetensors raises its own error types for corrupt headers
                raise CheckpointError(f"{file} is not a readable safetensors file: {exc}") from None
            with handle as f:
                for name in f.keys():
                    shown = f"{group}/{name}" if group else name
                    if is_ignored(group, name, cfg):
                        continue
                    ours = to_ours(group, name, table)
                    if ours is None:
                        unexpected.append(shown)
                    else:
                        found[ours] = (file, name, tuple(f.get_slice(name).get_shape()))
    return found, unexpected


def load_model(
    path: str | Path,
    dtype: str | torch.dtype | None = "fp32",
    device: str | torch.device = "cpu",
    cfg: ModelConfig | None = None,
) -> RegionGPT:
    """Build RegionGPT from a llava- or vila-layout checkpoint directory, weights in `dtype` on `device`."""
    from safetensors import safe_open

    path = Path(path)
    cfg = cfg or read_config(path)
    torch_dtype = resolve_dtype(dtype)
    with torch.device("meta"):
        model = RegionGPT(cfg)
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    found, unexpected = _scan(path, cfg)
    table = routes(cfg)

    def where(key: str) -> str:
        group, name = to_theirs(key, table)
        return f"{group}/{name}" if group else name

    missing = sorted(where(k) for k in expected if k not in found)
    unexpected += sorted(f"{where(k)}" for k in found if k not in expected)
    misshaped = sorted(
        f"{where(k)}: checkpoint {list(found[k][2])}, model expects {list(s)}"
        for k, s in expected.items()
        if k in found and found[k][2] != s
    )
    if missing or unexpected or misshaped:
        parts = [f"cannot load {path} ({cfg.layout} layout):"]
        for title, items in (
            ("missing tensors", missing),
            ("unexpected tensors", unexpected),
            ("tensors with the wrong shape", misshaped),
        ):
            if items:
                parts.append(f"  {len(items)} {title}: " + "; ".join(items[:20]) + (" …" if len(items) > 20 else ""))
        raise CheckpointError("\n".join(parts))

    by_file: dict[Path, list[str]] = {}
    for key, (file, _, _) in found.items():
        by_file.setdefault(file, []).append(key)
    state: dict[str, torch.Tensor] = {}
    for file, keys in by_file.items():
        with safe_open(str(file), framework="pt", device="cpu") as f:
            for key in keys:
                t = f.get_tensor(found[key][1])
                state[key] = t.to(device=device, dtype=torch_dtype if t.is_floating_point() else t.dtype)
    model.load_state_dict(state, strict=True, assign=True)
    return model.eval()
