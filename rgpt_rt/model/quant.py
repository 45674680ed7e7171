"""Weight-only int8 for the decoder's linear layers in the torch backend (rgpt_rt.ops.int8_linear)."""

from __future__ import annotations

import torch
from torch import nn

from ..ops import int8_linear


class Int8Linear(nn.Module):
    """y = x @ (q * scale[:, None]).T with q int8 [N, K] per output channel.

    Decode (up to 8 rows) runs the native kernel, which reads the int8 weight once; longer inputs (prefill,
    compute-bound) multiply by the dequantised weight instead.
    """

    def __init__(self, linear: nn.Linear):
        super().__init__()
        w = linear.weight.detach().float()
        scale = (w.abs().amax(dim=1) / 127.0).clamp(min=1e-12)
        self.register_buffer("q", torch.clamp(torch.round(w / scale[:, None]), -127, 127).to(torch.int8))
        self.register_buffer("scale", scale)
        self.in_features, self.out_features = linear.in_features, linear.out_features

    @classmethod
    def concat(cls, mods: list[Int8Linear]) -> Int8Linear:
        """One Int8Linear whose output columns are those of `mods` in order (per-channel scales concatenate)."""
        fused = cls.__new__(cls)
        nn.Module.__init__(fused)
        fused.register_buffer("q", torch.cat([m.q for m in mods]))
        fused.register_buffer("scale", torch.cat([m.scale for m in mods]))
        fused.in_features, fused.out_features = mods[0].in_features, sum(m.out_features for m in mods)
        return fused

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        x2 = x.reshape(-1, shape[-1])
        if x2.shape[0] <= 8:
            y = int8_linear(x2, self.q, self.scale)
        else:
            y = x2 @ (self.q.to(x2.dtype) * self.scale.to(x2.dtype)[:, None]).T
        return y.reshape(*shape[:-1], self.out_features)


@torch.no_grad()
def quantize_decoder_(model) -> int:
    """Replace q/k/v/o and gate/up/down of every decoder layer by Int8Linear in place; returns the count."""
    count = 0
    for layer in model.llm.model.layers:
        for parent, names in (
            (layer.self_attn, ("q_proj", "k_proj", "v_proj", "o_proj")),
            (layer.mlp, ("gate_proj", "up_proj", "down_proj")),
        ):
            for name in names:
                setattr(parent, name, Int8Linear(getattr(parent, name)))
                count += 1
    return count
