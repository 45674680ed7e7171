"""Property tests: random shapes, dtypes and strides thrown at the native bindings never crash the process.

Every call either raises ValueError/TypeError with a message, or succeeds; a success on valid input must
agree with the float64 reference.
"""

import numpy as np
import pytest
from _reference import decode_attention_ref, region_pool_ref, rms_norm_ref, rope_ref
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rgpt_rt import _native
from rgpt_rt.ops import decode_attention, preprocess_frame, preprocess_masks, region_pool, rms_norm, rope_kv_write

DTYPES = [np.float32, np.float16, np.float64, np.int32, np.uint8]


@st.composite
def arrays(draw, max_ndim=4, max_side=7):
    ndim = draw(st.integers(0, max_ndim))
    shape = tuple(draw(st.integers(0, max_side)) for _ in range(ndim))
    steps = tuple(draw(st.integers(1, 3)) for _ in range(ndim))
    dtype = draw(st.sampled_from(DTYPES))
    base = (
        np.random.default_rng(draw(st.integers(0, 2**16))).random(tuple(s * k for s, k in zip(shape, steps)) or ()) * 3
        - 1
    )
    arr = base.astype(dtype)[tuple(slice(None, None, k) for k in steps)] if ndim else base.astype(dtype)
    if ndim > 1 and draw(st.booleans()):
        arr = arr.transpose(draw(st.permutations(range(ndim))))
    if ndim and draw(st.booleans()):
        arr = arr[::-1]
    return arr


SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(fmap=arrays(), masks=arrays(), grid=st.integers(-2, 9))
def test_region_pool_never_crashes(fmap, masks, grid):
    try:
        image, regions = region_pool(fmap, masks, grid)
    except (ValueError, TypeError) as exc:
        assert str(exc)
        return
    m = np.clip(np.asarray(masks, np.float32), 0, None)
    if np.isfinite(fmap.astype(np.float64)).all() and (np.asarray(masks, np.float32) >= 0).all():
        ref_image, _ = region_pool_ref(fmap.astype(np.float32), m, grid)
        tol = 1e-2 if fmap.dtype == np.float16 else 1e-4
        np.testing.assert_allclose(image.astype(np.float64), ref_image, rtol=tol, atol=tol)
    assert regions.shape == (masks.shape[0], fmap.shape[0])


@SETTINGS
@given(frame=arrays(max_side=9), size=st.integers(-1, 12), bgr=st.booleans())
def test_preprocess_frame_never_crashes(frame, size, bgr):
    try:
        out = preprocess_frame(frame, size, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), bgr=bgr)
    except (ValueError, TypeError) as exc:
        assert str(exc)
        return
    assert out.shape == (3, size, size) and np.isfinite(out).all()


@SETTINGS
@given(masks=arrays(max_side=9), size=st.integers(-1, 12))
def test_preprocess_masks_never_crashes(masks, size):
    try:
        out = preprocess_masks(masks, size)
    except (ValueError, TypeError) as exc:
        assert str(exc)
        return
    assert out.shape == (masks.shape[0], size, size)


@SETTINGS
@given(image=arrays(max_ndim=3), regions=arrays(max_ndim=3))
def test_raw_binding_outputs_never_crash(image, regions):
    fmap = np.ones((3, 4, 4), np.float32)
    masks = np.ones((2, 8, 8), np.float32)
    with pytest.raises((ValueError, TypeError, BufferError)) if not _valid_outputs(image, regions) else _null():
        _native.cpu().region_pool(fmap, masks, image, regions, 2, 1e-8)


def _valid_outputs(image, regions):
    def ok(a, shape):
        return a.shape == shape and a.flags.c_contiguous and a.flags.writeable

    return (
        image.dtype in (np.float32, np.float16)
        and regions.dtype == image.dtype
        and ok(image, (4, 3))
        and ok(regions, (2, 3))
    )


class _null:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


# ---- decode ops: near-valid shapes with one or two things wrong ------------------------------------------


