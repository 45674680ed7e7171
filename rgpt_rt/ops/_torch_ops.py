"""torch custom ops `torch.ops.rgpt.*`: CPU through rgpt_rt._C, CUDA through rgpt_rt._C_cuda on torch's
current stream, with fake (meta) implementations so torch.compile and CUDA graphs can trace them."""

from __future__ import annotations

import torch

from .. import _native
from ._util import auto_threads

_registered = False

_CODES = {
    torch.float32: "f32",
    torch.float16: "f16",
    torch.bfloat16: "bf16",
    torch.uint8: "u8",
    torch.int8: "i8",
    torch.int64: "i64",
}


def _code(t: torch.Tensor, name: str, allowed: tuple[str, ...]) -> str:
    code = _CODES.get(t.dtype)
    if code not in allowed:
        raise ValueError(f"{name} has dtype {t.dtype}; expected one of {', '.join(allowed)}")
    return code


def _np(t: torch.Tensor):
    """A numpy view of a CPU tensor (16-bit floats as int16 bit patterns: numpy has no bfloat16)."""
    t = t.detach()
    if t.dtype in (torch.float16, torch.bfloat16):
        t = t.view(torch.int16)
    return t.numpy()


def _cuda_module():
    mod = _native.cuda()
    if mod is None:
        raise RuntimeError(
            "CUDA tensors need rgpt_rt._C_cuda, and this build has none (no nvcc at build time, or "
            "RGPT_CPU_ONLY); rebuild with a CUDA toolkit, or pass CPU tensors"
        )
    return mod


def _dev(t: torch.Tensor, name: str) -> tuple:
    """(pointer, dtype code, shape, strides, extent in elements to the end of the allocation)."""
    extent = t.untyped_storage().nbytes() // t.element_size() - t.storage_offset()
    return t.data_ptr(), _CODES[t.dtype], list(t.shape), list(t.stride()), extent


def _same_device(a: torch.Tensor, b: torch.Tensor, names: str) -> None:
    if a.device != b.device:
        raise ValueError(f"{names} must be on the same device, got {a.device} and {b.device}")


