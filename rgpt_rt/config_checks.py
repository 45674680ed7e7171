"""Validation of model configurations (rgpt_rt.config): every config is checked before anything is built from
it, so an absurd checkpoint fails with a ConfigError naming the field instead of allocating or dividing by zero."""

from __future__ import annotations

import math
import numbers
from typing import TYPE_CHECKING, Any

from .errors import ConfigError

if TYPE_CHECKING:
    from .config import LlamaConfig, ModelConfig, VisionConfig

# ---- validation ---------------------------------------------------------------------------------------
# Every config is checked before anything is built from it: sizes are positive integers (numpy integers count,
# booleans and strings do not), sizes that must divide do, and derived sizes stay sane. Field names in messages
# are the checkpoint's own (HF_NAMES) when reading a checkpoint, the dataclass fields (`llm.num_heads`) otherwise.

MAX_REFINE_DEPTH = 8  # 2^8 = 256x upsampling of the patch grid; RegionGPT uses 2 (4x)

HF_NAMES: dict[str, dict[str, str]] = {
    "llm": {
        "num_layers": "num_hidden_layers",
        "num_heads": "num_attention_heads",
        "num_kv_heads": "num_key_value_heads",
    },
    "vision": {
        "num_layers": "num_hidden_layers",
        "num_heads": "num_attention_heads",
        "select_layer": "mm_vision_select_layer",
    },
    "region": {"refine_depth": "refine"},
    "connector": {"type": "mm_projector_type"},
    "model": {},
}


def check_int(value: Any, field: str, where: str, lo: int = 1, hi: int | None = None) -> int:
    """An integer config value (numpy integers too, never a bool) with lo <= value <= hi, as a Python int."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ConfigError(f"{where}: {field} must be an integer, got {value!r}")
    v = int(value)
    if v < lo or (hi is not None and v > hi):
        bound = f">= {lo}" if hi is None else f"between {lo} and {hi}"
        raise ConfigError(f"{where}: {field}={v} is out of range (it must be {bound})")
    return v


def check_float(value: Any, field: str, where: str, lo: float = 0.0, strict: bool = False) -> float:
    """A finite real config value >= lo (> lo with strict), as a Python float."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(float(value)):
        raise ConfigError(f"{where}: {field} must be a finite number, got {value!r}")
    v = float(value)
    if v < lo or (strict and v == lo):
        raise ConfigError(f"{where}: {field}={v} is out of range (it must be {'>' if strict else '>='} {lo})")
    return v


def _namer(names: dict[str, dict[str, str]] | None):
    def name(part: str, attr: str) -> str:
        return f"{part}.{attr}" if names is None else names.get(part, {}).get(attr, attr)

    return name


def _wheres(where: str | dict[str, str]) -> dict[str, str]:
    return (
        dict(where)
        if isinstance(where, dict)
        else {p: where for p in ("llm", "vision", "region", "connector", "model")}
    )


def check_vision(v: VisionConfig, where: str, names: dict[str, dict[str, str]] | None = HF_NAMES) -> None:
    n = _namer(names)
    for attr in ("hidden_size", "intermediate_size", "num_layers", "num_heads", "image_size", "patch_size"):
        check_int(getattr(v, attr), n("vision", attr), where)
    check_int(v.num_channels, n("vision", "num_channels"), where, lo=3, hi=3)  # frames are RGB
    check_int(v.select_layer, n("vision", "select_layer"), where, lo=-(v.num_layers + 1), hi=v.num_layers)
    if v.hidden_size % v.num_heads:
        raise ConfigError(
            f"{where}: {n('vision', 'hidden_size')}={v.hidden_size} is not a multiple of "
            f"{n('vision', 'num_heads')}={v.num_heads}"
        )
    if v.patch_size > v.image_size:
        raise ConfigError(
            f"{where}: {n('vision', 'patch_size')}={v.patch_size} is larger than "
            f"{n('vision', 'image_size')}={v.image_size} (no patch fits the image)"
        )
    check_float(v.layer_norm_eps, n("vision", "layer_norm_eps"), where)
    for attr in ("image_mean", "image_std"):
        vals = getattr(v, attr)
        if not isinstance(vals, (tuple, list)) or len(vals) != 3:
            raise ConfigError(f"{where}: {n('vision', attr)} must be 3 numbers (R, G, B), got {vals!r}")
        for x in vals:
            check_float(x, n("vision", attr), where, lo=0.0, strict=attr == "image_std")
    if v.hidden_act not in ("quick_gelu", "gelu_pytorch_tanh", "gelu"):
        raise ConfigError(f"{where}: vision hidden_act {v.hidden_act!r} is not supported")
    if v.model_type not in ("clip_vision_model", "siglip_vision_model"):
        raise ConfigError(f"{where}: vision model_type {v.model_type!r} is not supported")
    for attr in ("class_token", "pre_layernorm", "patch_bias"):
        if not isinstance(getattr(v, attr), bool):
            raise ConfigError(f"{where}: {n('vision', attr)} must be true or false, got {getattr(v, attr)!r}")


