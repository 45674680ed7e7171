"""The command line: rgpt-rt describe / ask / demo, and python -m rgpt_rt."""

import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from rgpt_rt.cli import SAMPLE_BOX, SAMPLE_IMAGE, main


def test_describe_box_mask_polygon_agree(tiny_llava, tmp_path, capsys):
    x0, y0, x1, y1 = SAMPLE_BOX
    w, h = Image.open(SAMPLE_IMAGE).size
    mask = np.zeros((h, w), np.uint8)
    mask[y0:y1, x0:x1] = 255
    Image.fromarray(mask).save(tmp_path / "m.png")
    rle = tmp_path / "m.json"
    from rgpt_rt.inputs import rle_encode

    rle.write_text(json.dumps(rle_encode(mask > 0)))
    outs = []
    for region in (
        ["--box", f"{x0},{y0},{x1},{y1}"],
        ["--mask", str(tmp_path / "m.png")],
        ["--polygon", f"{x0},{y0},{x1},{y0},{x1},{y1},{x0},{y1}"],
        ["--rle", str(rle)],
    ):
        code = main(
            ["describe", str(SAMPLE_IMAGE), *region, "--model", str(tiny_llava), "--max-new-tokens", "6", "--json"]
        )
        assert code == 0
        outs.append(json.loads(capsys.readouterr().out))
    assert all(o["token_ids"] == outs[0]["token_ids"] for o in outs)
    assert set(outs[0]["timings"]) >= {"preprocess_ms", "vision_ms", "prefill_ms", "decode_ms", "tokens"}


def test_ask_with_two_regions_matches_the_api(rt_vila, tiny_vila, capsys):
    instruction = "Is <region> left of <region>?"
    code = main(
        [
            "ask",
            str(SAMPLE_IMAGE),
            instruction,
            "--box",
            "0,0,50,50",
            "--box",
            "100,100,200,200",
            "--model",
            str(tiny_vila),
            "--max-new-tokens",
            "4",
            "--json",
        ]
    )
    assert code == 0
    expected = rt_vila.generate(SAMPLE_IMAGE, instruction, [(0, 0, 50, 50), (100, 100, 200, 200)], max_new_tokens=4)
    got = json.loads(capsys.readouterr().out)
    assert got["token_ids"] == expected.token_ids and got["text"] == expected.text  # both regions, in order
    code = main(["ask", str(SAMPLE_IMAGE), instruction, "--box", "0,0,50,50", "--model", str(tiny_vila)])
    assert code == 2 and "2 <region> placeholders but 1 region was given" in capsys.readouterr().err
    code = main(["describe", str(SAMPLE_IMAGE), "--model", str(tiny_vila)])
    assert code == 2 and "exactly one region" in capsys.readouterr().err


def _describe(model, *extra) -> list[str]:
    return ["describe", str(SAMPLE_IMAGE), "--model", str(model), "--max-new-tokens", "4", "--json", *extra]


def test_negative_boxes_are_accepted_and_clipping_is_reported(tiny_llava, capsys):
    assert main(_describe(tiny_llava, "--box", "0,0,50,50")) == 0
    inside = json.loads(capsys.readouterr().out)["token_ids"]
    for spelling in (["--box", "-10,-10,50,50"], ["--box=-10,-10,50,50"], ["--box", "-10.5,-3e1,50,50"]):
        assert main(_describe(tiny_llava, *spelling)) == 0
        out = capsys.readouterr()
        assert json.loads(out.out)["token_ids"] == inside  # the part outside the image adds nothing
        given = " ".join(spelling).replace("=", " ")
        assert out.err == f"rgpt-rt: note: {given} extends past the 320x240 image; clipped to 0,0,50,50\n"
    assert main(_describe(tiny_llava, "--box", "300,200,400,300")) == 0
    assert "clipped to 300,200,320,240" in capsys.readouterr().err
    assert main(_describe(tiny_llava, "--polygon", "-5,0,50,0,50,50")) == 0
    assert "the part outside is ignored" in capsys.readouterr().err


def test_allow_empty_masks_flag(tiny_llava, rt_llava, capsys):
    empty = ["--box", "0,0,0.4,0.4"]  # no pixel centre inside
    assert main(_describe(tiny_llava, *empty)) == 2
    err = capsys.readouterr().err
    assert "--box 0,0,0.4,0.4 is empty" in err and "--allow-empty-masks" in err and "allow_empty_masks=" not in err
    assert main(_describe(tiny_llava, *empty, "--allow-empty-masks")) == 0
    got = json.loads(capsys.readouterr().out)["token_ids"]
    mask = np.zeros((240, 320), bool)
    instr = "Describe in detail the object located at <region> in the image."
    assert got == rt_llava.generate(SAMPLE_IMAGE, instr, mask, allow_empty_masks=True, max_new_tokens=4).token_ids