def register() -> None:
    global _registered
    if _registered:
        return
    _registered = True

    @torch.library.custom_op("rgpt::region_pool", mutates_args=())
    def region_pool(
        fmap: torch.Tensor, masks: torch.Tensor, grid: int, eps: float
    ) -> tuple[torch.Tensor, torch.Tensor]:
        code = _code(fmap, "feature_map", ("f32", "f16", "bf16"))
        if fmap.dim() != 3 or masks.dim() != 3:
            raise ValueError(
                f"region_pool expects feature_map [C, H, W] and masks [N, Hm, Wm], got "
                f"{tuple(fmap.shape)} and {tuple(masks.shape)}"
            )
        if grid < 1:
            raise ValueError(f"image_grid must be >= 1, got {grid}")
        _same_device(fmap, masks, "feature_map and masks")
        m = masks.float()
        c = fmap.shape[0]
        image = fmap.new_empty(grid * grid, c)
        regions = fmap.new_empty(masks.shape[0], c)
        if fmap.device.type == "cuda":
            mod = _cuda_module()
            n, h, w = m.shape[0], fmap.shape[1], fmap.shape[2]
            ws = torch.empty(mod.region_pool_workspace_bytes(n, h, w, c), dtype=torch.uint8, device=fmap.device)
            stream = torch.cuda.current_stream(fmap.device).cuda_stream
            mod.region_pool(
                _dev(fmap, "feature_map"),
                _dev(m, "masks"),
                _dev(image, "image"),
                _dev(regions, "regions"),
                grid,
                eps,
                ws.data_ptr(),
                ws.numel(),
                stream,
            )
        else:
            _native.cpu().region_pool(
                _np(fmap),
                code,
                _np(m),
                _np(image),
                _np(regions),
                code,
                grid,
                eps,
                auto_threads(0, fmap.numel() * max(1, m.shape[0])),
            )
        return image, regions

    @region_pool.register_fake
    def _(fmap, masks, grid, eps):
        return fmap.new_empty(grid * grid, fmap.shape[0]), fmap.new_empty(masks.shape[0], fmap.shape[0])

    @torch.library.custom_op("rgpt::int8_linear", mutates_args=())
    def int8_linear(x: torch.Tensor, weight: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        _code(x, "x", ("f32", "f16", "bf16"))
        _code(weight, "weight", ("i8",))
        if x.dim() != 2 or weight.dim() != 2:
            raise ValueError(
                f"int8_linear expects x [M, K] and weight [N, K], got {tuple(x.shape)} and {tuple(weight.shape)}"
            )
        _same_device(x, weight, "x and weight")
        if x.stride(-1) != 1:
            x = x.contiguous()
        s = scale.float().contiguous()
        y = x.new_empty(x.shape[0], weight.shape[0])
        if x.device.type == "cuda":
            mod = _cuda_module()
            mod.int8_linear(
                _dev(x, "x"),
                _dev(weight.contiguous(), "weight"),
                _dev(s, "scale"),
                _dev(y, "y"),
                torch.cuda.current_stream(x.device).cuda_stream,
            )
        else:
            _native.cpu().int8_linear(_np(x), _CODES[x.dtype], weight.contiguous().numpy(), s.numpy(), _np(y), 0)
        return y

    @int8_linear.register_fake
    def _(x, weight, scale):
        return x.new_empty(x.shape[0], weight.shape[0])

    @torch.library.custom_op("rgpt::preprocess_frame", mutates_args=())
    def preprocess_frame(
        frame: torch.Tensor, size: int, mean: list[float], std: list[float], fill: list[int], bgr: bool, out_dtype: str
    ) -> torch.Tensor:
        _code(frame, "frame", ("u8",))
        if out_dtype not in ("f32", "f16"):
            raise ValueError(f"out_dtype must be 'f32' or 'f16', got {out_dtype!r}")
        out = torch.empty(
            3, size, size, dtype=torch.float32 if out_dtype == "f32" else torch.float16, device=frame.device
        )
        if frame.device.type == "cuda":
            mod = _cuda_module()
            side = max(frame.shape[0], frame.shape[1]) if frame.dim() == 3 else 1
            ws = torch.empty(mod.preprocess_workspace_bytes(side, size), dtype=torch.uint8, device=frame.device)
            mod.preprocess_frame(
                _dev(frame, "frame"),
                _dev(out, "out"),
                bgr,
                fill,
                mean,
                std,
                ws.data_ptr(),
                ws.numel(),
                torch.cuda.current_stream(frame.device).cuda_stream,
            )
        else:
            _native.cpu().preprocess_frame(
                _np(frame), _np(out), out_dtype, bgr, fill, mean, std, auto_threads(0, max(frame.shape[:2]) * size * 3)
            )
        return out

    @preprocess_frame.register_fake
    def _(frame, size, mean, std, fill, bgr, out_dtype):
        return frame.new_empty(3, size, size, dtype=torch.float32 if out_dtype == "f32" else torch.float16)

    @torch.library.custom_op("rgpt::preprocess_masks", mutates_args=())
    def preprocess_masks(masks: torch.Tensor, size: int) -> torch.Tensor:
        m = masks.float()
        if m.dim() != 3:
            raise ValueError(f"masks must be [N, H, W], got shape {tuple(m.shape)}")
        out = torch.empty(m.shape[0], size, size, dtype=torch.float32, device=m.device)
        if m.device.type == "cuda":
            mod = _cuda_module()
            side = max(m.shape[1], m.shape[2])
            ws = torch.empty(mod.preprocess_workspace_bytes(side, size), dtype=torch.uint8, device=m.device)
            mod.preprocess_masks(
                _dev(m, "masks"),
                _dev(out, "out"),
                ws.data_ptr(),
                ws.numel(),
                torch.cuda.current_stream(m.device).cuda_stream,
            )
        else:
            _native.cpu().preprocess_masks(_np(m), _np(out), auto_threads(0, m.numel()))
        return out

    @preprocess_masks.register_fake
    def _(masks, size):
        return masks.new_empty(masks.shape[0], size, size, dtype=torch.float32)

    from ._torch_decode_ops import register_decode_ops

    register_decode_ops(_code, _np, _dev, _cuda_module, _same_device)
