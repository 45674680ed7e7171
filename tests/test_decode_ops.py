"""The fused decode ops (rms_norm, rope_kv_write, decode_attention): C++ CPU twins against float64 numpy
references, the torch custom ops (opcheck), and the CUDA twins against the CPU ones when a GPU is present."""

import numpy as np
import pytest
from _reference import assert_close, decode_attention_ref, rms_norm_ref, rope_ref

from rgpt_rt import _native
from rgpt_rt.ops import decode_attention, rms_norm, rope_kv_write


def inv_freq(d, theta=10000.0):
    return (1.0 / theta ** (np.arange(0, d, 2) / d)).astype(np.float32)


# ---- rms_norm ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("m,d", [(1, 16), (5, 4096), (3, 7), (2, 1), (9, 300)])
def test_rms_norm_matches_reference(m, d):
    rng = np.random.default_rng(m * 31 + d)
    x = (rng.standard_normal((m, d)) * 3).astype(np.float32)
    w = rng.standard_normal(d).astype(np.float32)
    r = rng.standard_normal((m, d)).astype(np.float32)
    assert_close(rms_norm(x, w, 1e-5), rms_norm_ref(x, w, 1e-5), 1e-5, 1e-5, "f32")
    y, h = rms_norm(x, w, 1e-5, residual=r)
    np.testing.assert_array_equal(h, x + r)  # one fp32 rounding, like the reference model's add
    assert_close(y, rms_norm_ref(x.astype(np.float64) + r, w, 1e-5), 1e-5, 1e-5, "f32 residual")
    xh, wh, rh = x.astype(np.float16), w.astype(np.float16), r.astype(np.float16)
    yh, hh = rms_norm(xh, wh, 1e-5, residual=rh)
    np.testing.assert_array_equal(hh, xh + rh)
    assert_close(yh, rms_norm_ref(hh, wh, 1e-5), 2e-2, 2e-3, "f16")


def test_rms_norm_strided_rows_keep_guard_bands_and_errors():
    rng = np.random.default_rng(3)
    big = rng.standard_normal((8, 40)).astype(np.float32)
    x, w = big[::2, 4:36], rng.standard_normal(32).astype(np.float32)
    out = np.full((6, 32), 7.0, np.float32)
    _native.cpu().rms_norm(x, w, out[1:5], None, None, 1e-6)
    assert (out[0] == 7).all() and (out[5] == 7).all()
    assert_close(out[1:5], rms_norm_ref(x, w, 1e-6), 1e-5, 1e-5, "strided")
    with pytest.raises(ValueError, match=r"weight must be \[D\] with D = 32"):
        rms_norm(x, w[:31])
    with pytest.raises(ValueError, match="eps must be > 0"):
        rms_norm(x, w, 0.0)
    with pytest.raises(ValueError, match="residual must match x"):
        rms_norm(x, w, residual=x[:2])
    with pytest.raises(ValueError, match="x must have unit stride along D"):
        _native.cpu().rms_norm(big[:, ::2], big[0, :20].copy(), np.zeros((8, 20), np.float32))


# ---- rope_kv_write ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("b,h,kv,d,s", [(1, 4, 2, 16, 9), (3, 32, 32, 128, 40), (2, 8, 1, 64, 5), (4, 2, 2, 2, 3)])
def test_rope_kv_write_matches_reference(b, h, kv, d, s):
    rng = np.random.default_rng(b + h + d)
    qkv = rng.standard_normal((b, (h + 2 * kv) * d)).astype(np.float32)  # a fused projection's output
    q = qkv[:, : h * d].reshape(b, h, d)
    k = qkv[:, h * d : (h + kv) * d].reshape(b, kv, d)
    v = qkv[:, (h + kv) * d :].reshape(b, kv, d)
    pos = rng.integers(0, s, size=b)
    pos[0] = s - 1
    f = inv_freq(d)
    kc = np.full((b + 1, kv, s, d), 5.0, np.float32)
    vc = np.full_like(kc, 6.0)
    qo = rope_kv_write(q, k, v, pos, f, kc, vc)
    assert_close(qo, rope_ref(q, pos, f), 2e-5, 1e-5, "q")
    written = np.zeros(kc.shape, bool)
    for i in range(b):
        written[i, :, pos[i]] = True
        assert_close(kc[i, :, pos[i]], rope_ref(k[i : i + 1], pos[i : i + 1], f)[0], 2e-5, 1e-5, "k")
        np.testing.assert_array_equal(vc[i, :, pos[i]], v[i])
    assert (kc[~written] == 5.0).all() and (vc[~written] == 6.0).all()


