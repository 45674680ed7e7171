"""The assembled RegionGPT model: vision tower -> refinement -> region_pool -> connectors -> LLaMA.

Data flow and shapes (DESIGN.md section 1; reference sizes in brackets):
  pixels [B, 3, S, S]            -> vision tower, layer `select_layer`, patches only -> [B, C, g, g]
  refine                          -> refined map [B, C, 4g, 4g]                (1024 x 96 x 96)
  region_pool(map, masks [N, S, S]) -> image features [G*G, C], region features [N, C]
  image connector                 -> image embeds [T, D]  (T = G*G, or ceil(G/2)^2 for mlp_downsample)
  region connector (shared or own) -> region embeds [N, D]
SpatialRGPT's depth branch (cfg.enable_depth): a depth image [3, S, S] (the depth map as an 8-bit image,
preprocessed like the frame) goes through the same vision tower; its unrefined patch features [C, g, g] are
mask-pooled with the same masks and projected by `depth_projector` (Linear(C, D)) -> depth embeds [N, D].
The decoder reads token embeddings in which ids >= vocab_size address a table of multimodal embeddings
(image embeds, then region embeds): the same contract the exported decoder graph has.
"""

from __future__ import annotations

import torch
from torch import nn

from ..config import ModelConfig
from .connector import build_image_connector
from .llama import Llama
from .region import FeatureRefiner
from .region import region_pool as region_pool_reference
from .vision import VisionTower


class RegionGPT(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        c, d = cfg.vision.hidden_size, cfg.llm.hidden_size
        self.vision = VisionTower(cfg.vision)
        self.refiner = FeatureRefiner(c, cfg.region)
        self.image_connector = build_image_connector(cfg.connector)
        self.region_connector = nn.Linear(c, d) if cfg.region.region_connector == "linear" else None
        self.depth_projector = nn.Linear(c, d) if cfg.enable_depth else None
        self.llm = Llama(cfg.llm)
        self.native_ops = True  # region_pool through rgpt_rt.ops (C++/CUDA); False: the torch reference

    def encode_image(self, pixels: torch.Tensor) -> torch.Tensor:
        """pixels [B, 3, S, S] -> refined map [B, C, H, W]."""
        return self.refiner(self.vision(pixels))

    def pool(self, refined: torch.Tensor, masks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """refined [C, H, W], masks [N, S, S] -> image features [G*G, C], region features [N, C]."""
        if self.native_ops:
            from ..ops import region_pool

            return region_pool(refined, masks, self.cfg.region.image_grid, self.cfg.region.mask_eps)
        return region_pool_reference(refined, masks, self.cfg.region.image_grid, self.cfg.region.mask_eps)

    def connect(self, image_feats: torch.Tensor, region_feats: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """image features [G*G, C], region features [N, C] -> image embeds [T, D], region embeds [N, D]."""
        image = self.image_connector(image_feats[None])[0]
        region_proj = self.region_connector or self.image_connector
        regions = region_proj(region_feats[None])[0] if region_feats.shape[0] else image.new_zeros(0, image.shape[-1])
        return image, regions

    def connect_regions(self, region_feats: torch.Tensor) -> torch.Tensor:
        """region features [N, C] -> region embeds [N, D] (the image connector when it is shared)."""
        proj = self.region_connector or self.image_connector
        if region_feats.shape[0] == 0:
            return region_feats.new_zeros(0, self.cfg.llm.hidden_size)
        return proj(region_feats[None])[0]

    def depth_embeds(self, depth_pixels: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        """depth image [3, S, S], masks [N, S, S] -> depth embeds [N, D]: the tower's patch features of the depth
        image, mask-pooled on the tower's own g x g grid (no refinement), through depth_projector."""
        if self.depth_projector is None:
            raise ValueError("this model has no depth branch (its config does not enable depth)")
        feats = self.vision(depth_pixels[None])[0]  # [C, g, g]
        if masks.shape[0] == 0:
            return feats.new_zeros(0, self.cfg.llm.hidden_size)
        g = self.cfg.vision.grid
        if self.native_ops:
            from ..ops import region_pool

            _, pooled = region_pool(feats, masks, g, self.cfg.region.mask_eps)
        else:
            _, pooled = region_pool_reference(feats, masks, g, self.cfg.region.mask_eps)
        return self.depth_projector(pooled)

    def visual_embeds(self, pixels: torch.Tensor, masks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """pixels [3, S, S], masks [N, S, S] -> image embeds [T, D], region embeds [N, D]."""
        refined = self.encode_image(pixels[None])[0]
        return self.connect(*self.pool(refined, masks))

    def embed(self, ids: torch.Tensor, mm_table: torch.Tensor | None = None) -> torch.Tensor:
        """ids [B, T] with text ids < V and multimodal ids V + k addressing mm_table [B, M, D] -> [B, T, D]."""
        vocab = self.cfg.llm.vocab_size
        text = self.llm.embed(ids.clamp(max=vocab - 1))
        if mm_table is None:
            if bool((ids >= vocab).any()):
                raise ValueError("ids address multimodal embeddings but no mm_table was given")
            return text
        mm_idx = (ids - vocab).clamp(min=0)
        mm = torch.gather(mm_table, 1, mm_idx[..., None].expand(-1, -1, mm_table.shape[-1]))
        return torch.where((ids >= vocab)[..., None], mm.to(text.dtype), text)
