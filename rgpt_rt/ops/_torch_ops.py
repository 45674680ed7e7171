"""torch custom ops `torch.ops.rgpt.*`, one body per op for CPU and CUDA tensors: every tensor goes to the
native module as a (pointer, dtype, shape, strides, extent) description, and the device alone picks the
module (rgpt_rt._C, or rgpt_rt._C_cuda on torch's current stream) - both take the same call. Fake
implementations let torch.compile and CUDA graphs trace them."""

from __future__ import annotations

from typing import Optional

import torch

from .. import _native
from ._util import DeviceTensor, auto_threads, cuda_module

_registered = False

_CODES = {
    torch.float32: "f32",
    torch.float16: "f16",
    torch.bfloat16: "bf16",
    torch.uint8: "u8",
    torch.int8: "i8",
    torch.int64: "i64",
}
FLOATS = ("f32", "f16", "bf16")


def _code(t: torch.Tensor, name: str, allowed: tuple[str, ...]) -> str:
    code = _CODES.get(t.dtype)
    if code not in allowed:
        raise ValueError(f"{name} has dtype {t.dtype}; expected one of {', '.join(allowed)}")
    return code


def _desc(t: torch.Tensor) -> DeviceTensor:
    """The tensor's description; the extent runs to the end of its storage, which bounds every access."""
    extent = t.untyped_storage().nbytes() // t.element_size() - t.storage_offset()
    return DeviceTensor(t.data_ptr(), _CODES[t.dtype], tuple(t.shape), tuple(t.stride()), extent)


def _same_device(first: torch.Tensor, **others: torch.Tensor | None) -> None:
    for name, t in others.items():
        if t is not None and t.device != first.device:
            raise ValueError(f"{name} must be on {first.device} like the op's first tensor, got {t.device}")


def _run(op: str, device: torch.device, *args, work: int | None = None, workspace: tuple = ()) -> None:
    """Native op `op` on `device`: tensors in `args` are described, the rest passed as they are. work: the
    problem size that picks the CPU thread count (None = all cores); workspace: (name of the module's
    workspace-size function, its arguments) for ops that need CUDA scratch memory."""
    for a in args:
        if isinstance(a, torch.Tensor) and a.device != device:
            raise ValueError(f"{op}: every tensor must be on {device}, got one on {a.device}")
    described = tuple(_desc(a) if isinstance(a, torch.Tensor) else a for a in args)
    if device.type == "cpu":
        getattr(_native.cpu(), op)(*described, threads=0 if work is None else auto_threads(0, work))
    elif device.type == "cuda":
        mod = cuda_module()
        nbytes = getattr(mod, workspace[0])(*workspace[1]) if workspace else 0
        ws = torch.empty(nbytes, dtype=torch.uint8, device=device)  # stream-ordered: safe to free on return
        stream = torch.cuda.current_stream(device).cuda_stream
        getattr(mod, op)(*described, workspace=ws.data_ptr(), workspace_bytes=ws.numel(), stream=stream)
    else:
        raise ValueError(f"{op}: native ops run on cpu and cuda tensors, got {device}")


def _rows(x: torch.Tensor, name: str) -> torch.Tensor:
    if x.dim() < 1 or x.shape[-1] < 1:
        raise ValueError(f"{name} must be [..., D] with D >= 1, got shape {tuple(x.shape)}")
    x2 = x.reshape(-1, x.shape[-1])
    return x2 if x2.stride(-1) == 1 else x2.contiguous()


def _norm(x, weight, eps, residual):
    _code(x, "x", FLOATS)
    _same_device(x, weight=weight, residual=residual)
    x2 = _rows(x, "x")
    y = torch.empty_like(x2, memory_format=torch.contiguous_format)
    r2 = h = None
    if residual is not None:
        if residual.shape != x.shape or residual.dtype != x.dtype:
            got = f"{tuple(residual.shape)}, {residual.dtype}"
            raise ValueError(f"residual must match x ({tuple(x.shape)}, {x.dtype}), got {got}")
        r2, h = _rows(residual, "residual"), torch.empty_like(y)
    w = weight.to(x.dtype).contiguous()
    _run("rms_norm", x.device, x2, w, y, r2, h, eps, work=x2.numel())
    return y.view(x.shape), (None if h is None else h.view(x.shape))


