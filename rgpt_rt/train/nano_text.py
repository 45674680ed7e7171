"""The nano's stand-in for the LLM's pre-training: the LLaMA learns the world's chat text before it sees an image.

LLaVA's two stages assume a pre-trained LLM: stage 1 aligns the connector to a language model that already
speaks. The nano LLaMA starts from random weights; trained jointly from the first step, it turns the image and
region embeddings into attention sinks (their norm grew from 7 to 213 and two different objects' region
embeddings reached cosine 0.9993 after 150 steps of stage 2, measured) and answers every region alike. So it
first learns the text: every training conversation, rendered with the chat template, the image dropped, as
next-token prediction over all tokens. Only the LLM is trained.

A language model that never had to read a `<region>` position cannot be steered through it: with a frozen,
text-only LLM, stage 1 collapses the connector output too (cosine 0.969 between two objects' embeddings, loss
flat from step 10, measured). So each `<region>` position carries what a region embedding should tell: the mean
of the LLM's own token embeddings of the region's attribute words (`region_words`: size, colour, pattern, shape
and the thirds of the image it is in). The LLM learns to read a region position; stage 1 then has a target to
align the connector to, as LLaVA's stage 1 has with a pre-trained LLM.

    python -m rgpt_rt.train.nano_text --init vision_init --data conversations_train.jsonl \
        --instances instances_train.json --out text_init
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

from ..prompts import IMAGE, build_prompt
from .model import TrainModel
from .recipe import lr_lambda


def region_words(ann: dict, w: int, h: int) -> str:
    """'large red striped circle left top': the attributes a region embedding carries."""
    a = ann["attributes"]
    x, y, bw, bh = ann["bbox"]
    cx, cy = x + bw / 2, y + bh / 2
    horiz = "left" if cx < w / 3 else "right" if cx > 2 * w / 3 else "center"
    vert = "top" if cy < h / 3 else "bottom" if cy > 2 * h / 3 else "middle"
    pattern = "" if a["pattern"] == "plain" else a["pattern"] + " "
    return f"{a['size']} {a['color']} {pattern}{a['shape']} {horiz} {vert}"


def conversations(path: Path, template: str, instances: Path) -> list[tuple[str, list[str]]]:
    """[(the conversation's text without the image, [region_words of each <region>, in order])]."""
    d = json.loads(instances.read_text())
    size = {im["id"]: (im["width"], im["height"]) for im in d["images"]}
    words = {a["id"]: region_words(a, *size[a["image_id"]]) for a in d["annotations"]}
    out = []
    with open(path) as f:
        for raw in f:
            row = json.loads(raw)
            conv = row["conversations"]
            turns = [(conv[i]["value"], conv[i + 1]["value"]) for i in range(0, len(conv), 2)]
            text = build_prompt(turns, template).replace(IMAGE + "\n", "")
            out.append((text, [words[r["ann_id"]] for r in row["regions"]]))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m rgpt_rt.train.nano_text", description=__doc__.split("\n\n")[0])
    ap.add_argument("--init", required=True, help="checkpoint to start from (its LLM is trained, the rest kept)")
    ap.add_argument("--data", required=True, help="training conversations (JSON Lines)")
    ap.add_argument("--instances", required=True, help="COCO instances of the conversations' images (attributes)")
    ap.add_argument("--out", required=True, help="checkpoint to write")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    t0 = time.time()

    def log(msg: str) -> None:
        print(f"[text {time.time() - t0:6.1f}s] {msg}", flush=True)

    from tokenizers import Tokenizer

    from ..checkpoint import save_checkpoint
    from ..checkpoint.loader import load_model
    from .init import TOKENIZER_FILES

    torch.manual_seed(a.seed)
    rng = np.random.default_rng(a.seed)
    model = load_model(a.init).float()
    tok = Tokenizer.from_file(str(Path(a.init) / "tokenizer.json"))
    bos = model.cfg.llm.bos_token_id
    region_id = tok.token_to_id(model.cfg.region_token)
    convs = conversations(Path(a.data), model.cfg.conv_template, Path(a.instances))
    seqs = [([bos] if bos is not None else []) + e.ids for e in tok.encode_batch([c[0] for c in convs])]
    region_ids = [[e.ids for e in tok.encode_batch(c[1])] if c[1] else [] for c in convs]
    bad = [i for i, s in enumerate(seqs) if s.count(region_id) != len(region_ids[i])]
    if bad:
        raise SystemExit(f"conversation {bad[0]}: its <region> tokens and regions differ in number")
    log(f"{len(seqs)} conversations, {sum(map(len, seqs))} tokens")
    tm = TrainModel(model)
    params = list(model.llm.parameters())
    for p in model.parameters():
        p.requires_grad_(False)
    for p in params:
        p.requires_grad_(True)
    opt = torch.optim.AdamW(params, lr=a.lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(a.steps, warmup_ratio=0.05))
    recent: list[float] = []
    for step in range(a.steps):
        pick = rng.choice(len(seqs), a.batch, replace=False)
        batch = [seqs[i] for i in pick]
        t = max(map(len, batch))
        ids = torch.zeros(len(batch), t, dtype=torch.long)
        labels = torch.full((len(batch), t), -100, dtype=torch.long)
        for b, s in enumerate(batch):
            ids[b, : len(s)] = torch.tensor(s)
            labels[b, : len(s) - 1] = torch.tensor(s[1:])
        embeds = model.llm.embed(ids)
        rows, cols, vecs = [], [], []
        for b, i in enumerate(pick):  # each <region> position: the mean embedding of its region's words
            where = (ids[b] == region_id).nonzero().flatten().tolist()
            for pos, words in zip(where, region_ids[i]):
                rows.append(b)
                cols.append(pos)
                vecs.append(model.llm.embed(torch.tensor(words)).mean(0))
        if vecs:
            embeds = embeds.index_put((torch.tensor(rows), torch.tensor(cols)), torch.stack(vecs))
        hidden = tm.hidden(embeds)
        sel = labels != -100
        loss = F.cross_entropy(model.llm.head(hidden[sel]), labels[sel])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        recent = (recent + [float(loss.detach())])[-20:]
        if (step + 1) % 25 == 0 or step + 1 == a.steps:
            log(f"text step {step + 1}/{a.steps}: loss {np.mean(recent):.3f}")
    out = Path(a.out)
    save_checkpoint(model.eval(), out)
    for name in TOKENIZER_FILES:
        if (Path(a.init) / name).is_file():
            (out / name).write_bytes((Path(a.init) / name).read_bytes())
    (out / "text_pretraining.json").write_text(json.dumps({"steps": a.steps, "loss": float(np.mean(recent))}) + "\n")
    log(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