def test_plain_output_escapes_control_characters_and_json_stays_exact(tiny_llava, monkeypatch, capsys):
    from rgpt_rt.generation import GenerationResult
    from rgpt_rt.runtime import Runtime

    text = "a\x00b\x04c\x1fd\ttab\nline 2 é \u200b\x1b[31m"
    monkeypatch.setattr(Runtime, "generate", lambda self, *a, **k: GenerationResult(text, [1, 2], "eos"))
    args = ["describe", str(SAMPLE_IMAGE), "--box", "0,0,50,50", "--model", str(tiny_llava)]
    assert main(args) == 0
    assert capsys.readouterr().out == "a\\x00b\\x04c\\x1fd\ttab\nline 2 é \\u200b\\x1b[31m\n"
    assert main([*args, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["text"] == text


def test_every_option_has_help_and_there_is_a_version(capsys):
    import argparse

    import rgpt_rt
    from rgpt_rt.cli import build_parser

    parser = build_parser()
    subs = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
    for name, p in [("rgpt-rt", parser), *subs.items()]:
        for action in p._actions:
            if isinstance(action, argparse._SubParsersAction):
                continue
            assert action.help and action.help != argparse.SUPPRESS, f"{name} {action.option_strings or action.dest}"
            assert None not in (action.choices or []), f"{name} {action.option_strings}"
        assert "RGPT_RT_CACHE" in p.format_help(), name
    assert "--force" in subs["demo"].format_help()
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0 and capsys.readouterr().out.strip() == f"rgpt-rt {rgpt_rt.__version__}"


def test_inputs_are_checked_before_the_model_loads(tiny_llava, tmp_path, monkeypatch, capsys):
    from rgpt_rt.runtime import Runtime

    def fail(*a, **k):
        raise AssertionError("the model was loaded before the inputs were checked")

    monkeypatch.setattr(Runtime, "from_pretrained", fail)
    (tmp_path / "notes.txt").write_text("not an image")
    cases = [
        (["describe", str(tmp_path / "missing.png"), "--box", "0,0,5,5"], "image not found"),
        (["describe", str(tmp_path / "notes.txt"), "--box", "0,0,5,5"], "notes.txt is not an image file"),
        (["describe", str(SAMPLE_IMAGE), "--box", "400,0,500,50"], "lies outside the 320x240 frame"),
        (["describe", str(SAMPLE_IMAGE), "--mask", str(tmp_path / "m.png")], "m.png: no such file"),
        (["ask", str(SAMPLE_IMAGE), "<region> and <region>?", "--box", "0,0,5,5"], "2 <region> placeholders"),
    ]
    for argv, message in cases:
        assert main([*argv, "--model", str(tiny_llava)]) == 2
        err = capsys.readouterr().err
        assert err.startswith("rgpt-rt: error: ") and message in err and err.count("\n") == 1, err


def test_unexpected_errors_are_one_line_and_debug_shows_the_traceback(tiny_llava, monkeypatch, capsys):
    from rgpt_rt.runtime import Runtime

    def boom(*a, **k):
        raise RuntimeError("first line\nsecond line")

    monkeypatch.setattr(Runtime, "from_pretrained", boom)
    args = ["describe", str(SAMPLE_IMAGE), "--box", "0,0,50,50", "--model", str(tiny_llava)]
    assert main(args) == 1
    assert capsys.readouterr().err == (
        "rgpt-rt: error: first line second line (RuntimeError; --debug shows the traceback)\n"
    )
    assert main([*args, "--debug"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("Traceback (most recent call last):") and "raise RuntimeError" in err
    assert err.splitlines()[-1].startswith("rgpt-rt: error: first line second line")
    monkeypatch.setenv("RGPT_RT_DEBUG", "1")
    assert main(args) == 1 and "Traceback" in capsys.readouterr().err


def test_random_demo_via_python_m(tmp_path):
    env = {"RGPT_RT_CACHE": str(tmp_path), "PATH": "/usr/bin:/bin"}
    out = subprocess.run(
        [sys.executable, "-m", "rgpt_rt", "demo", "--random", "--max-new-tokens", "5"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    assert "RANDOM weights" in out.stdout and "description:" in out.stdout
    assert (tmp_path / "demo-llava-seed0" / "model.safetensors").is_file()
    manifest = tmp_path / "demo-llava-seed0-engine" / "manifest.json"
    assert "backend: onnx" in out.stdout and manifest.is_file()
    stamp = manifest.stat().st_mtime_ns
    again = subprocess.run(
        [sys.executable, "-m", "rgpt_rt", "demo", "--random", "--force", "--max-new-tokens", "2"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=300,
    )
    assert again.returncode == 0, again.stderr
    assert "engine directory ready" in again.stdout and "up to date" not in again.stdout  # --force rebuilt it
    assert manifest.stat().st_mtime_ns != stamp


def test_sample_image_is_a_public_constant():
    import rgpt_rt
    import rgpt_rt.cli

    assert rgpt_rt.assets.SAMPLE_IMAGE == rgpt_rt.cli.SAMPLE_IMAGE == SAMPLE_IMAGE  # the old name still works
    assert Image.open(rgpt_rt.assets.SAMPLE_IMAGE).size == (320, 240)
    x0, y0, x1, y1 = rgpt_rt.assets.SAMPLE_BOX
    car = np.asarray(Image.open(SAMPLE_IMAGE).convert("RGB"))[y0:y1, x0:x1].reshape(-1, 3).astype(int)
    assert np.mean((car[:, 0] > 150) & (car[:, 1] < 80)) > 0.4  # the box holds mostly the red car
