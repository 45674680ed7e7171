"""A table of bad inputs: each gives a typed error whose message names the problem; none crashes."""

import io

import numpy as np
import pytest
from PIL import Image

from rgpt_rt.errors import FrameError, MaskError, PromptError
from rgpt_rt.inputs import Box, Polygon

H, W = 60, 80
GOOD = np.full((H, W, 3), 128, np.uint8)
BOX = (10, 10, 40, 40)


def _truncated_file(tmp_path, fmt="PNG", cut=20):
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (H, W, 3), dtype=np.uint8)).save(buf, format=fmt)
    data = buf.getvalue()
    p = tmp_path / f"truncated.{fmt.lower()}"
    p.write_bytes(data[: len(data) - cut])  # loses the end of the image data
    return p


INSTR = "Provide a short description of <region>."
CASES = [
    # (id, call(rt, tmp_path), error type, message pattern)
    ("frame 2-D", lambda rt, tp: rt.ask(GOOD[..., 0], INSTR, BOX), FrameError, r"HxWx3 array, got shape \(60, 80\)"),
    ("frame RGBA", lambda rt, tp: rt.ask(np.zeros((H, W, 4), np.uint8), INSTR, BOX), FrameError, "drop the alpha"),
    ("frame float", lambda rt, tp: rt.ask(GOOD.astype(np.float32), INSTR, BOX), FrameError, "must be uint8.*float32"),
    ("frame empty", lambda rt, tp: rt.ask(np.zeros((0, 5, 3), np.uint8), INSTR, BOX), FrameError, "frame is empty"),
    ("frame type", lambda rt, tp: rt.ask(42, INSTR, BOX), FrameError, "unsupported frame type int"),
    ("corrupt bytes", lambda rt, tp: rt.ask(b"\x89PNG not really", INSTR, BOX), FrameError, "cannot decode image"),
    (
        "truncated png",
        lambda rt, tp: rt.ask(_truncated_file(tp), INSTR, BOX),
        FrameError,
        "cannot decode image.*truncated",
    ),
    (
        "truncated jpeg",
        lambda rt, tp: rt.ask(_truncated_file(tp, "JPEG", 2000), INSTR, BOX),
        FrameError,
        "cannot decode image.*truncated",
    ),
    ("missing file", lambda rt, tp: rt.ask(tp / "nope.jpg", INSTR, BOX), FrameError, "image file not found"),
    (
        "mask size",
        lambda rt, tp: rt.ask(GOOD, INSTR, np.ones((H, W + 1), bool)),
        MaskError,
        "mask size 81x60 .* differs from the frame's 80x60",
    ),
    (
        "mask ndim",
        lambda rt, tp: rt.ask(GOOD, INSTR, np.ones((1, 1, H, W), bool)),
        MaskError,
        r"\[H, W\] or \[N, H, W\]",
    ),
    ("mask range", lambda rt, tp: rt.ask(GOOD, INSTR, np.full((H, W), 1.5, np.float32)), MaskError, r"in \[0, 1\]"),
    ("mask nan", lambda rt, tp: rt.ask(GOOD, INSTR, np.full((H, W), np.nan, np.float32)), MaskError, "NaN"),
    ("mask dtype", lambda rt, tp: rt.ask(GOOD, INSTR, np.ones((H, W), np.int64)), MaskError, "dtype int64"),
    (
        "empty mask",
        lambda rt, tp: rt.ask(GOOD, INSTR, np.zeros((H, W), bool)),
        MaskError,
        "region 0 .* is empty.*allow_empty_masks",
    ),
    (
        "too many placeholders",
        lambda rt, tp: rt.ask(GOOD, "Is <region> near <region>?", BOX),
        PromptError,
        "2 <region> placeholders but 1 region masks",
    ),
    (
        "too few placeholders",
        lambda rt, tp: rt.ask(GOOD, INSTR, [BOX, (0, 0, 5, 5)]),
        PromptError,
        "1 <region> placeholders but 2 region masks",
    ),
    ("no placeholder", lambda rt, tp: rt.ask(GOOD, "What is here?", BOX), PromptError, "0 <region> placeholders but 1"),
    (
        "describe with two regions",
        lambda rt, tp: rt.describe(GOOD, [BOX, (0, 0, 5, 5)]),
        PromptError,
        r"describe\(\) takes one region, got 2; use describe_many",
    ),
    (
        "image token in instruction",
        lambda rt, tp: rt.ask(GOOD, "<image> and <region>", BOX),
        PromptError,
        "must not contain <image>",
    ),
    (
        "prompt too long",
        lambda rt, tp: rt.ask(GOOD, INSTR + " more" * 2000, BOX),
        PromptError,
        r"prompt is \d+ tokens .* context is 1024",
    ),
    ("unknown task", lambda rt, tp: rt.describe(GOOD, BOX, task="poem"), PromptError, "unknown describe task 'poem'"),
    ("inverted box", lambda rt, tp: rt.ask(GOOD, INSTR, Box(40, 10, 10, 40)), MaskError, "empty or inverted"),
    ("box outside", lambda rt, tp: rt.ask(GOOD, INSTR, (100, 100, 120, 120)), MaskError, "outside the 80x60 frame"),
    ("polygon 2 points", lambda rt, tp: rt.ask(GOOD, INSTR, Polygon([(0, 0), (5, 5)])), MaskError, "at least 3 points"),
    (
        "rle wrong size",
        lambda rt, tp: rt.ask(GOOD, INSTR, {"size": [10, 10], "counts": [50, 50]}),
        MaskError,
        "RLE size 10x10 .* differs",
    ),
    (
        "rle corrupt",
        lambda rt, tp: rt.ask(GOOD, INSTR, {"size": [H, W], "counts": "!!!!"}),
        MaskError,
        "invalid character",
    ),
    ("region type", lambda rt, tp: rt.ask(GOOD, INSTR, "the car"), MaskError, "unsupported region type str"),
    ("refer without masks", lambda rt, tp: rt.refer(GOOD, [], "the car"), PromptError, "at least one region"),
    ("empty vocabulary", lambda rt, tp: rt.classify(GOOD, BOX, vocabulary=[]), PromptError, "non-empty list"),
    (
        "bad temperature",
        lambda rt, tp: rt.ask(GOOD, INSTR, BOX, temperature=-1),
        ValueError,
        "temperature must be >= 0",
    ),
    ("bad top_p", lambda rt, tp: rt.ask(GOOD, INSTR, BOX, top_p=0), ValueError, r"top_p must be in \(0, 1\]"),
    ("bad max_new_tokens", lambda rt, tp: rt.ask(GOOD, INSTR, BOX, max_new_tokens=0), ValueError, "positive integer"),
    ("unknown option", lambda rt, tp: rt.ask(GOOD, INSTR, BOX, beams=4), TypeError, "unknown generation option.*beams"),
]


