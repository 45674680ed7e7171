"""RegionGPT for training: a batched, cache-free forward that returns the summed answer-token loss.

    pixels [B, 3, S, S] -> vision (no_grad when frozen) -> refine -> [B, C, H, W]
    per sample: region_pool (torch reference, differentiable) -> image feats [G*G, C], region feats [N_b, C]
    connectors: image feats of the batch in one call, the region feats of the whole batch in one call
    multimodal table [B, M, D] (image embeds, then that sample's region embeds; zero-padded)
    embed(ids, table) -> LLaMA layers without a cache (causal mask) -> norm -> head at labelled positions only
The ids and the table follow the runtime's contract (rgpt_rt.prompts), so the same weights see the same
inputs in training and at inference. The wrapper is an nn.Module with a forward so that FSDP2 / DDP can
wrap it as the root.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from ..model.llama import causal_mask, rope_cos_sin, rope_inv_freq
from ..model.region import region_pool
from ..model.regiongpt import RegionGPT
from .data import IGNORE, Encoded


def collate(items: list[Encoded]) -> dict[str, object]:
    """Right-pad ids (with 0) and labels (with IGNORE) to the longest sample: a causal mask never lets a
    real token see the padding after it, so no padding mask is needed."""
    t = max(len(e.ids) for e in items)
    ids = torch.zeros(len(items), t, dtype=torch.long)
    labels = torch.full((len(items), t), IGNORE, dtype=torch.long)
    for b, e in enumerate(items):
        ids[b, : len(e.ids)] = torch.tensor(e.ids)
        labels[b, : len(e.labels)] = torch.tensor(e.labels)
    return {
        "pixels": torch.stack([torch.from_numpy(e.pixels) for e in items]),  # [B, 3, S, S]
        "masks": [torch.from_numpy(e.masks) for e in items],  # B x [N_b, S, S]
        "ids": ids,  # [B, T]
        "labels": labels,  # [B, T]
        "tokens": sum(len(e.ids) for e in items),
    }


class TrainModel(nn.Module):
    def __init__(self, model: RegionGPT, activation_checkpointing: bool = False):
        super().__init__()
        self.model = model
        self.activation_checkpointing = activation_checkpointing
        self.register_buffer("inv_freq", rope_inv_freq(model.cfg.llm), persistent=False)

    def multimodal_table(self, pixels: torch.Tensor, masks: list[torch.Tensor]) -> torch.Tensor:
        """pixels [B, 3, S, S], masks B x [N_b, S, S] -> table [B, T + max N_b, D]."""
        m, cfg = self.model, self.model.cfg
        vision_trains = any(p.requires_grad for p in m.vision.parameters())
        with torch.set_grad_enabled(torch.is_grad_enabled() and vision_trains):
            feats = m.vision(pixels)  # [B, C, g, g]
        refined = m.refiner(feats)  # [B, C, H, W]
        pooled = [
            region_pool(refined[b], masks[b].to(refined.device), cfg.region.image_grid, cfg.region.mask_eps)
            for b in range(len(masks))
        ]
        image = m.image_connector(torch.stack([p[0] for p in pooled]).to(refined.dtype))  # [B, T, D]
        counts = [p[1].shape[0] for p in pooled]
        regions = torch.cat([p[1] for p in pooled]).to(refined.dtype)  # [sum N_b, C]
        proj = m.region_connector or m.image_connector
        region_embeds = proj(regions[None])[0] if regions.shape[0] else image.new_zeros(0, image.shape[-1])
        n_max = max(counts)
        table = image.new_zeros(len(masks), image.shape[1] + n_max, image.shape[-1])
        table[:, : image.shape[1]] = image
        for b, part in enumerate(torch.split(region_embeds, counts)):
            table[b, image.shape[1] : image.shape[1] + part.shape[0]] = part
        return table

    def hidden(self, embeds: torch.Tensor) -> torch.Tensor:
        """embeds [B, T, D] at positions 0..T-1 -> final hidden states [B, T, D] (no KV cache)."""
        llm = self.model.llm
        b, t, _ = embeds.shape
        pos = torch.arange(t, device=embeds.device)[None]  # [1, T]
        mask = causal_mask(pos, t)  # [1, 1, T, T]
        cos, sin = rope_cos_sin(pos, self.inv_freq, embeds.dtype)  # [1, 1, T, D]
        x = embeds
        for layer in llm.model.layers:  # the runtime's own layers, without a KV cache: (x, present) out
            if self.activation_checkpointing and torch.is_grad_enabled():
                x = checkpoint(layer, x, cos, sin, pos, mask, use_reentrant=False)[0]
            else:
                x = layer(x, cos, sin, pos, mask)[0]
        return llm.model.norm(x)

    def forward(self, pixels: torch.Tensor, masks: list[torch.Tensor], ids: torch.Tensor, labels: torch.Tensor):
        """-> (summed cross-entropy over the labelled tokens [], number of labelled tokens [])."""
        table = self.multimodal_table(pixels, masks)
        hidden = self.hidden(self.model.embed(ids, table))  # [B, T, D]
        sel = labels != IGNORE
        logits = self.model.llm.head(hidden[sel])  # [K, V]: only where a label is
        loss = F.cross_entropy(logits.float(), labels[sel], reduction="sum")
        return loss, sel.sum()

    @torch.no_grad()
    def last_logits(self, pixels: torch.Tensor, masks: list[torch.Tensor], ids: torch.Tensor) -> torch.Tensor:
        """Logits [B, V] at the last position of each (unpadded, equal-length) row: the runtime's first step."""
        table = self.multimodal_table(pixels, masks)
        return self.model.llm.head(self.hidden(self.model.embed(ids, table))[:, -1])