def register() -> None:
    global _registered
    if _registered:
        return
    _registered = True

    @torch.library.custom_op("rgpt::region_pool", mutates_args=())
    def region_pool(
        fmap: torch.Tensor, masks: torch.Tensor, grid: int, eps: float
    ) -> tuple[torch.Tensor, torch.Tensor]:
        _code(fmap, "feature_map", FLOATS)
        if fmap.dim() != 3 or masks.dim() != 3:
            raise ValueError(
                f"region_pool expects feature_map [C, H, W] and masks [N, Hm, Wm], got "
                f"{tuple(fmap.shape)} and {tuple(masks.shape)}"
            )
        if grid < 1:
            raise ValueError(f"image_grid must be >= 1, got {grid}")
        _same_device(fmap, masks=masks)
        m = masks.float()
        (c, h, w), n = fmap.shape, m.shape[0]
        image, regions = fmap.new_empty(grid * grid, c), fmap.new_empty(n, c)
        work = fmap.numel() * max(1, n)
        _run("region_pool", fmap.device, fmap, m, image, regions, grid, eps, work=work,
             workspace=("region_pool_workspace_bytes", (n, h, w, c)))  # fmt: skip
        return image, regions

    @region_pool.register_fake
    def _(fmap, masks, grid, eps):
        _same_device(fmap, masks=masks)
        return fmap.new_empty(grid * grid, fmap.shape[0]), fmap.new_empty(masks.shape[0], fmap.shape[0])

    @torch.library.custom_op("rgpt::int8_linear", mutates_args=())
    def int8_linear(x: torch.Tensor, weight: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        _code(x, "x", FLOATS)
        _code(weight, "weight", ("i8",))
        if x.dim() != 2 or weight.dim() != 2:
            raise ValueError(
                f"int8_linear expects x [M, K] and weight [N, K], got {tuple(x.shape)} and {tuple(weight.shape)}"
            )
        _same_device(x, weight=weight, scale=scale)
        x = x if x.stride(-1) == 1 else x.contiguous()
        y = x.new_empty(x.shape[0], weight.shape[0])
        _run("int8_linear", x.device, x, weight.contiguous(), scale.float().contiguous(), y)
        return y

    @int8_linear.register_fake
    def _(x, weight, scale):
        _same_device(x, weight=weight, scale=scale)
        return x.new_empty(x.shape[0], weight.shape[0])

    @torch.library.custom_op("rgpt::preprocess_frame", mutates_args=())
    def preprocess_frame(
        frame: torch.Tensor,
        size: int,
        mean: list[float],
        std: list[float],
        fill: list[int],
        bgr: bool,
        out_dtype: str,
        resize: bool = False,
    ) -> torch.Tensor:
        _code(frame, "frame", ("u8",))
        if out_dtype not in ("f32", "f16"):
            raise ValueError(f"out_dtype must be 'f32' or 'f16', got {out_dtype!r}")
        dtype = torch.float32 if out_dtype == "f32" else torch.float16
        out = torch.empty(3, size, size, dtype=dtype, device=frame.device)
        side = max(frame.shape[0], frame.shape[1]) if frame.dim() == 3 else 1
        _run("preprocess_frame", frame.device, frame, out, bgr, fill, mean, std, resize, work=side * size * 3,
             workspace=("preprocess_workspace_bytes", (side, size)))  # fmt: skip
        return out

    @preprocess_frame.register_fake
    def _(frame, size, mean, std, fill, bgr, out_dtype, resize=False):
        return frame.new_empty(3, size, size, dtype=torch.float32 if out_dtype == "f32" else torch.float16)

    @torch.library.custom_op("rgpt::preprocess_masks", mutates_args=())
    def preprocess_masks(masks: torch.Tensor, size: int, resize: bool = False) -> torch.Tensor:
        m = masks.float()
        if m.dim() != 3:
            raise ValueError(f"masks must be [N, H, W], got shape {tuple(m.shape)}")
        out = torch.empty(m.shape[0], size, size, dtype=torch.float32, device=m.device)
        side = max(m.shape[1], m.shape[2])
        _run("preprocess_masks", m.device, m, out, resize, work=m.numel(),
             workspace=("preprocess_workspace_bytes", (side, size)))  # fmt: skip
        return out

    @preprocess_masks.register_fake
    def _(masks, size, resize=False):
        return masks.new_empty(masks.shape[0], size, size, dtype=torch.float32)

    @torch.library.custom_op("rgpt::rms_norm", mutates_args=())
    def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
        return _norm(x, weight, eps, None)[0]

    @rms_norm.register_fake
    def _(x, weight, eps):
        _same_device(x, weight=weight)
        return torch.empty_like(x, memory_format=torch.contiguous_format)

    @torch.library.custom_op("rgpt::rms_norm_residual", mutates_args=())
    def rms_norm_residual(
        x: torch.Tensor, residual: torch.Tensor, weight: torch.Tensor, eps: float
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return _norm(x, weight, eps, residual)

    @rms_norm_residual.register_fake
    def _(x, residual, weight, eps):
        _same_device(x, weight=weight, residual=residual)
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
        _code(q, "q", FLOATS)
        _code(k_cache, "k_cache", FLOATS)
        _same_device(q, k=k, v=v, pos=pos, inv_freq=inv_freq, k_cache=k_cache, v_cache=v_cache)
        if pos.dtype != torch.int64:
            raise ValueError(f"pos must be int64, got {pos.dtype}")
        out = torch.empty(q.shape, dtype=q.dtype, device=q.device)
        _run("rope_kv_write", q.device, q, k, v, pos, inv_freq.float().contiguous(), out, k_cache, v_cache)
        return out

    @rope_kv_write.register_fake
    def _(q, k, v, pos, inv_freq, k_cache, v_cache):
        _same_device(q, k=k, v=v, pos=pos, inv_freq=inv_freq, k_cache=k_cache, v_cache=v_cache)
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
        _code(q, "q", FLOATS)
        _code(k_cache, "k_cache", FLOATS)
        _same_device(q, k_cache=k_cache, v_cache=v_cache, pos=pos, shared=shared)
        if pos.dtype != torch.int64 or (shared is not None and shared.dtype != torch.int64):
            raise ValueError(f"pos and shared must be int64, got {pos.dtype}")
        if q.dim() != 3 or k_cache.dim() != 4:
            raise ValueError(
                f"decode_attention expects q [B, H, D] and caches [Bc, Hkv, S, D], got "
                f"{tuple(q.shape)} and {tuple(k_cache.shape)}"
            )
        out = torch.empty(q.shape, dtype=q.dtype, device=q.device)
        (b, h, d), s = q.shape, k_cache.shape[2]
        work = int(pos.clamp(min=0).sum() + pos.numel()) * d * h if q.device.type == "cpu" else 0
        _run("decode_attention", q.device, q, k_cache, v_cache, pos, out, scale, shared, work=work,
             workspace=("decode_attention_workspace_bytes", (b, h, s, d)))  # fmt: skip
        return out

    @decode_attention.register_fake
    def _(q, k_cache, v_cache, pos, scale, shared=None):
        _same_device(q, k_cache=k_cache, v_cache=v_cache, pos=pos, shared=shared)
        return torch.empty(q.shape, dtype=q.dtype, device=q.device)