@pytest.mark.parametrize("name,call,exc,pattern", CASES, ids=[c[0] for c in CASES])
def test_bad_input_gives_a_clear_error(rt_llava, tmp_path, name, call, exc, pattern):
    with pytest.raises(exc, match=pattern):
        call(rt_llava, tmp_path)


def test_runtime_still_works_after_every_bad_input(rt_llava, tmp_path):
    before = rt_llava.generate(GOOD, INSTR, BOX, max_new_tokens=4).token_ids
    for _, call, exc, _ in CASES:
        with pytest.raises(exc):
            call(rt_llava, tmp_path)
    assert rt_llava.generate(GOOD, INSTR, BOX, max_new_tokens=4).token_ids == before  # same answer as before


def test_reentrant_call_from_an_open_stream_is_refused(rt_llava):
    expected = rt_llava.ask(GOOD, INSTR, BOX, max_new_tokens=2)
    stream = rt_llava.stream(GOOD, INSTR, BOX, max_new_tokens=30)
    next(stream)
    with pytest.raises(RuntimeError, match="already generating in this thread"):
        rt_llava.ask(GOOD, INSTR, BOX, max_new_tokens=2)
    stream.close()
    assert rt_llava.ask(GOOD, INSTR, BOX, max_new_tokens=2) == expected  # the closed stream left no state behind