@st.composite
def decode_case(draw):
    b, kv = draw(st.integers(0, 3)), draw(st.integers(1, 3))
    h = kv * draw(st.integers(1, 3))
    d, s = draw(st.sampled_from([1, 2, 3, 4, 8, 16])), draw(st.integers(1, 6))
    shapes = {"q": [b, h, d], "k": [b, kv, d], "cache": [b + draw(st.integers(0, 1)), kv, s, d], "pos": [b]}
    for _ in range(draw(st.integers(0, 2))):  # break a dimension
        name = draw(st.sampled_from(sorted(shapes)))
        i = draw(st.integers(0, len(shapes[name]) - 1))
        shapes[name][i] = draw(st.integers(0, 5))
    dtype = draw(st.sampled_from([np.float32, np.float32, np.float16, np.float64]))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))

    def arr(name):
        return rng.standard_normal(shapes[name]).astype(dtype)

    pos = rng.integers(-1, s + 1, size=shapes["pos"])
    if draw(st.booleans()):
        pos = pos.clip(0, s - 1)
    strided = draw(st.booleans())
    q = arr("q")
    if strided and q.ndim == 3 and q.shape[-1] > 1:
        q = np.repeat(q, 2, axis=-1)[..., ::2]  # non-unit stride along D
    return q, arr("k"), arr("k"), arr("cache"), arr("cache"), pos, draw(st.floats(-2, 2))


@SETTINGS
@given(case=decode_case())
def test_decode_attention_never_crashes(case):
    q, _, _, kc, vc, pos, scale = case
    try:
        out = decode_attention(q, kc, vc, pos, scale)
    except (ValueError, TypeError) as exc:
        assert str(exc)
        return
    tol = 2e-2 if q.dtype == np.float16 else 1e-4
    np.testing.assert_allclose(out, decode_attention_ref(q, kc, vc, pos, scale), rtol=tol, atol=tol)


