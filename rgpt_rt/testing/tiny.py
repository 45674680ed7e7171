"""Tiny seeded RegionGPT checkpoints for tests and the demo: nothing is downloaded, same seed = same bytes.

The vila layout mirrors SpatialRGPT's release (a8cheng/SpatialRGPT-VILA1.5-8B) file for file, shrunk: a top
config.json embedding the four sub-configs (`image_aspect_ratio: "resize"`, `enable_depth: true`, no chat
template or placeholder tokens), llm/ with its weights in `model-0000k-of-0000n.safetensors` shards and their
`model.safetensors.index.json`, generation_config.json with both Llama-3 end ids (`<|end_of_text|>`,
`<|eot_id|>`), tokenizer.json / tokenizer_config.json / special_tokens_map.json (with SpatialRGPT's `<mask>` and
`<depth>`); vision_tower/ with config.json, preprocessor_config.json and a SigLIP tower that keeps its final
norm and pooling head (unused by SpatialRGPT, ignored by the loader); mm_projector/; region_extractor/ whose
config holds only its type and whose weights hold the refinement, `rgb_projector` and `depth_projector`.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch

from ..config import (
    CLIP_MEAN,
    CLIP_STD,
    SIGLIP_MEAN,
    SIGLIP_STD,
    ConnectorConfig,
    LlamaConfig,
    ModelConfig,
    RegionConfig,
    VisionConfig,
)
from .tokenizer import LLAVA_SPECIALS, VILA_SPECIALS, train_tokenizer, write_tokenizer

TINY_VOCAB = 512
# SpatialRGPT's tokenizer: Llama-3's control tokens plus `<mask>` and `<depth>` (added by its builder; `<depth>`
# takes the last id).
SPATIALRGPT_SPECIALS = VILA_SPECIALS + ["<depth>"]
VILA_LLM_SHARDS = 4  # the release's llm/ is four shards


def tiny_config(layout: str = "llava") -> ModelConfig:
    """A 2-layer width-64 ViT and a 2-layer width-64 LLaMA (GQA 4/2) in the given layout's flavour."""
    if layout == "llava":
        vision = VisionConfig(
            model_type="clip_vision_model",
            hidden_size=64,
            intermediate_size=128,
            num_layers=2,
            num_heads=4,
            image_size=56,
            patch_size=14,
            hidden_act="quick_gelu",
            layer_norm_eps=1e-5,
            class_token=True,
            pre_layernorm=True,
            patch_bias=False,
            image_mean=CLIP_MEAN,
            image_std=CLIP_STD,
        )
        llm = LlamaConfig(
            vocab_size=TINY_VOCAB,
            hidden_size=64,
            intermediate_size=172,
            num_layers=2,
            num_heads=4,
            num_kv_heads=2,
            head_dim=16,
            rms_norm_eps=1e-6,
            rope_theta=10000.0,
            max_position_embeddings=1024,
            bos_token_id=LLAVA_SPECIALS.index("<s>"),
            eos_token_id=(LLAVA_SPECIALS.index("</s>"),),
        )
        return ModelConfig(
            layout="llava",
            vision=vision,
            region=RegionConfig(image_grid=4, region_connector="shared"),
            connector=ConnectorConfig("mlp2x_gelu", 64, 64),
            llm=llm,
        )
    if layout == "llava-hf":  # a plain LLaVA-1.5: the llava flavour without a region extractor
        base = tiny_config("llava")
        return ModelConfig(
            layout="llava-hf",
            vision=base.vision,
            region=RegionConfig(refine_depth=0, image_grid=base.vision.grid, region_connector="shared"),
            connector=base.connector,
            llm=base.llm,
        )
    if layout == "vila":
        # An odd 5x5 patch grid exercises mlp_downsample's zero padding, as SigLIP's 27x27 does.
        vision = VisionConfig(
            model_type="siglip_vision_model",
            hidden_size=64,
            intermediate_size=128,
            num_layers=2,
            num_heads=4,
            image_size=70,
            patch_size=14,
            hidden_act="gelu_pytorch_tanh",
            layer_norm_eps=1e-6,
            class_token=False,
            pre_layernorm=False,
            patch_bias=True,
            image_mean=SIGLIP_MEAN,
            image_std=SIGLIP_STD,
        )
        llm = LlamaConfig(
            vocab_size=TINY_VOCAB,
            hidden_size=64,
            intermediate_size=172,
            num_layers=2,
            num_heads=4,
            num_kv_heads=2,
            head_dim=16,
            rms_norm_eps=1e-5,
            rope_theta=500000.0,
            rope_scaling={
                "rope_type": "llama3",
                "factor": 8.0,
                "low_freq_factor": 1.0,
                "high_freq_factor": 4.0,
                "original_max_position_embeddings": 8192,
            },
            max_position_embeddings=1024,
            bos_token_id=VILA_SPECIALS.index("<|begin_of_text|>"),
            eos_token_id=(VILA_SPECIALS.index("<|eot_id|>"),),
        )
        return ModelConfig(
            layout="vila",
            vision=vision,
            region=RegionConfig(image_grid=5, region_connector="linear"),
            connector=ConnectorConfig("mlp_downsample", 64, 64),
            llm=llm,
            conv_template="llama_3",
            region_token="<mask>",
            image_aspect_ratio="resize",
            enable_depth=True,
        )
    raise ValueError(f"unknown layout '{layout}' (expected 'llava', 'vila' or 'llava-hf')")