def test_rope_kv_write_f16_and_position_errors():
    rng = np.random.default_rng(5)
    q = rng.standard_normal((2, 4, 32)).astype(np.float16)
    k = v = rng.standard_normal((2, 2, 32)).astype(np.float16)
    kc = np.zeros((2, 2, 6, 32), np.float16)
    vc = np.zeros_like(kc)
    f = inv_freq(32)
    qo = rope_kv_write(q, k, v, np.array([0, 5]), f, kc, vc)
    assert_close(qo, rope_ref(q, [0, 5], f), 5e-3, 3e-3, "q f16")
    assert_close(kc[1, :, 5], rope_ref(k[1:], [5], f)[0], 5e-3, 3e-3, "k f16")
    before = kc.copy()
    with pytest.raises(ValueError, match="position is outside the KV cache"):
        rope_kv_write(q, k, v, np.array([1, 6]), f, kc, vc)
    with pytest.raises(ValueError, match="position is outside the KV cache"):
        rope_kv_write(q, k, v, np.array([-1, 0]), f, kc, vc)
    np.testing.assert_array_equal(kc, before)  # nothing written, not even row 0's valid slot
    with pytest.raises(ValueError, match="inv_freq must be"):
        rope_kv_write(q, k, v, np.array([0, 1]), f[:-1], kc, vc)
    with pytest.raises(ValueError, match="k_cache must be"):
        rope_kv_write(q, k, v, np.array([0, 1]), f, kc[:1], vc[:1])
    with pytest.raises(ValueError, match=r"pos must be \[B\] with B = 2"):
        rope_kv_write(q, k, v, np.array([0]), f, kc, vc)


# ---- decode_attention -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "b,h,kv,d,s", [(1, 4, 2, 16, 9), (3, 32, 32, 128, 200), (2, 8, 1, 64, 70), (2, 16, 1, 256, 3), (1, 1, 1, 1, 1)]
)
def test_decode_attention_matches_reference_and_reads_only_the_window(b, h, kv, d, s):
    rng = np.random.default_rng(b * 7 + h + s)
    q = rng.standard_normal((b, h, d)).astype(np.float32)
    kc = (rng.standard_normal((b + 1, kv, s, d)) * 2).astype(np.float32)
    vc = rng.standard_normal((b + 1, kv, s, d)).astype(np.float32)
    pos = rng.integers(0, s, size=b)
    pos[-1] = s - 1
    pos[0] = 0 if b > 1 else pos[0]
    for i in range(b):  # slots past each row's window hold NaN: reading one would poison the output
        kc[i, :, pos[i] + 1 :] = np.nan
        vc[i, :, pos[i] + 1 :] = np.nan
    scale = 1 / np.sqrt(d)
    out = decode_attention(q, kc, vc, pos, scale)
    assert np.isfinite(out).all()
    assert_close(out, decode_attention_ref(q, kc, vc, pos, scale), 1e-5, 1e-4, "attention")


def test_decode_attention_strided_f16_and_errors():
    rng = np.random.default_rng(9)
    qkv = rng.standard_normal((2, 3 * 4 * 32)).astype(np.float16)
    q = qkv[:, : 4 * 32].reshape(2, 4, 32)  # row stride 384: a view of a fused projection
    kc = rng.standard_normal((2, 4, 50, 32)).astype(np.float16)
    vc = rng.standard_normal((2, 4, 50, 32)).astype(np.float16)
    pos = np.array([49, 17])
    out = decode_attention(q, kc, vc, pos, 0.2)
    assert_close(out, decode_attention_ref(q, kc, vc, pos, 0.2), 4e-3, 4e-3, "f16")
    with pytest.raises(ValueError, match="position is outside the KV cache"):
        decode_attention(q, kc, vc, np.array([50, 0]), 0.2)
    with pytest.raises(ValueError, match=r"query heads \(4\) must be a multiple of kv heads \(3\)"):
        decode_attention(q, kc[:, :3], vc[:, :3], pos, 0.2)
    with pytest.raises(ValueError, match="at most 16 query heads per kv head"):
        decode_attention(
            np.zeros((1, 17, 8), np.float32),
            np.zeros((1, 1, 4, 8), np.float32),
            np.zeros((1, 1, 4, 8), np.float32),
            np.array([0]),
            1.0,
        )
    with pytest.raises(ValueError, match=r"head_dim must be in \[1, 256\]"):
        z = np.zeros((1, 1, 4, 257), np.float32)
        decode_attention(np.zeros((1, 1, 257), np.float32), z, z, np.array([0]), 1.0)
    with pytest.raises(ValueError, match="v_cache must have the shape of k_cache"):
        decode_attention(q, kc, vc[:, :, :10], pos, 0.2)


