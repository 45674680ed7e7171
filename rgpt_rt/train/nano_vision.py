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
from ..model.region import mask_weights
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
        loss, acc = r.new_zeros(()), {}
        for k, head in self.cls.items():
            logits = head(r)
            loss = loss + F.cross_entropy(logits, labels[k])
            acc[k] = float((logits.argmax(-1) == labels[k]).float().mean())
        err = F.mse_loss(self.centre(r), labels["centre"].float())
        acc["centre_rmse"] = float(err.detach().sqrt())
        return loss + 10.0 * err, acc


def _pooled(model, data, idx, device: str, bf16: bool) -> torch.Tensor:
    """Mask-pooled region vectors [sum N, C] of the images `idx`: the model's refinement, then the region branch
    of `region_pool` for the whole batch at once (the same arithmetic; tests/test_nano_pipeline.py checks it)."""
    cfg = model.cfg
    pixels = torch.from_numpy(np.stack([data[i][0] for i in idx])).to(device)
    with torch.autocast(device.split(":")[0], dtype=torch.bfloat16, enabled=bf16):
        refined = model.refiner(model.vision(pixels))
    refined = refined.float()  # [B, C, H, W]
    masks = torch.from_numpy(np.concatenate([data[i][1] for i in idx])).to(device).float()  # [sum N, Hm, Wm]
    owner = torch.tensor([b for b, i in enumerate(idx) for _ in range(len(data[i][1]))], device=device)
    weights = mask_weights(masks, *refined.shape[2:])  # [sum N, H, W], as region_pool weighs them
    total = weights.sum(dim=(1, 2))
    return torch.einsum("nyx,ncyx->nc", weights, refined[owner]) / (total + cfg.region.mask_eps)[:, None]


def _labels(data, idx, device: str) -> dict[str, torch.Tensor]:
    return {k: torch.from_numpy(np.concatenate([data[i][2][k] for i in idx])).to(device) for k in (*HEADS, "centre")}


@torch.no_grad()
def evaluate(model, heads: Heads, data, device: str = "cpu", bf16: bool = False, chunk: int = 64) -> dict:
    """Accuracy of every head on `data` (images never trained on) and the shape confusion {true: {predicted: n}}."""
    was = model.training
    model.eval()
    hits = {k: 0 for k in HEADS}
    confusion: dict[str, dict[str, int]] = {s: {} for s in HEADS["shape"]}
    n = 0
    for s in range(0, len(data), chunk):
        idx = list(range(s, min(s + chunk, len(data))))
        regions, labels = _pooled(model, data, idx, device, bf16), _labels(data, idx, device)
        n += len(regions)
        for k, head in heads.cls.items():
            pred = head(regions).argmax(-1)
            hits[k] += int((pred == labels[k]).sum())
            if k == "shape":
                for t, p in zip(labels[k].tolist(), pred.tolist()):
                    row = confusion[HEADS["shape"][t]]
                    row[HEADS["shape"][p]] = row.get(HEADS["shape"][p], 0) + 1
    model.train(was)
    return {"regions": n, "accuracy": {k: hits[k] / max(n, 1) for k in HEADS}, "shape_confusion": confusion}


def _line(accuracy: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:.3f}" for k, v in accuracy.items())


