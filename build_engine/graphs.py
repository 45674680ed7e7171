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

import math

import torch
import torch.nn.functional as F
from torch import nn

from rgpt_rt.model.llama import apply_rope, rope_inv_freq
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
    def __init__(self, model: RegionGPT, all_logits: bool = False):
        super().__init__()
        self.model = model
        self.cfg = model.cfg.llm
        self.all_logits = all_logits
        self.register_buffer("inv_freq", rope_inv_freq(self.cfg), persistent=False)

    def forward(self, input_ids, mm_table, position_ids, *past):
        cfg = self.cfg
        b, length = input_ids.shape
        h, kv, d = cfg.num_heads, cfg.num_kv_heads, cfg.head_dim
        x = self.model.embed(input_ids, mm_table)  # [B, L, D]
        angles = position_ids[..., None].float() * self.inv_freq  # [B, L, D/2]
        angles = torch.cat([angles, angles], dim=-1)[:, None]  # [B, 1, L, Dh]
        cos, sin = angles.cos().to(x.dtype), angles.sin().to(x.dtype)
        p = past[0].shape[2]
        slots = torch.arange(p + length, device=x.device)
        mask = slots[None, :] <= (p + torch.arange(length, device=x.device))[:, None]  # [L, P+L]
        presents = []
        for i, layer in enumerate(self.model.llm.model.layers):
            attn = layer.self_attn
            y = layer.input_layernorm(x)
            q = attn.q_proj(y).view(b, length, h, d).transpose(1, 2)
            k = attn.k_proj(y).view(b, length, kv, d).transpose(1, 2)
            v = attn.v_proj(y).view(b, length, kv, d).transpose(1, 2)
            q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
            k_all = torch.cat([past[2 * i], k], dim=2)  # [B, Hkv, P+L, Dh]
            v_all = torch.cat([past[2 * i + 1], v], dim=2)
            presents += [k_all, v_all]
            if kv != h:
                k_all = k_all.repeat_interleave(h // kv, dim=1)
                v_all = v_all.repeat_interleave(h // kv, dim=1)
            scores = (q @ k_all.transpose(-1, -2)) * (1.0 / math.sqrt(d))  # [B, H, L, P+L]
            scores = scores.float().masked_fill(~mask, float("-inf"))
            o = F.softmax(scores, dim=-1).to(v_all.dtype) @ v_all
            x = x + attn.o_proj(o.transpose(1, 2).reshape(b, length, h * d))
            x = x + layer.mlp(layer.post_attention_layernorm(x))
        x = self.model.llm.model.norm(x)
        logits = self.model.llm.head(x if self.all_logits else x[:, -1])
        return (logits, *presents)


def decoder_io_names(num_layers: int) -> tuple[list[str], list[str]]:
    past = [f"past_{kind}_{i}" for i in range(num_layers) for kind in ("key", "value")]
    present = [f"present_{kind}_{i}" for i in range(num_layers) for kind in ("key", "value")]
    return ["input_ids", "mm_table", "position_ids", *past], ["logits", *present]
