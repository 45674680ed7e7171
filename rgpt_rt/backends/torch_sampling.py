"""Sampling on the torch backend's device: logits [B, V] stay where they were computed and only the chosen
token ids [B] cross to the host. The rules are the host sampler's (rgpt_rt.generation.Sampler): repetition
penalty (CTRL-style), then greedy argmax at temperature 0, else temperature, top-k, top-p and a draw.

Greedy picks are the host sampler's (argmax of the same float32 logits, first index on ties; with a repetition
penalty the device divides in float32 and the host in float64, so an exact near-tie could differ). Sampled picks
are repeatable for a given seed on a given backend and device, and do not depend on the other rows of a batch
(one random stream per row), but they draw from torch's generators, so they differ from the host sampler's draws
for the same seed."""

from __future__ import annotations

import torch

from ..generation import GenerationConfig


class TorchSampler:
    def __init__(self, gen: GenerationConfig, rows: int, vocab: int, device: str):
        self.gen, self.rows = gen, rows
        self.seen = None
        if gen.repetition_penalty != 1.0:
            self.seen = torch.zeros(rows, vocab, dtype=torch.bool, device=device)  # tokens each row picked
        # One random stream per row, each seeded like the host sampler's rows: a row's draws depend on its own
        # picks only, so describe_many gives the same samples batched as one region at a time.
        self.generators = [self._generator(gen.seed, device) for _ in range(rows)] if gen.temperature > 0 else []

    @staticmethod
    def _generator(seed: int | None, device: str) -> torch.Generator:
        g = torch.Generator(device=device)
        if seed is None:
            g.seed()  # a fresh nondeterministic seed (the default seed is a constant)
        else:
            g.manual_seed(seed)
        return g

    def pick(self, logits: torch.Tensor) -> torch.Tensor:
        """logits [B, V] -> token ids [B] int64, on the logits' device."""
        gen = self.gen
        x = logits.float()
        b = x.shape[0]
        if self.seen is not None:
            seen = self.seen[:b]
            x = torch.where(seen, torch.where(x > 0, x / gen.repetition_penalty, x * gen.repetition_penalty), x)
        if gen.temperature == 0:
            tok = x.argmax(dim=-1)
        else:
            x = x / gen.temperature
            if gen.top_k and gen.top_k < x.shape[-1]:
                kth = x.topk(gen.top_k, dim=-1).values[:, -1:]
                x = x.masked_fill(x < kth, float("-inf"))
            probs = torch.softmax(x, dim=-1)
            if gen.top_p < 1.0:
                sorted_p, order = probs.sort(dim=-1, descending=True, stable=True)
                keep = (sorted_p.cumsum(dim=-1) - sorted_p) < gen.top_p  # smallest prefix reaching top_p
                probs = torch.zeros_like(probs).scatter(-1, order, sorted_p * keep)
            tok = torch.cat(
                [torch.multinomial(probs[i : i + 1], 1, generator=g)[:, 0] for i, g in enumerate(self.generators[:b])]
            )
        if self.seen is not None:
            self.seen[torch.arange(b, device=tok.device), tok] = True
        return tok