def test_decode_attention_reads_a_shared_prefix_from_row_0():
    rng = np.random.default_rng(21)
    b, h, kv, d, s, prefix = 4, 8, 2, 32, 90, 70
    q = rng.standard_normal((b, h, d)).astype(np.float32)
    kc = rng.standard_normal((b, kv, s, d)).astype(np.float32)
    vc = rng.standard_normal((b, kv, s, d)).astype(np.float32)
    kc[1:, :, :prefix] = kc[:1, :, :prefix]  # what describe_many's prefill leaves: copies of row 0's prefix
    vc[1:, :, :prefix] = vc[:1, :, :prefix]
    pos = np.array([75, 88, 70, 80])
    want = decode_attention_ref(q, kc, vc, pos, 0.2)
    shared = np.full(b, prefix)
    kn, vn = kc.copy(), vc.copy()
    kn[1:, :, :prefix] = np.nan  # with `shared`, the rows' own prefix slots are never read
    vn[1:, :, :prefix] = np.nan
    assert_close(decode_attention(q, kn, vn, pos, 0.2, shared=shared), want, 1e-5, 1e-4, "shared")
    assert_close(decode_attention(q, kc, vc, pos, 0.2, shared=np.zeros(b, np.int64)), want, 1e-5, 1e-4, "shared 0")
    assert np.isnan(decode_attention(q, kn, vn, pos, 0.2)).all(axis=(1, 2))[1:].all()  # without it, they are
    with pytest.raises(ValueError, match=r"shared must be \[B\] with B = 4"):
        decode_attention(q, kc, vc, pos, 0.2, shared=shared[:3])


# ---- torch ops --------------------------------------------------------------------------------------------


def test_torch_ops_match_numpy_and_pass_opcheck():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(11)
    x, w, r = (torch.from_numpy(rng.standard_normal(s).astype(np.float32)) for s in ((3, 1, 24), (24,), (3, 1, 24)))
    y, h = rms_norm(x, w, 1e-6, residual=r)
    assert y.shape == x.shape
    yn, hn = rms_norm(x.numpy(), w.numpy(), 1e-6, residual=r.numpy())
    np.testing.assert_array_equal(y.numpy(), yn)
    np.testing.assert_array_equal(h.numpy(), hn)
    torch.library.opcheck(torch.ops.rgpt.rms_norm.default, (x, w, 1e-6))
    torch.library.opcheck(torch.ops.rgpt.rms_norm_residual.default, (x, r, w, 1e-6))
    yb = rms_norm(x.bfloat16(), w.bfloat16(), 1e-6)
    assert_close(yb.float().numpy(), rms_norm_ref(x.numpy(), w.numpy(), 1e-6), 5e-2, 2e-2, "bf16")

    q, k, v = torch.randn(2, 4, 16), torch.randn(2, 2, 16), torch.randn(2, 2, 16)
    pos, f = torch.tensor([3, 0]), torch.from_numpy(inv_freq(16))
    kc, vc = torch.zeros(2, 2, 8, 16), torch.zeros(2, 2, 8, 16)
    qo = rope_kv_write(q, k, v, pos, f, kc, vc)
    assert_close(qo.numpy(), rope_ref(q.numpy(), [3, 0], f.numpy()), 2e-5, 1e-5, "torch q")
    assert_close(kc[0, :, 3].numpy(), rope_ref(k[:1].numpy(), [3], f.numpy())[0], 2e-5, 1e-5, "torch k")
    torch.library.opcheck(torch.ops.rgpt.rope_kv_write.default, (q, k, v, pos, f, kc, vc))
    o = decode_attention(qo, kc, vc, pos, 0.25)
    assert_close(o.numpy(), decode_attention_ref(qo.numpy(), kc.numpy(), vc.numpy(), [3, 0], 0.25), 1e-5, 1e-4, "t")
    torch.library.opcheck(torch.ops.rgpt.decode_attention.default, (qo, kc, vc, pos, 0.25))
    shared = torch.tensor([2, 2])
    torch.library.opcheck(torch.ops.rgpt.decode_attention.default, (qo, kc, vc, pos, 0.25, shared))


# ---- CUDA twins -------------------------------------------------------------------------------------------


def _cuda_or_skip():
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available() or _native.cuda() is None:
        pytest.skip("needs a CUDA GPU and rgpt_rt built with CUDA")
    return torch


