"""The nano RegionGPT: its config, its tokenizer, and the one command that reproduces it from nothing.

    python -m rgpt_rt.train.nano --out runs/nano            # world -> ... -> stage 1 -> stage 2
    python -m rgpt_rt.train.nano --out runs/nano --install  # ... and copy the result into rgpt_rt/assets/nano

Steps (each is skipped when its output exists, so a rerun resumes; the train steps resume themselves):
1. the synthetic world's train split (seed 0) and test split (seed 1), `python -m rgpt_rt.data.world`;
2. a byte-level BPE tokenizer trained on the train split's text and the chat template's words;
3. the nano config (`nano_config`) as a llava config.json;
4. the train split's tasks grouped into multi-turn conversations per image (`group_conversations`): the image
   is encoded once for several questions, and the first turn of every conversation is the single-question
   case that inference asks;
5. the stand-ins for what RegionGPT starts from, a pre-trained CLIP and a pre-trained LLM: the vision tower
   learns the world's objects (`python -m rgpt_rt.train.nano_vision`), then the LLaMA learns its chat text
   (`python -m rgpt_rt.train.nano_text`); without them the model collapses into the language prior;
6. stage 1 (align: the connectors) and stage 2 (region instruct: everything, the vision tower too with
   `--train-vision`) with `python -m rgpt_rt.train`, as separate processes so that each stage is exactly the
   documented command.
Nothing here looks at the test split except writing it; the recipe's numbers were set on the train split.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

from ..config import CLIP_MEAN, CLIP_STD, ConnectorConfig, LlamaConfig, ModelConfig, RegionConfig, VisionConfig
from ..prompts import TEMPLATES

NANO_VOCAB = 1024
SPECIALS = ["<unk>", "<s>", "</s>", "<image>", "<region>"]
ASSET_DIR = Path(__file__).resolve().parent.parent / "assets" / "nano"
WEIGHT_FILES = ("config.json", "model.safetensors", "generation_config.json") + (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
)

# The recipe (set on the train split; the test split was never used to choose these).
TRAIN_IMAGES, TEST_IMAGES = 4000, 500
MAX_TURNS = 6
DETAIL_SHARE = 0.35  # of the objects' detail questions kept for training (they are 63% of all answer tokens)
VISION = {"--steps": "300", "--batch": "32", "--lr": "1e-3"}
VISION_HELD_OUT = 200  # train-split images the tower never trains on (its accuracy report); at most a tenth
TEXT = {"--steps": "250", "--batch": "32", "--lr": "1e-3"}
STAGE1 = {"--lr": "1e-3", "--global-batch": "32", "--micro-batch": "16", "--max-steps": "100"}
STAGE2 = {"--lr": "3e-4", "--global-batch": "32", "--micro-batch": "16", "--max-steps": "600"}


def nano_config() -> ModelConfig:
    """A 4-layer width-128 CLIP-style ViT (128 px, patch 8: a 16x16 grid), one deconvolution (32x32 refined map,
    merged to 4x4 = 16 image tokens), the shared mlp2x_gelu connector and a 4-layer width-192 LLaMA (3 heads of
    64 sharing one KV head). About 2.9M parameters, 11.8 MB in fp32."""
    vision = VisionConfig(
        model_type="clip_vision_model",
        hidden_size=128,
        intermediate_size=512,
        num_layers=4,
        num_heads=4,
        image_size=128,
        patch_size=8,
        hidden_act="quick_gelu",
        layer_norm_eps=1e-5,
        class_token=True,
        pre_layernorm=True,
        patch_bias=False,
        image_mean=CLIP_MEAN,
        image_std=CLIP_STD,
        select_layer=-1,
    )
    llm = LlamaConfig(
        vocab_size=NANO_VOCAB,
        hidden_size=192,
        intermediate_size=512,
        num_layers=4,
        num_heads=3,
        num_kv_heads=1,
        head_dim=64,
        rms_norm_eps=1e-6,
        rope_theta=10000.0,
        max_position_embeddings=1024,
        bos_token_id=SPECIALS.index("<s>"),
        eos_token_id=(SPECIALS.index("</s>"),),
    )
    return ModelConfig(
        layout="llava",
        vision=vision,
        region=RegionConfig(refine_depth=1, image_grid=4, region_connector="shared"),
        connector=ConnectorConfig("mlp2x_gelu", vision.hidden_size, llm.hidden_size),
        llm=llm,
        conv_template="vicuna_v1",
    )


def corpus_lines(tasks_file: Path) -> list[str]:
    """The text the tokenizer learns from: every question and answer of the split, and the template's words."""
    t = TEMPLATES["vicuna_v1"]
    lines = [t.head, t.assistant, t.user]
    with open(tasks_file) as f:
        for raw in f:
            for turn in json.loads(raw)["conversations"]:
                lines.append(turn["value"])
    return lines


def write_tokenizer_dir(folder: Path, tasks_file: Path) -> Path:
    from ..testing.tokenizer import train_tokenizer, write_tokenizer

    tok = train_tokenizer(SPECIALS, NANO_VOCAB, corpus_lines(tasks_file))
    write_tokenizer(folder, tok, bos="<s>", eos="</s>", extra_specials=["<image>", "<region>"])
    return folder


