"""Hostile inputs to the input layer (issue 16, classes 5 and 9): a few bytes that declare a huge image or mask
must be refused before anything of that size is allocated, and plain mistakes in regions give typed errors.

"No allocation before validation" is measured, not assumed: numpy's allocations are traced with tracemalloc;
Pillow's are not, so those cases run in a subprocess whose address space is capped below the declared size
(an allocation of that size then fails with MemoryError instead of succeeding, and the test sees it).
"""

import json
import os
import struct
import subprocess
import sys
import textwrap
import tracemalloc
import zlib

import numpy as np
import pytest

from rgpt_rt.errors import FrameError, MaskError
from rgpt_rt.inputs import Box, Polygon, load_frame, rle_decode, rle_encode, to_masks
from rgpt_rt.inputs import frames as frames_mod
from rgpt_rt.inputs import regions as regions_mod

H, W = 60, 80


def png_header_only(width: int, height: int) -> bytes:
    """A valid PNG signature and IHDR that declare width x height RGB, and one tiny IDAT: a few dozen bytes."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 16)) + chunk(b"IEND", b"")
    )


def _peak_bytes(fn) -> tuple[int, BaseException | None]:
    tracemalloc.start()
    err = None
    try:
        fn()
    except BaseException as exc:  # noqa: BLE001 - returned to the test, which checks its type
        err = exc
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak, err


def _run_capped(code: str, cap_bytes: int = 1 << 30) -> subprocess.CompletedProcess:
    """Run `code` in a fresh interpreter whose address space may grow by at most `cap_bytes` after the imports.
    It runs outside the checkout (cwd /), so it imports the installed rgpt_rt as the tests do."""
    prog = textwrap.dedent(
        f"""
        import resource, sys
        import numpy as np
        import PIL.Image
        import rgpt_rt.inputs
        from rgpt_rt.errors import FrameError, MaskError

        def vm_bytes():
            with open("/proc/self/status") as f:
                for line in f:
                    if line.startswith("VmSize:"):
                        return int(line.split()[1]) * 1024
        limit = vm_bytes() + {cap_bytes}
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        """
    ) + textwrap.dedent(code)
    return subprocess.run([sys.executable, "-c", prog], capture_output=True, text=True, timeout=120, cwd="/")


# ---- class 5: declared sizes are checked before allocating -------------------------------------------------


def test_no_allocation_before_rle_size_is_checked_against_the_frame():
    # 5000 x 5000 declared (25 MB of mask) against a 80x60 frame: the size mismatch must come first.
    rle = {"size": [5000, 5000], "counts": [25_000_000]}
    peak, err = _peak_bytes(lambda: to_masks(rle, (H, W)))
    assert isinstance(err, MaskError) and "5000x5000" in str(err) and "80x60" in str(err), err
    assert peak < 1 << 20, f"{peak / 1e6:.1f} MB allocated before the RLE size was compared with the frame"


def test_no_allocation_before_rle_size_is_checked_against_the_limit(monkeypatch):
    # rle_decode alone (no frame to compare with) still refuses a size beyond the documented frame limit.
    monkeypatch.setattr(frames_mod, "MAX_FRAME_PIXELS", 1_000_000)
    rle = {"size": [3000, 3000], "counts": [9_000_000]}
    peak, err = _peak_bytes(lambda: rle_decode(rle))
    assert isinstance(err, MaskError), err
    assert "limit" in str(err) and "RGPT_MAX_FRAME_PIXELS" in str(err), err
    assert peak < 1 << 20, f"{peak / 1e6:.1f} MB allocated before the RLE size was compared with the limit"


def test_rle_claiming_100000_squared_is_refused_under_a_memory_cap():
    # The case: 9.3 GiB allocated before any check. Under a 1 GiB cap that allocation cannot happen.
    r = _run_capped(
        """
        rle = {"size": [100000, 100000], "counts": [10**10]}
        try:
            rgpt_rt.inputs.to_masks(rle, (60, 80))
        except MaskError as exc:
            print("MaskError", exc)
        """
    )
    assert r.returncode == 0 and r.stdout.startswith("MaskError"), r.stdout + r.stderr


@pytest.mark.parametrize("side", [20000, 10000])
def test_png_header_claiming_a_huge_frame_is_a_frame_error_before_decoding(side):
    # 20000^2 trips Pillow's own bomb check (untyped today); 10000^2 is under Pillow's error threshold and
    # over ours, so only our check keeps Pillow from allocating 300 MB for it.
    data = png_header_only(side, side)
    assert len(data) < 100
    r = _run_capped(
        f"""
        data = bytes.fromhex("{data.hex()}")
        try:
            rgpt_rt.inputs.load_frame(data)
        except FrameError as exc:
            print("FrameError", exc)
        """,
        cap_bytes=200 << 20,
    )
    assert r.returncode == 0 and r.stdout.startswith("FrameError"), r.stdout + r.stderr
    assert "limit" in r.stdout and "RGPT_MAX_FRAME_PIXELS" in r.stdout, r.stdout
    if side == 10000:  # under Pillow's own ceiling, our check sees the declared size first
        assert f"{side}x{side}" in r.stdout, r.stdout


def test_png_header_over_the_limit_is_refused_from_a_file_path(tmp_path):
    p = tmp_path / "bomb.png"
    p.write_bytes(png_header_only(20000, 20000))
    with pytest.raises(FrameError, match="limit"):
        load_frame(p)


def test_frame_over_the_limit_names_the_limit_and_how_to_raise_it(monkeypatch):
    monkeypatch.setattr(frames_mod, "MAX_FRAME_PIXELS", 1000)
    frame = np.zeros((H, W, 3), np.uint8)  # 4800 pixels
    for source in (frame, png_header_only(W, H)):
        with pytest.raises(FrameError) as info:
            load_frame(source)
        msg = str(info.value)
        assert "80x60" in msg and "1000" in msg and "RGPT_MAX_FRAME_PIXELS" in msg, msg
    monkeypatch.setattr(frames_mod, "MAX_FRAME_PIXELS", 4800)
    assert load_frame(frame).shape == (H, W, 3)


def test_frame_limit_is_read_from_the_environment():
    code = "import rgpt_rt.inputs.frames as f; print(f.MAX_FRAME_PIXELS)"
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**os.environ, "RGPT_MAX_FRAME_PIXELS": "12345"},
        cwd="/",
    )
    assert out.stdout.strip() == "12345", out.stderr
    bad = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**os.environ, "RGPT_MAX_FRAME_PIXELS": "lots"},
        cwd="/",
    )
    assert bad.returncode != 0 and "RGPT_MAX_FRAME_PIXELS" in bad.stderr


def test_no_allocation_before_the_region_count_is_checked(monkeypatch):
    # 1000 boxes (a few kB of input) on a 1920x1080 frame would be 8.3 GB of float32 masks; the default limit is
    # 4 GiB. The limit is set first, so that code without the check fails here instead of allocating.
    monkeypatch.setattr(regions_mod, "MAX_MASK_BYTES", 4 << 30)
    boxes = [(0, 0, 10, 10)] * 1000
    peak, err = _peak_bytes(lambda: to_masks(boxes, (1080, 1920)))
    assert isinstance(err, MaskError), err
    assert "1000 regions" in str(err) and "RGPT_MAX_MASK_BYTES" in str(err), err
    assert peak < 1 << 20, f"{peak / 1e6:.1f} MB allocated before the region count was checked"
    monkeypatch.setattr(regions_mod, "MAX_MASK_BYTES", 10 * H * W * 4)
    assert to_masks([(0, 0, 10, 10)] * 10, (H, W)).shape == (10, H, W)
    with pytest.raises(MaskError, match="11 regions"):
        to_masks([(0, 0, 10, 10)] * 9 + [np.ones((2, H, W), bool)], (H, W))


# ---- class 9: plain mistakes in regions are typed errors ----------------------------------------------------


@pytest.mark.parametrize(
    "region",
    [
        ("a", 0, 10, 10),
        (0, 0, None, 10),
        [0, "10", 20, 30],
        (0, 0, 10, b"x"),
        (True, 0, 10, 10),
    ],
    ids=["str", "None", "numeric-string", "bytes", "bool"],
)
def test_box_tuple_with_a_non_numeric_coordinate_is_a_mask_error_naming_it(region):
    with pytest.raises(MaskError, match="box coordinate"):
        to_masks(region, (H, W))


@pytest.mark.parametrize("coords", [("a", 0, 10, 10), (0, 0, None, 10), (0, 0, 10, [1]), (0, 0, 10, {"x": 1})])
def test_box_object_with_a_non_numeric_coordinate_is_a_mask_error_naming_it(coords):
    with pytest.raises(MaskError, match="box coordinate"):
        to_masks(Box(*coords), (H, W))


def test_numpy_scalars_and_integral_floats_are_accepted_box_coordinates():
    ref = to_masks((10, 10, 40, 30), (H, W))
    for box in [(np.int64(10), np.float32(10), np.uint8(40), 30.0), Box(np.int32(10), 10, 40, np.float64(30))]:
        np.testing.assert_array_equal(to_masks(box, (H, W)), ref)


@pytest.mark.parametrize(
    "points",
    [
        [("a", 1), (2, 3), (4, 5)],
        [(0, 0), (1, None), (4, 5)],
        [(0, 0), (1, 2, 3), (4, 5)],  # ragged
        None,
        "abc",
        [[object(), 1], [2, 3], [4, 5]],
    ],
    ids=["str", "None-coordinate", "ragged", "None", "string", "object"],
)
def test_polygon_with_non_numeric_points_is_a_mask_error(points):
    with pytest.raises(MaskError, match="polygon"):
        Polygon(points)


def _good_counts():
    return rle_encode(np.pad(np.ones((10, 10), bool), ((5, H - 15), (5, W - 15))), compressed=False)["counts"]


@pytest.mark.parametrize(
    "rle,pattern",
    [
        ({"size": [H, W], "counts": 4800}, "counts"),
        ({"size": [H, W], "counts": None}, "counts"),
        ({"size": [H, W], "counts": {"a": 4800}}, "counts"),
        ({"size": [H, W], "counts": ["4800"]}, "counts"),
        ({"size": [H, W], "counts": [4799.5, 0.5]}, "counts"),
        ({"size": [H, W], "counts": [True] * 4800}, "counts"),
        ({"size": "6080", "counts": [4800]}, "size"),
        ({"size": [60.5, 80], "counts": [4840]}, "size"),
        ({"size": [-60, -80], "counts": [4800]}, "size"),
        ({"size": [H, W, 3], "counts": [4800]}, "size"),
        ({"size": None, "counts": [4800]}, "size"),
    ],
    ids=[
        "counts-int",
        "counts-None",
        "counts-dict",
        "counts-strings",
        "counts-fractions",
        "counts-bools",
        "size-string",
        "size-fraction",
        "size-negative",
        "size-3d",
        "size-None",
    ],
)
def test_rle_fields_of_the_wrong_type_are_mask_errors_naming_the_field(rle, pattern):
    with pytest.raises(MaskError, match=pattern):
        to_masks(rle, (H, W))


def test_rle_counts_as_numpy_integers_and_bytes_still_decode():
    counts = _good_counts()
    ref = to_masks({"size": [H, W], "counts": counts}, (H, W))
    np.testing.assert_array_equal(to_masks({"size": [H, W], "counts": np.asarray(counts, np.int64)}, (H, W)), ref)
    compressed = rle_encode(ref[0] > 0)
    as_bytes = {"size": compressed["size"], "counts": compressed["counts"].encode()}
    np.testing.assert_array_equal(to_masks(as_bytes, (H, W)), ref)
    # and a JSON round trip (what an annotation file gives) decodes the same
    np.testing.assert_array_equal(to_masks(json.loads(json.dumps(compressed)), (H, W)), ref)
