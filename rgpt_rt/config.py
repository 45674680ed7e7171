"""Model configuration: one dataclass per part, read from either checkpoint layout (DESIGN.md section 1).

Every size comes from the checkpoint's config files; every difference between the llava and vila layouts
is a field here, decided once by the reader, so model code never asks which model it is running.
"""

from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .config_checks import MAX_REFINE_DEPTH, check_float, check_int, check_llm, check_vision, validate_config
from .errors import ConfigError

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
SIGLIP_MEAN = (0.5, 0.5, 0.5)
SIGLIP_STD = (0.5, 0.5, 0.5)

LAYOUTS = ("llava", "vila")
VILA_SUBDIRS = ("llm", "vision_tower", "mm_projector", "region_extractor")


@dataclass(frozen=True)
class VisionConfig:
    """ViT vision tower (CLIP or SigLIP flavour)."""

    model_type: str  # "clip_vision_model" | "siglip_vision_model" (the Hugging Face name, for writers)
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    image_size: int
    patch_size: int
    hidden_act: str  # "quick_gelu" (CLIP) | "gelu_pytorch_tanh" (SigLIP) | "gelu"
    layer_norm_eps: float
    select_layer: int = -2  # index into hidden_states (embeddings are entry 0)
    num_channels: int = 3
    class_token: bool = True  # CLIP prepends a CLS token; SigLIP has none
    pre_layernorm: bool = True  # CLIP normalises the embeddings before the encoder
    patch_bias: bool = False  # SigLIP's patch embedding has a bias
    image_mean: tuple[float, float, float] = CLIP_MEAN
    image_std: tuple[float, float, float] = CLIP_STD

    @property
    def grid(self) -> int:
        """Patch grid side: floor(image_size / patch_size), as a stride-p convolution gives."""
        return self.image_size // self.patch_size

    @property
    def num_patches(self) -> int:
        return self.grid * self.grid

    @property
    def layers_used(self) -> int:
        """Encoder layers that must run to produce hidden_states[select_layer]."""
        n = self.num_layers + 1 + self.select_layer if self.select_layer < 0 else self.select_layer
        if not 0 <= n <= self.num_layers:
            raise ConfigError(
                f"mm_vision_select_layer={self.select_layer} is out of range for a {self.num_layers}-layer vision tower"
            )
        return n


@dataclass(frozen=True)
class RegionConfig:
    """Feature refinement, patch merge and mask pooling (the `regiongpt` region extractor)."""

    refine_depth: int = 2  # number of stride-2 ConvTranspose2d layers (each doubles the map side), 1..MAX_REFINE_DEPTH
    image_grid: int = 24  # side of the patch-merge output (adaptive average pool of the refined map), 1..refined side
    region_connector: str = "shared"  # "shared" (the image connector) | "linear" (its own Linear)
    mask_eps: float = 1e-8


@dataclass(frozen=True)
class ConnectorConfig:
    """Image connector from vision features [T, C] to LLM embeddings [T', D]."""

    type: str  # "mlp2x_gelu" | "mlp_downsample"
    in_features: int
    out_features: int


@dataclass(frozen=True)
class LlamaConfig:
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    rms_norm_eps: float = 1e-6
    rope_theta: float = 10000.0
    # None, or {"rope_type": "llama3", "factor", "low_freq_factor", "high_freq_factor",
    # "original_max_position_embeddings"}
    rope_scaling: dict[str, Any] | None = None
    max_position_embeddings: int = 2048
    tie_word_embeddings: bool = False
    bos_token_id: int | None = 1
    eos_token_id: tuple[int, ...] = (2,)


