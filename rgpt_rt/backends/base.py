"""The contract every backend (torch, onnx, trt) implements for the runtime's one generation loop
(rgpt_rt/decode_loop.py). Every method is required; the runtime never asks a backend what it supports.

A backend owns the model weights and a KV cache of `batch` rows (reserve); the runtime serialises calls.
  preprocess_frame(frame uint8 [H, W, 3], vision) -> pixels [3, S, S] in the backend's own memory
  has_frame(key) -> whether the backend holds frame `key` (then visual_embeds may be given pixels=None)
  visual_embeds(pixels | None, masks [N, S, S] f32, frame_key, depth=None) -> (table, T): a backend-native table
      of multimodal embeddings [T + N, D] (image embeds first, then region embeds) and T; with `depth` (the
      depth image's pixels [3, S, S], preprocessed like the frame) N depth embeds follow: [T + 2N, D]. A backend
      without a depth path raises InputError naming itself.
  reserve(max_len, batch) makes room for max_len positions in `batch` rows before a prefill
  sampler(gen, rows) -> a token picker for `rows` sequences that runs where the logits are
  prefill(prefix, start, suffixes, table, sampler, want_logits) -> (tokens [B], first logits [B, V] | None)
      Row 0 already holds the KV of prefix[:start] (start comes from `kv_prefix`); the backend computes the
      rest of the prefix in row 0, gives rows 1..B-1 the same prefix, runs each row's suffix after it (B =
      len(suffixes); a suffix may be empty only when B == 1) and picks each row's first token.
  step(tokens [B] (None for a finished row), positions [B], sampler, want_logits)
      -> (next tokens [B] (None where finished), logits [B, V] | None)
      feeds each active row's token at its position and picks the next one.
  kv_prefix: the KVPrefix naming what KV-cache row 0 holds; the loop reads and updates it, the backend clears
      it whenever it reallocates or drops its cache.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np

from ..config import ModelConfig
from ..generation import GenerationConfig


class KVPrefix:
    """What each slot of KV-cache row 0 holds, by position: a text token id, or the content key of an image or
    region embedding. A new prompt reuses the leading slots whose keys it shares.

    It is cleared before any call that may overwrite slots and set again only after that call succeeded, so an
    exception (KeyboardInterrupt included) at any point leaves no slot claimed whose KV might be stale."""

    def __init__(self, enabled: bool = True):
        self.keys: list = []
        self.enabled = enabled  # False: never reuse (every prompt is prefilled from position 0)
        self.reused = 0  # slots the last prefill reused (for tests and benchmarks)

    def reusable(self, keys: list, limit: int) -> int:
        """How many leading slots of `keys` (at most `limit`) row 0 already holds."""
        n = min(len(self.keys), len(keys), limit) if self.enabled else 0
        i = 0
        while i < n and self.keys[i] == keys[i]:
            i += 1
        return i

    def clear(self) -> None:
        self.keys = []

    def set(self, keys: list) -> None:
        self.keys = list(keys)

    def put(self, pos: int, key) -> None:
        """Slot `pos` was written with `key` (slots before it are unchanged)."""
        del self.keys[pos:]
        if len(self.keys) == pos:
            self.keys.append(key)


class Picker(Protocol):
    """A sampler: picks the next token of each row from logits where they live (host or device)."""

    rows: int


class Backend(Protocol):
    name: str
    cfg: ModelConfig
    device: str
    kv_prefix: KVPrefix

    def preprocess_frame(self, frame: np.ndarray, vision) -> Any: ...

    def has_frame(self, key: str | None) -> bool: ...

    def visual_embeds(
        self, pixels: Any | None, masks: np.ndarray, frame_key: str | None = None, depth: Any | None = None
    ) -> tuple[Any, int]: ...

    def reserve(self, max_len: int, batch: int = 1) -> None: ...

    def sampler(self, gen: GenerationConfig, rows: int) -> Picker: ...

    def prefill(
        self,
        prefix: list[int],
        start: int,
        suffixes: list[list[int]],
        table: Any,
        sampler: Picker,
        want_logits: bool = False,
    ) -> tuple[list[int], np.ndarray | None]: ...

    def step(
        self, tokens: list[int | None], positions: list[int], sampler: Picker, want_logits: bool = False
    ) -> tuple[list[int | None], np.ndarray | None]: ...