@SETTINGS
@given(case=decode_case())
def test_rope_kv_write_never_crashes(case):
    q, k, v, kc, vc, pos, _ = case
    before = kc.copy()
    f = np.linspace(1.0, 0.01, max(q.shape[-1] // 2, 1) if q.ndim else 1).astype(np.float32)
    try:
        out = rope_kv_write(q, k, v, pos, f, kc, vc)
    except (ValueError, TypeError) as exc:
        assert str(exc)
        np.testing.assert_array_equal(kc, before)  # a refused call writes nothing
        return
    tol = 2e-2 if q.dtype == np.float16 else 1e-5
    np.testing.assert_allclose(out, rope_ref(q, pos, f), rtol=tol, atol=tol)


@SETTINGS
@given(x=arrays(max_ndim=3), w=arrays(max_ndim=2), residual=st.booleans(), eps=st.sampled_from([1e-6, 0.0, -1.0]))
def test_rms_norm_never_crashes(x, w, residual, eps):
    try:
        out = rms_norm(x, w, eps, residual=x.copy() if residual else None)
    except (ValueError, TypeError) as exc:
        assert str(exc)
        return
    y = out[0] if residual else out
    assert y.shape == x.shape
    if np.isfinite(x.astype(np.float64)).all() and x.dtype == np.float32:
        ref = rms_norm_ref(2 * x.astype(np.float64) if residual else x, w.astype(np.float32), eps)
        np.testing.assert_allclose(y, ref, rtol=1e-4, atol=1e-4)


# ---- absurd thread counts, mixed devices, non-integer positions (issue 16, classes 4 and 8) -------------------

HUGE_THREADS = """
import numpy as np
from rgpt_rt.ops import (decode_attention, int8_linear, preprocess_frame, preprocess_masks, quantize_weight,
                         region_pool, rms_norm, rope_kv_write)
rng = np.random.default_rng(0)
frame = rng.integers(0, 256, (37, 53, 3), dtype=np.uint8)
masks = rng.random((3, 37, 53)).astype(np.float32)
fmap = rng.standard_normal((8, 12, 12)).astype(np.float32)
x = rng.standard_normal((5, 32)).astype(np.float32)
q8, s8 = quantize_weight(rng.standard_normal((7, 32)))
q = rng.standard_normal((2, 4, 16)).astype(np.float32)
kv = rng.standard_normal((2, 2, 16)).astype(np.float32)
cache = rng.standard_normal((2, 2, 9, 16)).astype(np.float32)
pos, inv = np.array([3, 8]), np.linspace(1, 0.01, 8).astype(np.float32)
calls = {
    "preprocess_frame": lambda t: preprocess_frame(frame, 40, (0.5,) * 3, (0.25,) * 3, threads=t),
    "preprocess_masks": lambda t: preprocess_masks(masks, 40, threads=t),
    "region_pool": lambda t: region_pool(fmap, masks, 3, threads=t),
    "int8_linear": lambda t: int8_linear(x, q8, s8, threads=t),
    "rms_norm": lambda t: rms_norm(x, x[0], threads=t),
    "rope_kv_write": lambda t: rope_kv_write(q, kv, kv, pos, inv, cache.copy(), cache.copy(), threads=t),
    "decode_attention": lambda t: decode_attention(q, cache, cache, pos, 0.25, threads=t),
}
for name, fn in calls.items():
    one, many = fn(1), fn(100000)
    for a, b in zip(one if isinstance(one, tuple) else [one], many if isinstance(many, tuple) else [many]):
        assert np.array_equal(a, b), name
    print("same", name, flush=True)
"""


def test_a_huge_thread_count_is_clamped_and_never_crashes_the_process(tmp_path):
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-c", HUGE_THREADS], capture_output=True, text=True, cwd=tmp_path, timeout=300
    )
    assert out.returncode == 0, f"exit status {out.returncode}: {out.stdout}{out.stderr[-3000:]}"
    assert out.stdout.count("same") == 7


def test_a_negative_thread_count_is_refused_by_name():
    with pytest.raises(ValueError, match="threads must be >= 0"):
        rms_norm(np.ones((2, 8), np.float32), np.ones(8, np.float32), threads=-3)
    with pytest.raises(ValueError, match="threads must be >= 0"):
        _native.cpu().region_pool(
            np.ones((2, 4, 4), np.float32), np.ones((1, 4, 4), np.float32), np.zeros((4, 2), np.float32),
            np.zeros((1, 2), np.float32), 2, 1e-8, threads=-1,
        )  # fmt: skip


def test_meta_or_mixed_device_tensors_are_refused_never_returned_uninitialised():
    torch = pytest.importorskip("torch")
    from rgpt_rt.ops import int8_linear

    cpu = torch.randn

    def meta(*shape, dtype=torch.float32):
        return torch.empty(*shape, device="meta", dtype=dtype)

    q, k, kc, pos, f = cpu(1, 2, 8), cpu(1, 2, 8), cpu(1, 2, 4, 8), torch.tensor([1]), cpu(4)
    calls = {
        "rms_norm": lambda: rms_norm(cpu(2, 8), meta(8)),
        "rms_norm residual": lambda: rms_norm(cpu(2, 8), cpu(8), residual=meta(2, 8)),
        "region_pool": lambda: region_pool(cpu(4, 6, 6), meta(2, 12, 12), 2),
        "rope_kv_write": lambda: rope_kv_write(q, k, k, pos, f, kc, meta(1, 2, 4, 8)),
        "decode_attention": lambda: decode_attention(meta(1, 2, 8), kc, kc, pos, 0.3),
        "int8_linear": lambda: int8_linear(cpu(2, 8), meta(3, 8, dtype=torch.int8), cpu(3)),
        "preprocess_frame": lambda: preprocess_frame(meta(5, 5, 3, dtype=torch.uint8), 8, (0.5,) * 3, (0.5,) * 3),
        "preprocess_masks": lambda: preprocess_masks(meta(1, 5, 5), 8),
    }
    for name, call in calls.items():
        with pytest.raises(ValueError, match="meta") as err:
            call()
        assert "device" in str(err.value), name
    with pytest.raises(TypeError, match="numpy and torch cannot be mixed"):
        rms_norm(cpu(2, 8), np.ones(8, np.float32))
    # The registered torch ops refuse a mix too (a fake implementation would hand back empty tensors).
    from rgpt_rt.ops._util import torch_op

    with pytest.raises(ValueError, match="must be on cpu like the op's first tensor, got meta"):
        torch_op("rms_norm")(cpu(2, 8), meta(8), 1e-6)
    with pytest.raises(ValueError, match="must be on cpu like the op's first tensor, got meta"):
        torch_op("rope_kv_write")(q, k, k, pos, f, kc, meta(1, 2, 4, 8))


def test_non_integer_positions_are_refused_never_truncated():
    q, kc = np.ones((1, 2, 8), np.float32), np.zeros((1, 2, 4, 8), np.float32)
    inv = np.ones(4, np.float32)
    for pos in ([2.7], np.array([2.0]), [True]):
        with pytest.raises(ValueError, match="pos must hold integer positions"):
            decode_attention(q, kc, kc, pos, 0.3)
        with pytest.raises(ValueError, match="pos must hold integer positions"):
            rope_kv_write(q, q, q, pos, inv, kc.copy(), kc.copy())
    with pytest.raises(ValueError, match="shared must hold integer positions"):
        decode_attention(q, kc, kc, [2], 0.3, shared=[1.5])
    torch = pytest.importorskip("torch")
    with pytest.raises(ValueError, match="must be int64, got torch.float32"):
        decode_attention(torch.from_numpy(q), torch.from_numpy(kc), torch.from_numpy(kc), torch.tensor([2.7]), 0.3)