@dataclass(frozen=True)
class ModelConfig:
    layout: str  # "llava" | "vila": where the files and tensor names live
    vision: VisionConfig
    region: RegionConfig
    connector: ConnectorConfig
    llm: LlamaConfig
    conv_template: str = "vicuna_v1"
    image_token: str = "<image>"
    region_token: str = "<region>"  # the checkpoint's own placeholder (vila: "<mask>")
    image_aspect_ratio: str = "pad"  # "pad" (square with the mean colour) | "resize" (stretch to S x S)
    enable_depth: bool = False  # SpatialRGPT's depth branch: `<depth>` tokens from a depth map and depth_projector

    @property
    def region_index_base(self) -> int:
        """How answers number regions: `Region [1]` is the first in RegionGPT's llava lineage; SpatialRGPT's
        releases (vila layout) answer `Region [0]` for the first."""
        return 0 if self.layout == "vila" else 1

    @property
    def refined_size(self) -> int:
        return self.vision.grid * (2**self.region.refine_depth)

    @property
    def num_image_tokens(self) -> int:
        g = self.region.image_grid
        if self.connector.type == "mlp_downsample":
            g = (g + 1) // 2
        return g * g

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @staticmethod
    def from_dict(d: dict[str, Any], where: str = "model config") -> ModelConfig:
        """The inverse of to_dict (engine manifests), validated like a checkpoint's config; field names in errors
        are the dataclass fields (`llm.num_heads`)."""
        parts = {"vision": VisionConfig, "region": RegionConfig, "connector": ConnectorConfig, "llm": LlamaConfig}
        if not isinstance(d, dict):
            raise ConfigError(f"{where} must be an object, got {type(d).__name__}")
        top = {f.name for f in dataclasses.fields(ModelConfig)}
        d = {"enable_depth": False, **d}  # manifests written before the depth branch existed
        for key in top:
            if key not in d:
                raise ConfigError(f"{where}: required field '{key}' is missing")
        unknown = sorted(set(d) - top)
        if unknown:
            raise ConfigError(f"{where}: unknown field(s) {', '.join(unknown)}")
        built: dict[str, Any] = {}
        for name, cls in parts.items():
            sub = d[name]
            if not isinstance(sub, dict):
                raise ConfigError(f"{where}: field '{name}' must be an object, got {type(sub).__name__}")
            known = {f.name for f in dataclasses.fields(cls)}
            unknown = sorted(set(sub) - known)
            if unknown:
                raise ConfigError(f"{where}: unknown field(s) {', '.join(f'{name}.{u}' for u in unknown)}")
            sub = dict(sub)
            for key in ("eos_token_id", "image_mean", "image_std"):
                if key in sub and isinstance(sub[key], list):
                    sub[key] = tuple(sub[key])
            try:
                built[name] = cls(**sub)
            except TypeError as exc:  # a required field is missing
                raise ConfigError(f"{where}: field '{name}': {exc}") from None
        cfg = ModelConfig(
            layout=d["layout"],
            conv_template=d["conv_template"],
            image_token=d["image_token"],
            region_token=d["region_token"],
            image_aspect_ratio=d["image_aspect_ratio"],
            enable_depth=d["enable_depth"],
            **built,
        )
        if cfg.layout not in LAYOUTS:
            raise ConfigError(f"{where}: layout {cfg.layout!r} is not one of {', '.join(LAYOUTS)}")
        for key in ("conv_template", "image_token", "region_token", "image_aspect_ratio"):
            if not isinstance(getattr(cfg, key), str) or not getattr(cfg, key):
                raise ConfigError(f"{where}: {key} must be a non-empty string, got {getattr(cfg, key)!r}")
        validate_config(cfg, where, names=None)
        return cfg


# ---- readers ------------------------------------------------------------------------------------------


def _need(d: dict[str, Any], key: str, where: str) -> Any:
    if key not in d:
        raise ConfigError(f"{where}: required field '{key}' is missing")
    return d[key]


def _object(d: Any, field: str, where: str) -> dict[str, Any]:
    if not isinstance(d, dict):
        raise ConfigError(f"{where}: {field} must be a JSON object, got {type(d).__name__}")
    return d


def read_json(path: Path) -> dict[str, Any]:
    try:
        d = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path} is not valid JSON: {exc}") from None
    return _object(d, "the file", str(path))


def vision_config_from_hf(d: dict[str, Any], select_layer: int, where: str) -> VisionConfig:
    """Read a Hugging Face CLIPVisionConfig / SiglipVisionConfig dict."""
    _object(d, "vision_config", where)
    model_type = d.get("model_type", "clip_vision_model")
    if model_type in ("clip_vision_model", "clip"):
        flavour = dict(
            model_type="clip_vision_model",
            class_token=True,
            pre_layernorm=True,
            patch_bias=False,
            image_mean=CLIP_MEAN,
            image_std=CLIP_STD,
            hidden_act=d.get("hidden_act", "quick_gelu"),
            layer_norm_eps=d.get("layer_norm_eps", 1e-5),
        )
    elif model_type in ("siglip_vision_model", "siglip"):
        flavour = dict(
            model_type="siglip_vision_model",
            class_token=False,
            pre_layernorm=False,
            patch_bias=True,
            image_mean=SIGLIP_MEAN,
            image_std=SIGLIP_STD,
            hidden_act=d.get("hidden_act", "gelu_pytorch_tanh"),
            layer_norm_eps=d.get("layer_norm_eps", 1e-6),
        )
    else:
        raise ConfigError(
            f"{where}: vision tower model_type '{model_type}' is not supported "
            "(expected clip_vision_model or siglip_vision_model)"
        )
    if "image_mean" in d:
        for key in ("image_mean", "image_std"):
            vals = _need(d, key, where)
            flavour[key] = tuple(vals) if isinstance(vals, (list, tuple)) else vals
    cfg = VisionConfig(
        hidden_size=_need(d, "hidden_size", where),
        intermediate_size=_need(d, "intermediate_size", where),
        num_layers=_need(d, "num_hidden_layers", where),
        num_heads=_need(d, "num_attention_heads", where),
        image_size=_need(d, "image_size", where),
        patch_size=_need(d, "patch_size", where),
        select_layer=select_layer,
        num_channels=d.get("num_channels", 3),
        **flavour,
    )
    check_vision(cfg, where)
    return cfg


