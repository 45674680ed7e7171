"""The torch backend: the reference model on CPU or CUDA (fp32 default on CPU, fp16 on CUDA)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


class TorchBackend:
    name = "torch"

    def __init__(self, path: str | Path, device: str = "cpu", dtype: str | None = None):
        import torch

        from ..checkpoint import load_model

        if device.startswith("cuda") and not torch.cuda.is_available():
            raise RuntimeError("device='cuda' was requested but torch sees no CUDA GPU; use device='cpu'")
        self.torch = torch
        self.device = device
        self.model = load_model(path, dtype=dtype or ("fp16" if device.startswith("cuda") else "fp32"), device=device)
        self.cfg = self.model.cfg
        self.dtype = next(self.model.parameters()).dtype

    def visual_embeds(self, pixels: np.ndarray, masks: np.ndarray) -> tuple[Any, int]:
        t = self.torch
        with t.inference_mode():
            px = t.from_numpy(pixels).to(self.device, self.dtype)
            mk = t.from_numpy(masks).to(self.device)
            image, regions = self.model.visual_embeds(px, mk)
            return t.cat([image, regions]), image.shape[0]

    def reserve(self, max_len: int) -> None:
        llm = self.model.llm
        if max_len > llm.max_seq or llm.max_batch < 1:
            # Grow in steps so that a run of similar prompts allocates once.
            cap = min(max(max_len, 2 * llm.max_seq, 256), self.cfg.llm.max_position_embeddings)
            llm.setup_caches(1, max(cap, max_len), dtype=self.dtype, device=self.device)

    def _logits(self, x) -> np.ndarray:
        return x.float().cpu().numpy()

    def prefill(self, ids: list[int], table: Any) -> np.ndarray:
        t = self.torch
        with t.inference_mode():
            ids_t = t.tensor([ids], device=self.device)
            embeds = self.model.embed(ids_t, table[None])
            pos = t.arange(len(ids), device=self.device)[None]
            hidden = self.model.llm(embeds, pos, logits=False)[:, -1]
            return self._logits(self.model.llm.head(hidden)[0])

    def step(self, token: int, pos: int) -> np.ndarray:
        t = self.torch
        with t.inference_mode():
            emb = self.model.llm.embed(t.tensor([[token]], device=self.device))
            return self._logits(self.model.llm(emb, t.tensor([[pos]], device=self.device))[0, 0])
