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


def rope_cos_sin(pos: torch.Tensor, inv_freq: torch.Tensor, dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """pos [B, T] int64 -> cos, sin [B, 1, T, D] in `dtype` (angles computed in float32)."""
    angles = pos[..., None].float() * inv_freq  # [B, T, D/2]
    angles = torch.cat([angles, angles], dim=-1)[:, None]  # [B, 1, T, D]
    return angles.cos().to(dtype), angles.sin().to(dtype)


def causal_mask(pos: torch.Tensor, span: int) -> torch.Tensor:
    """pos [B, T] -> [B, 1, T, span]: query (b, t) sees cache slot s iff s <= pos[b, t]."""
    slots = torch.arange(span, device=pos.device)
    return (slots[None, None, :] <= pos[:, :, None])[:, None]


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
    """The layer's attention, in pieces that every implementation shares: `project` (q, k, v; optionally one
    fused projection), `attend` (grouped-query attention over given keys/values), and
    o_proj. forward() keeps its keys in the static KV cache, or, given `past`, concatenates them to it and
    returns them (the exported decoder graph's past/present form)."""

    def __init__(self, cfg: LlamaConfig):
        super().__init__()
        self.cfg = cfg
        h, kv, d = cfg.num_heads, cfg.num_kv_heads, cfg.head_dim
        self.q_proj = nn.Linear(cfg.hidden_size, h * d, bias=False)
        self.k_proj = nn.Linear(cfg.hidden_size, kv * d, bias=False)
        self.v_proj = nn.Linear(cfg.hidden_size, kv * d, bias=False)
        self.o_proj = nn.Linear(h * d, cfg.hidden_size, bias=False)
        self.kv_cache: KVCache | None = None
        self.qkv: nn.Module | None = None  # set by rgpt_rt.model.fused_decode.fuse_projections_

    def project(self, x: torch.Tensor, fused: bool = False) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x [B, T, Dm] -> q [B, H, T, D], k, v [B, Hkv, T, D]. fused (after fuse_projections_): views of one
        projection's output, the decode step's choice; the reference forward keeps three projections (over the
        same weights), so its results do not change when the model is fused."""
        b, t, _ = x.shape
        h, kv, d = self.cfg.num_heads, self.cfg.num_kv_heads, self.cfg.head_dim
        if fused:
            q, k, v = self.qkv(x).split([h * d, kv * d, kv * d], dim=-1)
        else:
            q, k, v = self.q_proj(x), self.k_proj(x), self.v_proj(x)
        return (
            q.view(b, t, h, d).transpose(1, 2),
            k.view(b, t, kv, d).transpose(1, 2),
            v.view(b, t, kv, d).transpose(1, 2),
        )

    def attend(self, q, keys, vals, mask, explicit: bool = False) -> torch.Tensor:
        """q [B, H, T, D], keys/vals [B, Hkv, S, D], mask [B|1, 1, T, S] bool -> [B, T, H*D]. explicit: the
        softmax written out with float32 scores (the exported graphs, whose fp16 form must not lose the
        mask's -inf); otherwise torch's scaled_dot_product_attention."""
        b, h, t, d = q.shape
        kv = keys.shape[1]
        if kv != h:  # grouped-query attention: query head i reads kv head i // (h / kv)
            keys = keys.repeat_interleave(h // kv, dim=1)
            vals = vals.repeat_interleave(h // kv, dim=1)
        scale = 1.0 / math.sqrt(d)
        if explicit:
            scores = ((q @ keys.transpose(-1, -2)) * scale).float().masked_fill(~mask, float("-inf"))
            o = F.softmax(scores, dim=-1).to(vals.dtype) @ vals
        else:
            o = F.scaled_dot_product_attention(q, keys, vals, attn_mask=mask, scale=scale)
        return o.transpose(1, 2).reshape(b, t, h * d)

    def forward(self, x: torch.Tensor, cos, sin, pos: torch.Tensor, mask: torch.Tensor, past=None):
        """-> (out [B, T, Dm], present): present is (keys, values) [B, Hkv, P+T, D] when `past` is given;
        without `past`, the keys go to the KV cache (or, with no cache set up, attention is over these T)."""
        q, k, v = self.project(x)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        present = None
        if past is not None:
            keys, vals = torch.cat([past[0], k], dim=2), torch.cat([past[1], v], dim=2)
            present = (keys, vals)
            o = self.attend(q, keys, vals, mask, explicit=True)
        elif self.kv_cache is not None:
            self.kv_cache.write(pos, k, v)
            span = mask.shape[-1]  # attend over cache slots [0, span)
            keys = self.kv_cache.k[: x.shape[0], :, :span].to(q.dtype)
            vals = self.kv_cache.v[: x.shape[0], :, :span].to(q.dtype)
            o = self.attend(q, keys, vals, mask)
        else:
            o = self.attend(q, k, v, mask)
        return self.o_proj(o), present


class MLP(nn.Module):
    def __init__(self, cfg: LlamaConfig):
        super().__init__()
        self.gate_proj = nn.Linear(cfg.hidden_size, cfg.intermediate_size, bias=False)
        self.up_proj = nn.Linear(cfg.hidden_size, cfg.intermediate_size, bias=False)
        self.down_proj = nn.Linear(cfg.intermediate_size, cfg.hidden_size, bias=False)
        self.gate_up: nn.Module | None = None  # set by rgpt_rt.model.fused_decode.fuse_projections_

    def forward(self, x: torch.Tensor, fused: bool = False) -> torch.Tensor:
        """fused: one gate/up projection (after fuse_projections_; see Attention.project)."""
        if fused:
            gate, up = self.gate_up(x).chunk(2, dim=-1)
        else:
            gate, up = self.gate_proj(x), self.up_proj(x)
        return self.down_proj(F.silu(gate) * up)


class DecoderLayer(nn.Module):
    def __init__(self, cfg: LlamaConfig):
        super().__init__()
        self.self_attn = Attention(cfg)
        self.mlp = MLP(cfg)
        self.input_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.post_attention_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)

    def forward(self, x, cos, sin, pos, mask, past=None):
        """-> (x, present); see Attention.forward."""
        attn, present = self.self_attn(self.input_layernorm(x), cos, sin, pos, mask, past)
        x = x + attn
        return x + self.mlp(self.post_attention_layernorm(x)), present


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
        self.max_batch = self.max_seq = 0  # no cache until every layer has its new one
        caches = [KVCache(max_batch, cfg.num_kv_heads, max_seq, cfg.head_dim, dtype, device) for _ in self.model.layers]
        for layer, cache in zip(self.model.layers, caches):
            layer.self_attn.kv_cache = cache
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
        caller guarantees the positions fit the cache. Without setup_caches, attention is causal over the T
        given tokens (training), whose positions must then be 0..T-1 in order.
        """
        b, t, _ = embeds.shape
        if self.max_seq == 0:  # no cache: the tokens attend to each other
            inv_freq = rope_inv_freq(self.cfg).to(embeds.device)
            mask = causal_mask(torch.arange(t, device=pos.device)[None], t)
        else:
            inv_freq = self.inv_freq
            if static:
                span = self.max_seq
            else:
                if b > self.max_batch or int(pos.max()) >= self.max_seq:
                    raise ValueError(
                        f"batch {b} / position {int(pos.max())} exceed the cache "
                        f"({self.max_batch} x {self.max_seq}); call setup_caches with larger sizes"
                    )
                span = int(pos.max()) + 1
            mask = causal_mask(pos, span)
        cos, sin = rope_cos_sin(pos, inv_freq, embeds.dtype)
        x = embeds
        for layer in self.model.layers:
            x, _ = layer(x, cos, sin, pos, mask)
        x = self.model.norm(x)
        return self.head(x) if logits else x