def pretrain(
    model,
    data,
    steps: int,
    batch: int,
    lr: float,
    seed: int,
    log,
    device: str = "cpu",
    bf16: bool = False,
    held=None,
    eval_every: int = 0,
) -> tuple[dict[str, float], Heads]:
    """Train model.vision and model.refiner (and the heads) for `steps` steps of `batch` images; every
    `eval_every` steps (and at the end) log the heads' accuracy on `held` when given. Returns the last 20 steps'
    mean metrics and the heads."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    heads = Heads(model.cfg.vision.hidden_size).to(device)
    model.to(device)
    params = [*model.vision.parameters(), *model.refiner.parameters(), *heads.parameters()]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(steps, warmup_ratio=0.05))
    model.vision.train()
    model.refiner.train()
    recent: list[dict[str, float]] = []
    for step in range(steps):
        idx = rng.choice(len(data), batch, replace=False)
        loss, acc = heads(_pooled(model, data, idx, device, bf16), _labels(data, idx, device))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        recent = (recent + [{"loss": float(loss.detach()), **acc}])[-20:]
        if (step + 1) % 25 == 0 or step + 1 == steps:
            mean = {k: round(float(np.mean([r[k] for r in recent])), 3) for k in recent[0]}
            log(f"vision step {step + 1}/{steps}: {mean}")
        if held and eval_every and (step + 1) % eval_every == 0 and step + 1 != steps:
            log(f"held-out at step {step + 1}: {_line(evaluate(model, heads, held, device, bf16)['accuracy'])}")
    return {k: float(np.mean([r[k] for r in recent])) for k in recent[0]}, heads


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m rgpt_rt.train.nano_vision", description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--instances",
        required=True,
        action="append",
        help="COCO instances JSON of the world's "
        "train split (repeat it, each with its --images, to train on several shards)",
    )
    ap.add_argument("--images", required=True, action="append", help="its image directory")
    ap.add_argument("--config", required=True, help="llava config.json of the model")
    ap.add_argument("--tokenizer", required=True, help="tokenizer directory (copied into the output checkpoint)")
    ap.add_argument("--out", required=True, help="checkpoint to write: random LLM and connector, trained tower")
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--held-out",
        type=int,
        default=0,
        help="keep the split's last N images out of training and "
        "report every head's accuracy on them (and the shape confusion)",
    )
    ap.add_argument("--eval-every", type=int, default=0, help="also report the held-out accuracy every N steps")
    ap.add_argument("--device", default="cpu", help="cpu or cuda[:i] (the tower's pre-training only)")
    ap.add_argument("--bf16", action="store_true", help="bfloat16 autocast for the tower (weights stay fp32)")
    a = ap.parse_args(argv)
    t0 = time.time()

    def log(msg: str) -> None:
        print(f"[vision {time.time() - t0:6.1f}s] {msg}", flush=True)

    from ..checkpoint import save_checkpoint
    from .init import TOKENIZER_FILES, load_start_model, read_start_config

    if a.device.startswith("cuda") and not torch.cuda.is_available():
        ap.error(f"--device {a.device}: this torch sees no CUDA device")
    cfg = read_start_config(None, a.config)
    model = load_start_model(cfg, None, a.seed, log=log)
    if len(a.instances) != len(a.images):
        ap.error(f"{len(a.instances)} --instances but {len(a.images)} --images: give one image directory for each")
    data = [d for ins, img in zip(a.instances, a.images) for d in load_instances(Path(ins), Path(img), cfg)]
    if not 0 <= a.held_out < len(data):
        ap.error(f"--held-out {a.held_out}: the split has {len(data)} images with objects")
    held, data = (data[len(data) - a.held_out :], data[: len(data) - a.held_out]) if a.held_out else ([], data)
    log(f"{len(data)} images, {sum(len(d[1]) for d in data)} objects; {len(held)} held-out images")
    final, heads = pretrain(
        model, data, a.steps, a.batch, a.lr, a.seed, log, a.device, a.bf16, held=held, eval_every=a.eval_every
    )
    report = {"steps": a.steps, "batch": a.batch, "lr": a.lr, "final": final}
    if held:
        report["held_out"] = {"images": len(held), **evaluate(model, heads, held, a.device, a.bf16)}
        log(f"held-out: {_line(report['held_out']['accuracy'])}")
    model.cpu()
    out = Path(a.out)
    save_checkpoint(model.eval(), out)
    for name in TOKENIZER_FILES:
        src = Path(a.tokenizer) / name
        if src.is_file():
            (out / name).write_bytes(src.read_bytes())
    (out / "vision_pretraining.json").write_text(json.dumps(report, indent=1) + "\n")
    log(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
