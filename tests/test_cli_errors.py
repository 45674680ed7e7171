"""The command line as a new user meets it: every failure is one line `rgpt-rt: error: ...` that names the problem,
with a non-zero exit status, and no traceback (unless --debug). Each case runs `python -m rgpt_rt` in a fresh
process, outside the checkout."""

import json
import os
import subprocess
import sys

import pytest
import torch

from rgpt_rt.assets import SAMPLE_IMAGE

IMAGE = str(SAMPLE_IMAGE)
# Simulates an install without torch in the child process (find_spec and import both see no torch).
NO_TORCH = "import sys; sys.modules['torch'] = None; from rgpt_rt.cli import main; sys.exit(main(sys.argv[1:]))"


def rgpt_rt(*args: str, cwd, code: str | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if k != "RGPT_RT_DEBUG"}
    cmd = [sys.executable, "-c", code, *args] if code else [sys.executable, "-m", "rgpt_rt", *args]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, env={**base, **(env or {})}, timeout=300)


def assert_one_line_error(out: subprocess.CompletedProcess, status: int, *fragments: str, absent=()) -> str:
    lines = out.stderr.splitlines()
    assert out.returncode == status, (out.returncode, out.stderr)
    assert len(lines) == 1 and lines[0].startswith("rgpt-rt: error: "), out.stderr
    for f in fragments:
        assert f in lines[0], (f, lines[0])
    for f in absent:
        assert f not in lines[0], (f, lines[0])
    assert out.stdout == ""
    return lines[0]


@pytest.fixture(scope="module")
def engine(tiny_llava, tmp_path_factory):
    from build_engine.builder import build

    return build(tiny_llava, tmp_path_factory.mktemp("cli_engine") / "eng", log=lambda s: None)


def test_point2_light_install_messages(tiny_llava, engine, tmp_path):
    demo = rgpt_rt("demo", cwd=tmp_path, code=NO_TORCH, env={"RGPT_RT_CACHE": str(tmp_path)})
    assert_one_line_error(demo, 1, "needs torch", "pip install 'rgpt_rt[torch]'")
    ckpt = rgpt_rt("describe", IMAGE, "--box", "0,0,50,50", "--model", str(tiny_llava), cwd=tmp_path, code=NO_TORCH)
    assert_one_line_error(ckpt, 1, "is a checkpoint directory", "torch is not installed", "rgpt_rt[torch]")
    # an engine directory runs without torch (onnxruntime is a base dependency)
    ok = rgpt_rt("describe", IMAGE, "--box", "0,0,50,50", "--model", str(engine), "--max-new-tokens", "3", "--json",
                 cwd=tmp_path, code=NO_TORCH)  # fmt: skip
    assert ok.returncode == 0, ok.stderr
    assert len(json.loads(ok.stdout)["token_ids"]) == 3 and "torch" not in ok.stderr


def test_point3_errors_are_one_line_and_debug_shows_the_traceback(tiny_llava, tmp_path):
    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU: --device cuda succeeds")
    args = ["describe", IMAGE, "--box", "0,0,50,50", "--model", str(tiny_llava), "--device", "cuda"]
    assert_one_line_error(rgpt_rt(*args, cwd=tmp_path), 1, "no CUDA GPU")
    debug = rgpt_rt(*args, "--debug", cwd=tmp_path)  # (RGPT_RT_DEBUG=1: tests/test_cli.py, in process)
    assert debug.returncode == 1 and "Traceback (most recent call last)" in debug.stderr
    assert debug.stderr.splitlines()[-1].startswith("rgpt-rt: error: ") and "no CUDA GPU" in debug.stderr
    assert_one_line_error(rgpt_rt(cwd=tmp_path), 2, "required: {describe,ask,demo}", "rgpt-rt --help")
    assert_one_line_error(rgpt_rt("describe", cwd=tmp_path), 2, "required", "rgpt-rt describe --help")


def test_point4_demo_accepts_force_and_help_names_the_cache(tmp_path):
    help_ = rgpt_rt("demo", "--help", cwd=tmp_path)
    assert help_.returncode == 0 and "--force" in help_.stdout and "RGPT_RT_CACHE" in help_.stdout
    assert "RGPT_RT_CACHE" in rgpt_rt("--help", cwd=tmp_path).stdout
    assert_one_line_error(rgpt_rt("demo", "--frce", cwd=tmp_path), 2, "unrecognized arguments: --frce")


