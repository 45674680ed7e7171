"""CUDA twins against the CPU twins (and Pillow). Skipped without a CUDA GPU and a CUDA build."""

import pytest

torch = pytest.importorskip("torch")

from rgpt_rt import _native  # noqa: E402
from rgpt_rt.config import CLIP_MEAN, CLIP_STD  # noqa: E402
from rgpt_rt.ops import (  # noqa: E402
    DeviceTensor,
    preprocess_frame,
    preprocess_masks,
    region_pool,
    region_pool_device,
    region_pool_workspace_bytes,
)

pytestmark = pytest.mark.skipif(
    not torch.cuda.is_available() or _native.cuda() is None,
    reason="needs a CUDA GPU visible to torch and rgpt_rt built with CUDA",
)


def test_probe_runs_the_compiled_sm_code():
    assert _native.cuda().probe(4096) == [3 * i + 1 for i in range(4096)]


@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-5), (torch.float16, 2e-3), (torch.bfloat16, 1.6e-2)])
@pytest.mark.parametrize(
    "case",
    [(19, 23, 17, 56, 40, 5, 3), (64, 96, 96, 336, 336, 24, 32), (8, 20, 20, 70, 70, 5, 0), (5, 6, 6, 30, 30, 8, 64)],
)
def test_region_pool_cuda_matches_cpu(case, dtype, tol):
    c, h, w, hm, wm, g, n = case
    gen = torch.Generator().manual_seed(sum(case))
    fmap = torch.randn(c, h, w, generator=gen).to(dtype)
    masks = torch.rand(n, hm, wm, generator=gen)
    if n >= 2:
        masks[0] = 0
        masks[1] = 1
    cpu = region_pool(fmap, masks, g)
    gpu = region_pool(fmap.cuda(), masks.cuda(), g)
    torch.cuda.synchronize()
    for a, b in zip(gpu, cpu):
        torch.testing.assert_close(a.cpu().float(), b.float(), rtol=tol, atol=tol)
    if n >= 2:
        assert not gpu[1][0].any()


def test_region_pool_cuda_non_contiguous_and_guard_bands():
    base = torch.randn(40, 12, 60, device="cuda")
    fmap = base.permute(1, 0, 2)[:, :, ::2]  # [12, 40, 30] strided
    masks = torch.rand(6, 80, 60, device="cuda")[::2]
    got = region_pool(fmap, masks, 5)
    ref = region_pool(fmap.cpu(), masks.cpu(), 5)
    for a, b in zip(got, ref):
        torch.testing.assert_close(a.cpu(), b, rtol=1e-5, atol=1e-5)
    # Guard bands: outputs carved from a larger allocation keep their sentinels (through the device-pointer
    # entry the trt backend uses).
    c, g, n, pad = 12, 5, 3, 64
    img = torch.full((g * g * c + 2 * pad,), 7.0, device="cuda")
    reg = torch.full((n * c + 2 * pad,), -7.0, device="cuda")
    image = img[pad : pad + g * g * c].view(g * g, c)
    regions = reg[pad : pad + n * c].view(n, c)
    m = masks.contiguous()
    ws = torch.empty(region_pool_workspace_bytes(n, 40, 30, c), dtype=torch.uint8, device="cuda")

    def dev(t, code):
        extent = t.untyped_storage().nbytes() // t.element_size() - t.storage_offset()
        return DeviceTensor(t.data_ptr(), code, tuple(t.shape), tuple(t.stride()), extent)

    stream = torch.cuda.current_stream().cuda_stream
    region_pool_device(
        dev(fmap, "f32"), dev(m, "f32"), dev(image, "f32"), dev(regions, "f32"), g, 1e-8, dev(ws, "u8"), stream
    )
    torch.cuda.synchronize()
    assert (img[:pad] == 7.0).all() and (img[-pad:] == 7.0).all()
    assert (reg[:pad] == -7.0).all() and (reg[-pad:] == -7.0).all()
    torch.testing.assert_close(image.cpu(), ref[0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(regions.cpu(), ref[1], rtol=1e-5, atol=1e-5)
    # A view claiming more memory than its allocation is refused before launch.
    bad = dev(fmap, "f32")._replace(shape=(12, 40, 31))
    with pytest.raises(ValueError, match="reaches element"):
        region_pool_device(bad, dev(m, "f32"), dev(image, "f32"), dev(regions, "f32"), g, 1e-8, dev(ws, "u8"), stream)


@pytest.mark.parametrize("hw", [(1080, 1920), (333, 127), (336, 336), (40, 30)])
def test_preprocess_cuda_equals_cpu(hw):
    frame = torch.randint(0, 256, (*hw, 3), dtype=torch.uint8)
    cpu = preprocess_frame(frame, 336, CLIP_MEAN, CLIP_STD)
    gpu = preprocess_frame(frame.cuda(), 336, CLIP_MEAN, CLIP_STD)
    torch.testing.assert_close(gpu.cpu(), cpu, rtol=0, atol=0)
    half = preprocess_frame(frame.cuda(), 336, CLIP_MEAN, CLIP_STD, bgr=True, out_dtype="f16")
    torch.testing.assert_close(
        half.cpu(), preprocess_frame(frame, 336, CLIP_MEAN, CLIP_STD, bgr=True, out_dtype="f16"), rtol=0, atol=0
    )
    masks = torch.rand(3, *hw)
    torch.testing.assert_close(
        preprocess_masks(masks.cuda(), 336).cpu(), preprocess_masks(masks, 336), rtol=0, atol=1e-7
    )


@pytest.mark.parametrize("hw,s", [((360, 640), 384), ((640, 360), 384), ((170, 128), 103), ((23, 17), 70)])
def test_preprocess_resize_cuda_equals_cpu(hw, s):
    """image_aspect_ratio "resize": the stretch (both pass orders) and the nearest-neighbour masks, bit-exact."""
    frame = torch.randint(0, 256, (*hw, 3), dtype=torch.uint8)
    cpu = preprocess_frame(frame, s, CLIP_MEAN, CLIP_STD, mode="resize")
    gpu = preprocess_frame(frame.cuda(), s, CLIP_MEAN, CLIP_STD, mode="resize")
    torch.testing.assert_close(gpu.cpu(), cpu, rtol=0, atol=0)
    masks = torch.rand(3, *hw)
    masks[0] = (masks[0] > 0.5).float()
    torch.testing.assert_close(
        preprocess_masks(masks.cuda(), s, mode="resize").cpu(),
        preprocess_masks(masks, s, mode="resize"),
        rtol=0,
        atol=0,
    )


def test_region_pool_captures_in_a_cuda_graph():
    fmap = torch.randn(32, 24, 24, device="cuda", dtype=torch.float16)
    masks = torch.rand(4, 96, 96, device="cuda")
    region_pool(fmap, masks, 6)  # warm-up (registers the op, allocator pools)
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = region_pool(fmap, masks, 6)
    fmap.copy_(torch.randn_like(fmap))
    graph.replay()
    torch.cuda.synchronize()
    ref = region_pool(fmap.cpu(), masks.cpu(), 6)
    for a, b in zip(out, ref):
        torch.testing.assert_close(a.cpu().float(), b.float(), rtol=2e-3, atol=2e-3)
