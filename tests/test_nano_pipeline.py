"""The nano recipe's own steps on a 6-image world: conversations keep every region with its placeholder, the
vision pre-training trains only the tower and refinement, the text pre-training only the LLM."""

from __future__ import annotations

import json

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
    assert nano_vision.main(args + ["--steps", "2", "--batch", "4"]) == 0
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