def _rope(d: dict[str, Any], where: str) -> tuple[float, dict[str, Any] | None]:
    """rope_theta and Llama-3 scaling from classic fields or transformers v5 `rope_parameters`."""
    params = d.get("rope_parameters")
    if params is not None:
        _object(params, "rope_parameters", where)
    theta = check_float(
        d.get("rope_theta", (params or {}).get("rope_theta", 10000.0)), "rope_theta", where, strict=True
    )
    scaling = d.get("rope_scaling")
    if scaling is None and params and params.get("rope_type", "default") != "default":
        scaling = params
    if scaling is None:
        return theta, None
    _object(scaling, "rope_scaling", where)
    rope_type = scaling.get("rope_type", scaling.get("type"))
    if rope_type == "default":
        return theta, None
    if rope_type != "llama3":
        raise ConfigError(f"{where}: rope scaling type '{rope_type}' is not supported (only llama3)")
    keys = ("factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings")
    out = {"rope_type": "llama3", **{k: _need(scaling, k, f"{where} rope_scaling") for k in keys}}
    return theta, out


def llama_config_from_hf(d: dict[str, Any], where: str) -> LlamaConfig:
    heads = check_int(_need(d, "num_attention_heads", where), "num_attention_heads", where)
    hidden = check_int(_need(d, "hidden_size", where), "hidden_size", where)
    theta, scaling = _rope(d, where)
    eos = d.get("eos_token_id", 2)
    eos_ids = tuple(eos) if isinstance(eos, list) else ((eos,) if eos is not None else ())
    kv = d.get("num_key_value_heads")
    kv = heads if kv is None else kv
    head_dim = d.get("head_dim")
    if head_dim is None:
        if hidden % heads:
            raise ConfigError(
                f"{where}: hidden_size={hidden} is not a multiple of num_attention_heads={heads} (and no head_dim "
                "is given)"
            )
        head_dim = hidden // heads
    cfg = LlamaConfig(
        vocab_size=_need(d, "vocab_size", where),
        hidden_size=hidden,
        intermediate_size=_need(d, "intermediate_size", where),
        num_layers=_need(d, "num_hidden_layers", where),
        num_heads=heads,
        num_kv_heads=kv,
        head_dim=head_dim,
        rms_norm_eps=d.get("rms_norm_eps", 1e-6),
        rope_theta=theta,
        rope_scaling=scaling,
        max_position_embeddings=d.get("max_position_embeddings", 2048),
        tie_word_embeddings=bool(d.get("tie_word_embeddings", False)),
        bos_token_id=d.get("bos_token_id"),
        eos_token_id=eos_ids,
    )
    check_llm(cfg, where)
    return cfg


def _refine_depth(name: Any, where: str) -> int:
    # "deconv2x2" (this project's name: two 2x2 stride-2 deconvolutions) or SpatialRGPT's "deconv{k}x".
    if name == "deconv2x2":
        return 2
    m = re.fullmatch(r"deconv(\d{1,6})x", name) if isinstance(name, str) else None
    if m and 1 <= int(m.group(1)) <= MAX_REFINE_DEPTH:
        return int(m.group(1))
    raise ConfigError(
        f"{where}: region refinement {name!r} is not supported (refine: deconv2x2, or deconv{{k}}x with "
        f"1 <= k <= {MAX_REFINE_DEPTH})"
    )


def _region_config(d: dict[str, Any], default_grid: int, connector: str, where: str) -> RegionConfig:
    _object(d, "region_extractor", where)
    kind = d.get("type", d.get("region_extractor_type", "regiongpt"))
    if kind != "regiongpt":
        raise ConfigError(f"{where}: region extractor type '{kind}' is not supported (expected regiongpt)")
    return RegionConfig(
        refine_depth=_refine_depth(d.get("refine", "deconv2x2"), where),
        image_grid=d.get("image_grid", default_grid),
        region_connector=connector,
    )


def _check_connector(kind: str, where: str) -> str:
    if kind not in ("mlp2x_gelu", "mlp_downsample"):
        raise ConfigError(
            f"{where}: mm_projector_type '{kind}' is not supported (expected mlp2x_gelu or mlp_downsample)"
        )
    return kind


