"""The CUDA module's bindings on any machine where rgpt_rt._C_cuda was built, GPU or not: the
arguments are parsed and validated on the host before any launch (bad shapes raise ValueError naming the
problem), and without a GPU a valid call reaches the launch and comes back as a RuntimeError, not a crash.
The pointers are host memory; they are never dereferenced on the host, and a launch is only attempted where
no GPU exists."""

import re

import numpy as np
import pytest

from rgpt_rt import _native

mod = _native.cuda()
pytestmark = pytest.mark.skipif(mod is None, reason="rgpt_rt was built without CUDA")


def dev(shape, dtype, code):
    a = np.zeros(shape, dtype)
    return (a.ctypes.data, code, list(a.shape), [s // a.itemsize for s in a.strides], a.size), a


@pytest.fixture
def t():
    keep = {}

    def make(name, shape, dtype=np.float32, code="f32"):
        desc, arr = dev(shape, dtype, code)
        keep[name] = arr  # the memory outlives the call
        return desc

    return make


def _launch_or_skip():
    if mod.device_count() > 0:
        pytest.skip("a GPU is present: host pointers must not reach a kernel there")


def test_decode_attention_binding(t):
    q, kc, pos, out = t("q", (2, 4, 16)), t("kc", (2, 2, 8, 16)), t("pos", 2, np.int64, "i64"), t("o", (2, 4, 16))
    with pytest.raises(ValueError, match="workspace missing"):
        mod.decode_attention(q, kc, kc, pos, out, 0.25, None)
    with pytest.raises(ValueError, match=r"query heads \(3\) must be a multiple of kv heads \(2\)"):
        mod.decode_attention(t("q3", (2, 3, 16)), kc, kc, pos, out, 0.25, None)
    with pytest.raises(ValueError, match=r"shared must be \[B\] with B = 2"):
        mod.decode_attention(q, kc, kc, pos, out, 0.25, t("sh", 3, np.int64, "i64"))
    with pytest.raises(ValueError, match="pos has dtype f32"):
        mod.decode_attention(q, kc, kc, t("pf", 2), out, 0.25, None)
    need = mod.decode_attention_workspace_bytes(2, 4, 8, 16)
    assert need == 2 * 4 * 1 * (16 + 2) * 4
    _launch_or_skip()
    ws = t("ws", need // 4)
    with pytest.raises(RuntimeError, match="decode_attention: CUDA error"):
        mod.decode_attention(q, kc, kc, pos, out, 0.25, pos, workspace=ws[0], workspace_bytes=need, stream=0)


def test_rope_kv_write_binding(t):
    q, k, pos, f = t("q", (2, 4, 16)), t("k", (2, 2, 16)), t("pos", 2, np.int64, "i64"), t("f", 8)
    kc = t("kc", (2, 2, 8, 16))
    with pytest.raises(ValueError, match=r"inv_freq must be \[D/2\] = \[8\]"):
        mod.rope_kv_write(q, k, k, pos, t("f7", 7), t("qo", (2, 4, 16)), kc, kc)
    ptr, code, _, _, extent = t("kct", (2, 2, 8, 16))
    transposed = (ptr, code, [2, 2, 8, 16], [256, 16, 32, 1], extent)  # slots and heads swapped in memory
    with pytest.raises(ValueError, match=r"k_cache \(an output\) must be row-major contiguous"):
        mod.rope_kv_write(q, k, k, pos, f, t("qo", (2, 4, 16)), transposed, kc)
    _launch_or_skip()
    with pytest.raises(RuntimeError, match="rope_kv_write: CUDA error"):
        mod.rope_kv_write(q, k, k, pos, f, t("qo", (2, 4, 16)), kc, kc, stream=0)


def test_rms_norm_binding(t):
    x, w, y = t("x", (3, 32)), t("w", 32), t("y", (3, 32))
    with pytest.raises(ValueError, match=r"weight must be \[D\] with D = 32"):
        mod.rms_norm(x, t("w31", 31), y, None, None, 1e-6)
    with pytest.raises(ValueError, match="residual must have the shape of x"):
        mod.rms_norm(x, w, y, t("r", (2, 32)), None, 1e-6)
    with pytest.raises(ValueError, match="too large"):
        mod.rms_norm(t("xb", (1, 9000)), t("wb", 9000), t("yb", (1, 9000)), None, None, 1e-6)
    _launch_or_skip()
    with pytest.raises(RuntimeError, match="rms_norm: CUDA error"):
        mod.rms_norm(x, w, y, t("r2", (3, 32)), t("s", (3, 32)), 1e-6, stream=0)


def test_older_op_bindings_take_device_tensor_tuples(t):
    x, q, s, y = t("x", (2, 32)), t("q", (8, 32), np.int8, "i8"), t("s", 8), t("y", (2, 8))
    with pytest.raises(ValueError, match=r"scale must be \[N\] with N = 8"):
        mod.int8_linear(x, q, t("s7", 7), y)
    fmap, masks = t("f", (4, 6, 6)), t("m", (2, 12, 12))
    with pytest.raises(ValueError, match=r"regions output must be \[2, 4\]"):
        mod.region_pool(fmap, masks, t("i", (4, 4)), t("r", (3, 4)), 2, 1e-8)
    frame = t("fr", (5, 7, 3), np.uint8, "u8")
    with pytest.raises(ValueError, match=r"output must be \[3, S, S\]"):
        mod.preprocess_frame(frame, t("o", (3, 4, 5)), False, [0, 0, 0], [0.5] * 3, [0.5] * 3)
    with pytest.raises(ValueError, match=r"output must be \[N, S, S\] with N = 2"):
        mod.preprocess_masks(masks, t("om", (1, 4, 4)))
    _launch_or_skip()
    with pytest.raises(RuntimeError, match="int8_linear: CUDA error"):
        mod.int8_linear(x, q, s, y, stream=0)


def test_region_pool_device_entry_reaches_the_cuda_binding_in_its_call_form(t):
    """rgpt_rt.ops.region_pool_device (the trt backend's entry) passes the binding's exact call form: the
    descriptions are parsed and validated, and a valid call gets as far as the launch."""
    from rgpt_rt.ops import DeviceTensor, region_pool_device, region_pool_workspace_bytes

    def d(name, shape, code="f32", dtype=np.float32):
        return DeviceTensor(*t(name, shape, dtype, code))

    fmap, masks, image, regions = d("f", (4, 6, 6)), d("m", (2, 12, 12)), d("i", (4, 4)), d("r", (2, 4))
    need = region_pool_workspace_bytes(2, 6, 6, 4)
    ws = d("ws", (max(need, 1),), "u8", np.uint8)
    with pytest.raises(ValueError, match=r"regions output must be \[2, 4\]"):
        region_pool_device(fmap, masks, image, d("r3", (3, 4)), 2, 1e-8, ws, 0)
    with pytest.raises(ValueError, match="reaches element"):
        region_pool_device(fmap._replace(shape=(4, 6, 7)), masks, image, regions, 2, 1e-8, ws, 0)
    _launch_or_skip()
    with pytest.raises(RuntimeError, match="region_pool: CUDA error"):
        region_pool_device(fmap, masks, image, regions, 2, 1e-8, ws, 0)


OPS = ["region_pool", "preprocess_frame", "preprocess_masks", "int8_linear", "rms_norm", "rope_kv_write",
       "decode_attention", "region_pool_workspace_bytes", "preprocess_workspace_bytes",
       "decode_attention_workspace_bytes"]  # fmt: skip


@pytest.mark.parametrize("op", OPS)
def test_every_cuda_binding_has_the_cpu_bindings_call_form(op):
    """Both modules compile one binding per op (csrc/ops/bind_<op>.h): the same Python signature, so the CPU
    tests of rgpt_rt.ops exercise the call form the CUDA path uses."""
    cpu = _native.cpu()
    assert getattr(mod, op).__doc__.splitlines()[0] == getattr(cpu, op).__doc__.splitlines()[0]
    if not op.endswith("workspace_bytes"):
        assert re.search(r"\*, threads: .*, workspace: .*, workspace_bytes: .*, stream: ", getattr(mod, op).__doc__)


def test_the_cuda_module_refuses_host_buffers(t):
    masks, fmap = t("m", (2, 12, 12)), np.zeros((4, 6, 6), np.float32)
    with pytest.raises(ValueError, match="feature_map is a host buffer"):
        mod.region_pool(fmap, masks, t("i", (4, 4)), t("r", (2, 4)), 2, 1e-8)


def test_every_torch_op_call_form_passes_cuda_validation_and_reaches_the_launch(monkeypatch):
    """The torch glue's arguments for each op (recorded on CPU tensors, where they also run) replayed against
    rgpt_rt._C_cuda as the CUDA branch of rgpt_rt.ops._torch_ops._run sends them: every call is accepted,
    validated, and fails only at the launch (no GPU here)."""
    torch = pytest.importorskip("torch")
    from rgpt_rt.config import CLIP_MEAN, CLIP_STD
    from rgpt_rt.ops import (
        _torch_ops,
        decode_attention,
        int8_linear,
        preprocess_frame,
        preprocess_masks,
        region_pool,
        rms_norm,
        rope_kv_write,
    )

    calls, real = [], _torch_ops._run

    def record(op, device, *args, work=None, workspace=()):
        calls.append((op, args, workspace))
        real(op, device, *args, work=work, workspace=workspace)

    monkeypatch.setattr(_torch_ops, "_run", record)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 16, generator=g)
    region_pool(torch.randn(8, 6, 6, generator=g, dtype=torch.float64).half(), torch.rand(2, 12, 12), 3)
    preprocess_frame(torch.randint(0, 256, (9, 7, 3), dtype=torch.uint8), 8, CLIP_MEAN, CLIP_STD)
    preprocess_masks(torch.rand(2, 9, 7), 8)
    int8_linear(x, torch.randint(-127, 127, (5, 16), dtype=torch.int8), torch.rand(5))
    rms_norm(x, torch.rand(16))
    rms_norm(x.bfloat16(), torch.rand(16), residual=x.bfloat16())
    q, kv, cache, pos = torch.randn(2, 4, 8), torch.randn(2, 2, 8), torch.zeros(2, 2, 6, 8), torch.tensor([1, 3])
    rope_kv_write(q, kv, kv, pos, torch.rand(4), cache, cache.clone())
    decode_attention(q, cache, cache, pos, 0.3, shared=torch.tensor([1, 1]))
    ops = [c[0] for c in calls]
    assert sorted(set(ops)) == sorted(
        [
            "region_pool",
            "preprocess_frame",
            "preprocess_masks",
            "int8_linear",
            "rms_norm",
            "rope_kv_write",
            "decode_attention",
        ]  # fmt: skip
    )
    _launch_or_skip()
    for op, args, workspace in calls:
        described = tuple(_torch_ops._desc(a) if isinstance(a, torch.Tensor) else a for a in args)
        nbytes = getattr(mod, workspace[0])(*workspace[1]) if workspace else 0
        ws = np.zeros(max(nbytes, 1), np.uint8)
        with pytest.raises(RuntimeError, match=f"{op}: CUDA error"):
            getattr(mod, op)(*described, workspace=ws.ctypes.data, workspace_bytes=nbytes, stream=0)
