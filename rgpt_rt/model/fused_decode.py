"""The one-token decode step on the native decode ops (rgpt_rt.ops): the fast path of the torch backend.

Per layer: rms_norm (fused with the residual add of the previous sub-block), one projection for q, k and v,
rope_kv_write (rotary embedding of q and k + the KV-cache write at each row's position), decode_attention
(reads only each row's window of the cache), o_proj, rms_norm with the residual add, one projection for gate
and up, SiLU * up, down_proj. It computes what Llama.forward computes for one token per row (same rounding
steps; tested against it), with fixed shapes and no host read-back, so it can be captured in a CUDA graph.

`fuse_projections_` concatenates q/k/v and gate/up weights once; the original modules keep views into the
concatenation, so the reference forward still works and no weight is stored twice.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..ops import decode_attention, rms_norm, rope_kv_write
from .quant import Int8Linear


class _Fused(nn.Module):
    """One projection standing for several: y = x @ cat(W_i).T, output columns in the given order."""

    def __init__(self, mods: list[nn.Module]):
        super().__init__()
        sizes = [m.out_features for m in mods]
        self.int8 = isinstance(mods[0], Int8Linear)
        if self.int8:
            if not all(isinstance(m, Int8Linear) for m in mods):
                raise TypeError("cannot fuse int8 and floating-point projections")
            self.impl = Int8Linear.concat(mods)
            for m, q, s in zip(mods, self.impl.q.split(sizes), self.impl.scale.split(sizes)):
                m.q, m.scale = q, s
        else:
            if not all(isinstance(m, nn.Linear) and m.bias is None for m in mods):
                raise TypeError("fused projections must be bias-free nn.Linear or Int8Linear")
            weight = torch.cat([m.weight.detach() for m in mods])
            self.register_buffer("weight", weight, persistent=False)
            for m, w in zip(mods, weight.split(sizes)):
                m.weight = nn.Parameter(w, requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.impl(x) if self.int8 else F.linear(x, self.weight)


@torch.no_grad()
def fuse_projections_(llm) -> None:
    """Give every decoder layer `qkv` and `gate_up` projections (idempotent)."""
    for layer in llm.model.layers:
        if hasattr(layer, "qkv"):
            continue
        a, m = layer.self_attn, layer.mlp
        layer.qkv = _Fused([a.q_proj, a.k_proj, a.v_proj])
        layer.gate_up = _Fused([m.gate_proj, m.up_proj])


def fused_decode_step(llm, tok: torch.Tensor, pos: torch.Tensor, shared: torch.Tensor | None = None) -> torch.Tensor:
    """tok [B] int64, pos [B] int64 (each row's position, inside the cache) -> logits [B, V].

    Needs fuse_projections_(llm) and llm.setup_caches(); row b writes cache row b at pos[b]. shared [B] int64
    (optional): row b's first shared[b] cache slots are copies of row 0's, and attention reads them there.
    """
    cfg = llm.cfg
    b = tok.shape[0]
    h, kv, d, inter = cfg.num_heads, cfg.num_kv_heads, cfg.head_dim, cfg.intermediate_size
    eps, scale = cfg.rms_norm_eps, 1.0 / math.sqrt(d)
    layers = llm.model.layers
    hidden = llm.embed(tok)  # [B, Dm], the residual stream
    y = rms_norm(hidden, layers[0].input_layernorm.weight, eps)
    for i, layer in enumerate(layers):
        cache = layer.self_attn.kv_cache
        qkv = layer.qkv(y)
        q = qkv[:, : h * d].view(b, h, d)
        k = qkv[:, h * d : (h + kv) * d].view(b, kv, d)
        v = qkv[:, (h + kv) * d :].view(b, kv, d)
        q = rope_kv_write(q, k, v, pos, llm.inv_freq, cache.k, cache.v)
        attn = layer.self_attn.o_proj(decode_attention(q, cache.k, cache.v, pos, scale, shared).view(b, h * d))
        y, hidden = rms_norm(attn, layer.post_attention_layernorm.weight, eps, residual=hidden)
        gate_up = layer.gate_up(y)
        mlp = layer.mlp.down_proj(F.silu(gate_up[:, :inter]) * gate_up[:, inter:])
        norm = layers[i + 1].input_layernorm if i + 1 < len(layers) else llm.model.norm
        y, hidden = rms_norm(mlp, norm.weight, eps, residual=hidden)
    return llm.head(y)