def detect_layout(path: str | Path) -> str:
    p = Path(path)
    if not p.is_dir():
        raise ConfigError(f"checkpoint directory not found: {p}")
    if all((p / s).is_dir() for s in ("llm", "vision_tower")):
        return "vila"
    if (p / "config.json").is_file():
        return "llava"
    raise ConfigError(
        f"{p} is neither a llava-layout checkpoint (config.json) nor a vila-layout one "
        f"(sub-directories {', '.join(VILA_SUBDIRS)})"
    )


def read_llava_config(path: Path) -> ModelConfig:
    where = str(path / "config.json")
    d = read_json(path / "config.json")
    vision = vision_config_from_hf(
        _need(d, "vision_config", where), d.get("mm_vision_select_layer", -2), f"{where} vision_config"
    )
    re_cfg = _object(d.get("region_extractor", {}), "region_extractor", where)
    shared = re_cfg.get("shared_connector", True)
    region = _region_config(re_cfg, vision.grid, "shared" if shared else "linear", f"{where} region_extractor")
    llm = llama_config_from_hf(d, where)
    connector = ConnectorConfig(
        _check_connector(d.get("mm_projector_type", "mlp2x_gelu"), where), vision.hidden_size, llm.hidden_size
    )
    cfg = ModelConfig(
        layout="llava",
        vision=vision,
        region=region,
        connector=connector,
        llm=llm,
        conv_template=d.get("conv_template", "vicuna_v1"),
        image_token=d.get("image_token", "<image>"),
        region_token=d.get("region_token", "<region>"),
        image_aspect_ratio=d.get("image_aspect_ratio", "pad"),
        enable_depth=d.get("enable_depth", False),
    )
    validate_config(
        cfg,
        {
            "llm": where,
            "vision": f"{where} vision_config",
            "region": f"{where} region_extractor",
            "connector": where,
            "model": where,
        },
    )
    return cfg


def infer_template(llm_dir: Path) -> str:
    """The chat template of a checkpoint whose config does not name one, from its LLM's tokenizer: Llama-3's
    header and end-of-turn tokens mean llama_3 (SpatialRGPT's released LLMs); a `</s>` end token means the
    vicuna template its recipes use for other LLMs; with neither, llama_3 (the releases' default)."""
    file = llm_dir / "tokenizer.json"
    added: set[str] = set()
    if file.is_file():
        data = read_json(file)
        added = {t.get("content") for t in data.get("added_tokens", []) if isinstance(t, dict)}
        vocab = data.get("model", {}).get("vocab")
        if isinstance(vocab, dict):
            added |= {k for k in ("</s>", "<|eot_id|>") if k in vocab}
    if {"<|eot_id|>", "<|start_header_id|>"} <= added:
        return "llama_3"
    return "vicuna_v1" if "</s>" in added else "llama_3"


def read_vila_config(path: Path) -> ModelConfig:
    top = read_json(path / "config.json") if (path / "config.json").is_file() else {}
    vis_d = read_json(path / "vision_tower" / "config.json")
    vision = vision_config_from_hf(vis_d, top.get("mm_vision_select_layer", -2), str(path / "vision_tower"))
    llm = llama_config_from_hf(read_json(path / "llm" / "config.json"), str(path / "llm" / "config.json"))
    proj_d = read_json(path / "mm_projector" / "config.json")
    connector = ConnectorConfig(
        _check_connector(proj_d.get("mm_projector_type", "mlp_downsample"), str(path / "mm_projector")),
        vision.hidden_size,
        llm.hidden_size,
    )
    re_d = read_json(path / "region_extractor" / "config.json")
    region = _region_config(re_d, vision.grid, "linear", str(path / "region_extractor" / "config.json"))
    cfg = ModelConfig(
        layout="vila",
        vision=vision,
        region=region,
        connector=connector,
        llm=llm,
        conv_template=top.get("conv_template") or infer_template(path / "llm"),
        image_token=top.get("image_token", "<image>"),
        region_token=top.get("region_token", "<mask>"),
        image_aspect_ratio=top.get("image_aspect_ratio", "pad"),
        enable_depth=top.get("enable_depth", False),
    )
    validate_config(
        cfg,
        {
            "llm": str(path / "llm" / "config.json"),
            "vision": str(path / "vision_tower" / "config.json"),
            "region": str(path / "region_extractor" / "config.json"),
            "connector": str(path / "mm_projector" / "config.json"),
            "model": str(path),
        },
    )
    return cfg


def read_config(path: str | Path) -> ModelConfig:
    """Read a checkpoint directory of either layout into a ModelConfig, validated (see validate_config)."""
    p = Path(path)
    layout = detect_layout(p)
    return read_vila_config(p) if layout == "vila" else read_llava_config(p)
