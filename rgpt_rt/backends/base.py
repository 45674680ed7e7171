"""The contract every backend (torch, onnx, trt) implements for the runtime.

A backend owns the model weights and one KV cache for a single sequence; the runtime serialises calls.
  visual_embeds(pixels [3, S, S] f32, masks [N, S, S] f32) -> (table, T): a backend-native table of
      multimodal embeddings [T + N, D] (image embeds first, then region embeds) and T
  prefill(ids, table) -> logits [V] f32 numpy of the last position; writes positions 0 .. len(ids)-1
  step(token, pos) -> logits [V] f32 numpy for `token` at position `pos`
  reserve(max_len) makes room for max_len positions before a prefill.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np

from ..config import ModelConfig


class Backend(Protocol):
    name: str
    cfg: ModelConfig
    device: str

    def visual_embeds(self, pixels: np.ndarray, masks: np.ndarray) -> tuple[Any, int]: ...

    def reserve(self, max_len: int) -> None: ...

    def prefill(self, ids: list[int], table: Any) -> np.ndarray: ...

    def step(self, token: int, pos: int) -> np.ndarray: ...
