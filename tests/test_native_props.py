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
@given(image=arrays(max_ndim=3), regions=arrays(max_ndim=3), code=st.sampled_from(["f32", "f16", "bf16", "u8", "x"]))
def test_raw_binding_outputs_never_crash(image, regions, code):
    fmap = np.ones((3, 4, 4), np.float32)
    masks = np.ones((2, 8, 8), np.float32)
    with pytest.raises((ValueError, TypeError, BufferError)) if not _valid_outputs(image, regions, code) else _null():
        _native.cpu().region_pool(fmap, "f32", masks, image, regions, code, 2, 1e-8, 0)


def _valid_outputs(image, regions, code):
    size = {"f32": 4, "f16": 2, "bf16": 2}.get(code)

    def ok(a, shape):
        return a.shape == shape and a.flags.c_contiguous and a.flags.writeable and a.itemsize == size

    return size is not None and ok(image, (4, 3)) and ok(regions, (2, 3))


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
