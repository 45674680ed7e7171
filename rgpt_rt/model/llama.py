"""LLaMA decoder (RMSNorm, RoPE with optional Llama-3 scaling, grouped-query attention, SwiGLU) with a
preallocated KV cache.

Parameter names mirror Hugging Face's LlamaForCausalLM (`model.layers.{i}.self_attn.q_proj.weight`, …).
The cache is addressed by absolute position: row b of a batch writes its keys at the positions it is given
and attends to every cache slot at or before the query's position. Sequences of different lengths therefore
share one batch (right-padded): each row's positions say where it is, and slots a row never wrote are never
inside its causal window.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..config import LlamaConfig


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xf = x.float()
        xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * xf.to(x.dtype)


def rope_inv_freq(cfg: LlamaConfig) -> torch.Tensor:
    """[head_dim/2] inverse frequencies, with Llama-3 wavelength-dependent scaling when configured."""
    d = cfg.head_dim
    inv = 1.0 / (cfg.rope_theta ** (torch.arange(0, d, 2, dtype=torch.int64).double() / d))
    s = cfg.rope_scaling
    if s is None:
        return inv.float()
    factor, lo, hi = float(s["factor"]), float(s["low_freq_factor"]), float(s["high_freq_factor"])
    ctx = float(s["original_max_position_embeddings"])
    wavelen = 2 * math.pi / inv
    scaled = torch.where(wavelen > ctx / lo, inv / factor, inv)  # long wavelengths: slowed by `factor`
    smooth = (ctx / wavelen - lo) / (hi - lo)
    blended = (1 - smooth) * scaled / factor + smooth * scaled
    medium = (wavelen >= ctx / hi) & (wavelen <= ctx / lo)
    return torch.where(medium, blended, scaled).float()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x [B, H, T, D]; cos/sin [B, 1, T, D]. Rotates the two halves of D (the Hugging Face convention)."""
    x1, x2 = x.chunk(2, dim=-1)
    rotated = torch.cat([-x2, x1], dim=-1)
    return (x * cos + rotated * sin).to(x.dtype)


