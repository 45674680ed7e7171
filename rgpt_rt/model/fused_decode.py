"""The one-token decode step on the native decode ops (rgpt_rt.ops): the fast path of the torch backend.

Per layer: rms_norm (fused with the residual add of the previous sub-block), the layer's q/k/v projection
(Attention.project), rope_kv_write (rotary embedding of q and k + the KV-cache write at each row's position),
decode_attention (reads only each row's window of the cache), o_proj, rms_norm with the residual add, the
layer's MLP. It computes what Llama.forward computes for one token per row (same rounding
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
    """Give every decoder layer's attention one q/k/v projection and its MLP one gate/up projection
        (idempotent); the fused decode step uses them, the reference forward keeps the original modules, which hold
    views of the fused weights."""
    for layer in llm.model.layers:
        a, m = layer.self_attn, layer.mlp
        if a.qkv is None:
            a.qkv = _Fused([a.q_proj, a.k_proj, a.v_proj])
            m.gate_up = _Fused([m.gate_proj, m.up_proj])


def fused_decode_step(llm, tok: torch.Tensor, pos: torch.Tensor, shared: torch.Tensor | None = None) -> torch.Tensor:
    """tok [B] int64, pos [B] int64 (each row's position, inside the cache) -> logits [B, V].

    Needs fuse_projections_(llm) and llm.setup_caches(); row b writes cache row b at pos[b]. shared [B] int64
    (optional): row b's first shared[b] cache slots are copies of row 0's, and attention reads them there.
    The layer's own pieces do the projections and the MLP; the native ops replace the norms (fused with the
    residual adds), the rotary embedding + cache write, and the attention over each row's window.
    """
    cfg = llm.cfg
    b = tok.shape[0]
    h, d = cfg.num_heads, cfg.head_dim
    eps, scale = cfg.rms_norm_eps, 1.0 / math.sqrt(d)
    layers = llm.model.layers
    hidden = llm.embed(tok)  # [B, Dm], the residual stream
    y = rms_norm(hidden, layers[0].input_layernorm.weight, eps)
    for i, layer in enumerate(layers):
        attn = layer.self_attn
        cache = attn.kv_cache
        q, k, v = attn.project(y[:, None], fused=True)  # [B, H, 1, D], [B, Hkv, 1, D]: views of one fused projection
        q = rope_kv_write(q[:, :, 0], k[:, :, 0], v[:, :, 0], pos, llm.inv_freq, cache.k, cache.v)
        out = attn.o_proj(decode_attention(q, cache.k, cache.v, pos, scale, shared).view(b, h * d))
        y, hidden = rms_norm(out, layer.post_attention_layernorm.weight, eps, residual=hidden)
        norm = layers[i + 1].input_layernorm if i + 1 < len(layers) else llm.model.norm
        y, hidden = rms_norm(layer.mlp(y, fused=True), norm.weight, eps, residual=hidden)
    return llm.head(y)
