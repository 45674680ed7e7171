"""LoRA for stage 2 through `peft` (optional dependency): adapters on every linear layer of the LLM.

LLaVA-1.5's LoRA recipe: rank 128, alpha 256, dropout 0.05 on q/k/v/o and gate/up/down of every decoder
layer; the base weights, embeddings and head stay frozen. Checkpoints stay plain llava-layout models: the
adapters are merged (W + alpha/r * B @ A) into the written weights, and the unmerged adapters are kept
beside them (lora/adapters.safetensors: a sub-directory, so the model loader never sees them) so that a
resume continues from the base weights of --init plus the adapters, exactly.
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import ConfigError

TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
A, B, BASE = ".lora_A.default.weight", ".lora_B.default.weight", ".base_layer.weight"


def add_lora(llm: nn.Module, rank: int, alpha: float, dropout: float, seed: int) -> None:
    """Wrap the LLM's linear layers with LoRA adapters in place (B = 0: the model's output is unchanged)."""
    try:
        from peft import LoraConfig, inject_adapter_in_model
    except ImportError:
        raise ConfigError("LoRA needs peft: pip install peft (or rgpt_rt[train])") from None
    torch.manual_seed(seed)
    config = LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=dropout, target_modules=list(TARGETS), bias="none")
    inject_adapter_in_model(config, llm)


def is_adapter(name: str) -> bool:
    return ".lora_A." in name or ".lora_B." in name


def merged(state: dict[str, torch.Tensor], scale: float) -> dict[str, torch.Tensor]:
    """A state dict with adapters -> the plain one: base + scale * B @ A under the original names."""
    out = {}
    for key, t in state.items():
        if is_adapter(key):
            continue
        if key.endswith(BASE):
            prefix = key[: -len(BASE)]
            delta = state[prefix + B].double() @ state[prefix + A].double()
            out[prefix + ".weight"] = (t.double() + scale * delta).to(t.dtype)
        else:
            out[key] = t
    return out