def check_llm(c: LlamaConfig, where: str, names: dict[str, dict[str, str]] | None = HF_NAMES) -> None:
    n = _namer(names)
    for attr in (
        "vocab_size",
        "hidden_size",
        "intermediate_size",
        "num_layers",
        "num_heads",
        "num_kv_heads",
        "head_dim",
        "max_position_embeddings",
    ):
        check_int(getattr(c, attr), n("llm", attr), where)
    if c.num_heads % c.num_kv_heads:
        raise ConfigError(
            f"{where}: {n('llm', 'num_heads')}={c.num_heads} is not a multiple of "
            f"{n('llm', 'num_kv_heads')}={c.num_kv_heads}"
        )
    if c.head_dim % 2:
        raise ConfigError(f"{where}: {n('llm', 'head_dim')}={c.head_dim} must be even (rotary embeddings rotate pairs)")
    check_float(c.rms_norm_eps, n("llm", "rms_norm_eps"), where)
    check_float(c.rope_theta, n("llm", "rope_theta"), where, strict=True)
    s = c.rope_scaling
    if s is not None:
        if not isinstance(s, dict) or s.get("rope_type") != "llama3":
            raise ConfigError(f"{where}: rope_scaling must be null or llama3 parameters, got {s!r}")
        for key in ("factor", "low_freq_factor", "high_freq_factor"):
            check_float(s.get(key), f"rope_scaling.{key}", where, strict=True)
        check_int(s.get("original_max_position_embeddings"), "rope_scaling.original_max_position_embeddings", where)
        if s["high_freq_factor"] <= s["low_freq_factor"]:
            raise ConfigError(f"{where}: rope_scaling.high_freq_factor must exceed low_freq_factor, got {s!r}")
    if not isinstance(c.tie_word_embeddings, bool):
        raise ConfigError(f"{where}: tie_word_embeddings must be true or false, got {c.tie_word_embeddings!r}")
    if c.bos_token_id is not None:
        check_int(c.bos_token_id, n("llm", "bos_token_id"), where, lo=0, hi=c.vocab_size - 1)
    if not isinstance(c.eos_token_id, tuple):
        raise ConfigError(f"{where}: {n('llm', 'eos_token_id')} must be an id or a list of ids, got {c.eos_token_id!r}")
    for e in c.eos_token_id:
        check_int(e, n("llm", "eos_token_id"), where, lo=0, hi=c.vocab_size - 1)


def validate_config(
    cfg: ModelConfig, where: str | dict[str, str], names: dict[str, dict[str, str]] | None = HF_NAMES
) -> None:
    """Check every field and the relations between parts; raise a ConfigError naming the first bad field.
    `where` names the file (or, per part "llm", "vision", "region", "connector", "model", the files)."""
    w, n = _wheres(where), _namer(names)
    check_vision(cfg.vision, w["vision"], names)
    check_llm(cfg.llm, w["llm"], names)
    r = cfg.region
    depth = check_int(r.refine_depth, n("region", "refine_depth"), w["region"], hi=MAX_REFINE_DEPTH)
    refined = cfg.vision.grid * 2**depth
    if (
        isinstance(r.image_grid, bool)
        or not isinstance(r.image_grid, numbers.Integral)
        or not 1 <= r.image_grid <= refined
    ):
        raise ConfigError(
            f"{w['region']}: {n('region', 'image_grid')}={r.image_grid!r} must be an integer between 1 and the "
            f"refined map's side {refined} (the patch merge shrinks the map, it cannot grow it)"
        )
    if r.region_connector not in ("shared", "linear"):
        raise ConfigError(f"{w['region']}: region_connector {r.region_connector!r} is not 'shared' or 'linear'")
    check_float(r.mask_eps, n("region", "mask_eps"), w["region"], strict=True)
    c = cfg.connector
    if c.type not in ("mlp2x_gelu", "mlp_downsample"):
        raise ConfigError(f"{w['connector']}: {n('connector', 'type')} {c.type!r} is not supported")
    if c.in_features != cfg.vision.hidden_size or c.out_features != cfg.llm.hidden_size:
        raise ConfigError(
            f"{w['connector']}: the connector maps {c.in_features} -> {c.out_features} features but the vision "
            f"tower has {cfg.vision.hidden_size} and the LLM {cfg.llm.hidden_size}"
        )
    if cfg.image_aspect_ratio not in ("pad", "resize"):
        raise ConfigError(
            f"{w['model']}: image_aspect_ratio {cfg.image_aspect_ratio!r} is not supported (expected 'pad' or 'resize')"
        )
    if not isinstance(cfg.enable_depth, bool):
        raise ConfigError(f"{w['model']}: enable_depth must be true or false, got {cfg.enable_depth!r}")
    ctx = cfg.llm.max_position_embeddings
    if cfg.num_image_tokens + 1 >= ctx:
        raise ConfigError(
            f"{w['llm']}: {n('llm', 'max_position_embeddings')}={ctx} leaves no room for a prompt: the image alone "
            f"takes {cfg.num_image_tokens} tokens"
        )
