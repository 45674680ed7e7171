"""torch custom ops for the fused decode step: `torch.ops.rgpt.rms_norm`, `rms_norm_residual`,
`rope_kv_write` (mutates the caches) and `decode_attention`. Registered by rgpt_rt.ops._torch_ops.register()."""

from __future__ import annotations

from typing import Optional

import torch

from .. import _native
from ._util import auto_threads

FLOATS = ("f32", "f16", "bf16")


def register_decode_ops(code, np_view, dev, cuda_module, same_device) -> None:
    """Define the decode ops with the helpers of _torch_ops (dtype codes, numpy views, device descriptors)."""

    def rows(x: torch.Tensor, name: str) -> torch.Tensor:
        if x.dim() < 1 or x.shape[-1] < 1:
            raise ValueError(f"{name} must be [..., D] with D >= 1, got shape {tuple(x.shape)}")
        x2 = x.reshape(-1, x.shape[-1])
        return x2 if x2.stride(-1) == 1 else x2.contiguous()

    def norm(x, weight, eps, residual):
        t = code(x, "x", FLOATS)
        x2 = rows(x, "x")
        w = weight.to(x.dtype).contiguous()
        same_device(x, weight, "x and weight")
        y = torch.empty_like(x2, memory_format=torch.contiguous_format)
        r2 = None
        h = None
        if residual is not None:
            same_device(x, residual, "x and residual")
            if residual.shape != x.shape or residual.dtype != x.dtype:
                got = f"{tuple(residual.shape)}, {residual.dtype}"
                raise ValueError(f"residual must match x ({tuple(x.shape)}, {x.dtype}), got {got}")
            r2 = rows(residual, "residual")
            h = torch.empty_like(y)
        if x.device.type == "cuda":
            cuda_module().rms_norm(
                dev(x2, "x"),
                dev(w, "weight"),
                dev(y, "output"),
                None if r2 is None else dev(r2, "residual"),
                None if h is None else dev(h, "sum"),
                eps,
                torch.cuda.current_stream(x.device).cuda_stream,
            )
        else:
            _native.cpu().rms_norm(
                np_view(x2),
                t,
                np_view(w),
                np_view(y),
                None if r2 is None else np_view(r2),
                None if h is None else np_view(h),
                eps,
                auto_threads(0, x2.numel()),
            )
        return y.view(x.shape), (None if h is None else h.view(x.shape))

    @torch.library.custom_op("rgpt::rms_norm", mutates_args=())
    def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
        return norm(x, weight, eps, None)[0]

    @rms_norm.register_fake
    def _(x, weight, eps):
        return torch.empty_like(x, memory_format=torch.contiguous_format)

    @torch.library.custom_op("rgpt::rms_norm_residual", mutates_args=())
    def rms_norm_residual(
        x: torch.Tensor, residual: torch.Tensor, weight: torch.Tensor, eps: float
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return norm(x, weight, eps, residual)

    @rms_norm_residual.register_fake
    def _(x, residual, weight, eps):
        return (
            torch.empty_like(x, memory_format=torch.contiguous_format),
            torch.empty_like(x, memory_format=torch.contiguous_format),
        )

    @torch.library.custom_op("rgpt::rope_kv_write", mutates_args=("k_cache", "v_cache"))
    def rope_kv_write(
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        pos: torch.Tensor,
        inv_freq: torch.Tensor,
        k_cache: torch.Tensor,
        v_cache: torch.Tensor,
    ) -> torch.Tensor:
        t = code(q, "q", FLOATS)
        ct = code(k_cache, "k_cache", FLOATS)
        for other, names in ((k, "q and k"), (v, "q and v"), (pos, "q and pos"), (k_cache, "q and k_cache")):
            same_device(q, other, names)
        if pos.dtype != torch.int64:
            raise ValueError(f"pos must be int64, got {pos.dtype}")
        out = torch.empty(q.shape, dtype=q.dtype, device=q.device)
        inv = inv_freq.float().contiguous()
        if q.device.type == "cuda":
            cuda_module().rope_kv_write(
                dev(q, "q"),
                dev(k, "k"),
                dev(v, "v"),
                dev(pos, "pos"),
                dev(inv, "inv_freq"),
                dev(out, "q output"),
                dev(k_cache, "k_cache"),
                dev(v_cache, "v_cache"),
                torch.cuda.current_stream(q.device).cuda_stream,
            )
        else:
            _native.cpu().rope_kv_write(
                np_view(q),
                np_view(k),
                np_view(v),
                t,
                pos.numpy(),
                inv.numpy(),
                np_view(out),
                np_view(k_cache),
                np_view(v_cache),
                ct,
            )
        return out

    @rope_kv_write.register_fake
    def _(q, k, v, pos, inv_freq, k_cache, v_cache):
        return torch.empty(q.shape, dtype=q.dtype, device=q.device)

    @torch.library.custom_op("rgpt::decode_attention", mutates_args=())
    def decode_attention(
        q: torch.Tensor,
        k_cache: torch.Tensor,
        v_cache: torch.Tensor,
        pos: torch.Tensor,
        scale: float,
        shared: Optional[torch.Tensor] = None,  # noqa: UP045 - the spelling every torch release can infer
    ) -> torch.Tensor:
        t = code(q, "q", FLOATS)
        ct = code(k_cache, "k_cache", FLOATS)
        for other, names in ((k_cache, "q and k_cache"), (v_cache, "q and v_cache"), (pos, "q and pos")):
            same_device(q, other, names)
        if pos.dtype != torch.int64 or (shared is not None and shared.dtype != torch.int64):
            raise ValueError(f"pos and shared must be int64, got {pos.dtype}")
        if shared is not None:
            same_device(q, shared, "q and shared")
        out = torch.empty(q.shape, dtype=q.dtype, device=q.device)
        if q.device.type == "cuda":
            mod = cuda_module()
            if q.dim() != 3 or k_cache.dim() != 4:
                raise ValueError(
                    f"decode_attention expects q [B, H, D] and caches [Bc, Hkv, S, D], got "
                    f"{tuple(q.shape)} and {tuple(k_cache.shape)}"
                )
            b, h, d = q.shape
            ws = torch.empty(
                mod.decode_attention_workspace_bytes(b, h, k_cache.shape[2], d), dtype=torch.uint8, device=q.device
            )
            mod.decode_attention(
                dev(q, "q"),
                dev(k_cache, "k_cache"),
                dev(v_cache, "v_cache"),
                dev(pos, "pos"),
                dev(out, "output"),
                scale,
                None if shared is None else dev(shared, "shared"),
                ws.data_ptr(),
                ws.numel(),
                torch.cuda.current_stream(q.device).cuda_stream,
            )
        else:
            work = int(pos.clamp(min=0).sum() + pos.numel()) * q.shape[-1] * (q.shape[1] if q.dim() == 3 else 1)
            _native.cpu().decode_attention(
                np_view(q),
                t,
                np_view(k_cache),
                np_view(v_cache),
                ct,
                pos.numpy(),
                np_view(out),
                scale,
                None if shared is None else shared.numpy(),
                auto_threads(0, work),
            )
        return out

    @decode_attention.register_fake
    def _(q, k_cache, v_cache, pos, scale, shared=None):
        return torch.empty(q.shape, dtype=q.dtype, device=q.device)