@torch.no_grad()
def init_random_(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Seeded weights scaled so activations stay O(1) and logits are peaked (greedy decoding has no near-ties).

    Matrices ~ N(0, 1/fan_in); norm weights ~ 1 + N(0, 0.1); biases ~ N(0, 0.1); embeddings ~ N(0, 1).
    """
    gen = torch.Generator().manual_seed(seed)
    for name, p in sorted(model.named_parameters()):
        if name.startswith("depth_projector."):
            continue  # drawn last (below), so the other weights do not depend on whether depth is enabled
        leaf = name.rsplit(".", 1)[-1]
        if "norm" in name or "layrnorm" in name or (name.startswith("refiner.1.")):
            val = (1.0 if leaf == "weight" else 0.0) + 0.1 * torch.randn(p.shape, generator=gen)
        elif leaf == "bias":
            val = 0.1 * torch.randn(p.shape, generator=gen)
        elif "embed" in name and p.dim() <= 2:
            val = torch.randn(p.shape, generator=gen)
        else:
            fan_in = p[0].numel() if p.dim() > 1 else p.numel()
            if name.startswith("refiner.") and p.dim() == 4:  # ConvTranspose2d weight [in, out, k, k]
                fan_in = p.shape[0]
            val = torch.randn(p.shape, generator=gen) / math.sqrt(fan_in)
        p.copy_(val.to(p.dtype))
    depth = getattr(model, "depth_projector", None)
    if depth is not None:
        g2 = torch.Generator().manual_seed(seed + 7919)
        depth.weight.copy_(torch.randn(depth.weight.shape, generator=g2) / math.sqrt(depth.weight.shape[1]))
        depth.bias.copy_(0.1 * torch.randn(depth.bias.shape, generator=g2))
    return model


def make_tiny_model(layout: str = "llava", seed: int = 0):
    from ..model.regiongpt import RegionGPT

    torch.manual_seed(seed)
    return init_random_(RegionGPT(tiny_config(layout)), seed).eval()


def make_tiny_checkpoint(
    path: str | Path, layout: str = "llava", seed: int = 0, max_shard_bytes: int | None = None
) -> Path:
    """Write a tiny random RegionGPT checkpoint in `layout` ("llava", "vila", or "llava-hf": an image-only
    LLaVA-1.5 as transformers' LlavaForConditionalGeneration saves it, hub key spelling) with its tokenizer.

    Seeded random weights (fp32 safetensors), a byte-level BPE tokenizer trained here on the corpus
    shipped with the package, and config files as the layout prescribes (vila: SpatialRGPT's release, see the
    module docstring; only its llm/ is sharded, in four shards as the release's, or at max_shard_bytes). The same
    seed gives byte-identical files. Returns the checkpoint directory.
    """
    from ..checkpoint.writer import save_checkpoint

    path = Path(path)
    model = make_tiny_model(layout, seed)
    if layout in ("llava", "llava-hf"):
        image_index = LLAVA_SPECIALS.index("<image>") if layout == "llava-hf" else None
        save_checkpoint(model, path, max_shard_bytes=max_shard_bytes, image_token_index=image_index)
        tok = train_tokenizer(LLAVA_SPECIALS, TINY_VOCAB)
        write_tokenizer(path, tok, bos="<s>", eos="</s>", extra_specials=["<image>", "<region>"])
        return path
    # Only llm/ is sharded in the release (max_shard_bytes, when given, sets its shard size).
    limit = _limit_for_shards(model, VILA_LLM_SHARDS) if max_shard_bytes is None else max_shard_bytes
    save_checkpoint(model, path, max_shard_bytes={"llm": limit})
    _write_release_extras(path, model, seed)
    # SpatialRGPT's builder appends `<depth>` after the LLM's vocabulary: the last id here (the others keep theirs).
    tok = train_tokenizer(VILA_SPECIALS, TINY_VOCAB - 1)
    tok.add_special_tokens(["<depth>"])
    write_tokenizer(
        path / "llm",
        tok,
        bos="<|begin_of_text|>",
        eos="<|eot_id|>",
        extra_specials=[
            "<image>",
            "<mask>",
            "<depth>",
            "<|start_header_id|>",
            "<|end_header_id|>",
            "<|end_of_text|>",
        ],
    )
    return path


def _limit_for_shards(model, count: int) -> int:
    """The smallest shard size that writes llm/ in exactly `count` shards (as the writer orders the tensors)."""
    from ..checkpoint.layouts import routes, to_theirs
    from ..checkpoint.writer import shard_plan

    table = routes(model.cfg)
    sizes = sorted(
        (to_theirs(k, table)[1], t.numel() * t.element_size())
        for k, t in model.state_dict().items()
        if to_theirs(k, table)[0] == "llm"
    )
    total = sum(n for _, n in sizes)
    for limit in range(max(n for _, n in sizes), total + 1, 64):
        if len(shard_plan(sizes, limit)) <= count:
            return limit
    return total


def _write_release_extras(path: Path, model, seed: int) -> None:
    """What SpatialRGPT's release has beyond the tensors the model uses: the LLM's generation_config.json (both
    end ids), the tower's preprocessor_config.json, and SigLIP's final norm and pooling head in the tower's
    weights (seeded; SpatialRGPT never runs them)."""
    import json

    from safetensors.torch import load_file, save_file

    cfg = model.cfg
    specials = SPATIALRGPT_SPECIALS
    gen = {
        "_from_model_config": True,
        "bos_token_id": cfg.llm.bos_token_id,
        "eos_token_id": [specials.index("<|end_of_text|>"), specials.index("<|eot_id|>")],
        "transformers_version": "4.37.2",
    }
    (path / "llm" / "generation_config.json").write_text(json.dumps(gen, indent=2, sort_keys=True) + "\n")
    s = cfg.vision.image_size
    pre = {
        "do_normalize": True,
        "do_rescale": True,
        "do_resize": True,
        "image_mean": list(cfg.vision.image_mean),
        "image_processor_type": "SiglipImageProcessor",
        "image_std": list(cfg.vision.image_std),
        "processor_class": "SiglipProcessor",
        "resample": 3,
        "rescale_factor": 1 / 255,
        "size": {"height": s, "width": s},
    }
    (path / "vision_tower" / "preprocessor_config.json").write_text(json.dumps(pre, indent=2, sort_keys=True) + "\n")
    c, f = cfg.vision.hidden_size, cfg.vision.intermediate_size
    gen_t = torch.Generator().manual_seed(seed + 1)

    def rnd(*shape, scale=1.0):
        return (torch.randn(shape, generator=gen_t) * scale).contiguous()

    head = {  # SiglipMultiheadAttentionPoolingHead and the post-encoder norm, as transformers names them
        "vision_model.post_layernorm.weight": 1 + rnd(c, scale=0.1),
        "vision_model.post_layernorm.bias": rnd(c, scale=0.1),
        "vision_model.head.probe": rnd(1, 1, c),
        "vision_model.head.attention.in_proj_weight": rnd(3 * c, c, scale=c**-0.5),
        "vision_model.head.attention.in_proj_bias": rnd(3 * c, scale=0.1),
        "vision_model.head.attention.out_proj.weight": rnd(c, c, scale=c**-0.5),
        "vision_model.head.attention.out_proj.bias": rnd(c, scale=0.1),
        "vision_model.head.layernorm.weight": 1 + rnd(c, scale=0.1),
        "vision_model.head.layernorm.bias": rnd(c, scale=0.1),
        "vision_model.head.mlp.fc1.weight": rnd(f, c, scale=c**-0.5),
        "vision_model.head.mlp.fc1.bias": rnd(f, scale=0.1),
        "vision_model.head.mlp.fc2.weight": rnd(c, f, scale=f**-0.5),
        "vision_model.head.mlp.fc2.bias": rnd(c, scale=0.1),
    }
    file = path / "vision_tower" / "model.safetensors"
    tensors = load_file(str(file))
    tensors.update(head)
    save_file({k: tensors[k] for k in sorted(tensors)}, str(file), metadata={"format": "pt"})
