"""The nano's stand-in for the LLM's pre-training: the LLaMA learns the world's chat text before it sees an image.

LLaVA's two stages assume a pre-trained LLM: stage 1 aligns the connector to a language model that already
speaks. The nano LLaMA starts from random weights; trained jointly from the first step, it turns the image and
region embeddings into attention sinks (their norm grew from 7 to 213 and two different objects' region
embeddings reached cosine 0.9993 after 150 steps of stage 2, measured) and answers every region alike. So it
first learns the text: every training conversation, rendered with the chat template, the image dropped and each
`<region>` kept as its (text) token, as next-token prediction over all tokens. Only the LLM is trained.

    python -m rgpt_rt.train.nano_text --init vision_init --data conversations_train.jsonl --out text_init
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..prompts import IMAGE, build_prompt
from .model import TrainModel


def texts(path: Path, template: str) -> list[str]:
    out = []
    with open(path) as f:
        for raw in f:
            conv = json.loads(raw)["conversations"]
            turns = [(conv[i]["value"], conv[i + 1]["value"]) for i in range(0, len(conv), 2)]
            out.append(build_prompt(turns, template).replace(IMAGE + "\n", ""))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m rgpt_rt.train.nano_text", description=__doc__.split("\n\n")[0])
    ap.add_argument("--init", required=True, help="checkpoint to start from (its LLM is trained, the rest kept)")
    ap.add_argument("--data", required=True, help="training conversations (JSON Lines)")
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
    seqs = [
        ([bos] if bos is not None else []) + e.ids
        for e in tok.encode_batch(texts(Path(a.data), model.cfg.conv_template))
    ]
    log(f"{len(seqs)} conversations, {sum(map(len, seqs))} tokens")
    tm = TrainModel(model)
    params = list(model.llm.parameters())
    for p in model.parameters():
        p.requires_grad_(False)
    for p in params:
        p.requires_grad_(True)
    opt = torch.optim.AdamW(params, lr=a.lr, weight_decay=0.0)
    warm = max(1, a.steps // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: (s + 1) / warm if s < warm else 0.5 * (1 + math.cos(math.pi * (s - warm) / (a.steps - warm)))
    )
    recent: list[float] = []
    for step in range(a.steps):
        batch = [seqs[i] for i in rng.choice(len(seqs), a.batch, replace=False)]
        t = max(map(len, batch))
        ids = torch.zeros(len(batch), t, dtype=torch.long)
        labels = torch.full((len(batch), t), -100, dtype=torch.long)
        for b, s in enumerate(batch):
            ids[b, : len(s)] = torch.tensor(s)
            labels[b, : len(s) - 1] = torch.tensor(s[1:])
        hidden = tm.hidden(model.llm.embed(ids))
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
