"""The one generation loop: every call of the Runtime (describe, ask, stream, chat, describe_many) runs here,
on any backend. One sequence is a batch of one.

    prompts (B rows of ids + their content keys)
      -> shared prefix: the longest common prefix of all rows; row 0 of the KV cache may already hold part of
         it (backend.kv_prefix), and only the rest is computed
      -> backend.prefill: prefix once, each row's suffix after it, the first token of each row
      -> backend.step while any row is unfinished: each active row's token in, its next token out
Token ids, not logits, come back from the backend: each backend samples where its logits are. Stopping (end
ids, stop strings, length), text decoding and streaming are host work, per row, here.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import numpy as np

from .backends.base import Backend
from .generation import GenerationConfig, GenerationResult, Timings
from .tokenizer import PromptTokenizer


class Sequence:
    """One row's decoding state: end of sequence, stop strings, the length limit, its text."""

    def __init__(self, tokenizer: PromptTokenizer, gen: GenerationConfig, max_new: int):
        self.tokenizer, self.gen, self.max_new = tokenizer, gen, max_new
        self.generated: list[int] = []
        self.text, self.finish, self.done = "", "length", max_new <= 0
        self.emitted = ""  # the part of the text already streamed

    def accept(self, tok: int) -> None:
        """Take the picked token; updates done/finish/text."""
        if tok in self.tokenizer.stop_ids and not self.gen.ignore_eos:
            self.finish, self.done = "eos", True
            return
        self.generated.append(tok)
        self.text = self.tokenizer.decode(self.generated).lstrip()
        cut = min((j for j in (self.text.find(s) for s in self.gen.stop) if j >= 0), default=-1)
        if cut >= 0:
            self.text, self.finish, self.done = self.text[:cut], "stop", True
        elif len(self.generated) >= self.max_new:
            self.done = True

    def piece(self, final: bool = False) -> str:
        """The newly final part of the text ('' if none)."""
        ready = self.text.strip() if final else stable_prefix(self.text, self.gen.stop)
        if len(ready) <= len(self.emitted):
            return ""
        new, self.emitted = ready[len(self.emitted) :], ready
        return new


def stable_prefix(text: str, stops: tuple[str, ...]) -> str:
    """The part of `text` that later tokens cannot change: no half-decoded character at the end, no suffix
    that could still grow into a stop string, and no trailing whitespace (the final text is stripped)."""
    if text.endswith("\ufffd"):
        text = text.rstrip("\ufffd")
    hold = 0
    for s in stops:
        for k in range(min(len(s) - 1, len(text)), 0, -1):
            if text.endswith(s[:k]):
                hold = max(hold, k)
                break
    return text[: len(text) - hold].rstrip()


def _log_softmax(logits: np.ndarray) -> np.ndarray:
    x = np.asarray(logits, np.float64)
    x = x - x.max(axis=-1, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=-1, keepdims=True))


def score(backend: Backend, table, prompt: list[int], keys: list, candidates: list[list[int]]) -> list[float]:
    """Sum of log-probabilities of each candidate's tokens after `prompt` (teacher forcing), all candidates
    decoded together as rows that share the prompt's KV."""
    b = len(candidates)
    ids, row_keys = [prompt] * b, [keys] * b
    p = shared_prefix_len(row_keys)
    cache = backend.kv_prefix
    backend.reserve(len(prompt) + max(len(c) for c in candidates), batch=b)
    start = cache.reusable(keys, p - 1 if b == 1 else p)
    cache.reused = start
    sampler = backend.sampler(GenerationConfig(max_new_tokens=1), b)
    cache.clear()
    _, logits = backend.prefill(prompt[:p], start, [r[p:] for r in ids], table, sampler, want_logits=True)
    cache.set(keys)
    total = [float(_log_softmax(logits[i])[c[0]]) for i, c in enumerate(candidates)]
    pos = [len(prompt)] * b
    for t in range(max(len(c) for c in candidates) - 1):
        feed = [c[t] if t + 1 < len(c) else None for c in candidates]
        _, logits = backend.step(feed, pos, sampler, want_logits=True)
        if feed[0] is not None:
            cache.put(pos[0], feed[0])
        for i, c in enumerate(candidates):
            if feed[i] is not None:
                total[i] += float(_log_softmax(logits[i])[c[t + 1]])
                pos[i] += 1
    return total


def shared_prefix_len(rows: list[list]) -> int:
    """The longest common prefix of the rows' keys, leaving every row of a batch at least one token of its own."""
    if len(rows) == 1:
        return len(rows[0])
    n = min(len(r) for r in rows) - 1
    i = 0
    while i < n and all(r[i] == rows[0][i] for r in rows[1:]):
        i += 1
    return i


def generate(
    backend: Backend,
    tokenizer: PromptTokenizer,
    table,
    ids: list[list[int]],
    keys: list[list],
    gen: GenerationConfig,
    timings: Timings,
    results: list[GenerationResult],
    want_logits: bool = False,
) -> Iterator[tuple[int, str]]:
    """Decode B prompts (ids, with their content keys) against one multimodal table. Yields (row, text piece)
    as text becomes final; appends one GenerationResult per row to `results` at the end."""
    ctx = backend.cfg.llm.max_position_embeddings
    seqs = [Sequence(tokenizer, gen, min(gen.max_new_tokens, ctx - len(r))) for r in ids]
    b = len(ids)
    p = shared_prefix_len(keys)
    prefix, suffixes = ids[0][:p], [r[p:] for r in ids]
    cache = backend.kv_prefix
    backend.reserve(min(ctx, max(len(r) + s.max_new for r, s in zip(ids, seqs))), batch=b)
    start = cache.reusable(keys[0], p - 1 if b == 1 else p)  # a single row runs at least one token itself
    cache.reused = start
    sampler = backend.sampler(gen, b)
    t0 = time.perf_counter()
    cache.clear()  # slots from `start` on are about to be overwritten
    tokens, first_logits = backend.prefill(prefix, start, suffixes, table, sampler, want_logits)
    cache.set(keys[0])
    t1 = time.perf_counter()
    timings.prefill_ms, timings.reused_tokens = (t1 - t0) * 1e3, start
    pos = [len(r) for r in ids]
    while True:
        for row, (s, tok) in enumerate(zip(seqs, tokens)):
            if tok is not None and not s.done:
                s.accept(tok)
                piece = s.piece(final=s.done)
                if piece:
                    yield row, piece
        if all(s.done for s in seqs):
            break
        feed = [None if s.done else tok for s, tok in zip(seqs, tokens)]
        tokens, _ = backend.step(feed, pos, sampler)
        if feed[0] is not None:
            cache.put(pos[0], feed[0])
        pos = [q + (f is not None) for q, f in zip(pos, feed)]
    timings.decode_ms = (time.perf_counter() - t1) * 1e3
    timings.tokens = max(len(s.generated) for s in seqs)
    for row, s in enumerate(seqs):
        logits = None if first_logits is None else np.asarray(first_logits[row], np.float32)
        results.append(GenerationResult(s.text.strip(), s.generated, s.finish, timings, logits))
