"""ViT vision tower, CLIP or SigLIP flavour, returning the hidden states of the selected layer.

Parameter names mirror Hugging Face's CLIPVisionModel / SiglipVisionModel (`embeddings.…`,
`encoder.layers.{i}.…`) so checkpoints map onto this module by a key prefix alone.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..config import VisionConfig


def activation(name: str):
    if name == "quick_gelu":
        return lambda x: x * torch.sigmoid(1.702 * x)
    if name == "gelu_pytorch_tanh":
        return lambda x: F.gelu(x, approximate="tanh")
    if name == "gelu":
        return F.gelu
    raise ValueError(f"unknown activation {name}")


class VisionEmbeddings(nn.Module):
    def __init__(self, cfg: VisionConfig):
        super().__init__()
        c = cfg.hidden_size
        self.patch_embedding = nn.Conv2d(cfg.num_channels, c, cfg.patch_size, cfg.patch_size, bias=cfg.patch_bias)
        n_pos = cfg.num_patches + (1 if cfg.class_token else 0)
        self.class_embedding = nn.Parameter(torch.zeros(c)) if cfg.class_token else None
        self.position_embedding = nn.Embedding(n_pos, c)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        x = self.patch_embedding(pixels.to(self.patch_embedding.weight.dtype))  # [B, C, g, g]
        x = x.flatten(2).transpose(1, 2)  # [B, P, C]
        if self.class_embedding is not None:
            cls = self.class_embedding.expand(x.shape[0], 1, -1)
            x = torch.cat([cls, x], dim=1)  # [B, 1+P, C]
        return x + self.position_embedding.weight[None]


class VisionAttention(nn.Module):
    def __init__(self, cfg: VisionConfig):
        super().__init__()
        c = cfg.hidden_size
        self.num_heads = cfg.num_heads
        self.q_proj, self.k_proj, self.v_proj = nn.Linear(c, c), nn.Linear(c, c), nn.Linear(c, c)
        self.out_proj = nn.Linear(c, c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, c = x.shape
        h = self.num_heads
        q, k, v = (p(x).view(b, t, h, c // h).transpose(1, 2) for p in (self.q_proj, self.k_proj, self.v_proj))
        o = F.scaled_dot_product_attention(q, k, v, scale=1.0 / math.sqrt(c // h))  # [B, H, T, Dh]
        return self.out_proj(o.transpose(1, 2).reshape(b, t, c))


class VisionMLP(nn.Module):
    def __init__(self, cfg: VisionConfig):
        super().__init__()
        self.fc1 = nn.Linear(cfg.hidden_size, cfg.intermediate_size)
        self.fc2 = nn.Linear(cfg.intermediate_size, cfg.hidden_size)
        self.act = activation(cfg.hidden_act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class VisionLayer(nn.Module):
    def __init__(self, cfg: VisionConfig):
        super().__init__()
        self.layer_norm1 = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.self_attn = VisionAttention(cfg)
        self.layer_norm2 = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.mlp = VisionMLP(cfg)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.self_attn(self.layer_norm1(x))
        return x + self.mlp(self.layer_norm2(x))


class VisionEncoder(nn.Module):
    def __init__(self, cfg: VisionConfig):
        super().__init__()
        self.layers = nn.ModuleList(VisionLayer(cfg) for _ in range(cfg.num_layers))


class VisionTower(nn.Module):
    """pixels [B, 3, S, S] -> hidden states of layer `select_layer` [B, (1+)P, C].

    Only the layers needed for the selected hidden state run; layers past it are kept so that a
    checkpoint's tensors all have a home, but cost nothing at run time.
    """

    def __init__(self, cfg: VisionConfig):
        super().__init__()
        self.cfg = cfg
        self.embeddings = VisionEmbeddings(cfg)
        self.pre_layrnorm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps) if cfg.pre_layernorm else None
        self.encoder = VisionEncoder(cfg)

    def hidden_states(self, pixels: torch.Tensor) -> torch.Tensor:
        x = self.embeddings(pixels)  # [B, (1+)P, C]
        if self.pre_layrnorm is not None:
            x = self.pre_layrnorm(x)
        for layer in self.encoder.layers[: self.cfg.layers_used]:
            x = layer(x)
        return x

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """pixels [B, 3, S, S] -> patch features [B, C, g, g] (CLS dropped), channels-first."""
        x = self.hidden_states(pixels)
        if self.cfg.class_token:
            x = x[:, 1:]
        b, p, c = x.shape
        g = self.cfg.grid
        return x.transpose(1, 2).reshape(b, c, g, g)
