"""The nano's stand-in for CLIP pre-training: the vision tower learns the world's objects before the LLM sees it.

RegionGPT starts from a pre-trained CLIP ViT whose patch features already tell objects apart; the nano ViT starts
from random weights. Trained jointly with a random LLM from the first step, the nano model settles in the
language-prior minimum (every region gets the same answer, and its region embeddings collapse to one direction:
cosine 0.9998 between different objects after 200 steps of stage 2, measured). So, before stages 1 and 2, the
vision tower and the refinement are trained on the world's COCO instances with linear heads on the mask-pooled
region features (the very `region_pool` the model uses): shape, colour, size and pattern (cross-entropy) and the
region's centre (squared error). The heads are dropped; the tower and refinement start stage 1.

    python -m rgpt_rt.train.nano_vision --instances world/annotations/instances_train.json \
        --images world/train --config init/config.json --tokenizer tokenizer --out vision_init
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..data.scene import COLORS, PATTERNS, SHAPES, SIZES
from ..inputs import load_frame, preprocess_frame, preprocess_masks, rle_decode
from ..model.region import region_pool
from .recipe import lr_lambda

HEADS = {"shape": list(SHAPES), "color": list(COLORS), "size": list(SIZES), "pattern": list(PATTERNS)}


def load_instances(instances: Path, images: Path, cfg) -> list[tuple[np.ndarray, np.ndarray, dict]]:
    """[(pixels [3, S, S], masks [N, S, S], labels {head: [N] ints, "centre": [N, 2]})] per image."""
    d = json.loads(instances.read_text())
    by_image: dict[int, list[dict]] = {}
    for a in d["annotations"]:
        by_image.setdefault(a["image_id"], []).append(a)
    out = []
    for im in d["images"]:
        anns = by_image.get(im["id"], [])
        if not anns:
            continue
        frame = load_frame(images / im["file_name"])
        h, w = frame.shape[:2]
        masks = np.stack([rle_decode(a["segmentation"]) for a in anns])
        labels = {k: np.array([v.index(a["attributes"][k]) for a in anns]) for k, v in HEADS.items()}
        x, y, bw, bh = np.array([a["bbox"] for a in anns], np.float32).T
        labels["centre"] = np.stack([(x + bw / 2) / w, (y + bh / 2) / h], 1)
        out.append((preprocess_frame(frame, cfg.vision), preprocess_masks(masks, cfg.vision.image_size), labels))
    return out


class Heads(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.cls = nn.ModuleDict({k: nn.Linear(c, len(v)) for k, v in HEADS.items()})
        self.centre = nn.Linear(c, 2)

    def forward(self, r: torch.Tensor, labels: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        loss, acc = torch.zeros(()), {}
        for k, head in self.cls.items():
            logits = head(r)
            loss = loss + F.cross_entropy(logits, labels[k])
            acc[k] = float((logits.argmax(-1) == labels[k]).float().mean())
        err = F.mse_loss(self.centre(r), labels["centre"])
        acc["centre_rmse"] = float(err.detach().sqrt())
        return loss + 10.0 * err, acc


def pretrain(model, data, steps: int, batch: int, lr: float, seed: int, log) -> dict[str, float]:
    """Train model.vision and model.refiner (and the heads) for `steps` steps of `batch` images."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    cfg = model.cfg
    heads = Heads(cfg.vision.hidden_size)
    params = [*model.vision.parameters(), *model.refiner.parameters(), *heads.parameters()]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(steps, warmup_ratio=0.05))
    model.vision.train()
    model.refiner.train()
    recent: list[dict[str, float]] = []
    for step in range(steps):
        idx = rng.choice(len(data), batch, replace=False)
        pixels = torch.from_numpy(np.stack([data[i][0] for i in idx]))
        refined = model.refiner(model.vision(pixels))
        regions = torch.cat(
            [
                region_pool(refined[b], torch.from_numpy(data[i][1]), cfg.region.image_grid, cfg.region.mask_eps)[1]
                for b, i in enumerate(idx)
            ]
        )
        labels = {k: torch.from_numpy(np.concatenate([data[i][2][k] for i in idx])) for k in (*HEADS, "centre")}
        loss, acc = heads(regions, labels)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        recent = (recent + [{"loss": float(loss), **acc}])[-20:]
        if (step + 1) % 25 == 0 or step + 1 == steps:
            mean = {k: round(float(np.mean([r[k] for r in recent])), 3) for k in recent[0]}
            log(f"vision step {step + 1}/{steps}: {mean}")
    return {k: float(np.mean([r[k] for r in recent])) for k in recent[0]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m rgpt_rt.train.nano_vision", description=__doc__.split("\n\n")[0])
    ap.add_argument("--instances", required=True, help="COCO instances JSON of the world's train split")
    ap.add_argument("--images", required=True, help="its image directory")
    ap.add_argument("--config", required=True, help="llava config.json of the model")
    ap.add_argument("--tokenizer", required=True, help="tokenizer directory (copied into the output checkpoint)")
    ap.add_argument("--out", required=True, help="checkpoint to write: random LLM and connector, trained tower")
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    t0 = time.time()

    def log(msg: str) -> None:
        print(f"[vision {time.time() - t0:6.1f}s] {msg}", flush=True)

    from ..checkpoint import save_checkpoint
    from .init import TOKENIZER_FILES, load_start_model, read_start_config

    cfg = read_start_config(None, a.config)
    model = load_start_model(cfg, None, a.seed, log=log)
    data = load_instances(Path(a.instances), Path(a.images), cfg)
    log(f"{len(data)} images, {sum(len(d[1]) for d in data)} objects")
    final = pretrain(model, data, a.steps, a.batch, a.lr, a.seed, log)
    out = Path(a.out)
    save_checkpoint(model.eval(), out)
    for name in TOKENIZER_FILES:
        src = Path(a.tokenizer) / name
        if src.is_file():
            (out / name).write_bytes(src.read_bytes())
    (out / "vision_pretraining.json").write_text(json.dumps({"steps": a.steps, "final": final}, indent=1) + "\n")
    log(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
