"""Generation phases over a Llama with a static KV cache (gpt-fast style).

prefill           embeds of a right-padded batch -> logits at each row's last position
decode_one_token  one token per row at its own position -> logits
decode_n_tokens   the loop, with a caller-supplied `pick` (greedy by default)

Graph capture or compilation is applied by callers around these functions, never inside the model.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from .llama import Llama

Pick = Callable[[torch.Tensor], torch.Tensor]  # logits [B, V] -> token ids [B]


def greedy(logits: torch.Tensor) -> torch.Tensor:
    return logits.argmax(dim=-1)


def prefill(llm: Llama, embeds: torch.Tensor, lengths: torch.Tensor, start: torch.Tensor | None = None) -> torch.Tensor:
    """embeds [B, T, D] right-padded, lengths [B] valid tokens per row, start [B] first position (default 0).

    Writes the KV cache for positions start .. start+T-1 of each row and returns logits [B, V] of each
    row's last valid token.
    """
    b, t, _ = embeds.shape
    start = torch.zeros(b, dtype=torch.long, device=embeds.device) if start is None else start
    pos = start[:, None] + torch.arange(t, device=embeds.device)[None]  # [B, T]
    hidden = llm(embeds, pos, logits=False)  # [B, T, D]
    last = hidden[torch.arange(b, device=embeds.device), lengths - 1]  # [B, D]
    return llm.head(last)


def decode_one_token(llm: Llama, tokens: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
    """tokens [B], pos [B] (each row's own position) -> logits [B, V]."""
    return llm(llm.embed(tokens[:, None]), pos[:, None])[:, 0]


def decode_n_tokens(llm: Llama, first: torch.Tensor, pos: torch.Tensor, n: int, pick: Pick = greedy) -> torch.Tensor:
    """Feed `first` [B] at positions `pos` [B], then n-1 more picked tokens. Returns [B, n] including `first`."""
    out = [first]
    tok = first
    for _ in range(n - 1):
        tok = pick(decode_one_token(llm, tok, pos))
        pos = pos + 1
        out.append(tok)
    return torch.stack(out, dim=1)


@torch.no_grad()
def generate_greedy(llm: Llama, embeds: torch.Tensor, lengths: torch.Tensor, n: int) -> torch.Tensor:
    """Prefill then n greedy tokens per row: [B, n]. The cache must hold max(lengths) + n positions."""
    first = greedy(prefill(llm, embeds, lengths))
    return decode_n_tokens(llm, first, lengths.clone(), n)
