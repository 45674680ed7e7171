"""The host sampler: picks tokens from logits that live in host memory (the onnx and trt backends). The torch
backend picks on its own device with the same rules (rgpt_rt/backends/torch_sampling.py)."""

from __future__ import annotations

import numpy as np

from .generation import GenerationConfig, Sampler


class HostSampler:
    """rows sequences, each with its own Sampler (its own random stream, seeded by `gen.seed`) and history of
    picked tokens (for the repetition penalty)."""

    def __init__(self, gen: GenerationConfig, rows: int):
        self.rows = rows
        self._samplers = [Sampler(gen) for _ in range(rows)]
        self._picked: list[list[int]] = [[] for _ in range(rows)]

    def pick(self, logits: np.ndarray, active: list[bool] | None = None) -> list[int | None]:
        """logits [B, V] float32 -> the next token of each active row (None for the others)."""
        out: list[int | None] = []
        for b in range(self.rows):
            if active is not None and not active[b]:
                out.append(None)
                continue
            tok = self._samplers[b](logits[b], self._picked[b])
            self._picked[b].append(tok)
            out.append(tok)
        return out