class KVCache(nn.Module):
    def __init__(self, batch: int, kv_heads: int, max_seq: int, head_dim: int, dtype, device):
        super().__init__()
        shape = (batch, kv_heads, max_seq, head_dim)
        self.register_buffer("k", torch.zeros(shape, dtype=dtype, device=device), persistent=False)
        self.register_buffer("v", torch.zeros(shape, dtype=dtype, device=device), persistent=False)

    def write(self, pos: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> None:
        """pos [B, T] absolute positions; k, v [B, Hkv, T, D]."""
        rows = torch.arange(pos.shape[0], device=pos.device)[:, None].expand_as(pos)
        self.k[rows, :, pos] = k.transpose(1, 2).to(self.k.dtype)  # index result is [B, T, Hkv, D]
        self.v[rows, :, pos] = v.transpose(1, 2).to(self.v.dtype)


class Attention(nn.Module):
    def __init__(self, cfg: LlamaConfig):
        super().__init__()
        self.cfg = cfg
        h, kv, d = cfg.num_heads, cfg.num_kv_heads, cfg.head_dim
        self.q_proj = nn.Linear(cfg.hidden_size, h * d, bias=False)
        self.k_proj = nn.Linear(cfg.hidden_size, kv * d, bias=False)
        self.v_proj = nn.Linear(cfg.hidden_size, kv * d, bias=False)
        self.o_proj = nn.Linear(h * d, cfg.hidden_size, bias=False)
        self.kv_cache: KVCache | None = None

    def forward(self, x: torch.Tensor, cos, sin, pos: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        b, t, _ = x.shape
        h, kv, d = self.cfg.num_heads, self.cfg.num_kv_heads, self.cfg.head_dim
        q = self.q_proj(x).view(b, t, h, d).transpose(1, 2)  # [B, H, T, D]
        k = self.k_proj(x).view(b, t, kv, d).transpose(1, 2)  # [B, Hkv, T, D]
        v = self.v_proj(x).view(b, t, kv, d).transpose(1, 2)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        if self.kv_cache is None:  # training: no cache, attend over this call's keys (mask [B|1, 1, T, T])
            keys, vals = k, v
        else:
            self.kv_cache.write(pos, k, v)
            span = mask.shape[-1]  # attend over cache slots [0, span)
            keys = self.kv_cache.k[:b, :, :span].to(q.dtype)
            vals = self.kv_cache.v[:b, :, :span].to(q.dtype)
        if kv != h:  # grouped-query attention: query head i reads kv head i // (h / kv)
            keys = keys.repeat_interleave(h // kv, dim=1)
            vals = vals.repeat_interleave(h // kv, dim=1)
        o = F.scaled_dot_product_attention(q, keys, vals, attn_mask=mask, scale=1.0 / math.sqrt(d))
        return self.o_proj(o.transpose(1, 2).reshape(b, t, h * d))


class MLP(nn.Module):
    def __init__(self, cfg: LlamaConfig):
        super().__init__()
        self.gate_proj = nn.Linear(cfg.hidden_size, cfg.intermediate_size, bias=False)
        self.up_proj = nn.Linear(cfg.hidden_size, cfg.intermediate_size, bias=False)
        self.down_proj = nn.Linear(cfg.intermediate_size, cfg.hidden_size, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class DecoderLayer(nn.Module):
    def __init__(self, cfg: LlamaConfig):
        super().__init__()
        self.self_attn = Attention(cfg)
        self.mlp = MLP(cfg)
        self.input_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.post_attention_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)

    def forward(self, x, cos, sin, pos, mask):
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, pos, mask)
        return x + self.mlp(self.post_attention_layernorm(x))


class LlamaModel(nn.Module):
    def __init__(self, cfg: LlamaConfig):
        super().__init__()
        self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.hidden_size)
        self.layers = nn.ModuleList(DecoderLayer(cfg) for _ in range(cfg.num_layers))
        self.norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)


class Llama(nn.Module):
    """Causal LM over input embeddings with a static KV cache.

    setup_caches(batch, max_seq) allocates the cache; forward(embeds [B, T, D], pos [B, T]) writes the
    keys of those positions and returns logits [B, T, V] (or the hidden states with `logits=False`).
    """

    def __init__(self, cfg: LlamaConfig):
        super().__init__()
        self.cfg = cfg
        self.model = LlamaModel(cfg)
        self.lm_head = None if cfg.tie_word_embeddings else nn.Linear(cfg.hidden_size, cfg.vocab_size, bias=False)
        self.max_batch = self.max_seq = 0

    def setup_caches(self, max_batch: int, max_seq: int, dtype=None, device=None) -> None:
        w = self.model.embed_tokens.weight
        dtype, device = dtype or w.dtype, device or w.device
        cfg = self.cfg
        for layer in self.model.layers:
            layer.self_attn.kv_cache = KVCache(max_batch, cfg.num_kv_heads, max_seq, cfg.head_dim, dtype, device)
        self.register_buffer("inv_freq", rope_inv_freq(cfg).to(device), persistent=False)
        self.max_batch, self.max_seq = max_batch, max_seq

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        return self.model.embed_tokens(ids)

    def head(self, hidden: torch.Tensor) -> torch.Tensor:
        w = self.model.embed_tokens.weight if self.lm_head is None else self.lm_head.weight
        return F.linear(hidden, w)

    def forward(
        self, embeds: torch.Tensor, pos: torch.Tensor, logits: bool = True, static: bool = False
    ) -> torch.Tensor:
        """embeds [B, T, D], pos [B, T] (int64 absolute positions) -> logits [B, T, V].

        static=True attends over the whole cache (masked) instead of up to the largest position: every shape
        is then fixed and nothing reads back to the host, so the step can be captured in a CUDA graph. The
        caller guarantees the positions fit the cache.
        """
        b, t, _ = embeds.shape
        if static:
            span = self.max_seq
        else:
            if b > self.max_batch or int(pos.max()) >= self.max_seq:
                raise ValueError(
                    f"batch {b} / position {int(pos.max())} exceed the cache "
                    f"({self.max_batch} x {self.max_seq}); call setup_caches with larger sizes"
                )
            span = int(pos.max()) + 1
        slots = torch.arange(span, device=pos.device)
        mask = (slots[None, None, :] <= pos[:, :, None])[:, None]  # [B, 1, T, span]
        angles = pos[..., None].float() * self.inv_freq  # [B, T, D/2]
        angles = torch.cat([angles, angles], dim=-1)[:, None]  # [B, 1, T, D]
        cos, sin = angles.cos().to(embeds.dtype), angles.sin().to(embeds.dtype)
        x = embeds
        for layer in self.model.layers:
            x = layer(x, cos, sin, pos, mask)
        x = self.model.norm(x)
        return self.head(x) if logits else x
