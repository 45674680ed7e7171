"""Where each of the model's tensors lives in the two checkpoint layouts (DESIGN.md section 1).

A route maps a prefix of RegionGPT's own state-dict keys to a file group (the checkpoint root for llava,
a sub-directory for vila) and a key prefix inside that group's safetensors. The loader and the writer both
read this table, so the two can never disagree.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from ..config import LlamaConfig, ModelConfig, VisionConfig


@dataclass(frozen=True)
class Route:
    ours: str  # prefix of RegionGPT.state_dict() keys
    group: str  # sub-directory holding the tensors ("" = checkpoint root)
    theirs: str  # key prefix inside that group's safetensors


def routes(cfg: ModelConfig) -> list[Route]:
    linear_regions = cfg.region.region_connector == "linear"
    if cfg.layout == "llava":
        table = [
            Route("llm.", "", ""),
            Route("vision.", "", "model.vision_tower.vision_tower.vision_model."),
            Route("vision.", "", "model.vision_tower.vision_tower."),  # re-saved by transformers 5: no vision_model.
            Route("refiner.", "", "model.region_extractor.feature_refinement_module."),
            Route("image_connector.", "", "model.mm_projector."),
        ]
        if linear_regions:
            table.append(Route("region_connector.", "", "model.region_extractor.rgb_projector."))
        if cfg.enable_depth:
            table.append(Route("depth_projector.", "", "model.region_extractor.depth_projector."))
        return table
    table = [
        Route("llm.", "llm", ""),
        Route("vision.", "vision_tower", "vision_model."),
        Route("vision.", "vision_tower", ""),  # a tower re-saved by transformers 5 has no `vision_model.` prefix
        Route("image_connector.", "mm_projector", "layers."),
        Route("refiner.", "region_extractor", "feature_refinement_module."),
    ]
    if linear_regions:
        table.append(Route("region_connector.", "region_extractor", "rgb_projector."))
    if cfg.enable_depth:  # SpatialRGPT's RegionExtractor.depth_projector: Linear(mm_hidden_size, hidden_size)
        table.append(Route("depth_projector.", "region_extractor", "depth_projector."))
    return table


def groups(cfg: ModelConfig) -> list[str]:
    return sorted({r.group for r in routes(cfg)})


# Tensors a checkpoint may carry that this runtime knows and does not use: the vision tower's final norm
# and pooling head (features come from an inner layer), position-id buffers and rotary caches written by older
# transformers, and SpatialRGPT's depth connector when the config does not enable depth (enable_depth false).
_IGNORED = [
    r"(^|\.)vision_model\.post_layernorm\.",
    r"(^|\.)vision_model\.head\.",
    r"^(model\.vision_tower\.vision_tower\.)?(post_layernorm|head)\.",  # the same without `vision_model.`
    r"(^|\.)position_ids$",
    r"rotary_emb\.inv_freq$",
]
_DEPTH = [r"^depth_projector\.", r"^model\.region_extractor\.depth_projector\."]


def is_ignored(group: str, name: str, cfg: ModelConfig) -> bool:
    if cfg.llm.tie_word_embeddings and name == "lm_head.weight" and group in ("", "llm"):
        return True
    if not cfg.enable_depth and any(re.search(p, name) for p in _DEPTH):
        return True
    return any(re.search(p, name) for p in _IGNORED)


def to_ours(group: str, name: str, table: list[Route]) -> str | None:
    """Checkpoint key -> RegionGPT key (longest matching prefix wins), or None if no route claims it."""
    best = None
    for r in table:
        if r.group == group and name.startswith(r.theirs) and (best is None or len(r.theirs) > len(best.theirs)):
            best = r
    return None if best is None else best.ours + name[len(best.theirs) :]


def to_theirs(key: str, table: list[Route]) -> tuple[str, str]:
    """RegionGPT key -> (group, checkpoint key)."""
    for r in table:
        if key.startswith(r.ours):
            return r.group, r.theirs + key[len(r.ours) :]
    raise KeyError(f"no route for {key}")


# ---- config files as each layout writes them -----------------------------------------------------------


def hf_llama_config(c: LlamaConfig) -> dict[str, Any]:
    d: dict[str, Any] = {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": c.vocab_size,
        "hidden_size": c.hidden_size,
        "intermediate_size": c.intermediate_size,
        "num_hidden_layers": c.num_layers,
        "num_attention_heads": c.num_heads,
        "num_key_value_heads": c.num_kv_heads,
        "head_dim": c.head_dim,
        "hidden_act": "silu",
        "rms_norm_eps": c.rms_norm_eps,
        "rope_theta": c.rope_theta,
        "rope_scaling": c.rope_scaling,
        "max_position_embeddings": c.max_position_embeddings,
        "tie_word_embeddings": c.tie_word_embeddings,
        "bos_token_id": c.bos_token_id,
        "eos_token_id": c.eos_token_id[0] if len(c.eos_token_id) == 1 else list(c.eos_token_id),
        "attention_bias": False,
        "mlp_bias": False,
        "torch_dtype": "float32",
    }
    return d


def hf_vision_config(c: VisionConfig) -> dict[str, Any]:
    d: dict[str, Any] = {
        "model_type": c.model_type,
        "hidden_size": c.hidden_size,
        "intermediate_size": c.intermediate_size,
        "num_hidden_layers": c.num_layers,
        "num_attention_heads": c.num_heads,
        "num_channels": c.num_channels,
        "image_size": c.image_size,
        "patch_size": c.patch_size,
        "hidden_act": c.hidden_act,
        "layer_norm_eps": c.layer_norm_eps,
        "image_mean": list(c.image_mean),
        "image_std": list(c.image_std),
    }
    if c.model_type == "siglip_vision_model":
        d["vision_use_head"] = False
    return d


def llava_config_json(cfg: ModelConfig) -> dict[str, Any]:
    d = hf_llama_config(cfg.llm)
    d.update(
        {
            "architectures": ["RegionGPTLlamaForCausalLM"],
            "model_type": "llava_llama",
            "vision_config": hf_vision_config(cfg.vision),
            "mm_vision_select_layer": cfg.vision.select_layer,
            "mm_hidden_size": cfg.vision.hidden_size,
            "mm_projector_type": cfg.connector.type,
            "image_aspect_ratio": cfg.image_aspect_ratio,
            "region_extractor": {
                "type": "regiongpt",
                "refine": _refine_name(cfg.region.refine_depth),
                "image_grid": cfg.region.image_grid,
                "shared_connector": cfg.region.region_connector == "shared",
            },
            "conv_template": cfg.conv_template,
            "image_token": cfg.image_token,
            "region_token": cfg.region_token,
            **({"enable_depth": True} if cfg.enable_depth else {}),
        }
    )
    return d


def vila_config_jsons(cfg: ModelConfig) -> dict[str, dict[str, Any]]:
    """{relative path: config dict} for the vila layout, as SpatialRGPT's releases write them (VILA's
    save_pretrained): each sub-directory's own config, and a top config that embeds all four plus the training
    flags. The top config names no chat template or placeholder tokens (readers infer llama_3 from the LLM's
    tokenizer and use `<image>` / `<mask>`); the region extractor's config holds only its type."""
    llm = {"_name_or_path": "./llm", **hf_llama_config(cfg.llm)}
    vision = {"_name_or_path": "./vision_tower", "architectures": [_VISION_ARCH[cfg.vision.model_type]]}
    vision.update({k: v for k, v in hf_vision_config(cfg.vision).items() if k not in ("image_mean", "image_std")})
    vision.pop("vision_use_head", None)  # the released tower keeps SigLIP's pooling head (unused here)
    projector = {
        "_name_or_path": "./mm_projector",
        "architectures": ["MultimodalProjector"],
        "model_type": "v2l_projector",
        "mm_projector_type": cfg.connector.type,
        "torch_dtype": "float32",
    }
    region = {
        "_name_or_path": "./region_extractor",
        "architectures": ["RegionExtractor"],
        "model_type": "region_extractor",
        "region_extractor_type": "regiongpt",
        "torch_dtype": "float32",
    }
    if cfg.region.refine_depth != 2 or cfg.region.image_grid != cfg.vision.grid:  # SpatialRGPT's fixed choices
        region.update(refine=_refine_name(cfg.region.refine_depth), image_grid=cfg.region.image_grid)
    top = {
        "architectures": ["LlavaLlamaModel"],
        "model_type": "llava_llama",
        "llm_cfg": llm,
        "vision_tower_cfg": vision,
        "mm_projector_cfg": projector,
        "region_extractor_cfg": region,
        "mm_vision_select_layer": cfg.vision.select_layer,
        "mm_vision_select_feature": "cls_patch",
        "mm_hidden_size": cfg.vision.hidden_size,
        "hidden_size": cfg.llm.hidden_size,
        "image_aspect_ratio": cfg.image_aspect_ratio,
        "interpolate_mode": "linear",
        "enable_region": True,
        "enable_depth": cfg.enable_depth,
        "mm_use_im_start_end": False,
        "mm_use_im_patch_token": False,
        "num_video_frames": 8,
        "s2": False,
        "s2_max_split_size": 336,
        "s2_scales": "336,672,1008",
        "tune_language_model": True,
        "tune_mm_projector": True,
        "tune_region_extractor": True,
        "tune_vision_tower": True,
        "model_dtype": "torch.float32",
        "torch_dtype": "float32",
    }
    if cfg.conv_template != "llama_3":  # the releases' own (inferred from the tokenizer); anything else is written
        top["conv_template"] = cfg.conv_template
    if cfg.image_token != "<image>" or cfg.region_token != "<mask>":
        top.update(image_token=cfg.image_token, region_token=cfg.region_token)
    return {
        "config.json": top,
        "llm/config.json": llm,
        "vision_tower/config.json": vision,
        "mm_projector/config.json": projector,
        "region_extractor/config.json": region,
    }


_VISION_ARCH = {"siglip_vision_model": "SiglipVisionModel", "clip_vision_model": "CLIPVisionModel"}


def _refine_name(depth: int) -> str:
    return "deconv2x2" if depth == 2 else f"deconv{depth}x"
