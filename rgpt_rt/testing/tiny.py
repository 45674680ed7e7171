"""Tiny seeded RegionGPT checkpoints for tests and the demo: nothing is downloaded, same seed = same bytes."""

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
        )
    raise ValueError(f"unknown layout '{layout}' (expected 'llava', 'vila' or 'llava-hf')")


@torch.no_grad()
def init_random_(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Seeded weights scaled so activations stay O(1) and logits are peaked (greedy decoding has no near-ties).

    Matrices ~ N(0, 1/fan_in); norm weights ~ 1 + N(0, 0.1); biases ~ N(0, 0.1); embeddings ~ N(0, 1).
    """
    gen = torch.Generator().manual_seed(seed)
    for name, p in sorted(model.named_parameters()):
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
    shipped with the package, and config files as the layout prescribes. The same seed gives
    byte-identical files. Returns the checkpoint directory.
    """
    from ..checkpoint.writer import save_checkpoint

    path = Path(path)
    model = make_tiny_model(layout, seed)
    image_index = LLAVA_SPECIALS.index("<image>") if layout == "llava-hf" else None
    save_checkpoint(model, path, max_shard_bytes=max_shard_bytes, image_token_index=image_index)
    if layout in ("llava", "llava-hf"):
        tok = train_tokenizer(LLAVA_SPECIALS, TINY_VOCAB)
        write_tokenizer(path, tok, bos="<s>", eos="</s>", extra_specials=["<image>", "<region>"])
    else:
        tok = train_tokenizer(VILA_SPECIALS, TINY_VOCAB)
        write_tokenizer(
            path / "llm",
            tok,
            bos="<|begin_of_text|>",
            eos="<|eot_id|>",
            extra_specials=[
                "<image>",
                "<mask>",
                "<|start_header_id|>",
                "<|end_header_id|>",
                "<|end_of_text|>",
            ],
        )
    return path
