"""The three exported graphs, as torch modules wrapping the reference model (DESIGN.md section 3).

vision     pixels [B, 3, S, S]                         -> refined [B, C, H, W]
connector  image_features [G*G, C], region_features [N, C] -> image_embeds [T, D], region_embeds [N, D]
decoder    input_ids [B, L] (ids >= V address mm_table), mm_table [B, M, D], position_ids [B, L],
           past_key_i / past_value_i [B, Hkv, P, Dh]   -> logits [B, V] (last position; [B, L, V] with
           all_logits), present_key_i / present_value_i [B, Hkv, P + L, Dh]
region_pool runs between vision and connector as the native op in every backend.
The decoder's new tokens occupy cache slots P .. P+L-1; a query attends to every past slot and to the new
slots up to its own, so positions only enter through RoPE.
"""

from __future__ import annotations

import torch
from torch import nn

from rgpt_rt.model.llama import rope_cos_sin, rope_inv_freq
from rgpt_rt.model.regiongpt import RegionGPT


class VisionGraph(nn.Module):
    def __init__(self, model: RegionGPT):
        super().__init__()
        self.model = model

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.model.encode_image(pixels)


class ConnectorGraph(nn.Module):
    def __init__(self, model: RegionGPT):
        super().__init__()
        self.model = model

    def forward(self, image_features: torch.Tensor, region_features: torch.Tensor):
        image = self.model.image_connector(image_features[None])[0]
        proj = self.model.region_connector or self.model.image_connector
        return image, proj(region_features[None])[0]


class DecoderGraph(nn.Module):
    """The reference model's own layers in their past/present form (Attention.forward with `past`)."""

    def __init__(self, model: RegionGPT, all_logits: bool = False):
        super().__init__()
        self.model = model
        self.cfg = model.cfg.llm
        self.all_logits = all_logits
        self.register_buffer("inv_freq", rope_inv_freq(self.cfg), persistent=False)

    def forward(self, input_ids, mm_table, position_ids, *past):
        length = input_ids.shape[1]
        x = self.model.embed(input_ids, mm_table)  # [B, L, D]
        cos, sin = rope_cos_sin(position_ids, self.inv_freq, x.dtype)
        p = past[0].shape[2]
        slots = torch.arange(p + length, device=x.device)
        mask = slots[None, :] <= (p + torch.arange(length, device=x.device))[:, None]  # [L, P+L]
        presents = []
        for i, layer in enumerate(self.model.llm.model.layers):
            x, present = layer(x, cos, sin, position_ids, mask[None, None], past=(past[2 * i], past[2 * i + 1]))
            presents += present
        x = self.model.llm.model.norm(x)
        logits = self.model.llm.head(x if self.all_logits else x[:, -1])
        return (logits, *presents)


def decoder_io_names(num_layers: int) -> tuple[list[str], list[str]]:
    past = [f"past_{kind}_{i}" for i in range(num_layers) for kind in ("key", "value")]
    present = [f"present_{kind}_{i}" for i in range(num_layers) for kind in ("key", "value")]
    return ["input_ids", "mm_table", "position_ids", *past], ["logits", *present]
