"""The contract every backend (torch, onnx, trt) implements for the runtime.

A backend owns the model weights and one KV cache for a single sequence; the runtime serialises calls.
  has_frame(key) -> whether the backend holds frame `key` (then visual_embeds may be given pixels=None)
  visual_embeds(pixels [3, S, S] f32 | None, masks [N, S, S] f32, frame_key) -> (table, T): a backend-native
      table of multimodal embeddings [T + N, D] (image embeds first, then region embeds) and T
  prefill(ids, table, keys) -> logits [V] f32 numpy of the last position; writes positions 0 .. len(ids)-1.
      `keys` names each token's content (text id, or a key of its image/region embedding) so a backend may
      keep the KV of a prefix shared with the previous prompt
  step(token, pos) -> logits [V] f32 numpy for `token` at position `pos`
  reserve(max_len, batch) makes room for max_len positions (and batch rows) before a prefill.
Optional (torch): prefill_batch(prefix_ids, prefix_keys, suffixes, table) -> logits [B, V] and
  step_batch(tokens, positions) -> logits [B, V], for several suffixes sharing one prefix.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np

from ..config import ModelConfig


class Backend(Protocol):
    name: str
    cfg: ModelConfig
    device: str

    def has_frame(self, key: str | None) -> bool: ...

    def visual_embeds(
        self, pixels: np.ndarray | None, masks: np.ndarray, frame_key: str | None = None
    ) -> tuple[Any, int]: ...

    def reserve(self, max_len: int, batch: int = 1) -> None: ...

    def prefill(self, ids: list[int], table: Any, keys: list | None = None) -> np.ndarray: ...

    def step(self, token: int, pos: int) -> np.ndarray: ...