def test_point5_empty_masks_name_the_cli_flag(tiny_llava, tmp_path):
    out = rgpt_rt("describe", IMAGE, "--box", "0,0,0.4,0.4", "--model", str(tiny_llava), cwd=tmp_path)
    assert_one_line_error(out, 2, "--box 0,0,0.4,0.4 is empty", "--allow-empty-masks", absent=["allow_empty_masks="])


def test_point6_negative_boxes_parse_and_outside_boxes_are_named(tiny_llava, tmp_path):
    for spelling in (["--box", "-10,-10,-5,-5"], ["--box=-10,-10,-5,-5"]):  # parsed, then found outside the image
        out = rgpt_rt("describe", IMAGE, *spelling, "--model", str(tiny_llava), cwd=tmp_path)
        assert_one_line_error(out, 2, "--box -10,-10,-5,-5", "outside the 320x240", absent=["expected one argument"])
    out = rgpt_rt("describe", IMAGE, "--box", "-10,-10,5", "--model", str(tiny_llava), cwd=tmp_path)
    assert_one_line_error(out, 2, "--box takes 4 numbers x0,y0,x1,y1, got 3")
    out = rgpt_rt("describe", IMAGE, "--box", "50,50,10,10", "--model", str(tiny_llava), cwd=tmp_path)
    assert_one_line_error(out, 2, "need x1 > x0 and y1 > y0")


def test_point7_messages_name_what_the_user_gave(tiny_llava, engine, tmp_path):
    (tmp_path / "notes.png").write_text("not an image")
    out = rgpt_rt("describe", "notes.png", "--box", "0,0,50,50", "--model", str(tiny_llava), cwd=tmp_path)
    assert_one_line_error(out, 2, "notes.png is not an image file", absent=["BytesIO", "0x"])
    (tmp_path / "cut.png").write_bytes(SAMPLE_IMAGE.read_bytes()[:400])
    out = rgpt_rt("describe", "cut.png", "--box", "0,0,50,50", "--model", str(tiny_llava), cwd=tmp_path)
    assert_one_line_error(out, 2, "cut.png", absent=["BytesIO"])
    out = rgpt_rt("describe", IMAGE, "--mask", "notes.png", "--model", str(tiny_llava), cwd=tmp_path)
    assert_one_line_error(out, 2, "--mask notes.png is not an image file")
    out = rgpt_rt("describe", IMAGE, "--box", "0,0,5,5", "--box", "9,9,20,20", "--model", str(engine), cwd=tmp_path)
    assert_one_line_error(out, 2, "describe takes exactly one region", "got 2", absent=["placeholder"])
    out = rgpt_rt("describe", IMAGE, "--box", "0,0,5,5", "--model", str(engine / "manifest.json"), cwd=tmp_path)
    assert_one_line_error(out, 2, "manifest.json is a file", f"--model {engine}", absent=["not found"])
    out = rgpt_rt("describe", IMAGE, "--box", "0,0,5,5", "--model", "no/such/dir", cwd=tmp_path)
    assert_one_line_error(out, 2, "--model no/such/dir: no such directory")


def test_point9_help_version_and_input_checks_before_loading(tmp_path):
    version = rgpt_rt("--version", cwd=tmp_path)
    assert version.returncode == 0 and version.stdout.startswith("rgpt-rt ")
    help_ = rgpt_rt("describe", "--help", cwd=tmp_path).stdout
    assert "{fp32,fp16,bf16}" in help_ and "None" not in help_
    model = tmp_path / "broken_ckpt"
    model.mkdir()
    (model / "config.json").write_text("{ this would fail to load")
    out = rgpt_rt("describe", "missing.jpg", "--box", "0,0,5,5", "--model", str(model), cwd=tmp_path)
    assert_one_line_error(out, 2, "image not found: missing.jpg")  # reported before the (broken) model loads
    out = rgpt_rt("describe", IMAGE, "--box", "0,0,5,5", "--model", str(model), cwd=tmp_path)
    assert_one_line_error(out, 1, "config.json")  # and that model does fail, in one line, when the inputs are fine
