"""The nano recipe's own steps on a 6-image world: conversations keep every region with its placeholder, the
vision pre-training trains only the tower and refinement, the text pre-training only the LLM."""

from __future__ import annotations

import json

import numpy as np
import torch

from rgpt_rt.checkpoint.loader import load_model
from rgpt_rt.data.world import generate_split
from rgpt_rt.prompts import count_regions
from rgpt_rt.train import nano, nano_text, nano_vision


def _state(path):
    return {k: v.clone() for k, v in load_model(path).state_dict().items()}


def test_the_nano_steps_run_and_train_what_they_say(tmp_path):
    world = tmp_path / "world"
    generate_split(world, "train", 6, seed=3)
    tasks = world / "tasks_train.jsonl"
    conv = world / "conversations_train.jsonl"
    n = nano.group_conversations(tasks, conv, detail_share=1.0)
    rows = [json.loads(line) for line in conv.read_text().splitlines()]
    assert n == len(rows) > 0
    assert sum(len(r["conversations"]) for r in rows) == 2 * len(tasks.read_text().splitlines())
    for r in rows:
        human = [t["value"] for t in r["conversations"][::2]]
        assert sum(count_regions(h) for h in human) == len(r["regions"])

    nano.write_tokenizer_dir(tmp_path / "tok", tasks)
    init = nano.write_init_config(tmp_path / "init")
    vision = tmp_path / "vision"
    args = ["--instances", str(world / "annotations" / "instances_train.json"), "--images", str(world / "train")]
    args += ["--config", str(init), "--tokenizer", str(tmp_path / "tok"), "--out", str(vision)]
    assert nano_vision.main(args + ["--steps", "2", "--batch", "4", "--held-out", "2"]) == 0
    report = json.loads((vision / "vision_pretraining.json").read_text())
    held = report["held_out"]
    assert held["images"] == 2 and held["regions"] > 0
    assert set(held["accuracy"]) == {"shape", "color", "size", "pattern"}
    assert all(0.0 <= v <= 1.0 for v in held["accuracy"].values())
    confusion = held["shape_confusion"]
    assert sum(n for row in confusion.values() for n in row.values()) == held["regions"]
    hits = sum(row.get(t, 0) for t, row in confusion.items())
    assert abs(hits / held["regions"] - held["accuracy"]["shape"]) < 1e-9
    text = tmp_path / "text"
    rc = nano_text.main(
        ["--init", str(vision), "--data", str(conv), "--instances", args[1], "--out", str(text)]
        + ["--steps", "2", "--batch", "4"]
    )
    assert rc == 0
    before, after = _state(vision), _state(text)
    changed = {k.split(".")[0] for k in before if not torch.equal(before[k], after[k])}
    assert changed == {"llm"}, changed
    assert (
        nano_text.region_words(
            {
                "attributes": {"size": "large", "color": "red", "pattern": "plain", "shape": "star"},
                "bbox": [0, 0, 10, 10],
            },
            128,
            128,
        )
        == "large red star left top"
    )


def test_nano_vision_refuses_unpaired_shards_and_a_held_out_split_as_large_as_the_data(tmp_path):
    import pytest

    world = tmp_path / "world"
    generate_split(world, "train", 2, seed=3)
    init = nano.write_init_config(tmp_path / "init")
    base = ["--config", str(init), "--tokenizer", str(tmp_path), "--out", str(tmp_path / "v"), "--steps", "1"]
    ins, img = str(world / "annotations" / "instances_train.json"), str(world / "train")
    with pytest.raises(SystemExit):
        nano_vision.main(base + ["--instances", ins, "--instances", ins, "--images", img])
    with pytest.raises(SystemExit):
        nano_vision.main(base + ["--instances", ins, "--images", img, "--held-out", "2"])


def test_the_batched_pooling_of_the_vision_pre_training_is_region_pool(tmp_path):
    from rgpt_rt.model.region import region_pool
    from rgpt_rt.train.init import load_start_model

    world = tmp_path / "world"
    generate_split(world, "train", 4, seed=5)
    cfg = nano.nano_config()
    model = load_start_model(cfg, None, 0, log=lambda *a: None).eval()
    data = nano_vision.load_instances(world / "annotations" / "instances_train.json", world / "train", cfg)
    idx = [2, 0, 3]
    with torch.no_grad():
        got = nano_vision._pooled(model, data, idx, "cpu", bf16=False)
        refined = model.refiner(model.vision(torch.from_numpy(np.stack([data[i][0] for i in idx]))))
        want = torch.cat(
            [
                region_pool(refined[b], torch.from_numpy(data[i][1]), cfg.region.image_grid, cfg.region.mask_eps)[1]
                for b, i in enumerate(idx)
            ]
        )
    assert got.shape == want.shape and got.shape[0] == sum(len(data[i][1]) for i in idx)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
