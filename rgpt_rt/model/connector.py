"""Connectors from vision features [.., T, C] to LLM embeddings [.., T', D]."""

from __future__ import annotations

import math

import torch
from torch import nn

from ..config import ConnectorConfig


class Mlp2xGelu(nn.Sequential):
    """Linear(C, D) -> GELU -> Linear(D, D); parameters `0.*` and `2.*` (LLaVA-1.5's mm_projector)."""

    def __init__(self, cfg: ConnectorConfig):
        super().__init__(
            nn.Linear(cfg.in_features, cfg.out_features),
            nn.GELU(),
            nn.Linear(cfg.out_features, cfg.out_features),
        )


class Downsample2x2(nn.Module):
    """[B, g*g, C] -> [B, ceil(g/2)^2, 4C]: concatenate each 2x2 block of the token grid.

    The grid is zero-padded to an even side. Output token (i, j) (block row i, block column j) holds
    [x(2i, 2j), x(2i, 2j+1), x(2i+1, 2j), x(2i+1, 2j+1)] and tokens are ordered column-block-major
    (index j * ceil(g/2) + i), which is the order VILA's mlp_downsample checkpoints were trained with.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, c = (int(v) for v in x.shape)  # static sizes (also when traced for export)
        g = math.isqrt(t)
        if g * g != t:
            raise ValueError(f"mlp_downsample needs a square token grid, got {t} tokens")
        grid = x.view(b, g, g, c)
        if g % 2:
            grid = nn.functional.pad(grid, (0, 0, 0, 1, 0, 1))  # one zero row and column
        h = grid.shape[1] // 2
        blocks = grid.view(b, h, 2, h, 2, c)  # [B, i, a, j, b, C]: row 2i+a, column 2j+b
        return blocks.permute(0, 3, 1, 2, 4, 5).reshape(b, h * h, 4 * c)


class MlpDownsample(nn.Sequential):
    """Downsample2x2 -> LayerNorm(4C) -> Linear(4C, D) -> GELU -> Linear(D, D); parameters `1.*`, `2.*`, `4.*`."""

    def __init__(self, cfg: ConnectorConfig):
        c, d = cfg.in_features, cfg.out_features
        super().__init__(Downsample2x2(), nn.LayerNorm(4 * c), nn.Linear(4 * c, d), nn.GELU(), nn.Linear(d, d))


def build_image_connector(cfg: ConnectorConfig) -> nn.Module:
    return {"mlp2x_gelu": Mlp2xGelu, "mlp_downsample": MlpDownsample}[cfg.type](cfg)
