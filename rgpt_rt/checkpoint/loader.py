"""Load a checkpoint of any layout (llava, vila, llava-hf) into RegionGPT: safetensors only, single file or sharded.

Every problem with the tensors (missing, unexpected, wrong shape, not floating point) is collected first and
reported by name in one CheckpointError, before any weight is read. The layer counts the config promises are
compared with the tensors the files hold before the model is built, so an absurd count fails in milliseconds.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch

from ..config import ModelConfig, read_config
from ..errors import CheckpointError, ConfigError
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
# safetensors dtypes a weight may have (converted to the load dtype); integer and bool tensors are refused.
FLOAT_DTYPES = ("F64", "F32", "F16", "BF16", "F8_E4M3", "F8_E5M2")
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
        except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as exc:
            raise CheckpointError(f"{index} is not a valid safetensors index: {exc}") from None
        if not isinstance(weight_map, dict) or not all(isinstance(f, str) and f for f in weight_map.values()):
            raise CheckpointError(f"{index}: weight_map must map tensor names to shard file names")
        base = folder.resolve()
        outside = sorted({f for f in weight_map.values() if not (folder / f).resolve().is_relative_to(base)})
        if outside:
            raise CheckpointError(f"{index} names shard files outside {folder}: {', '.join(outside[:5])}")
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


Found = dict[str, tuple[Path, str, tuple[int, ...], str]]  # our key -> (file, their name, shape, safetensors dtype)


def _scan(path: Path, cfg: ModelConfig) -> tuple[Found, list[str]]:
    """Map every checkpoint tensor to our key without reading data. Returns (found, unexpected names)."""
    from safetensors import safe_open

    table = routes(cfg)
    found: Found = {}
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
                        sl = f.get_slice(name)
                        found[ours] = (file, name, tuple(sl.get_shape()), str(sl.get_dtype()))
    return found, unexpected


def _count(found: Found, pattern: str) -> int:
    """1 + the largest index {i} among our keys matching `pattern` (a regex with one group), 0 if none."""
    idx = [int(m.group(1)) for k in found if (m := re.match(pattern, k))]
    return max(idx) + 1 if idx else 0


def check_layer_counts(cfg: ModelConfig, found: Found, path: Path) -> None:
    """The layer counts of the config against the layers the files hold: raise a ConfigError naming the field.
    Run before the model is built, so `num_hidden_layers: 1000000` costs a header read, not a million modules."""
    vision_where = "vision_config" if cfg.layout != "vila" else "vision_tower/config.json"
    llm_where = "config.json" if cfg.layout != "vila" else "llm/config.json"
    region_where = "config.json region_extractor" if cfg.layout != "vila" else "region_extractor/config.json"
    refiner = _count(found, r"refiner\.(\d+)\.")
    checks = [
        (f"{llm_where} num_hidden_layers", cfg.llm.num_layers, _count(found, r"llm\.model\.layers\.(\d+)\."), "layers"),
        (
            f"{vision_where} num_hidden_layers",
            cfg.vision.num_layers,
            _count(found, r"vision\.encoder\.layers\.(\d+)\."),
            "layers",
        ),
        # stage j's ConvTranspose2d is module 3j (ConvT, LayerNorm2d, GELU per stage), so depth = last // 3 + 1
        (f"{region_where} refine", cfg.region.refine_depth, (refiner - 1) // 3 + 1 if refiner else 0, "stages"),
    ]
    for field, says, has, unit in checks:
        if says != has:
            raise ConfigError(
                f"{path}: {field} says {says} {unit} but the weights have {has}; fix the config (or the weights)"
            )


# Sizes the first tensors of each part imply, per dimension: (part, field) of the config, as named in messages.
_IMPLIED = {
    "llm.model.embed_tokens.weight": (("llm", "vocab_size"), ("llm", "hidden_size")),
    "llm.model.layers.0.mlp.gate_proj.weight": (("llm", "intermediate_size"), ("llm", "hidden_size")),
    "vision.embeddings.patch_embedding.weight": (
        ("vision", "hidden_size"),
        ("vision", "num_channels"),
        ("vision", "patch_size"),
        ("vision", "patch_size"),
    ),
    "vision.encoder.layers.0.mlp.fc1.weight": (("vision", "intermediate_size"), ("vision", "hidden_size")),
}


def _implied_hints(cfg: ModelConfig, found: Found, expected: dict[str, tuple[int, ...]]) -> list[str]:
    """For mis-shaped tensors whose dimensions are single config fields: which field disagrees with the weights."""
    hints: list[str] = []
    for key, dims in _IMPLIED.items():
        if key not in found or key not in expected or len(found[key][2]) != len(dims):
            continue
        for (part, attr), has, wants in zip(dims, found[key][2], expected[key]):
            hint = f"{part} {attr}={getattr(getattr(cfg, part), attr)} but the weights imply {has} ({found[key][1]})"
            if has != wants and hint not in hints:
                hints.append(hint)
    return hints


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
    found, unexpected = _scan(path, cfg)
    check_layer_counts(cfg, found, path)
    with torch.device("meta"):
        model = RegionGPT(cfg)
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
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
    not_float = sorted(f"{where(k)}: {found[k][3]}" for k in expected if k in found and found[k][3] not in FLOAT_DTYPES)
    hints = _implied_hints(cfg, found, expected)
    if missing or unexpected or misshaped or not_float:
        parts = [f"cannot load {path} ({cfg.layout} layout):"]
        if hints:
            parts.append("  the config disagrees with the weights: " + "; ".join(hints))
        for title, items in (
            ("missing tensors", missing),
            ("unexpected tensors", unexpected),
            ("tensors with the wrong shape", misshaped),
            (f"tensors that are not floating point ({', '.join(FLOAT_DTYPES)} load)", not_float),
        ):
            if items:
                parts.append(f"  {len(items)} {title}: " + "; ".join(items[:20]) + (" …" if len(items) > 20 else ""))
        raise CheckpointError("\n".join(parts))

    by_file: dict[Path, list[str]] = {}
    for key, (file, _, _, _) in found.items():
        by_file.setdefault(file, []).append(key)
    state: dict[str, torch.Tensor] = {}
    for file, keys in by_file.items():
        with safe_open(str(file), framework="pt", device="cpu") as f:
            for key in keys:
                t = f.get_tensor(found[key][1])
                state[key] = t.to(device=device, dtype=torch_dtype if t.is_floating_point() else t.dtype)
    model.load_state_dict(state, strict=True, assign=True)
    return model.eval()