def write_init_config(folder: Path) -> Path:
    from ..checkpoint.layouts import llava_config_json

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(llava_config_json(nano_config()), indent=2) + "\n")
    return folder / "config.json"


def group_conversations(
    tasks_file: Path, out: Path, max_turns: int = MAX_TURNS, detail_share: float = DETAIL_SHARE, seed: int = 0
) -> int:
    """Each image's questions (a `detail_share` sample of the detail ones), shuffled, in conversations of
    1..max_turns turns (sizes drawn uniformly), written in the training format; the regions follow the
    placeholders over the whole conversation. Returns the count."""
    rng = random.Random(seed)
    by_image: dict[str, list[dict]] = {}
    with open(tasks_file) as f:
        for raw in f:
            d = json.loads(raw)
            if d["task"] == "detail" and rng.random() >= detail_share:
                continue
            by_image.setdefault(d["image"], []).append(d)
    n = 0
    tmp = out.with_name(out.name + ".tmp")
    with open(tmp, "w") as f:
        for image in sorted(by_image):
            tasks = by_image[image]
            rng.shuffle(tasks)
            while tasks:
                k = rng.randint(1, max_turns)
                group, tasks = tasks[:k], tasks[k:]
                regions = [r for t in group for r in t["regions"]]
                turns = [turn for t in group for turn in t["conversations"]]
                row = {"id": f"{image}#{n}", "image": image, "regions": regions, "conversations": turns}
                f.write(json.dumps(row) + "\n")
                n += 1
    tmp.replace(out)
    return n


def _flags(d: dict[str, str]) -> list[str]:
    return [x for kv in d.items() for x in kv]


def _run(cmd: list[str], log) -> None:
    log("$ " + " ".join(cmd))
    subprocess.run(cmd, check=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m rgpt_rt.train.nano", description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True, help="run directory (world, tokenizer, stage1, stage2)")
    ap.add_argument("--install", action="store_true", help="copy the trained model into rgpt_rt/assets/nano")
    ap.add_argument("--train-images", type=int, default=TRAIN_IMAGES)
    ap.add_argument("--test-images", type=int, default=TEST_IMAGES)
    a = ap.parse_args(argv)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()

    def log(msg: str) -> None:
        print(f"[nano {time.time() - t0:7.1f}s] {msg}", flush=True)

    py = sys.executable
    world = out / "world"
    for split, n in (("train", a.train_images), ("test", a.test_images)):
        if not (world / f"tasks_{split}.jsonl").is_file():
            _run([py, "-m", "rgpt_rt.data.world", "--out", str(world), "--split", split, "--images", str(n)], log)
    tok = out / "tokenizer"
    if not (tok / "tokenizer.json").is_file():
        write_tokenizer_dir(tok, world / "tasks_train.jsonl")
        log(f"tokenizer: {tok}")
    init = write_init_config(out / "init")
    conv = world / "conversations_train.jsonl"
    if not conv.is_file():
        log(f"{group_conversations(world / 'tasks_train.jsonl', conv)} conversations: {conv}")
    vision = out / "vision"
    if not (vision / "vision_pretraining.json").is_file():
        instances, images = world / "annotations" / "instances_train.json", world / "train"
        _run(
            [py, "-m", "rgpt_rt.train.nano_vision", "--instances", str(instances), "--images", str(images)]
            + ["--config", str(init), "--tokenizer", str(tok), "--out", str(vision)]
            + _flags(VISION)
            + ["--held-out", str(min(VISION_HELD_OUT, a.train_images // 10))],
            log,
        )
    text = out / "text"
    if not (text / "text_pretraining.json").is_file():
        _run(
            [py, "-m", "rgpt_rt.train.nano_text", "--init", str(vision), "--data", str(conv), "--out", str(text)]
            + ["--instances", str(world / "annotations" / "instances_train.json")]
            + _flags(TEXT),
            log,
        )
    common = ["--data", str(conv), "--parallel", "none", "--save-every", "150"]
    stage1, stage2 = out / "stage1", out / "stage2"
    _run(
        [py, "-m", "rgpt_rt.train", "--stage", "1", "--init", str(text)]
        + common
        + _flags(STAGE1)
        + ["--output", str(stage1)],
        log,
    )
    s1 = json.loads((stage1 / "summary.json").read_text())["checkpoint"]
    _run(
        [py, "-m", "rgpt_rt.train", "--stage", "2", "--init", s1, "--train-vision"]
        + common
        + _flags(STAGE2)
        + ["--output", str(stage2)],
        log,
    )
    final = Path(json.loads((stage2 / "summary.json").read_text())["checkpoint"])
    log(f"trained in {time.time() - t0:.0f} s: {final}")
    if a.install:
        install(final)
        log(f"installed into {ASSET_DIR}")
    return 0


def install(checkpoint: Path, dest: Path = ASSET_DIR) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    for name in WEIGHT_FILES:
        if (checkpoint / name).is_file():
            shutil.copy2(checkpoint / name, dest / name)


if __name__ == "__main__":
    sys.exit(main())