@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
def test_cuda_twins_match_cpu(dtype):
    torch = _cuda_or_skip()
    dt = getattr(torch, dtype)
    tol = dict(rtol=1e-4, atol=1e-4) if dtype == "float32" else dict(rtol=2e-2, atol=2e-2)
    g = torch.Generator().manual_seed(0)
    for m, d in [(1, 4096), (8, 4096), (3, 7), (2, 9000)]:
        x, r = torch.randn(m, d, generator=g).to(dt), torch.randn(m, d, generator=g).to(dt)
        w = torch.randn(d, generator=g).to(dt)
        if d > 8192:
            with pytest.raises(ValueError, match="too large"):
                rms_norm(x.cuda(), w.cuda(), 1e-6)
            continue
        yc, hc = rms_norm(x, w, 1e-6, residual=r)
        yg, hg = rms_norm(x.cuda(), w.cuda(), 1e-6, residual=r.cuda())
        torch.testing.assert_close(hg.cpu(), hc, rtol=0, atol=0)
        torch.testing.assert_close(yg.cpu().float(), yc.float(), **tol)
    for b, h, kv, d, s in [(1, 32, 32, 128, 700), (8, 32, 8, 128, 300), (3, 4, 2, 16, 65), (2, 16, 1, 256, 64)]:
        q, k, v = (torch.randn(b, n, d, generator=g).to(dt) for n in (h, kv, kv))
        pos = torch.randint(0, s, (b,), generator=g)
        pos[0] = s - 1
        f = torch.from_numpy(inv_freq(d))
        kc = torch.randn(b, kv, s, d, generator=g).to(dt)
        vc = torch.randn(b, kv, s, d, generator=g).to(dt)
        kg, vg = kc.cuda(), vc.cuda()
        qc = rope_kv_write(q, k, v, pos, f, kc, vc)
        qg = rope_kv_write(q.cuda(), k.cuda(), v.cuda(), pos.cuda(), f.cuda(), kg, vg)
        torch.testing.assert_close(qg.cpu().float(), qc.float(), **tol)
        torch.testing.assert_close(kg.cpu().float(), kc.float(), **tol)
        torch.testing.assert_close(vg.cpu(), vc, rtol=0, atol=0)
        for i in range(b):  # NaN past the window must not leak in
            kg[i, :, int(pos[i]) + 1 :] = float("nan")
            vg[i, :, int(pos[i]) + 1 :] = float("nan")
        oc = decode_attention(qc, kc, vc, pos, d**-0.5)
        og = decode_attention(qg, kg, vg, pos.cuda(), d**-0.5)
        assert torch.isfinite(og).all()
        torch.testing.assert_close(og.cpu().float(), oc.float(), **tol)
        prefix = int(pos.min()) // 2 + 1  # rows 1.. read their first `prefix` slots from row 0
        kc[1:, :, :prefix], vc[1:, :, :prefix] = kc[:1, :, :prefix], vc[:1, :, :prefix]
        kg[1:, :, :prefix] = vg[1:, :, :prefix] = float("nan")
        kg[:1, :, :prefix], vg[:1, :, :prefix] = kc[:1, :, :prefix].cuda(), vc[:1, :, :prefix].cuda()
        shared = torch.full((b,), prefix)
        oc = decode_attention(qc, kc, vc, pos, d**-0.5, shared=shared)
        og = decode_attention(qg, kg, vg, pos.cuda(), d**-0.5, shared=shared.cuda())
        torch.testing.assert_close(og.cpu().float(), oc.float(), **tol)


def test_cuda_decode_ops_capture_in_a_graph_and_follow_positions():
    torch = _cuda_or_skip()
    b, h, kv, d, s = 2, 8, 2, 64, 256
    q, k, v = (torch.randn(b, n, d, device="cuda") for n in (h, kv, kv))
    pos = torch.tensor([5, 9], device="cuda")
    f = torch.from_numpy(inv_freq(d)).cuda()
    kc, vc = torch.randn(b, kv, s, d, device="cuda"), torch.randn(b, kv, s, d, device="cuda")
    scale = d**-0.5

    def step():
        return decode_attention(rope_kv_write(q, k, v, pos, f, kc, vc), kc, vc, pos, scale)

    step()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = step()
    for p in ([17, 200], [0, 255], [64, 63]):
        pos.copy_(torch.tensor(p))
        graph.replay()
        ref = decode_attention_ref(
            rope_ref(q.cpu().numpy(), p, f.cpu().numpy()), kc.cpu().numpy(), vc.cpu().numpy(), p, scale
        )
        assert_close(out.cpu().numpy(), ref, 1e-4, 1e-4, f"graph replay at {p}")
