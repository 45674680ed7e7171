"""python -m rgpt_rt.datagen: the two-stage region-caption pipeline on the synthetic world.

Crops, prompts and filters against hand-made cases; batched crops against one-at-a-time answers; an
OpenAI-compatible endpoint (a local test server); kill-and-resume (SIGKILL of the in-process driver, and of a
Ray worker) ending with every region captioned exactly once and the same records as an uninterrupted run; the
shards consumed unchanged by `python -m rgpt_rt.train`, and `python -m rgpt_rt.eval` on the trained model.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")

from rgpt_rt.data.captions import (  # noqa: E402
    FilterConfig,
    crop_box,
    done_ids,
    read_records,
    read_rows,
    region_prompt,
    reject_reason,
)
from rgpt_rt.data.captions.cli import main as datagen_main  # noqa: E402
from rgpt_rt.data.captions.pipeline import completed_metas  # noqa: E402

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from chat_server import TRUNCATE, ChatServer  # noqa: E402

N_IMAGES = 8
# random-weight captioner: its text is noise, so only the empty filter runs (the filters have their own tests)
GEN = ["--max-new-tokens", "8", "--filters", "empty", "--shard-images", "1", "--no-progress"]


def _env():
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    env.pop("PYTHONPATH", None)
    return env


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from rgpt_rt.data.world import main as world_main

    out = tmp_path_factory.mktemp("world")
    assert world_main(["--out", str(out), "--split", "train", "--images", str(N_IMAGES), "--size", "96"]) == 0
    return out


@pytest.fixture(scope="module")
def captioner(tmp_path_factory):
    from rgpt_rt.testing import make_tiny_checkpoint

    return make_tiny_checkpoint(tmp_path_factory.mktemp("cap") / "tiny", layout="llava", seed=0)


def _args(world, model, out, *extra):
    return [
        "--instances",
        str(world / "annotations" / "instances_train.json"),
        "--images",
        str(world / "train"),
        "--model",
        str(model),
        "--out",
        str(out),
        *GEN,
        *extra,
    ]


def _all_ids(world):
    return {
        r["id"]
        for row in read_rows(world / "annotations" / "instances_train.json", world / "train")
        for r in row["regions"]
    }


def _exactly_once(out: Path, expected: set[str]) -> None:
    seen: list[str] = []
    for meta in completed_metas(out).values():
        seen += list(meta["status"])
    assert sorted(seen) == sorted(expected), "every region must be in exactly one shard's meta"
    recs = read_records(out)
    assert len({r["id"] for r in recs}) == len(recs), "a region was written twice"


@pytest.fixture(scope="module")
def e2e_captioner(captioner):
    """The nano RegionGPT (rgpt_rt.assets.NANO_MODEL) once the package ships it, else the tiny random model."""
    from rgpt_rt import assets

    nano = getattr(assets, "NANO_MODEL", None)
    return nano if nano is not None and (nano / "config.json").is_file() else captioner


@pytest.fixture(scope="module")
def uninterrupted(world, captioner, tmp_path_factory):
    out = tmp_path_factory.mktemp("dg") / "plain"
    torch = pytest.importorskip("torch")
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert datagen_main(_args(world, captioner, out, "--no-ray")) == 0
    finally:
        torch.set_num_threads(n)
    return out


# ---- pieces -------------------------------------------------------------------------------------------


def test_crop_keeps_the_box_aspect_adds_margin_and_stays_inside():
    assert crop_box([40, 30, 20, 10], 200, 100, 0.5, 1) == (30, 25, 70, 45)  # 2x: 40x20, same 2:1 aspect
    x0, y0, x1, y1 = crop_box([0, 0, 10, 10], 100, 100, 0.2, 32)  # tiny box at the corner: grown, shifted in
    assert (x0, y0) == (0, 0) and x1 - x0 == 32 and y1 - y0 == 32
    assert crop_box([90, 90, 10, 10], 100, 100, 0.0, 40) == (60, 60, 100, 100)
    assert crop_box([0, 0, 100, 50], 100, 50, 0.5, 1) == (0, 0, 100, 50)  # larger than the image: clipped


def test_prompts_are_the_papers_wording():
    assert region_prompt("A street with cars.", None) == (
        "In the context of the entire image, A street with cars, describe the close-up region in detail."
    )
    assert region_prompt("A street\nwith cars.", "traffic light") == (
        "In the context of the entire image, A street with cars, describe the traffic light in the close-up "
        "region in detail."
    )


@pytest.mark.parametrize(
    "text,finish,name,reason",
    [
        ("", "eos", None, "empty"),
        ("a red car parked by the road", "length", None, "truncated"),
        ("the car the car the car the car", "eos", None, "repetition"),
        ("red red red red", "eos", None, "repetition"),
        ("a small red vehicle parked by the road", "eos", "car", "class"),
        ("two red cars parked by the road", "eos", "car", None),
        ("a bright traffic light at the corner", "eos", "traffic light", None),
        ("three buses waiting in line", "eos", "bus", None),
        ("a car", "eos", "car", "length"),
        ("a red car parked by the road", "eos", "car", None),
    ],
)
def test_filters(text, finish, name, reason):
    assert reject_reason(text, finish, name, FilterConfig()) == reason


def test_filters_can_be_switched_off():
    assert reject_reason("a car", "length", "bus", FilterConfig(enabled=("empty",))) is None
    with pytest.raises(ValueError, match="unknown filter"):
        FilterConfig(enabled=("empty", "nonsense"))


def test_crops_decoded_together_equal_one_at_a_time(rt_llava):
    rng = np.random.default_rng(0)
    crops = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in ((30, 50), (64, 20), (41, 41))]
    prompts = [region_prompt("a picture", name) for name in ("car", None, "dog")]
    together = rt_llava.ask_many(crops, prompts, max_new_tokens=10)
    alone = [rt_llava.generate(c, p, None, max_new_tokens=10) for c, p in zip(crops, prompts)]
    assert [r.token_ids for r in together] == [r.token_ids for r in alone]
    assert [r.finish_reason for r in together] == [r.finish_reason for r in alone]
    assert rt_llava.ask_many(crops[:2], prompts[:2], batch_size=1, max_new_tokens=10)[1].text == alone[1].text


# ---- the endpoint captioner ---------------------------------------------------------------------------


def test_openai_compatible_endpoint_captioner(world, tmp_path):
    out = tmp_path / "ep"
    with ChatServer(model="test-vlm") as server:
        args = _args(world, "unused", out, "--no-ray")
        i = args.index("--model")
        args[i : i + 2] = ["--endpoint", server.url, "--endpoint-model", "test-vlm"]
        f = args.index("--filters")
        args[f + 1] = "empty,truncated,repetition,class,length"
        assert datagen_main(args) == 0
    rows = read_rows(world / "annotations" / "instances_train.json", world / "train")
    cats = [r["category"] for row in rows for r in row["regions"]]
    report = json.loads((out / "report.json").read_text())
    n_trunc = sum(c in TRUNCATE for c in cats)
    assert 0 < n_trunc < len(cats), "the world should hold some circles and some other shapes"
    assert report["dropped"]["truncated"] == n_trunc and report["kept"] == len(cats) - n_trunc
    assert len(server.requests) == len(rows) + len(cats)  # one global caption per image, one per region
    for rec in read_records(out):
        x0, y0, x1, y1 = rec["provenance"]["crop"]
        assert rec["conversations"][1]["value"] == f"A {rec['category']} seen in a {x1 - x0}x{y1 - y0} crop."
        assert rec["global_caption"] == "A picture of coloured shapes in a 96x96 frame."
        assert rec["provenance"]["captioner"].startswith("endpoint:test-vlm@")
        assert rec["provenance"]["prompt"] == region_prompt(rec["global_caption"], rec["category"])


def test_unreachable_endpoint_is_a_clear_error(world, tmp_path, capsys):
    args = _args(world, "unused", tmp_path / "x", "--no-ray")
    i = args.index("--model")
    args[i : i + 2] = ["--endpoint", "http://127.0.0.1:9/v1", "--endpoint-model", "m", "--endpoint-retries", "0"]
    assert datagen_main(args) == 2
    err = capsys.readouterr().err
    assert "http://127.0.0.1:9/v1/chat/completions failed 1 times" in err and "Traceback" not in err


# ---- resumable, lossless, the same on every engine ----------------------------------------------------


def test_in_process_driver_killed_mid_run_resumes_to_exactly_once(world, captioner, uninterrupted, tmp_path):
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "rgpt_rt.datagen", *_args(world, captioner, out, "--no-ray")]
    proc = subprocess.Popen(cmd, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=tmp_path)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None and len(list(out.glob("part-*.jsonl"))) < 2:
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before it could be killed: " + proc.stdout.read().decode()[-2000:]
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    expected = _all_ids(world)
    partial = done_ids(out)
    assert 0 < len(partial) < len(expected)
    assert datagen_main(_args(world, captioner, out, "--no-ray")) == 0
    _exactly_once(out, expected)
    assert read_records(out) == read_records(uninterrupted)


def test_ray_with_a_worker_killed_equals_in_process(world, captioner, uninterrupted, tmp_path):
    pytest.importorskip("ray")
    out, marker = tmp_path / "ray", tmp_path / "killed-once"
    cmd = [sys.executable, "-m", "rgpt_rt.datagen", *_args(world, captioner, out, "--actors", "2", "--ray-cpus", "2")]
    env = dict(_env(), RGPT_DATAGEN_FAULT=f"kill-worker-after-shard:{marker}", RAY_USAGE_STATS_ENABLED="0")
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=420, cwd=tmp_path)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert marker.exists(), "the fault hook never killed a worker"
    _exactly_once(out, _all_ids(world))
    assert read_records(out) == read_records(uninterrupted)  # engine and batching of rows do not change a record
    report = json.loads((out / "report.json").read_text())
    assert report["last_run"]["engine"] == "ray (2 actors)" and report["regions"] == len(_all_ids(world))


# ---- end to end: datagen -> train -> eval -------------------------------------------------------------


def test_shards_train_unchanged_and_the_model_evaluates(world, e2e_captioner, captioner, uninterrupted, tmp_path):
    if e2e_captioner == captioner:
        out = uninterrupted  # the tiny model's run serves
    else:
        out = tmp_path / "nano"
        assert datagen_main(_args(world, e2e_captioner, out, "--no-ray")) == 0
    report = json.loads((out / "report.json").read_text())
    shards = [str(out / s) for s in report["shards"]]
    assert report["kept"] > 0 and shards
    run = tmp_path / "run"
    data = [a for s in shards for a in ("--data", s)]
    cmd = [sys.executable, "-m", "rgpt_rt.train", "--stage", "1", "--init", str(e2e_captioner), *data, "--output",
           str(run), "--max-steps", "2", "--global-batch", "2", "--micro-batch", "2", "--max-seq-len", "256",
           "--parallel", "none", "--save-every", "1000"]  # fmt: skip
    res = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["steps"] == 2 and summary["bad_lines"] == 0 and summary["skipped_samples"] == 0
    cmd = [sys.executable, "-m", "rgpt_rt.eval", summary["checkpoint"], "--world", str(world), "--split", "train",
           "--tasks", "brief", "--limit", "2", "--max-new-tokens", "4", "--no-map", "--no-meteor", "--tokenizer",
           "simple", "--quiet", "--out", str(tmp_path / "eval")]  # fmt: skip
    res = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert (tmp_path / "eval" / "results.json").is_file()
