"""rgpt_rt.ops.int8_linear (C++ CPU twin; CUDA twin when a GPU is present) against a float64 reference."""

import numpy as np
import pytest
from _reference import assert_close

from rgpt_rt import _native
from rgpt_rt.ops import int8_linear, quantize_weight


def reference(x, q, scale):
    return np.asarray(x, np.float64) @ (q.astype(np.float64) * scale.astype(np.float64)[:, None]).T


@pytest.mark.parametrize("m,k,n", [(1, 19, 23), (3, 64, 17), (8, 4096, 33), (5, 111, 1), (13, 48, 40), (1, 1, 1)])
def test_matches_float64_reference(m, k, n):
    rng = np.random.default_rng(m * 1000 + k + n)
    x = rng.standard_normal((m, k)).astype(np.float32)
    q, scale = quantize_weight(rng.standard_normal((n, k)))
    assert_close(int8_linear(x, q, scale), reference(x, q, scale), atol=1e-4, rtol=1e-5, name="f32")
    xh = x.astype(np.float16)
    assert_close(int8_linear(xh, q, scale), reference(xh, q, scale), atol=5e-2, rtol=2e-3, name="f16")


def test_quantize_weight_by_hand():
    q, s = quantize_weight(np.array([[1.0, -2.0, 0.5], [0.0, 0.0, 0.0]]))
    np.testing.assert_allclose(s, [2.0 / 127, 1.0])
    assert q.tolist() == [[64, -127, 32], [0, 0, 0]]


def test_strided_rows_guard_bands_and_errors():
    rng = np.random.default_rng(0)
    big = rng.standard_normal((6, 40)).astype(np.float32)
    x = big[::2, 3:35]  # row stride 80, unit stride along K
    q, scale = quantize_weight(rng.standard_normal((9, 32)))
    ybuf = np.full((3 + 4, 9), 42.0, np.float32)
    _native.cpu().int8_linear(x, q, scale, ybuf[2:5])
    assert (ybuf[:2] == 42.0).all() and (ybuf[5:] == 42.0).all()
    assert_close(ybuf[2:5], reference(x, q, scale), 1e-4, 1e-5, "strided")
    with pytest.raises(ValueError, match=r"weight must be \[N, K\] with K = 32"):
        int8_linear(x, q[:, :31], scale)
    with pytest.raises(ValueError, match="weight must be int8"):
        int8_linear(x, q.astype(np.int16), scale)
    with pytest.raises(ValueError, match=r"scale must be \[N\] with N = 9"):
        int8_linear(x, q, scale[:8])
    with pytest.raises(ValueError, match="x must have unit stride along K"):
        _native.cpu().int8_linear(big[:3, ::2], q[:, :20].copy(), scale, np.zeros((3, 9), np.float32))


def test_torch_op_and_opcheck():
    torch = pytest.importorskip("torch")
    x = torch.randn(4, 48)
    q, s = quantize_weight(np.random.default_rng(1).standard_normal((24, 48)))
    y = int8_linear(x, torch.from_numpy(q), torch.from_numpy(s))
    assert_close(y.numpy(), reference(x.numpy(), q, s), 1e-4, 1e-5, "torch")
    torch.library.opcheck(torch.ops.rgpt.int8_linear.default, (x, torch.from_numpy(q), torch.from_numpy(s)))


def test_cuda_twin_matches_cpu():
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available() or _native.cuda() is None:
        pytest.skip("needs a CUDA GPU and rgpt_rt built with CUDA")
    rng = np.random.default_rng(2)
    for m, k, n, dtype in [
        (1, 4096, 4096, torch.float16),
        (8, 4096, 1000, torch.bfloat16),
        (3, 100, 7, torch.float32),
        (11, 64, 64, torch.float16),
    ]:
        q, s = quantize_weight(rng.standard_normal((n, k)))
        x = torch.randn(m, k).to(dtype)
        cpu = int8_linear(x, torch.from_numpy(q), torch.from_numpy(s))
        gpu = int8_linear(x.cuda(), torch.from_numpy(q).cuda(), torch.from_numpy(s).cuda())
        torch.testing.assert_close(gpu.cpu().float(), cpu.float(), rtol=2e-2, atol=2e-2)
    # x rows that defeat the 16-byte x loads (row stride not a multiple of 16, odd offset): the scalar x path
    q, s = quantize_weight(rng.standard_normal((40, 256)))
    for dtype in (torch.float16, torch.bfloat16, torch.float32):
        big = torch.randn(5, 256 + 9).to(dtype)
        big_gpu = big.cuda()  # sliced on the device: .cuda() of a slice would copy it contiguous
        for cut in ((slice(None), slice(8, 264)), (slice(None), slice(1, 257)), (slice(0, 1), slice(0, 256))):
            cpu = int8_linear(big[cut], torch.from_numpy(q), torch.from_numpy(s))
            gpu = int8_linear(big_gpu[cut], torch.from_numpy(q).cuda(), torch.from_numpy(s).cuda())
            torch.testing.assert_close(gpu.cpu().float(), cpu.float(), rtol=2e-2, atol=2e-2)
