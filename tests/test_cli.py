"""The command line: rgpt-rt describe / ask / demo, and python -m rgpt_rt."""

import json
import subprocess
import sys

import numpy as np
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


def test_ask_with_two_regions_and_errors(tiny_vila, capsys):
    code = main(
        [
            "ask",
            str(SAMPLE_IMAGE),
            "Is <region> left of <region>?",
            "--box",
            "0,0,50,50",
            "--box",
            "100,100,200,200",
            "--model",
            str(tiny_vila),
            "--max-new-tokens",
            "4",
        ]
    )
    assert code == 0 and capsys.readouterr().out.strip() != ""
    code = main(
        ["ask", str(SAMPLE_IMAGE), "Is <region> left of <region>?", "--box", "0,0,50,50", "--model", str(tiny_vila)]
    )
    assert code == 2 and "2 <region> placeholders but 1 region masks" in capsys.readouterr().err
    code = main(["describe", str(SAMPLE_IMAGE), "--model", str(tiny_vila)])
    assert code == 2 and "exactly one region" in capsys.readouterr().err


def test_demo_via_python_m(tmp_path):
    env = {"RGPT_RT_CACHE": str(tmp_path), "PATH": "/usr/bin:/bin"}
    out = subprocess.run(
        [sys.executable, "-m", "rgpt_rt", "demo", "--max-new-tokens", "5"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    assert "RANDOM weights" in out.stdout and "description:" in out.stdout
    assert (tmp_path / "demo-llava-seed0" / "model.safetensors").is_file()
    assert "backend: onnx" in out.stdout and (tmp_path / "demo-llava-seed0-engine" / "manifest.json").is_file()
